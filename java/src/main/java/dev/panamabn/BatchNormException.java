package dev.panamabn;

/**
 * The native library refused a call. The Java API checks every argument before it calls native
 * code, so this signals a disagreement between the two layers (a bug), not bad input: bad input
 * is reported as {@link IllegalArgumentException}, {@link IllegalStateException} or
 * {@link NullPointerException} before anything runs.
 */
public final class BatchNormException extends RuntimeException {

    /** The serialized form's version. */
    @java.io.Serial
    private static final long serialVersionUID = 1L;

    /** The {@code BN_ERR_*} code. */
    private final int status;

    BatchNormException(String function, int status, String statusMessage) {
        super(function + " returned status " + status + ": " + statusMessage);
        this.status = status;
    }

    /**
     * The status the native function returned.
     *
     * @return the {@code BN_ERR_*} code from {@code batchnorm.h}
     */
    public int status() {
        return status;
    }
}
