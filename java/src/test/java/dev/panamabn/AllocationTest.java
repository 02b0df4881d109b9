package dev.panamabn;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * Steady-state calls allocate nothing on the Java heap, on both paths: module buffers are reused,
 * and the array wrappers of the float[] path are removed by escape analysis once compiled. Rounds
 * repeat until the JIT has done its work; the test fails if no round gets there.
 */
class AllocationTest {

    private static final int ROUNDS = 40;
    private static final int CALLS = 20_000;

    @Test
    void forwardAndBackwardAllocateNothingOnceCompiled() {
        var threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long id = Thread.currentThread().threadId();
        Shape shape = Shape.of(2, 4, 3, 3);
        int count = (int) shape.elementCount();
        try (BatchNorm bn = BatchNorm.create(4); Arena arena = Arena.ofConfined()) {
            float[] xa = Tensors.toFloat(Tensors.gaussian(new java.util.SplittableRandom(2), count, 1));
            float[] ya = new float[count];
            float[] dxa = new float[count];
            MemorySegment x = Tensors.segment(arena, xa);
            MemorySegment y = arena.allocate(count * 4L, 4);
            MemorySegment dx = arena.allocate(count * 4L, 4);
            double best = Double.MAX_VALUE;
            for (int round = 0; round < ROUNDS; round++) {
                long before = threads.getThreadAllocatedBytes(id);
                for (int i = 0; i < CALLS; i++) {
                    bn.forward(x, shape, y);
                    bn.backward(y, x, shape, dx);
                    bn.forward(xa, shape, ya);
                    bn.backward(ya, xa, shape, dxa);
                }
                double perCall = (threads.getThreadAllocatedBytes(id) - before) / (4.0 * CALLS);
                best = Math.min(best, perCall);
                if (perCall < 0.5) {
                    return;
                }
            }
            fail("forward/backward still allocate " + best + " bytes per call after " + ROUNDS * CALLS * 4 + " calls");
        }
    }
}
