package dev.panamabn.interop;

import java.io.IOException;

/**
 * A tensor file ({@code .npy}, {@code .npz}, safetensors) is malformed or holds something this
 * package does not read. The message names the file and, where there is one, the entry or key.
 */
public final class TensorFormatException extends IOException {

    private static final long serialVersionUID = 1L;

    /**
     * Creates an exception with a detail message.
     *
     * @param message what is wrong, naming the file and, where there is one, the entry or key
     */
    public TensorFormatException(String message) {
        super(message);
    }

    /**
     * Creates an exception with a detail message and the exception that revealed the problem.
     *
     * @param message what is wrong, naming the file and, where there is one, the entry or key
     * @param cause the exception that revealed the problem (e.g. an {@code EOFException} or a
     *              {@code ZipException}), or null
     */
    public TensorFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
