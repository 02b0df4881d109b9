package dev.panamabn.bench;

/** java-vector: {@link VectorBatchNorm} on float arrays, channels split over the threads. */
final class VectorKernel implements Kernel {

    private final Dims dims;
    private final ChannelSplitter splitter;
    private final float[] x;
    private final float[] y;
    private final float[] dy;
    private final float[] dx;
    private final float[] weight;
    private final float[] bias;
    private final float[] dweight;
    private final float[] dbias;
    private final float[] runningMean;
    private final float[] runningVar;
    private final double[] saveMean;
    private final double[] saveInvstd;
    private final double[][] scratch;

    VectorKernel(Dims dims, int threads) {
        this.dims = dims;
        this.splitter = new ChannelSplitter(threads);
        int count = dims.count();
        int c = dims.c();
        x = TestData.uniform(count, 1);
        dy = TestData.uniform(count, 2);
        y = new float[count];
        dx = new float[count];
        weight = TestData.filled(c, TestData.WEIGHT);
        bias = TestData.filled(c, TestData.BIAS);
        dweight = new float[c];
        dbias = new float[c];
        runningMean = new float[c];
        runningVar = TestData.filled(c, 1);
        saveMean = new double[c];
        saveInvstd = new double[c];
        // one scratch pair per channel, so threads never share one
        scratch = new double[c][2];
    }

    @Override
    public Runnable prepare(Op op) {
        Runnable forwardTrain = () -> splitter.run(dims.c(), (c0, c1) ->
                VectorBatchNorm.forwardTrain(y, saveMean, saveInvstd, runningMean, runningVar,
                        x, weight, bias, dims.n(), dims.c(), dims.s(), TestData.EPS,
                        TestData.MOMENTUM, c0, c1));
        forwardTrain.run();
        return switch (op) {
            case FORWARD_TRAIN -> forwardTrain;
            case FORWARD_EVAL -> () -> splitter.run(dims.c(), (c0, c1) ->
                    VectorBatchNorm.forwardEval(y, x, weight, bias, runningMean, runningVar,
                            dims.n(), dims.c(), dims.s(), TestData.EPS, c0, c1));
            case BACKWARD -> () -> splitter.run(dims.c(), (c0, c1) ->
                    VectorBatchNorm.backwardTrain(dx, dweight, dbias, dy, x, weight, saveMean,
                            saveInvstd, dims.n(), dims.c(), dims.s(), scratch[c0], c0, c1));
        };
    }

    @Override
    public void close() {
        splitter.close();
    }
}
