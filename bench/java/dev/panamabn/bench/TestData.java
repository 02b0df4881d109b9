package dev.panamabn.bench;

import java.util.Arrays;

/**
 * The inputs an implementation gets for one shape, as float32 NCHW values: x, the residual z of
 * the Add+ReLU ops and dy are (N,C,S); weight, bias and the initial running statistics are (C).
 * Every implementation gets the same values (rounded to its element type and laid out in its
 * layout by {@link TensorFormat}), so their work is the same.
 */
record TestData(Dims dims, float[] x, float[] z, float[] dy, float[] weight, float[] bias,
        float[] runningMean, float[] runningVar) {

    static final double EPS = 1e-5;
    static final double MOMENTUM = 0.1;

    TestData {
        int count = dims.count();
        int c = dims.c();
        if (x.length != count || z.length != count || dy.length != count || weight.length != c
                || bias.length != c || runningMean.length != c || runningVar.length != c) {
            throw new IllegalArgumentException("test data for " + dims
                    + ": expected x, z and dy of " + count + " values and the others of " + c
                    + ", got " + x.length + ", " + z.length + ", " + dy.length + ", "
                    + weight.length + ", " + bias.length + ", " + runningMean.length + " and "
                    + runningVar.length);
        }
        x = x.clone();
        z = z.clone();
        dy = dy.clone();
        weight = weight.clone();
        bias = bias.clone();
        runningMean = runningMean.clone();
        runningVar = runningVar.clone();
    }

    /**
     * What the benchmark times: x, z and dy uniform in [-2, 2), weight 1.5, bias 0.25, running
     * statistics at PyTorch's defaults (mean 0, variance 1). About half of the fused ops' outputs
     * are positive, so the ReLU masks are not predictable.
     */
    static TestData timed(Dims dims) {
        int count = dims.count();
        int c = dims.c();
        return new TestData(dims, uniform(count, 1), uniform(count, 5), uniform(count, 2),
                filled(c, 1.5f), filled(c, 0.25f), filled(c, 0), filled(c, 1));
    }

    /**
     * What the correctness check runs on: each channel its own spread (0.05 to 50), mean (up to
     * 20 spreads away from 0, never a power of two), weight (either sign) and bias, dy with a
     * per-channel offset, and running statistics near the channel's own, as in a trained
     * network. A mean far from zero breaks a variance taken as E[x^2] - E[x]^2 in float;
     * variances down to 1e-3 make eps visible in y, also in eval mode; running variances near the
     * batch's make the unbiased factor m/(m-1) visible; distinct per-channel values catch a
     * kernel that mixes up channels. z, the residual, has a per-channel offset of either sign,
     * so that Add+ReLU zeroes between a tenth and four fifths of a channel's values. Means stay
     * within about 35 standard deviations so that a correct float32 kernel, which rounds the
     * mean to float before subtracting it, stays well inside {@link KernelCheck}'s tolerance.
     */
    static TestData check(Dims dims) {
        int n = dims.n();
        int c = dims.c();
        int s = dims.s();
        float[] x = uniform(dims.count(), 3);
        float[] z = uniform(dims.count(), 6);
        float[] dy = uniform(dims.count(), 4);
        float[] weight = new float[c];
        float[] bias = new float[c];
        float[] runningMean = new float[c];
        float[] runningVar = new float[c];
        for (int ch = 0; ch < c; ch++) {
            double spread =
                    0.05 * StrictMath.pow(10, 1.5 * (1 + StrictMath.sin(1.9 * ch + 0.3)));
            double mean = spread * 20 * StrictMath.sin(2.7 * ch + 1.1);
            double dyOffset = 0.5 * StrictMath.cos(1.7 * ch);
            double zOffset = 0.8 * StrictMath.sin(1.1 * ch + 0.7);
            for (int b = 0; b < n; b++) {
                for (int i = (b * c + ch) * s; i < (b * c + ch + 1) * s; i++) {
                    x[i] = (float) (mean + spread * 0.5 * x[i]);
                    z[i] = (float) (zOffset + 0.5 * z[i]);
                    dy[i] = (float) (dyOffset + dy[i]);
                }
            }
            weight[ch] = (float) (1.25 * StrictMath.cos(1.3 * ch) + 0.3);
            bias[ch] = (float) (0.5 * StrictMath.sin(0.9 * ch + 0.4));
            runningMean[ch] = (float) (mean + 0.37 * spread);
            runningVar[ch] = (float) (0.6 * spread * spread / 3);
        }
        return new TestData(dims, x, z, dy, weight, bias, runningMean, runningVar);
    }

    @Override
    public float[] x() {
        return x.clone();
    }

    @Override
    public float[] z() {
        return z.clone();
    }

    @Override
    public float[] dy() {
        return dy.clone();
    }

    @Override
    public float[] weight() {
        return weight.clone();
    }

    @Override
    public float[] bias() {
        return bias.clone();
    }

    @Override
    public float[] runningMean() {
        return runningMean.clone();
    }

    @Override
    public float[] runningVar() {
        return runningVar.clone();
    }

    /** Deterministic values in [-2, 2) (a linear congruential generator, seeded). */
    private static float[] uniform(int count, int seed) {
        float[] v = new float[count];
        int state = seed;
        for (int i = 0; i < count; i++) {
            state = state * 1664525 + 1013904223;
            v[i] = (state >>> 8) / (float) (1 << 24) * 4.0f - 2.0f;
        }
        return v;
    }

    private static float[] filled(int count, float value) {
        float[] v = new float[count];
        Arrays.fill(v, value);
        return v;
    }
}
