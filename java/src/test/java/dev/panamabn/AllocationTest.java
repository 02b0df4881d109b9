package dev.panamabn;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Steady-state calls allocate nothing on the Java heap, on both paths: module buffers are reused,
 * and the array wrappers of the float[] path are removed by escape analysis once the JIT has
 * compiled the caller. Each operation runs in rounds, in a loop of its own (as in a training
 * loop), until a round allocates nothing; the test fails if some operation never gets there.
 */
class AllocationTest {

    private static final int ROUNDS = 60;
    private static final int CALLS = 20_000;
    private static final Shape SHAPE = Shape.of(2, 4, 3, 3);

    private final com.sun.management.ThreadMXBean threads =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    @Test
    void forwardAndBackwardAllocateNothingOnceCompiled() {
        int count = (int) SHAPE.elementCount();
        try (BatchNorm bn = BatchNorm.create(4); Arena arena = Arena.ofConfined()) {
            float[] xa = Tensors.toFloat(Tensors.gaussian(new SplittableRandom(2), count, 1));
            float[] ya = new float[count];
            float[] dxa = new float[count];
            MemorySegment x = Tensors.segment(arena, xa);
            MemorySegment y = arena.allocate(count * 4L, 4);
            MemorySegment dx = arena.allocate(count * 4L, 4);
            double[] best = {Double.MAX_VALUE, Double.MAX_VALUE, Double.MAX_VALUE, Double.MAX_VALUE};
            for (int round = 0; round < ROUNDS && max(best) >= 0.5; round++) {
                best[0] = Math.min(best[0], perCall(() -> segmentForward(bn, x, y)));
                best[1] = Math.min(best[1], perCall(() -> segmentBackward(bn, x, y, dx)));
                best[2] = Math.min(best[2], perCall(() -> arrayForward(bn, xa, ya)));
                best[3] = Math.min(best[3], perCall(() -> arrayBackward(bn, xa, ya, dxa)));
            }
            assertTrue(max(best) < 0.5, String.format("bytes per call after %d rounds of %d calls: "
                    + "forward(segment) %.1f, backward(segment) %.1f, forward(float[]) %.1f, backward(float[]) %.1f",
                    ROUNDS, CALLS, best[0], best[1], best[2], best[3]));
        }
    }

    private double perCall(Runnable loop) {
        long before = threads.getCurrentThreadAllocatedBytes();
        loop.run();
        return (threads.getCurrentThreadAllocatedBytes() - before) / (double) CALLS;
    }

    private static void segmentForward(BatchNorm bn, MemorySegment x, MemorySegment y) {
        for (int i = 0; i < CALLS; i++) {
            bn.forward(x, SHAPE, y);
        }
    }

    private static void segmentBackward(BatchNorm bn, MemorySegment x, MemorySegment dy, MemorySegment dx) {
        for (int i = 0; i < CALLS; i++) {
            bn.backward(dy, x, SHAPE, dx);
        }
    }

    private static void arrayForward(BatchNorm bn, float[] x, float[] y) {
        for (int i = 0; i < CALLS; i++) {
            bn.forward(x, SHAPE, y);
        }
    }

    private static void arrayBackward(BatchNorm bn, float[] x, float[] dy, float[] dx) {
        for (int i = 0; i < CALLS; i++) {
            bn.backward(dy, x, SHAPE, dx);
        }
    }

    private static double max(double[] values) {
        double m = values[0];
        for (double v : values) {
            m = Math.max(m, v);
        }
        return m;
    }
}
