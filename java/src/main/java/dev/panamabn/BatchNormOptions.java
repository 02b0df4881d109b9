package dev.panamabn;

import java.util.Objects;
import java.util.OptionalDouble;

/**
 * The hyper-parameters of a {@link BatchNorm} module, with PyTorch's names, meanings and defaults
 * ({@code torch.nn.BatchNorm1d/2d/3d}).
 *
 * <pre>{@code
 * var options = BatchNormOptions.of(64).withMomentum(0.01);
 * var cumulative = BatchNormOptions.of(64).withCumulativeAverage();   // momentum=None
 * var ported = BatchNormOptions.of(64).withMomentumOfRunning(0.9);   // a 0.9 from ONNX or Keras: 0.1 here
 * var onnx = BatchNormOptions.onnx(64);   // ONNX's conventions: momentum 0.9 of the running value, biased variance
 * }</pre>
 *
 * <p>Libraries disagree on two conventions of the running statistics, and a model ported with
 * the wrong one trains differently without any error:
 * <ul>
 *   <li>Momentum: PyTorch's weights the <em>batch</em> value ({@link #withMomentumOfBatch}, 0.1 by
 *       default); ONNX, TensorFlow/Keras, DL4J, oneDNN and DJL weight the <em>running</em> value
 *       ({@link #withMomentumOfRunning}, their 0.9 is PyTorch's 0.1). The record stores PyTorch's.</li>
 *   <li>Running variance: PyTorch stores the unbiased batch variance, ONNX, oneDNN and DL4J the
 *       biased one ({@link RunningVariance}).</li>
 * </ul>
 *
 * @param numFeatures the channel count C, dimension 1 of every input; at least 1
 * @param eps added to the variance before the square root; finite and {@code >= 0}
 * @param momentum the weight of the new batch statistic in the running statistics,
 *                 {@code running = (1 - momentum) * running + momentum * batch}, in {@code [0, 1]};
 *                 empty for PyTorch's {@code momentum=None}, the cumulative average
 *                 (factor {@code 1 / numBatchesTracked}). Note the direction: DJL, ONNX, DL4J and
 *                 oneDNN weight the <em>old</em> value instead (their 0.9 is this 0.1).
 * @param affine whether the module has a learnable per-channel weight (gamma) and bias (beta)
 * @param trackRunningStats whether the module keeps running statistics; when false it normalises
 *                          with the batch statistics in eval mode too
 * @param runningVariance which batch variance the running variance moves towards
 */
public record BatchNormOptions(int numFeatures, double eps, OptionalDouble momentum, boolean affine,
                               boolean trackRunningStats, RunningVariance runningVariance) {

    /** The batch variance that training moves the running variance towards. */
    public enum RunningVariance {
        /** PyTorch's: the unbiased {@code var * M / (M - 1)} of the M values per channel. */
        UNBIASED,
        /** ONNX's, oneDNN's and DL4J's: the biased {@code var} that normalised the batch. */
        BIASED
    }

    /** PyTorch's default eps. */
    public static final double DEFAULT_EPS = 1e-5;
    /** PyTorch's default momentum. */
    public static final double DEFAULT_MOMENTUM = 0.1;

    /**
     * Checks every component.
     *
     * @throws IllegalArgumentException when a value is out of range (the message names it)
     * @throws NullPointerException when momentum or runningVariance is null
     */
    public BatchNormOptions {
        Objects.requireNonNull(momentum, "momentum (use OptionalDouble.empty() for the cumulative average)");
        Objects.requireNonNull(runningVariance, "runningVariance");
        if (numFeatures < 1) {
            throw new IllegalArgumentException("numFeatures must be >= 1, got " + numFeatures);
        }
        if (!(eps >= 0) || eps == Double.POSITIVE_INFINITY) {
            throw new IllegalArgumentException("eps must be finite and >= 0, got " + eps);
        }
        if (momentum.isPresent()) {
            double m = momentum.getAsDouble();
            if (!(m >= 0 && m <= 1)) {
                throw new IllegalArgumentException("momentum must be in [0, 1], got " + m);
            }
        }
    }

    /**
     * PyTorch's conventions with the running variance unbiased.
     *
     * @param numFeatures the channel count C, at least 1
     * @param eps added to the variance before the square root
     * @param momentum the weight of the new batch statistic, or empty for the cumulative average
     * @param affine whether the module has a weight and a bias
     * @param trackRunningStats whether the module keeps running statistics
     */
    public BatchNormOptions(int numFeatures, double eps, OptionalDouble momentum, boolean affine,
                            boolean trackRunningStats) {
        this(numFeatures, eps, momentum, affine, trackRunningStats, RunningVariance.UNBIASED);
    }

    /**
     * PyTorch's defaults: eps 1e-5, momentum 0.1, affine, tracking running statistics, unbiased
     * running variance.
     *
     * @param numFeatures the channel count C, at least 1
     * @return the options
     */
    public static BatchNormOptions of(int numFeatures) {
        return new BatchNormOptions(numFeatures, DEFAULT_EPS, OptionalDouble.of(DEFAULT_MOMENTUM), true, true);
    }

    /**
     * ONNX's {@code BatchNormalization} defaults and conventions: epsilon 1e-5, momentum 0.9 of the
     * running value (0.1 of the batch value), affine, tracking running statistics, biased running
     * variance.
     *
     * @param numFeatures the channel count C, at least 1
     * @return the options
     */
    public static BatchNormOptions onnx(int numFeatures) {
        return of(numFeatures).withMomentumOfRunning(0.9).withRunningVariance(RunningVariance.BIASED);
    }

    /**
     * A copy with another eps.
     *
     * @param eps added to the variance before the square root; finite and {@code >= 0}
     * @return the new options
     */
    public BatchNormOptions withEps(double eps) {
        return new BatchNormOptions(numFeatures, eps, momentum, affine, trackRunningStats, runningVariance);
    }

    /**
     * PyTorch's {@code momentum}, the weight of the batch value: same as {@link #withMomentumOfBatch}.
     *
     * @param momentum the weight of the new batch statistic, in {@code [0, 1]}
     * @return the new options
     */
    public BatchNormOptions withMomentum(double momentum) {
        return withMomentumOfBatch(momentum);
    }

    /**
     * Momentum as PyTorch counts it: {@code running = (1 - m) * running + m * batch}, 0.1 by default.
     *
     * @param m the weight of the batch value
     * @return the new options
     * @throws IllegalArgumentException when m is outside [0, 1]
     */
    public BatchNormOptions withMomentumOfBatch(double m) {
        return new BatchNormOptions(numFeatures, eps, OptionalDouble.of(m), affine, trackRunningStats, runningVariance);
    }

    /**
     * Momentum as ONNX, TensorFlow/Keras, DL4J, oneDNN and DJL count it:
     * {@code running = m * running + (1 - m) * batch}; their 0.9 is PyTorch's 0.1. Stored as
     * PyTorch's {@code 1 - m}.
     *
     * @param m the weight of the running value
     * @return the new options
     * @throws IllegalArgumentException when m is outside [0, 1]
     */
    public BatchNormOptions withMomentumOfRunning(double m) {
        if (!(m >= 0 && m <= 1)) {
            throw new IllegalArgumentException("momentum of the running value must be in [0, 1], got " + m);
        }
        return withMomentumOfBatch(1 - m);
    }

    /**
     * A copy with PyTorch's {@code momentum=None}: the running statistics are the plain average
     * over all batches so far (factor {@code 1 / numBatchesTracked}).
     *
     * @return the new options
     */
    public BatchNormOptions withCumulativeAverage() {
        return new BatchNormOptions(numFeatures, eps, OptionalDouble.empty(), affine, trackRunningStats, runningVariance);
    }

    /**
     * A copy with or without the learnable weight and bias.
     *
     * @param affine whether the module has a weight and a bias
     * @return the new options
     */
    public BatchNormOptions withAffine(boolean affine) {
        return new BatchNormOptions(numFeatures, eps, momentum, affine, trackRunningStats, runningVariance);
    }

    /**
     * A copy with or without running statistics.
     *
     * @param trackRunningStats whether the module keeps running statistics
     * @return the new options
     */
    public BatchNormOptions withTrackRunningStats(boolean trackRunningStats) {
        return new BatchNormOptions(numFeatures, eps, momentum, affine, trackRunningStats, runningVariance);
    }

    /**
     * A copy with another running-variance rule.
     *
     * @param runningVariance which batch variance the running variance moves towards
     * @return the new options
     */
    public BatchNormOptions withRunningVariance(RunningVariance runningVariance) {
        return new BatchNormOptions(numFeatures, eps, momentum, affine, trackRunningStats, runningVariance);
    }
}
