package dev.panamabn;

/**
 * The module's state that lives on the Java side: the counter and which forward a backward may
 * differentiate. Calls compute what they will publish ({@link #nextCount()}) before the downcall
 * and publish it ({@link #forwardReturned}, {@link #backwardReturned}) only after the downcall
 * returned OK, so that a call that throws changes none of it.
 *
 * <p>Guarded by the module's lock: written in write mode, except that eval-mode forwards with
 * running statistics publish under the read mode, concurrently. Those only store references and
 * a count that they all store alike (racing writes of the same kind, which cannot tear), and the
 * fields are read only in write mode, which the lock orders after every earlier write: no
 * volatile needed.
 */
final class TrainingState {

    private long numBatchesTracked;
    /**
     * Shape of the last forward whose statistics backward may use; null after any change of mode
     * or state, and after the backward that used them.
     */
    private Shape lastForward;
    /** The forward a backward without {@link BackwardOption#RETAIN_STATISTICS} used up: for the message of a second one. */
    private Shape usedForward;

    long count() {
        return numBatchesTracked;
    }

    void setCount(long count) {
        numBatchesTracked = count;
    }

    /** The counter after one more training step; refuses to wrap past {@code Long.MAX_VALUE}. */
    long nextCount() {
        if (numBatchesTracked == Long.MAX_VALUE) {
            throw new IllegalStateException("numBatchesTracked is Long.MAX_VALUE: one more training step would"
                    + " overflow it (setNumBatchesTracked can lower it)");
        }
        return numBatchesTracked + 1;
    }

    /** A backward of this shape may run: the last forward had it, in the current mode and state, and is not used up. */
    void checkBackward(Shape shape) {
        Shape forwardShape = lastForward;
        if (forwardShape == null) {
            throw new IllegalStateException(usedForward != null
                    ? "backward already ran for the last forward pass: run a new forward, or give the earlier"
                            + " backward BackwardOption.RETAIN_STATISTICS to keep its statistics"
                    : "backward needs a forward pass first, in the current mode and since the last change of state");
        }
        if (!shape.equals(forwardShape)) {
            throw new IllegalStateException("backward got shape " + shape + " but the last forward pass had shape "
                    + forwardShape);
        }
    }

    /** After a forward returned OK: its counter, and its statistics for one backward. */
    void forwardReturned(Shape shape, long count) {
        numBatchesTracked = count;
        lastForward = shape;
        usedForward = null;
    }

    /** After a backward returned OK: the forward's statistics are used up unless retained. */
    void backwardReturned(boolean retain) {
        if (!retain) {
            usedForward = lastForward;
            lastForward = null;
        }
    }

    /** After a change of mode or state: no forward to differentiate. */
    void forgetForward() {
        lastForward = null;
        usedForward = null;
    }
}
