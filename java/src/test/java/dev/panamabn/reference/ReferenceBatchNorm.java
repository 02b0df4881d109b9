package dev.panamabn.reference;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;

import java.util.Arrays;
import java.util.Objects;

/**
 * A plain double-precision BatchNorm with PyTorch's semantics, written for clarity rather than
 * speed: the independent reference the tests and the benchmarks check the native module against.
 * Tensors are {@code double[]} in NCHW order, indexed {@code (i * C + c) * S + j}.
 *
 * <p>Unlike {@link dev.panamabn.BatchNorm}, {@link #backward} returns the gradients of one call
 * instead of accumulating them. The accessors return the module's own arrays: writing to them
 * changes the module, which is what a test needs to set up a state. Not thread-safe.
 */
public final class ReferenceBatchNorm {

    /** The gradients of one backward call. dweight and dbias are null when the module is not affine. */
    public record Gradients(double[] dx, double[] dweight, double[] dbias) {
    }

    private final BatchNormOptions options;
    private final int channels;
    private final double[] weight;
    private final double[] bias;
    private final double[] runningMean;
    private final double[] runningVar;
    private final double[] savedMean;
    private final double[] savedInvstd;
    private long numBatchesTracked;
    private boolean training = true;
    private boolean savedBatchStatistics;

    public ReferenceBatchNorm(BatchNormOptions options) {
        this.options = Objects.requireNonNull(options, "options");
        this.channels = options.numFeatures();
        this.weight = options.affine() ? filled(channels, 1) : null;
        this.bias = options.affine() ? new double[channels] : null;
        this.runningMean = options.trackRunningStats() ? new double[channels] : null;
        this.runningVar = options.trackRunningStats() ? filled(channels, 1) : null;
        this.savedMean = new double[channels];
        this.savedInvstd = new double[channels];
    }

    private ReferenceBatchNorm(ReferenceBatchNorm other) {
        this.options = other.options;
        this.channels = other.channels;
        this.weight = copy(other.weight);
        this.bias = copy(other.bias);
        this.runningMean = copy(other.runningMean);
        this.runningVar = copy(other.runningVar);
        this.savedMean = other.savedMean.clone();
        this.savedInvstd = other.savedInvstd.clone();
        this.numBatchesTracked = other.numBatchesTracked;
        this.training = other.training;
        this.savedBatchStatistics = other.savedBatchStatistics;
    }

    /** An independent copy of this module's whole state. */
    public ReferenceBatchNorm copy() {
        return new ReferenceBatchNorm(this);
    }

    public BatchNormOptions options() {
        return options;
    }

    public boolean isTraining() {
        return training;
    }

    public ReferenceBatchNorm train() {
        training = true;
        return this;
    }

    public ReferenceBatchNorm eval() {
        training = false;
        return this;
    }

    /** Gamma (null when not affine). */
    public double[] weight() {
        return weight;
    }

    /** Beta (null when not affine). */
    public double[] bias() {
        return bias;
    }

    /** Null without running statistics. */
    public double[] runningMean() {
        return runningMean;
    }

    /** The unbiased running variance; null without running statistics. */
    public double[] runningVar() {
        return runningVar;
    }

    public long numBatchesTracked() {
        return numBatchesTracked;
    }

    public void setNumBatchesTracked(long count) {
        numBatchesTracked = count;
    }

    /** The mean used to normalise in the last forward (batch or running). */
    public double[] savedMean() {
        return savedMean;
    }

    /** The 1/sqrt(var + eps) used to normalise in the last forward (batch or running). */
    public double[] savedInvstd() {
        return savedInvstd;
    }

    /**
     * The forward pass; in training mode it also updates the running statistics.
     *
     * @throws IllegalArgumentException for a channel count other than numFeatures, an array of the
     *                                  wrong length, or one value per channel in training
     */
    public double[] forward(double[] x, Shape shape) {
        int n = checkedBatch(shape);
        int s = checkedSpatial(shape);
        checkLength("x", x, shape);
        int m = n * s;
        boolean batchStatistics = training || !options.trackRunningStats();
        if (batchStatistics && m == 1) {
            throw new IllegalArgumentException(
                    "Expected more than 1 value per channel when training, got input size " + shape);
        }
        double[] y = new double[x.length];
        for (int c = 0; c < channels; c++) {
            double mean;
            double invstd;
            if (batchStatistics) {
                mean = 0;
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < s; j++) {
                        mean += x[(i * channels + c) * s + j];
                    }
                }
                mean = m == 0 ? 0 : mean / m;
                double squares = 0;
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < s; j++) {
                        double d = x[(i * channels + c) * s + j] - mean;
                        squares += d * d;
                    }
                }
                double var = m == 0 ? 0 : squares / m;
                invstd = m == 0 ? 0 : invstd(var, options.eps());
                if (training && options.trackRunningStats() && m > 0) {
                    double factor = factorAfterIncrement();
                    runningMean[c] = (1 - factor) * runningMean[c] + factor * mean;
                    runningVar[c] = (1 - factor) * runningVar[c] + factor * var * m / (m - 1);
                }
            } else {
                mean = runningMean[c];
                invstd = 1 / Math.sqrt(runningVar[c] + options.eps());
            }
            savedMean[c] = mean;
            savedInvstd[c] = invstd;
            double g = weight == null ? 1 : weight[c];
            double b = bias == null ? 0 : bias[c];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < s; j++) {
                    int k = (i * channels + c) * s + j;
                    y[k] = (x[k] - mean) * invstd * g + b;
                }
            }
        }
        if (training && options.trackRunningStats()) {
            numBatchesTracked++;
        }
        savedBatchStatistics = batchStatistics;
        return y;
    }

    /**
     * The backward pass of the last forward call, which must have had this x and shape.
     * Training mode (and eval without running statistics) differentiates through the batch
     * statistics; eval mode with running statistics treats them as constants.
     */
    public Gradients backward(double[] dy, double[] x, Shape shape) {
        int n = checkedBatch(shape);
        int s = checkedSpatial(shape);
        checkLength("dy", dy, shape);
        checkLength("x", x, shape);
        int m = n * s;
        double[] dx = new double[x.length];
        double[] dweight = new double[channels];
        double[] dbias = new double[channels];
        for (int c = 0; c < channels; c++) {
            double mean = savedMean[c];
            double invstd = savedInvstd[c];
            double sumDy = 0;
            double sumDyXhat = 0;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < s; j++) {
                    int k = (i * channels + c) * s + j;
                    sumDy += dy[k];
                    sumDyXhat += dy[k] * (x[k] - mean) * invstd;
                }
            }
            dweight[c] = sumDyXhat;
            dbias[c] = sumDy;
            double g = weight == null ? 1 : weight[c];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < s; j++) {
                    int k = (i * channels + c) * s + j;
                    if (savedBatchStatistics) {
                        double xhat = (x[k] - mean) * invstd;
                        dx[k] = g * invstd * (dy[k] - sumDy / m - xhat * sumDyXhat / m);
                    } else {
                        dx[k] = dy[k] * g * invstd;
                    }
                }
            }
        }
        return options.affine() ? new Gradients(dx, dweight, dbias) : new Gradients(dx, null, null);
    }

    /**
     * 1/sqrt(var + eps) of batch statistics, with PyTorch's rule: 0 when var and eps are both 0
     * (a constant channel with eps 0 gives y = bias and zero gradients, not NaN).
     */
    static double invstd(double var, double eps) {
        return var == 0 && eps == 0 ? 0 : 1 / Math.sqrt(var + eps);
    }

    private double factorAfterIncrement() {
        return options.momentum().isPresent()
                ? options.momentum().getAsDouble()
                : 1.0 / (numBatchesTracked + 1);
    }

    private int checkedBatch(Shape shape) {
        if (shape.channels() != channels) {
            throw new IllegalArgumentException("shape " + shape + " has " + shape.channels()
                    + " channels but numFeatures=" + channels);
        }
        return Math.toIntExact(shape.batch());
    }

    private static int checkedSpatial(Shape shape) {
        return Math.toIntExact(shape.spatial());
    }

    private static void checkLength(String name, double[] array, Shape shape) {
        if (array.length != shape.elementCount()) {
            throw new IllegalArgumentException(name + " has " + array.length + " values, shape " + shape
                    + " has " + shape.elementCount());
        }
    }

    private static double[] filled(int length, double value) {
        double[] a = new double[length];
        Arrays.fill(a, value);
        return a;
    }

    private static double[] copy(double[] a) {
        return a == null ? null : a.clone();
    }
}
