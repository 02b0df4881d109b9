package dev.panamabn;

import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * Options of {@link BatchNorm#backward(MemorySegment, MemorySegment, Shape, MemorySegment, BackwardOption...)}
 * and its overloads.
 */
public enum BackwardOption {

    /**
     * Keep the forward pass's statistics after this backward, so that another backward of the
     * same forward may follow (PyTorch's {@code retain_graph=True}). Without it, a second backward
     * needs a new forward: the gradients of one forward are added once.
     */
    RETAIN_STATISTICS;

    static boolean retains(BackwardOption... options) {
        Objects.requireNonNull(options, "options");
        boolean retain = false;
        for (BackwardOption option : options) {
            retain |= Objects.requireNonNull(option, "options contains null") == RETAIN_STATISTICS;
        }
        return retain;
    }
}
