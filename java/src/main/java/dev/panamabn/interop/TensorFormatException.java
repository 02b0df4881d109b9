package dev.panamabn.interop;

import java.io.IOException;

/**
 * A tensor file ({@code .npy}, {@code .npz}, safetensors) is malformed or holds something this
 * package does not read. The message names the file and, where there is one, the entry or key.
 */
public final class TensorFormatException extends IOException {

    private static final long serialVersionUID = 1L;

    public TensorFormatException(String message) {
        super(message);
    }

    public TensorFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
