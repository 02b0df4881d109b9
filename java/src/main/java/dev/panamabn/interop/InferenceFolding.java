package dev.panamabn.interop;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Objects;

/**
 * Eval-mode BatchNorm as a per-channel affine map, and folded into the layer before it, as
 * deployment tools do ({@code torch.nn.utils.fusion.fuse_conv_bn_eval}, ONNX optimizers).
 *
 * <p>In eval mode {@code y = (x - mean) / sqrt(var + eps) * gamma + beta = scale * x + shift} with
 * {@code scale = gamma / sqrt(var + eps)} and {@code shift = beta - mean * scale}. A convolution
 * or linear layer {@code z = W x + b} followed by it equals one layer with
 * {@code W'[o, ...] = W[o, ...] * scale[o]} and {@code b'[o] = (b[o] - mean[o]) * scale[o] + beta[o]}.
 * Every output value here is computed in double from the float32 inputs and rounded once.
 *
 * <p>Weights are float32, C-contiguous, with the output channel first: convolutions in PyTorch's
 * and ONNX's {@code (O, I/groups, kH, kW)} (any number of kernel dimensions, so conv1d and conv3d
 * too), linear layers {@code (out, in)}; transposed convolutions, whose weights are
 * {@code (I, O/groups, ...)}, are not handled. The folded layer is mathematically the composition;
 * in float32 it differs from computing the two layers by a rounding of the weights, and, like any
 * {@code scale * x + shift} form, it loses accuracy when {@code |mean|} is large against
 * {@code sqrt(var)} (see docs/INTEROP.md).
 */
public final class InferenceFolding {

    private InferenceFolding() {
    }

    /**
     * The per-channel {@code y = scale * x + shift} of eval mode.
     *
     * @param scale {@code gamma / sqrt(var + eps)}, one per channel
     * @param shift {@code beta - mean * scale}, one per channel
     */
    public record ChannelAffine(float[] scale, float[] shift) {

        /**
         * Creates the map from copies of the arrays.
         *
         * @param scale {@code gamma / sqrt(var + eps)}, one per channel
         * @param shift {@code beta - mean * scale}, one per channel
         * @throws IllegalArgumentException when the arrays' lengths differ
         */
        public ChannelAffine {
            scale = scale.clone();
            shift = shift.clone();
            if (scale.length != shift.length) {
                throw new IllegalArgumentException("scale has " + scale.length + " channels, shift " + shift.length);
            }
        }

        /**
         * {@return a copy of the per-channel scale}
         */
        @Override
        public float[] scale() {
            return scale.clone();
        }

        /**
         * {@return a copy of the per-channel shift}
         */
        @Override
        public float[] shift() {
            return shift.clone();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof ChannelAffine other && Arrays.equals(scale, other.scale)
                    && Arrays.equals(shift, other.shift);
        }

        @Override
        public int hashCode() {
            return 31 * Arrays.hashCode(scale) + Arrays.hashCode(shift);
        }

        @Override
        public String toString() {
            return "ChannelAffine[scale=" + Arrays.toString(scale) + ", shift=" + Arrays.toString(shift) + "]";
        }
    }

    /**
     * Returns the eval-mode affine map of a module with running statistics, from its current
     * weight, bias, running statistics and eps.
     *
     * @param module the module; gamma 1 and beta 0 when it is not affine
     * @return the map, one scale and one shift per channel
     * @throws IllegalStateException when the module does not track running statistics (its eval
     *                               mode uses batch statistics, which no fixed map reproduces), or
     *                               is closed
     */
    public static ChannelAffine evalAffine(BatchNorm module) {
        return evalAffine(Parameters.of(module));
    }

    /**
     * Returns the eval-mode affine map of raw parameters, e.g. from a state dict.
     *
     * @param gamma the weight, C floats, or null for {@code affine=false} (gamma 1)
     * @param beta the bias, C floats, or null for {@code affine=false} (beta 0)
     * @param runningMean the running mean, C floats
     * @param runningVar the running variance, C floats
     * @param eps added to the variance before the square root
     * @return the map, one scale and one shift per channel
     * @throws IllegalArgumentException when the arrays' lengths differ, or {@code eps} is negative,
     *                                  NaN or infinite
     */
    public static ChannelAffine evalAffine(float[] gamma, float[] beta, float[] runningMean, float[] runningVar,
                                           double eps) {
        return evalAffine(Parameters.of(gamma, beta, runningMean, runningVar, eps));
    }

    /**
     * Folds the module into the layer before it, writing the folded weight and bias. The outputs
     * may be the inputs (in place). Segments may be heap or native, float32 in the platform's byte
     * order, of any alignment; each must hold at least the bytes its shape needs.
     *
     * @param module the BatchNorm that follows the layer, with C channels
     * @param weight float32 {@code (C, K...)}: C the module's channels, the rest the layer's fan-in
     * @param weightShape the weight's dimensions, output channel first
     * @param bias float32 {@code (C)}, or null when the layer has none
     * @param foldedWeight float32 output of the weight's shape
     * @param foldedBias float32 output {@code (C)} (a layer without bias gets one)
     * @throws IllegalArgumentException when {@code weightShape} has fewer than two dimensions, a
     *                                  negative one, a first one other than C, or a size that
     *                                  overflows a long; when a segment is
     *                                  too small; or when an output is read-only
     * @throws IllegalStateException when the module does not track running statistics, or is closed
     */
    public static void fold(BatchNorm module, MemorySegment weight, long[] weightShape, MemorySegment bias,
                            MemorySegment foldedWeight, MemorySegment foldedBias) {
        Objects.requireNonNull(weight, "weight");
        Objects.requireNonNull(foldedWeight, "foldedWeight");
        Objects.requireNonNull(foldedBias, "foldedBias");
        Parameters p = Parameters.of(module);
        long fanIn = fanIn(weightShape, p.channels());
        long weightBytes = p.channels() * fanIn * Float.BYTES;
        checkSize("weight", weight, weightBytes);
        checkSize("foldedWeight", foldedWeight, weightBytes);
        checkSize("foldedBias", foldedBias, (long) p.channels() * Float.BYTES);
        if (bias != null) {
            checkSize("bias", bias, (long) p.channels() * Float.BYTES);
        }
        fold(p, weight, fanIn, bias, foldedWeight, foldedBias);
    }

    /**
     * Like {@link #fold(BatchNorm, MemorySegment, long[], MemorySegment, MemorySegment, MemorySegment)}
     * on Java arrays, returning new ones; the arguments are not changed.
     *
     * @param module the BatchNorm that follows the layer, with C channels
     * @param weight the layer's weight {@code (C, K...)} in C order
     * @param weightShape the weight's dimensions, output channel first
     * @param bias the layer's bias, C floats, or null when the layer has none
     * @return the folded weight, of the weight's shape, and the folded bias, C floats
     * @throws IllegalArgumentException when {@code weightShape} has fewer than two dimensions, a
     *                                  negative one, a first one other than C, or a size that
     *                                  overflows a long, or when an array's
     *                                  length does not match its shape
     * @throws IllegalStateException when the module does not track running statistics, or is closed
     */
    public static FoldedLayer fold(BatchNorm module, float[] weight, long[] weightShape, float[] bias) {
        Objects.requireNonNull(weight, "weight");
        Parameters p = Parameters.of(module);
        long fanIn = fanIn(weightShape, p.channels());
        if (weight.length != p.channels() * fanIn) {
            throw new IllegalArgumentException("weight has " + weight.length + " floats, shape "
                    + Arrays.toString(weightShape) + " needs " + p.channels() * fanIn);
        }
        if (bias != null && bias.length != p.channels()) {
            throw new IllegalArgumentException("bias has " + bias.length + " floats, the module " + p.channels()
                    + " channels");
        }
        float[] w = new float[weight.length];
        float[] b = new float[p.channels()];
        fold(p, MemorySegment.ofArray(weight), fanIn, bias == null ? null : MemorySegment.ofArray(bias),
                MemorySegment.ofArray(w), MemorySegment.ofArray(b));
        return new FoldedLayer(w, b);
    }

    /**
     * A folded layer's float32 weight (same shape as the original) and bias {@code (C)}.
     *
     * @param weight the folded weight
     * @param bias the folded bias
     */
    public record FoldedLayer(float[] weight, float[] bias) {

        /**
         * Creates the layer from copies of the arrays.
         *
         * @param weight the folded weight
         * @param bias the folded bias
         */
        public FoldedLayer {
            weight = weight.clone();
            bias = bias.clone();
        }

        /**
         * {@return a copy of the folded weight}
         */
        @Override
        public float[] weight() {
            return weight.clone();
        }

        /**
         * {@return a copy of the folded bias}
         */
        @Override
        public float[] bias() {
            return bias.clone();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof FoldedLayer other && Arrays.equals(weight, other.weight)
                    && Arrays.equals(bias, other.bias);
        }

        @Override
        public int hashCode() {
            return 31 * Arrays.hashCode(weight) + Arrays.hashCode(bias);
        }

        @Override
        public String toString() {
            return "FoldedLayer[" + weight.length + " weights, " + bias.length + " channels]";
        }
    }

    // ---- internals ----

    /** The eval-mode parameters as doubles (gamma 1 and beta 0 when not affine). */
    private record Parameters(double[] gamma, double[] beta, double[] mean, double[] var, double eps) {

        int channels() {
            return mean.length;
        }

        /** {@code gamma / sqrt(var + eps)} in double. */
        double scale(int c) {
            return gamma[c] / Math.sqrt(var[c] + eps);
        }

        static Parameters of(BatchNorm module) {
            Objects.requireNonNull(module, "module");
            BatchNormOptions o = module.options();
            if (!o.trackRunningStats()) {
                throw new IllegalStateException("a BatchNorm without running statistics normalises with batch "
                        + "statistics in eval mode too: it has no fixed affine map to fold");
            }
            int c = o.numFeatures();
            double[] gamma = o.affine() ? doubles(module.weight(), c) : filled(c, 1);
            double[] beta = o.affine() ? doubles(module.bias(), c) : filled(c, 0);
            return new Parameters(gamma, beta, doubles(module.runningMean(), c), doubles(module.runningVar(), c),
                    o.eps());
        }

        static Parameters of(float[] gamma, float[] beta, float[] mean, float[] var, double eps) {
            Objects.requireNonNull(mean, "runningMean");
            Objects.requireNonNull(var, "runningVar");
            int c = mean.length;
            if (var.length != c || (gamma != null && gamma.length != c) || (beta != null && beta.length != c)) {
                throw new IllegalArgumentException("the parameters have different channel counts: runningMean " + c
                        + ", runningVar " + var.length + (gamma == null ? "" : ", gamma " + gamma.length)
                        + (beta == null ? "" : ", beta " + beta.length));
            }
            if (!(eps >= 0) || eps == Double.POSITIVE_INFINITY) {
                throw new IllegalArgumentException("eps must be finite and >= 0, got " + eps);
            }
            return new Parameters(gamma == null ? filled(c, 1) : doubles(gamma), beta == null ? filled(c, 0)
                    : doubles(beta), doubles(mean), doubles(var), eps);
        }

        private static double[] doubles(MemorySegment floats, int c) {
            double[] out = new double[c];
            for (int i = 0; i < c; i++) {
                out[i] = floats.getAtIndex(ValueLayout.JAVA_FLOAT, i);
            }
            return out;
        }

        private static double[] doubles(float[] floats) {
            double[] out = new double[floats.length];
            for (int i = 0; i < floats.length; i++) {
                out[i] = floats[i];
            }
            return out;
        }

        private static double[] filled(int c, double value) {
            double[] out = new double[c];
            Arrays.fill(out, value);
            return out;
        }
    }

    private static ChannelAffine evalAffine(Parameters p) {
        int c = p.channels();
        float[] scale = new float[c];
        float[] shift = new float[c];
        for (int i = 0; i < c; i++) {
            double s = p.scale(i);
            scale[i] = (float) s;
            shift[i] = (float) (p.beta()[i] - p.mean()[i] * s);
        }
        return new ChannelAffine(scale, shift);
    }

    // weight, foldedWeight are (C, fanIn); bias, foldedBias are (C); bias may be null
    private static void fold(Parameters p, MemorySegment weight, long fanIn, MemorySegment bias,
                             MemorySegment foldedWeight, MemorySegment foldedBias) {
        ValueLayout.OfFloat f = ValueLayout.JAVA_FLOAT_UNALIGNED;
        for (int o = 0; o < p.channels(); o++) {
            double s = p.scale(o);
            long row = o * fanIn;
            for (long k = 0; k < fanIn; k++) {
                foldedWeight.setAtIndex(f, row + k, (float) (weight.getAtIndex(f, row + k) * s));
            }
            double b = bias == null ? 0 : bias.getAtIndex(f, o);
            foldedBias.setAtIndex(f, o, (float) ((b - p.mean()[o]) * s + p.beta()[o]));
        }
    }

    private static long fanIn(long[] weightShape, int channels) {
        Objects.requireNonNull(weightShape, "weightShape");
        if (weightShape.length < 2) {
            throw new IllegalArgumentException("a weight has the output channel first and at least one more "
                    + "dimension, got shape " + Arrays.toString(weightShape));
        }
        if (weightShape[0] != channels) {
            throw new IllegalArgumentException("the weight has " + weightShape[0] + " output channels (dimension 0 of "
                    + Arrays.toString(weightShape) + ") but the BatchNorm has " + channels);
        }
        long fanIn = Tensor.byteSize(ElementType.FLOAT32, Arrays.copyOfRange(weightShape, 1, weightShape.length))
                / Float.BYTES;
        Tensor.byteSize(ElementType.FLOAT32, weightShape);
        return fanIn;
    }

    private static void checkSize(String name, MemorySegment segment, long bytes) {
        if (segment.byteSize() < bytes) {
            throw new IllegalArgumentException(name + " is too small: it needs " + bytes + " bytes, it has "
                    + segment.byteSize());
        }
        if (segment.isReadOnly() && name.startsWith("folded")) {
            throw new IllegalArgumentException(name + " is read-only, but it is an output");
        }
    }
}
