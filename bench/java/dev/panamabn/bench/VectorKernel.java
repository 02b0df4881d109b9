package dev.panamabn.bench;

import java.lang.foreign.MemorySegment;
import java.util.List;

/** java-vector: {@link VectorBatchNorm} on float arrays, channels split over the threads. */
final class VectorKernel implements Kernel {

    private final ArrayTensors t;
    private final ChannelSplitter splitter;
    // one scratch pair per channel, so that threads never share one
    private final double[][] scratch;

    VectorKernel(TestData data, int threads) {
        t = new ArrayTensors(data);
        splitter = new ChannelSplitter(threads);
        scratch = new double[t.c][2];
    }

    @Override
    public Runnable prepare(Op op) {
        Runnable forwardTrain = () -> splitter.run(t.c, t.x.length, (c0, c1) ->
                VectorBatchNorm.forwardTrain(t.y, t.saveMean, t.saveInvstd, t.runningMean,
                        t.runningVar, t.x, t.weight, t.bias, t.n, t.c, t.s, TestData.EPS,
                        TestData.MOMENTUM, scratch[c0], c0, c1));
        forwardTrain.run();
        return switch (op) {
            case FORWARD_TRAIN -> forwardTrain;
            case FORWARD_EVAL -> () -> splitter.run(t.c, t.x.length, (c0, c1) ->
                    VectorBatchNorm.forwardEval(t.y, t.x, t.weight, t.bias, t.runningMean,
                            t.runningVar, t.n, t.c, t.s, TestData.EPS, c0, c1));
            case BACKWARD -> () -> splitter.run(t.c, t.x.length, (c0, c1) ->
                    VectorBatchNorm.backwardTrain(t.dx, t.dweight, t.dbias, t.dy, t.x, t.weight,
                            t.saveMean, t.saveInvstd, t.n, t.c, t.s, scratch[c0], c0, c1));
            default -> throw Kernel.unsupported("java-vector", op);
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
    public void close() {
        splitter.close();
    }
}
