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
     * A forward pass as backward needs to know it: its spec, its epilogue (the backward must be the
     * matching one) and the count behind the statistics it normalised with ({@code N * S} of its
     * own batch, or of the whole batch when it got the statistics of a larger one). One reference,
     * so that racing eval-mode forwards never leave a mix of two calls.
     */
    private record Forward(TensorSpec spec, Epilogue epilogue, long statsCount) {
    }

    /**
     * The last forward whose statistics backward may use; null after any change of mode or state,
     * and after the backward that used them.
     */
    private Forward lastForward;
    /** The forward a backward without {@link BackwardOption#RETAIN_STATISTICS} used up: for the message of a second one. */
    private Forward usedForward;

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

    /**
     * A backward of this spec and epilogue may run: the last forward had them, in the current mode
     * and state, and is not used up.
     */
    void checkBackward(TensorSpec spec, Epilogue epilogue) {
        Forward forward = lastForward;
        if (forward == null) {
            throw new IllegalStateException(usedForward != null
                    ? "backward already ran for the last forward pass: run a new forward, or give the earlier"
                            + " backward BackwardOption.RETAIN_STATISTICS to keep its statistics"
                    : "backward needs a forward pass first, in the current mode and since the last change of state");
        }
        if (!spec.equalTo(forward.spec())) {
            throw new IllegalStateException("backward got " + describe(spec) + " but the last forward pass had "
                    + describe(forward.spec()));
        }
        if (epilogue != forward.epilogue()) {
            throw new IllegalStateException("the last forward pass was " + forward.epilogue().forwardName
                    + ": its backward is the matching one, not the backward of " + epilogue.forwardName);
        }
    }

    /** The count behind the statistics of the last forward (valid after {@link #checkBackward}). */
    long lastStatsCount() {
        return lastForward.statsCount();
    }

    /** After a forward returned OK: its counter, and its statistics for one backward. */
    void forwardReturned(TensorSpec spec, Epilogue epilogue, long statsCount, long count) {
        numBatchesTracked = count;
        lastForward = reuse(lastForward, spec, epilogue, statsCount);
        usedForward = null;
    }

    /** The same record when it describes this forward, so that a training loop allocates nothing. */
    private Forward reuse(Forward last, TensorSpec spec, Epilogue epilogue, long statsCount) {
        if (describes(last, spec, epilogue, statsCount)) {
            return last;
        }
        if (describes(usedForward, spec, epilogue, statsCount)) {
            return usedForward;
        }
        return new Forward(spec, epilogue, statsCount);
    }

    private static boolean describes(Forward f, TensorSpec spec, Epilogue epilogue, long statsCount) {
        return f != null && f.spec() == spec && f.epilogue() == epilogue && f.statsCount() == statsCount;
    }

    private static String describe(TensorSpec spec) {
        return spec instanceof Shape ? "shape " + spec : spec.toString();
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
