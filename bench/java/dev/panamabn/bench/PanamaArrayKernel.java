package dev.panamabn.bench;

import dev.panamabn.BackwardOption;
import dev.panamabn.BatchNorm;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.stream.Stream;

/** panama-batchnorm-array: the public API's float[] overloads. */
final class PanamaArrayKernel implements Kernel {

    /** Backward runs again and again on one forward's statistics, so they are kept (no array per call). */
    private static final BackwardOption[] RETAIN = {BackwardOption.RETAIN_STATISTICS};

    private final BatchNorm module;
    private final Shape shape;
    private final float[] x;
    private final float[] y;
    private final float[] dy;
    private final float[] dx;

    PanamaArrayKernel(TestData data, int threads) {
        Parallelism.setThreads(threads);
        module = PanamaKernel.createModule(data);
        shape = Shape.of(data.dims().dims());
        x = data.x();
        dy = data.dy();
        y = new float[x.length];
        dx = new float[x.length];
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
            default -> throw Kernel.unsupported("panama-batchnorm-array", op);
        };
    }

    @Override
    public List<MemorySegment> touched(Op op) {
        List<MemorySegment> parameters = List.of(module.weight(), module.bias(),
                module.runningMean(), module.runningVar());
        List<MemorySegment> tensors = op.backward()
                ? List.of(MemorySegment.ofArray(dy), MemorySegment.ofArray(x),
                        MemorySegment.ofArray(dx), module.weightGrad(), module.biasGrad())
                : List.of(MemorySegment.ofArray(x), MemorySegment.ofArray(y));
        return Stream.concat(tensors.stream(), parameters.stream()).toList();
    }

    @Override
    public Outputs outputs() {
        return PanamaKernel.outputs(module, y, dx);
    }

    @Override
    public void close() {
        module.close();
    }
}
