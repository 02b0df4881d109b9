package dev.panamabn;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Rules about the module's state that a single call can break: the counter at the end of its
 * range, a second backward through the same forward, and shapes the kernel cannot index.
 */
class StateRulesTest {

    private static final Shape SHAPE = Shape.of(3, 2, 4);
    private static final int COUNT = (int) SHAPE.elementCount();

    @Test
    void aCounterThatWouldOverflowIsRefused() {
        for (BatchNormOptions options : new BatchNormOptions[] {
                BatchNormOptions.of(2), BatchNormOptions.of(2).withCumulativeAverage()}) {
            try (BatchNorm bn = BatchNorm.create(options); Arena arena = Arena.ofConfined()) {
                MemorySegment x = Tensors.segment(arena, Tensors.gaussian(new SplittableRandom(3), COUNT, 1));
                rejected(bn, IllegalArgumentException.class, "numBatchesTracked must be >= 0 and < " + Long.MAX_VALUE,
                        () -> bn.setNumBatchesTracked(Long.MAX_VALUE), x);
                bn.setNumBatchesTracked(Long.MAX_VALUE - 1);
                bn.forward(x, SHAPE, arena);
                assertEquals(Long.MAX_VALUE, bn.numBatchesTracked(), options.toString());
                var e = rejected(bn, IllegalStateException.class, "numBatchesTracked", () -> bn.forward(x, SHAPE, arena), x);
                assertTrue(e.getMessage().contains("overflow"), e.getMessage());
                rejected(bn, IllegalStateException.class, "overflow", () -> bn.forward(new float[COUNT], SHAPE,
                        new float[COUNT]), x);
            }
        }
    }

    @Test
    void aSecondBackwardThroughTheSameForwardIsRefused() {
        try (BatchNorm bn = BatchNorm.create(2); Arena arena = Arena.ofConfined()) {
            SplittableRandom random = new SplittableRandom(4);
            MemorySegment x = Tensors.segment(arena, Tensors.gaussian(random, COUNT, 1));
            MemorySegment dy = Tensors.segment(arena, Tensors.gaussian(random, COUNT, 1));
            MemorySegment dx = arena.allocate(COUNT * 4L, 4);
            float[] xa = Tensors.floats(x, COUNT);
            float[] dya = Tensors.floats(dy, COUNT);
            for (boolean training : new boolean[] {true, false}) {
                if (!training) {
                    bn.eval();
                }
                bn.forward(x, SHAPE, arena);
                bn.backward(dy, x, SHAPE, dx);
                for (Executable again : new Executable[] {
                        () -> bn.backward(dy, x, SHAPE, arena.allocate(COUNT * 4L, 4)),
                        () -> bn.backward(dy, x, SHAPE, arena),
                        () -> bn.backward(dya, xa, SHAPE, new float[COUNT])}) {
                    rejected(bn, IllegalStateException.class, "backward already ran for the last forward pass", again, dx);
                }
                // A new forward allows a new backward.
                bn.forward(xa, SHAPE, new float[COUNT]);
                bn.backward(dya, xa, SHAPE, new float[COUNT]);
            }
        }
    }

    /** Each overload takes the option; the first backward without it uses the forward up. */
    @Test
    void everyOverloadCanRetainTheStatistics() {
        try (BatchNorm bn = BatchNorm.create(2); Arena arena = Arena.ofConfined()) {
            SplittableRandom random = new SplittableRandom(6);
            float[] x = Tensors.toFloat(Tensors.gaussian(random, COUNT, 1));
            float[] dy = Tensors.toFloat(Tensors.gaussian(random, COUNT, 1));
            MemorySegment xs = Tensors.segment(arena, x);
            MemorySegment dys = Tensors.segment(arena, dy);
            bn.forward(x, SHAPE, new float[COUNT]);
            bn.backward(dy, x, SHAPE, new float[COUNT], BackwardOption.RETAIN_STATISTICS);
            bn.backward(dys, xs, SHAPE, arena, BackwardOption.RETAIN_STATISTICS);
            bn.backward(dys, xs, SHAPE, arena.allocate(COUNT * 4L, 4), BackwardOption.RETAIN_STATISTICS);
            bn.backward(dys, xs, SHAPE, arena.allocate(COUNT * 4L, 4));
            var e = assertThrows(IllegalStateException.class, () -> bn.backward(dy, x, SHAPE, new float[COUNT]));
            assertTrue(e.getMessage().contains("backward already ran"), e.getMessage());
        }
    }

    @Test
    void retainedBackwardsAddTheSameGradients() {
        try (BatchNorm bn = BatchNorm.create(2)) {
            SplittableRandom random = new SplittableRandom(6);
            float[] x = Tensors.toFloat(Tensors.gaussian(random, COUNT, 1));
            float[] dy = Tensors.toFloat(Tensors.gaussian(random, COUNT, 1));
            bn.forward(x, SHAPE, new float[COUNT]);
            float[] dx1 = new float[COUNT];
            bn.backward(dy, x, SHAPE, dx1, BackwardOption.RETAIN_STATISTICS);
            float[] once = Tensors.floats(bn.weightGrad(), 2);
            float[] onceBias = Tensors.floats(bn.biasGrad(), 2);
            float[] dx2 = new float[COUNT];
            bn.backward(dy, x, SHAPE, dx2);
            org.junit.jupiter.api.Assertions.assertArrayEquals(dx1, dx2);
            float[] twice = Tensors.floats(bn.weightGrad(), 2);
            float[] twiceBias = Tensors.floats(bn.biasGrad(), 2);
            for (int c = 0; c < 2; c++) {
                assertEquals(once[c] + once[c], twice[c]);
                assertEquals(onceBias[c] + onceBias[c], twiceBias[c]);
            }
            var e = assertThrows(IllegalStateException.class, () -> bn.backward(dy, x, SHAPE, new float[COUNT]));
            assertTrue(e.getMessage().contains("RETAIN_STATISTICS"), e.getMessage());
            assertThrows(NullPointerException.class,
                    () -> bn.backward(dy, x, SHAPE, new float[COUNT], (BackwardOption) null));
        }
    }

    @Test
    void shapesTheKernelCannotIndexAreRefused() {
        // Empty, but the row stride C*S*4 (or the per-channel double arrays, C*8 bytes) overflows.
        for (long[] dims : new long[][] {{0, 3, 1L << 62}, {0, 1L << 61}, {0, 1L << 60, 1}, {0, 2, 1L << 30, 1L << 31}}) {
            var e = assertThrows(IllegalArgumentException.class, () -> Shape.of(dims));
            assertTrue(e.getMessage().contains("2^63"), e.getMessage());
        }
        // The largest that fit stay valid.
        Shape.of(0, 3, (Long.MAX_VALUE / 4) / 3);
        Shape.of(0, Long.MAX_VALUE / 8);
    }

    private static <T extends Throwable> T rejected(BatchNorm bn, Class<T> type, String messagePart, Executable call,
                                                    MemorySegment... buffers) {
        String before = Snapshot.of(bn, buffers);
        T e = assertThrows(type, call);
        String message = String.valueOf(e.getMessage());
        assertTrue(message.contains(messagePart), "message \"" + message + "\" lacks \"" + messagePart + "\"");
        Snapshot.assertUnchanged(before, bn, message, buffers);
        return e;
    }
}
