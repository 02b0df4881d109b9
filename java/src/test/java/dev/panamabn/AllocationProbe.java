package dev.panamabn;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.util.SplittableRandom;

/**
 * Main class of {@link AllocationTest}'s child JVM: runs each operation in rounds, in a loop of its
 * own, until a round allocates nothing; prints the best bytes per call and exits with 1 if some
 * operation never got there.
 */
final class AllocationProbe {

    private static final int ROUNDS = 200;
    private static final int CALLS = 20_000;
    private static final Shape SHAPE = Shape.of(2, 4, 3, 3);

    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    private AllocationProbe() {
    }

    public static void main(String[] args) {
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
            System.out.printf("bytes per call (best of up to %d rounds of %d calls): forward(segment) %.1f, "
                    + "forward+backward(segment) %.1f, forward(float[]) %.1f, forward+backward(float[]) %.1f%n",
                    ROUNDS, CALLS, best[0], best[1], best[2], best[3]);
            if (max(best) >= 0.5) {
                System.exit(1);
            }
        }
    }

    private static double perCall(Runnable loop) {
        long before = THREADS.getCurrentThreadAllocatedBytes();
        loop.run();
        return (THREADS.getCurrentThreadAllocatedBytes() - before) / (double) CALLS;
    }

    private static void segmentForward(BatchNorm bn, MemorySegment x, MemorySegment y) {
        for (int i = 0; i < CALLS; i++) {
            bn.forward(x, SHAPE, y);
        }
    }

    /** A backward needs a forward of its own: these loops time the pair. */
    private static void segmentBackward(BatchNorm bn, MemorySegment x, MemorySegment dy, MemorySegment dx) {
        for (int i = 0; i < CALLS; i++) {
            bn.forward(x, SHAPE, dy);
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
            bn.forward(x, SHAPE, dy);
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
