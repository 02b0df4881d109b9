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
 * }</pre>
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
 */
public record BatchNormOptions(int numFeatures, double eps, OptionalDouble momentum, boolean affine,
                               boolean trackRunningStats) {

    /** PyTorch's default eps. */
    public static final double DEFAULT_EPS = 1e-5;
    /** PyTorch's default momentum. */
    public static final double DEFAULT_MOMENTUM = 0.1;

    /**
     * Checks every component.
     *
     * @throws IllegalArgumentException when a value is out of range (the message names it)
     * @throws NullPointerException when momentum is null
     */
    public BatchNormOptions {
        Objects.requireNonNull(momentum, "momentum (use OptionalDouble.empty() for the cumulative average)");
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
     * PyTorch's defaults: eps 1e-5, momentum 0.1, affine, tracking running statistics.
     *
     * @param numFeatures the channel count C, at least 1
     * @return the options
     */
    public static BatchNormOptions of(int numFeatures) {
        return new BatchNormOptions(numFeatures, DEFAULT_EPS, OptionalDouble.of(DEFAULT_MOMENTUM), true, true);
    }

    /**
     * A copy with another eps.
     *
     * @param eps added to the variance before the square root; finite and {@code >= 0}
     * @return the new options
     */
    public BatchNormOptions withEps(double eps) {
        return new BatchNormOptions(numFeatures, eps, momentum, affine, trackRunningStats);
    }

    /**
     * A copy with another momentum.
     *
     * @param momentum the weight of the new batch statistic, in {@code [0, 1]}
     * @return the new options
     */
    public BatchNormOptions withMomentum(double momentum) {
        return new BatchNormOptions(numFeatures, eps, OptionalDouble.of(momentum), affine, trackRunningStats);
    }

    /**
     * A copy with PyTorch's {@code momentum=None}: the running statistics are the plain average
     * over all batches so far (factor {@code 1 / numBatchesTracked}).
     *
     * @return the new options
     */
    public BatchNormOptions withCumulativeAverage() {
        return new BatchNormOptions(numFeatures, eps, OptionalDouble.empty(), affine, trackRunningStats);
    }

    /**
     * A copy with or without the learnable weight and bias.
     *
     * @param affine whether the module has a weight and a bias
     * @return the new options
     */
    public BatchNormOptions withAffine(boolean affine) {
        return new BatchNormOptions(numFeatures, eps, momentum, affine, trackRunningStats);
    }

    /**
     * A copy with or without running statistics.
     *
     * @param trackRunningStats whether the module keeps running statistics
     * @return the new options
     */
    public BatchNormOptions withTrackRunningStats(boolean trackRunningStats) {
        return new BatchNormOptions(numFeatures, eps, momentum, affine, trackRunningStats);
    }
}
