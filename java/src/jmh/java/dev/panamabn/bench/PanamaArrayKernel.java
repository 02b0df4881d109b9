package dev.panamabn.bench;

import dev.panamabn.BatchNorm;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;

/** panama-batchnorm-array: the public API's float[] overloads. */
final class PanamaArrayKernel implements Kernel {

    private final BatchNorm module;
    private final Shape shape;
    private final float[] x;
    private final float[] y;
    private final float[] dy;
    private final float[] dx;

    PanamaArrayKernel(Dims dims, int threads) {
        Parallelism.setThreads(threads);
        module = BatchNorm.create(dims.c());
        PanamaKernel.initParameters(module);
        shape = Shape.of(dims.dims());
        x = TestData.uniform(dims.count(), 1);
        dy = TestData.uniform(dims.count(), 2);
        y = new float[dims.count()];
        dx = new float[dims.count()];
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
    }
}
