package dev.panamabn;

import java.io.Serial;

/**
 * A collective exchange failed: the ranks passed arrays of different lengths (then
 * {@link #lengths()} has each rank's length and the member stays usable), not every rank joined
 * in time, the transport failed, or the member was broken by an earlier such failure.
 */
public class CollectiveException extends RuntimeException {

    @Serial
    private static final long serialVersionUID = 1L;

    /** Each rank's length for a length mismatch, else empty. */
    private final long[] lengths;

    /**
     * An exception with a message.
     *
     * @param message what failed
     */
    public CollectiveException(String message) {
        this(message, (Throwable) null);
    }

    /**
     * An exception with a message and a cause.
     *
     * @param message what failed
     * @param cause what made it fail, or null
     */
    public CollectiveException(String message, Throwable cause) {
        super(message, cause);
        this.lengths = new long[0];
    }

    /**
     * The exception for ranks that passed arrays of different lengths.
     *
     * @param message what failed
     * @param lengths each rank's length, in rank order (copied)
     */
    public CollectiveException(String message, long[] lengths) {
        super(message);
        this.lengths = lengths.clone();
    }

    /**
     * Each rank's length when the ranks passed arrays of different lengths.
     *
     * @return a copy of the lengths in rank order; empty for any other failure
     */
    public long[] lengths() {
        return lengths.clone();
    }

    /**
     * Whether this is a length mismatch, which leaves the collective usable.
     *
     * @return true when {@link #lengths()} is not empty
     */
    public boolean isLengthMismatch() {
        return lengths.length > 0;
    }

    /** "rank 0: 137, rank 1: 73" for messages. */
    static String describe(long[] lengths) {
        StringBuilder text = new StringBuilder();
        for (int r = 0; r < lengths.length; r++) {
            text.append(r == 0 ? "" : ", ").append("rank ").append(r).append(": ").append(lengths[r]);
        }
        return text.toString();
    }
}
