package dev.panamabn;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Everything a call may change, as text: counter, mode, parameters, gradients, running statistics,
 * the statistics saved for backward, and any caller buffers given. Two snapshots are equal only
 * when every bit is.
 */
final class Snapshot {

    private Snapshot() {
    }

    static String of(BatchNorm bn, MemorySegment... buffers) {
        int c = bn.options().numFeatures();
        StringBuilder s = new StringBuilder();
        s.append("training=").append(bn.isTraining());
        if (bn.options().trackRunningStats()) {
            s.append(" counter=").append(bn.numBatchesTracked())
                    .append(" runningMean=").append(bits(bn.runningMean(), c))
                    .append(" runningVar=").append(bits(bn.runningVar(), c));
        }
        if (bn.options().affine()) {
            s.append(" weight=").append(bits(bn.weight(), c)).append(" bias=").append(bits(bn.bias(), c))
                    .append(" weightGrad=").append(bits(bn.weightGrad(), c))
                    .append(" biasGrad=").append(bits(bn.biasGrad(), c));
        }
        s.append(" savedMean=").append(bits(bn.savedMean(), 2L * c))
                .append(" savedInvstd=").append(bits(bn.savedInvstd(), 2L * c));
        for (int i = 0; i < buffers.length; i++) {
            s.append(" buffer").append(i).append('=').append(bits(buffers[i], buffers[i].byteSize() / 4));
        }
        return s.toString();
    }

    static void assertUnchanged(String before, BatchNorm bn, String context, MemorySegment... buffers) {
        assertEquals(before, of(bn, buffers), "a rejected call changed something: " + context);
    }

    /** The raw bits of {@code count} 4-byte words (so NaNs and -0 compare exactly). */
    private static String bits(MemorySegment segment, long count) {
        int[] words = new int[Math.toIntExact(count)];
        MemorySegment.copy(segment, java.lang.foreign.ValueLayout.JAVA_INT, 0, words, 0, words.length);
        return Arrays.toString(words);
    }
}
