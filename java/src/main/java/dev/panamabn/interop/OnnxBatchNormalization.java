package dev.panamabn.interop;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * ONNX's {@code BatchNormalization} operator (versions 6, 7, 9, 14 and 15) on float32 tensors,
 * with ONNX's semantics and outputs, computed by the library's kernel.
 *
 * <ul>
 *   <li>Inference: {@code Y = (X - input_mean) / sqrt(input_var + epsilon) * scale + B}.</li>
 *   <li>Training: {@code Y} from the batch mean and the <em>biased</em> batch variance, and
 *       {@code running_mean = momentum * input_mean + (1 - momentum) * batch_mean},
 *       {@code running_var = momentum * input_var + (1 - momentum) * batch_var} with the biased
 *       variance: ONNX's {@code momentum} (default 0.9) weights the running value, the opposite of
 *       PyTorch's (its 0.9 is PyTorch's 0.1).</li>
 * </ul>
 *
 * The mode comes from the node as its version defines it: {@code training_mode} (versions 14 and
 * 15), the number of outputs (7 and 9: more than {@code Y} means training), {@code is_test}
 * (version 6). The optional outputs {@code saved_mean} and {@code saved_var} of versions 6 to 9,
 * whose meaning runtimes never agreed on, are refused, as is {@code spatial = 0}. X is
 * {@code (N, C, D1, ...)} of rank 2 to 5 ({@link Shape}).
 *
 * <p>Every output is computed in double and rounded once to float32. A training batch of one
 * value per channel has variance 0 (as ONNX defines it; PyTorch refuses such a batch). A channel
 * whose variance is 0 with {@code epsilon = 0} gets {@code Y = B} (the library's rule, PyTorch's)
 * where ONNX's reference divides 0 by 0.
 *
 * <p>Instances are immutable and thread-safe; each {@code run} uses a module of its own.
 */
public final class OnnxBatchNormalization {

    /** ONNX's default epsilon. */
    public static final double DEFAULT_EPSILON = 1e-5;
    /** ONNX's default momentum: the weight of the running value. */
    public static final double DEFAULT_MOMENTUM = 0.9;
    /** The highest opset this adapter knows; the operator has not changed since version 15. */
    public static final int MAX_OPSET = 22;
    private static final int[] VERSIONS = {6, 7, 9, 14, 15};

    private final int version;
    private final double epsilon;
    private final double momentum;
    private final boolean training;

    private OnnxBatchNormalization(int version, double epsilon, double momentum, boolean training) {
        if (!(epsilon >= 0) || epsilon == Double.POSITIVE_INFINITY) {
            throw new IllegalArgumentException("epsilon must be finite and >= 0, got " + epsilon);
        }
        if (!(momentum >= 0 && momentum <= 1)) {
            throw new IllegalArgumentException("momentum must be in [0, 1], got " + momentum);
        }
        this.version = version;
        this.epsilon = epsilon;
        this.momentum = momentum;
        this.training = training;
    }

    /**
     * Returns the operator in inference mode, as of its latest version.
     *
     * @param epsilon added to the variance before the square root; finite and {@code >= 0}
     * @return the operator
     * @throws IllegalArgumentException when {@code epsilon} is negative, NaN or infinite
     */
    public static OnnxBatchNormalization inference(double epsilon) {
        return new OnnxBatchNormalization(15, epsilon, DEFAULT_MOMENTUM, false);
    }

    /**
     * Returns the operator in training mode, as of its latest version.
     *
     * @param epsilon added to the variance before the square root; finite and {@code >= 0}
     * @param momentum ONNX's momentum, the weight of the running value, in {@code [0, 1]}
     * @return the operator
     * @throws IllegalArgumentException when {@code epsilon} is negative, NaN or infinite, or
     *                                  {@code momentum} is outside {@code [0, 1]}
     */
    public static OnnxBatchNormalization training(double epsilon, double momentum) {
        return new OnnxBatchNormalization(15, epsilon, momentum, true);
    }

    /**
     * The operator as a node of a model declares it.
     *
     * @param opset the model's opset for the default domain, 6 to {@link #MAX_OPSET}
     * @param attributes the node's attributes by name ({@code epsilon}, {@code momentum} as float,
     *                   {@code training_mode}, {@code is_test}, {@code spatial} as int); absent ones
     *                   take ONNX's defaults
     * @param outputCount how many outputs the node has (1 for Y only, 3 for Y, running_mean,
     *                    running_var)
     * @return the operator
     * @throws IllegalArgumentException for an opset out of range, an attribute the version does not
     *                                  have or a value it does not allow (a float for an int
     *                                  attribute, {@code spatial} other than 1, an epsilon or
     *                                  momentum out of range), or an output count that does not fit
     *                                  the mode
     * @throws NullPointerException when {@code attributes} or one of its values is null
     */
    public static OnnxBatchNormalization fromNode(int opset, Map<String, ? extends Number> attributes,
                                                  int outputCount) {
        Objects.requireNonNull(attributes, "attributes");
        if (opset < VERSIONS[0] || opset > MAX_OPSET) {
            throw new IllegalArgumentException("BatchNormalization: opset " + opset + " is not supported (6 to "
                    + MAX_OPSET + ")");
        }
        int version = VERSIONS[0];
        for (int v : VERSIONS) {
            if (v <= opset) {
                version = v;
            }
        }
        Set<String> allowed = switch (version) {
            case 6 -> Set.of("epsilon", "momentum", "is_test", "spatial");
            case 7 -> Set.of("epsilon", "momentum", "spatial");
            case 9 -> Set.of("epsilon", "momentum");
            default -> Set.of("epsilon", "momentum", "training_mode");
        };
        for (String name : attributes.keySet()) {
            if (!allowed.contains(name)) {
                throw new IllegalArgumentException("BatchNormalization-" + version + " has no attribute '" + name
                        + "' (it has " + String.join(", ", allowed.stream().sorted().toList()) + ")");
            }
            Objects.requireNonNull(attributes.get(name), () -> "attribute '" + name + "' is null");
        }
        double epsilon = attributes.containsKey("epsilon") ? attributes.get("epsilon").doubleValue() : DEFAULT_EPSILON;
        double momentum = attributes.containsKey("momentum") ? attributes.get("momentum").doubleValue()
                : DEFAULT_MOMENTUM;
        if (attributes.containsKey("spatial") && intAttribute(attributes, "spatial") != 1) {
            throw new IllegalArgumentException("BatchNormalization-" + version + ": spatial = "
                    + attributes.get("spatial") + " (statistics per element instead of per channel) is not supported");
        }
        boolean training = switch (version) {
            case 6 -> !attributes.containsKey("is_test") || intAttribute(attributes, "is_test") == 0;
            case 7, 9 -> outputCount > 1;
            default -> attributes.containsKey("training_mode") && intAttribute(attributes, "training_mode") != 0;
        };
        int expectedOutputs = training ? 3 : 1;
        if (outputCount != expectedOutputs) {
            throw new IllegalArgumentException("BatchNormalization-" + version + " in " + (training ? "training"
                    : "inference") + " mode: " + outputCount + " outputs, this adapter produces " + expectedOutputs
                    + (training ? " (Y, running_mean, running_var; saved_mean and saved_var are not supported)" : " (Y)"));
        }
        return new OnnxBatchNormalization(version, epsilon, momentum, training);
    }

    /**
     * {@return the operator version in force: 6, 7, 9, 14 or 15}
     */
    public int version() {
        return version;
    }

    /**
     * {@return the epsilon added to the variance before the square root}
     */
    public double epsilon() {
        return epsilon;
    }

    /**
     * {@return ONNX's momentum: the weight of the running value in the training update}
     */
    public double momentum() {
        return momentum;
    }

    /**
     * {@return whether the operator runs in training mode (batch statistics, running statistics
     * updated)}
     */
    public boolean isTraining() {
        return training;
    }

    /**
     * Returns the {@link BatchNormOptions} of a module that behaves like this node: epsilon, the
     * momentum converted to PyTorch's convention, and the biased running variance.
     *
     * @param channels the channel count C
     * @return the options
     * @throws IllegalArgumentException when {@code channels < 1}
     */
    public BatchNormOptions toOptions(int channels) {
        return BatchNormOptions.of(channels).withEps(epsilon).withMomentumOfRunning(momentum)
                .withRunningVariance(BatchNormOptions.RunningVariance.BIASED);
    }

    /**
     * ONNX's outputs: Y, and in training mode running_mean and running_var (null in inference).
     *
     * @param y the normalised tensor
     * @param runningMean the updated running mean (training), else null
     * @param runningVar the updated running variance (training), else null
     */
    public record Outputs(float[] y, float[] runningMean, float[] runningVar) {
    }

    /**
     * Runs the node on Java arrays; the arguments are not changed.
     *
     * @param x the input, {@code shape.elementCount()} floats
     * @param shape X's shape {@code (N, C, ...)}
     * @param scale the per-channel scale, at least C floats (as are the next three; the first C
     *              are used)
     * @param b the per-channel bias
     * @param inputMean the running mean (the statistics in inference)
     * @param inputVar the running variance
     * @return Y, and in training mode the updated running statistics
     * @throws IllegalArgumentException when {@code x.length} is not {@code shape.elementCount()},
     *                                  the shape has more elements than a Java array holds, or a
     *                                  per-channel array is shorter than C
     */
    public Outputs run(float[] x, Shape shape, float[] scale, float[] b, float[] inputMean, float[] inputVar) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(shape, "shape");
        float[] y = new float[checkedLength(shape)];
        if (x.length != y.length) {
            throw new IllegalArgumentException("x has " + x.length + " floats, shape " + shape + " needs " + y.length);
        }
        int c = (int) shape.channels();
        float[] mean = training ? new float[c] : null;
        float[] var = training ? new float[c] : null;
        run(MemorySegment.ofArray(x), shape, segment("scale", scale), segment("B", b), segment("input_mean", inputMean),
                segment("input_var", inputVar), MemorySegment.ofArray(y),
                mean == null ? null : MemorySegment.ofArray(mean), var == null ? null : MemorySegment.ofArray(var));
        return new Outputs(y, mean, var);
    }

    /**
     * Runs the node on segments (heap or native, float32 in the platform's byte order). y may be x;
     * runningMean and runningVar may be inputMean and inputVar (an in-place update). When x or y
     * is a heap segment, X and Y pass through Java arrays (a copy each).
     *
     * @param x the input, at least {@code shape.elementCount()} floats
     * @param shape X's shape {@code (N, C, ...)}
     * @param scale the per-channel scale, at least C floats (as are the next three; the first C
     *              are read)
     * @param b the per-channel bias
     * @param inputMean the running mean (the statistics in inference)
     * @param inputVar the running variance
     * @param y the output, writable, at least {@code shape.elementCount()} floats
     * @param runningMean output of C floats in training mode; null in inference
     * @param runningVar output of C floats in training mode; null in inference
     * @throws IllegalArgumentException when a segment is too small, the shape has more than
     *                                  {@code Integer.MAX_VALUE} channels, an output is read-only,
     *                                  or an output is given (or missing) against the mode
     */
    public void run(MemorySegment x, Shape shape, MemorySegment scale, MemorySegment b, MemorySegment inputMean,
                    MemorySegment inputVar, MemorySegment y, MemorySegment runningMean, MemorySegment runningVar) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(y, "y");
        long c = shape.channels();
        long elements = shape.elementCount();
        if (c > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("shape " + shape + " has more channels than a BatchNorm can have");
        }
        checkFloats("X", x, elements, false);
        checkFloats("Y", y, elements, true);
        float[] s = channelFloats("scale", scale, c);
        float[] bias = channelFloats("B", b, c);
        float[] mean = channelFloats("input_mean", inputMean, c);
        float[] var = channelFloats("input_var", inputVar, c);
        if (training != (runningMean != null) || training != (runningVar != null)) {
            throw new IllegalArgumentException(training ? "training mode needs the outputs runningMean and runningVar"
                    : "inference mode has no outputs runningMean and runningVar: pass null");
        }
        if (training) {
            checkFloats("running_mean", runningMean, c, true);
            checkFloats("running_var", runningVar, c, true);
        }

        // The kernel wants native x and y; heap segments (Java arrays) go through its array overloads.
        float[] batchMean = new float[(int) c];
        float[] batchVarUnbiased = new float[(int) c];
        boolean arrays = !x.isNative() || !y.isNative();
        float[] xa = arrays ? x.asSlice(0, elements * Float.BYTES).toArray(ValueLayout.JAVA_FLOAT) : null;
        float[] ya = arrays ? new float[(int) elements] : null;
        long m = shape.valuesPerChannel();
        if (training && m == 1) {
            // One value per channel: batch mean x, batch variance 0, so Y = B (x - mean is 0).
            oneValuePerChannel(shape, x, y, bias, batchMean);
        } else {
            try (BatchNorm module = BatchNorm.create(kernelOptions((int) c))) {
                MemorySegment.copy(s, 0, module.weight(), ValueLayout.JAVA_FLOAT, 0, (int) c);
                MemorySegment.copy(bias, 0, module.bias(), ValueLayout.JAVA_FLOAT, 0, (int) c);
                if (training) {
                    module.train();
                } else {
                    MemorySegment.copy(mean, 0, module.runningMean(), ValueLayout.JAVA_FLOAT, 0, (int) c);
                    MemorySegment.copy(var, 0, module.runningVar(), ValueLayout.JAVA_FLOAT, 0, (int) c);
                    module.eval();
                }
                if (arrays) {
                    module.forward(xa, shape, ya);
                } else {
                    module.forward(x, shape, y);
                }
                if (training) {
                    MemorySegment.copy(module.runningMean(), ValueLayout.JAVA_FLOAT, 0, batchMean, 0, (int) c);
                    MemorySegment.copy(module.runningVar(), ValueLayout.JAVA_FLOAT, 0, batchVarUnbiased, 0, (int) c);
                }
            }
            if (arrays) {
                MemorySegment.copy(ya, 0, y, ValueLayout.JAVA_FLOAT_UNALIGNED, 0, ya.length);
            }
        }
        if (training) {
            for (int i = 0; i < c; i++) {
                double biasedVar = m == 1 ? 0 : batchVarUnbiased[i] * ((m - 1) / (double) m);
                runningMean.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i,
                        (float) (momentum * mean[i] + (1 - momentum) * batchMean[i]));
                runningVar.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i,
                        (float) (momentum * var[i] + (1 - momentum) * biasedVar));
            }
        }
    }

    @Override
    public String toString() {
        return "BatchNormalization-" + version + "[epsilon=" + epsilon + ", momentum=" + momentum + ", "
                + (training ? "training" : "inference") + "]";
    }

    // ---- internals ----

    /**
     * The module that computes Y. In training its running statistics, moved with PyTorch's
     * momentum 1, become the batch mean and the unbiased batch variance, from which ONNX's update
     * is computed in double.
     */
    private BatchNormOptions kernelOptions(int channels) {
        BatchNormOptions options = BatchNormOptions.of(channels).withEps(epsilon);
        return training ? options.withMomentumOfBatch(1) : options;
    }

    // x, y are (N,C,S) with N*S == 1: y = B, batchMean = x
    private static void oneValuePerChannel(Shape shape, MemorySegment x, MemorySegment y, float[] bias,
                                           float[] batchMean) {
        for (int i = 0; i < shape.channels(); i++) {
            batchMean[i] = x.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i);
        }
        for (int i = 0; i < shape.channels(); i++) {
            y.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, bias[i]);
        }
    }

    private static int checkedLength(Shape shape) {
        if (shape.elementCount() > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("shape " + shape + " is too large for Java arrays: use segments");
        }
        return (int) shape.elementCount();
    }

    private static MemorySegment segment(String name, float[] values) {
        return MemorySegment.ofArray(Objects.requireNonNull(values, name));
    }

    private static void checkFloats(String name, MemorySegment segment, long count, boolean output) {
        Objects.requireNonNull(segment, name);
        if (segment.byteSize() < count * Float.BYTES) {
            throw new IllegalArgumentException(name + " is too small: it needs " + count + " floats, it has "
                    + segment.byteSize() / Float.BYTES);
        }
        if (output && segment.isReadOnly()) {
            throw new IllegalArgumentException(name + " is read-only, but it is an output");
        }
    }

    private static float[] channelFloats(String name, MemorySegment segment, long channels) {
        checkFloats(name, segment, channels, false);
        float[] out = new float[(int) channels];
        MemorySegment.copy(segment, ValueLayout.JAVA_FLOAT_UNALIGNED, 0, out, 0, out.length);
        return out;
    }

    private static long intAttribute(Map<String, ? extends Number> attributes, String name) {
        Number n = attributes.get(name);
        if (n instanceof Float || n instanceof Double) {
            throw new IllegalArgumentException("attribute '" + name + "' is an int attribute, got the float " + n);
        }
        return n.longValue();
    }
}
