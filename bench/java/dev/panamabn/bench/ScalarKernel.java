package dev.panamabn.bench;

import dev.panamabn.reference.ScalarBatchNorm;
import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * java-scalar: {@link ScalarBatchNorm}, the project's plain scalar Java. It works on whole
 * tensors, and NCHW channels are not contiguous, so it runs on the calling thread only.
 */
final class ScalarKernel implements Kernel {

    private final ArrayTensors t;

    ScalarKernel(TestData data, int threads) {
        if (threads != 1) {
            throw new IllegalArgumentException(
                    "threads: java-scalar is single-threaded, expected 1, got " + threads);
        }
        t = new ArrayTensors(data);
    }

    @Override
    public Runnable prepare(Op op) {
        Runnable forwardTrain = () -> ScalarBatchNorm.forwardTrain(t.y, t.saveMean, t.saveInvstd,
                t.runningMean, t.runningVar, t.x, t.weight, t.bias, t.n, t.c, t.s, TestData.EPS,
                TestData.MOMENTUM);
        forwardTrain.run();
        return switch (op) {
            case FORWARD_TRAIN -> forwardTrain;
            case FORWARD_EVAL -> () -> ScalarBatchNorm.forwardEval(t.y, t.x, t.weight, t.bias,
                    t.runningMean, t.runningVar, t.n, t.c, t.s, TestData.EPS);
            case BACKWARD -> () -> ScalarBatchNorm.backwardTrain(t.dx, t.dweight, t.dbias, t.dy,
                    t.x, t.weight, t.saveMean, t.saveInvstd, t.n, t.c, t.s);
            default -> throw Kernel.unsupported("java-scalar", op);
        };
    }

    @Override
    public Outputs outputs() {
        return t.outputs();
    }

    @Override
    public List<MemorySegment> touched(Op op) {
        return t.touched(op);
    }

    @Override
    public void close() {}
}
