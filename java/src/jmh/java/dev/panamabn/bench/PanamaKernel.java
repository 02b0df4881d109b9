package dev.panamabn.bench;

import dev.panamabn.BatchNorm;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** panama-batchnorm: the public API on native memory segments. */
final class PanamaKernel implements Kernel {

    private final Arena arena = Arena.ofShared();
    private final BatchNorm module;
    private final Shape shape;
    private final MemorySegment x;
    private final MemorySegment y;
    private final MemorySegment dy;
    private final MemorySegment dx;

    PanamaKernel(Dims dims, int threads) {
        Parallelism.setThreads(threads);
        module = BatchNorm.create(dims.c());
        initParameters(module);
        shape = Shape.of(dims.dims());
        x = copyOf(TestData.uniform(dims.count(), 1));
        dy = copyOf(TestData.uniform(dims.count(), 2));
        y = arena.allocate(ValueLayout.JAVA_FLOAT, dims.count());
        dx = arena.allocate(ValueLayout.JAVA_FLOAT, dims.count());
    }

    static void initParameters(BatchNorm module) {
        module.weight().elements(ValueLayout.JAVA_FLOAT)
                .forEach(w -> w.set(ValueLayout.JAVA_FLOAT, 0, TestData.WEIGHT));
        module.bias().elements(ValueLayout.JAVA_FLOAT)
                .forEach(b -> b.set(ValueLayout.JAVA_FLOAT, 0, TestData.BIAS));
    }

    private MemorySegment copyOf(float[] values) {
        return arena.allocateFrom(ValueLayout.JAVA_FLOAT, values);
    }

    @Override
    public Runnable prepare(Op op) {
        module.train();
        module.forward(x, shape, y);
        return switch (op) {
            case FORWARD_TRAIN -> () -> module.forward(x, shape, y);
            case FORWARD_EVAL -> {
                module.eval();
                yield () -> module.forward(x, shape, y);
            }
            case BACKWARD -> () -> module.backward(dy, x, shape, dx);
        };
    }

    @Override
    public void close() {
        module.close();
        arena.close();
    }
}
