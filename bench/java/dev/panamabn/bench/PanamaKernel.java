package dev.panamabn.bench;

import dev.panamabn.BackwardOption;
import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.stream.Stream;

/** panama-batchnorm: the public API on native memory segments. */
final class PanamaKernel implements Kernel {

    /** Backward runs again and again on one forward's statistics, so they are kept (no array per call). */
    private static final BackwardOption[] RETAIN = {BackwardOption.RETAIN_STATISTICS};

    private final Arena arena = Arena.ofShared();
    private final BatchNorm module;
    private final Shape shape;
    private final MemorySegment x;
    private final MemorySegment y;
    private final MemorySegment dy;
    private final MemorySegment dx;

    PanamaKernel(TestData data, int threads) {
        Parallelism.setThreads(threads);
        module = createModule(data);
        shape = Shape.of(data.dims().dims());
        x = arena.allocateFrom(ValueLayout.JAVA_FLOAT, data.x());
        dy = arena.allocateFrom(ValueLayout.JAVA_FLOAT, data.dy());
        y = arena.allocate(ValueLayout.JAVA_FLOAT, data.dims().count());
        dx = arena.allocate(ValueLayout.JAVA_FLOAT, data.dims().count());
    }

    /** A module with the suite's eps and momentum and the data's parameters and statistics. */
    static BatchNorm createModule(TestData data) {
        int c = data.dims().c();
        BatchNorm module = BatchNorm.create(BatchNormOptions.of(c)
                .withEps(TestData.EPS).withMomentum(TestData.MOMENTUM));
        MemorySegment.copy(data.weight(), 0, module.weight(), ValueLayout.JAVA_FLOAT, 0, c);
        MemorySegment.copy(data.bias(), 0, module.bias(), ValueLayout.JAVA_FLOAT, 0, c);
        MemorySegment.copy(data.runningMean(), 0, module.runningMean(), ValueLayout.JAVA_FLOAT,
                0, c);
        MemorySegment.copy(data.runningVar(), 0, module.runningVar(), ValueLayout.JAVA_FLOAT,
                0, c);
        return module;
    }

    /** The module's running statistics and gradients beside the given y and dx. */
    static Outputs outputs(BatchNorm module, float[] y, float[] dx) {
        return Outputs.ofFloats(y, module.runningMean().toArray(ValueLayout.JAVA_FLOAT),
                module.runningVar().toArray(ValueLayout.JAVA_FLOAT), dx,
                module.weightGrad().toArray(ValueLayout.JAVA_FLOAT),
                module.biasGrad().toArray(ValueLayout.JAVA_FLOAT));
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
            case BACKWARD -> () -> module.backward(dy, x, shape, dx, RETAIN);
            default -> throw Kernel.unsupported("panama-batchnorm", op);
        };
    }

    @Override
    public List<MemorySegment> touched(Op op) {
        List<MemorySegment> parameters = List.of(module.weight(), module.bias(),
                module.runningMean(), module.runningVar());
        List<MemorySegment> tensors = op.backward() ? List.of(dy, x, dx, module.weightGrad(),
                module.biasGrad()) : List.of(x, y);
        return Stream.concat(tensors.stream(), parameters.stream()).toList();
    }

    @Override
    public Outputs outputs() {
        return outputs(module, y.toArray(ValueLayout.JAVA_FLOAT),
                dx.toArray(ValueLayout.JAVA_FLOAT));
    }

    @Override
    public void close() {
        module.close();
        arena.close();
    }
}
