package dev.panamabn.bench;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;
import dev.panamabn.reference.ReferenceBatchNorm;
import java.util.List;
import java.util.function.Function;

/**
 * Checks that the implementations compute BatchNorm before their speed is measured: a fast wrong
 * kernel would otherwise win the table. Each implementation gets ready and runs its timed call
 * once, exactly as the benchmark does (see {@link Kernel#prepare}), on {@link TestData#check}
 * data, and its outputs are compared with {@link ReferenceBatchNorm}, a plain double-precision
 * BatchNorm, put through the same steps: on the inputs as the implementation's tensors hold
 * them (rounded to its element type), in NCHW order (the implementations' {@link Outputs} are in
 * NCHW order whatever their layout), with the fused ops' ReLU and residual applied to its output.
 * Every layout, element type and op an implementation {@link Kernel#supports} is checked here
 * before it is timed.
 */
final class KernelCheck {

    /**
     * Shapes that reach every schedule: a small odd one (serial everywhere), and three above
     * the 65536 elements where panama-batchnorm and java-vector go parallel: one channel, fewer
     * than any thread count above 1 (the native split schedule; java-vector leaves threads
     * idle), three channels with no vector tail (split at 2 threads), and 18 channels with odd
     * rows (the native by-channel schedule at 2 threads, uneven blocks in java-vector).
     */
    static final List<Dims> SHAPES = List.of(Dims.parse("3x5x7x9"), Dims.parse("5x1x113x127"),
            Dims.parse("4x3x64x64"), Dims.parse("2x18x47x41"));

    /**
     * The largest error allowed in a float32 output, relative to that output's largest magnitude;
     * the per-channel outputs (running statistics, weight and bias gradients) are float32 whatever
     * the tensors' type. A correct float32 kernel is off the double reference by a few roundings of
     * 2^-24 each; the largest comes from the mean, which a float kernel rounds before subtracting
     * (and stores, as the running mean): that moves (x - mean) by up to 2^-24 |mean|, which the
     * check data keep within 35 standard deviations, so by up to about 20 * 2^-24 (1.2e-6) of y's
     * range. Float partial sums (vector lanes, blocks) and the roundings of invstd, scale and the
     * result add a few 2^-24 more. 1e-5 is about 170 * 2^-24: room for all that several times over,
     * while the mistakes that matter land above it: eps left out or a biased running variance (1e-3
     * and up on the check data), channels mixed up or dropped (order 1), and, closest, a variance
     * taken as E[x^2] - E[x]^2 from float sums (1e-5 to 6e-5): its error grows as (mean / std)^2
     * and a correct kernel's as mean / std, so more distant means would show it better but would
     * also eat into the correct kernels' margin.
     */
    static final double TOLERANCE = 1e-5;

    /**
     * The largest error allowed in a tensor output (y, dx, dz) of element type {@code type},
     * relative to that output's largest magnitude M. The reference runs on the inputs as the
     * 16-bit tensors hold them, so their rounding is no error; what remains is the one rounding
     * of each output to the type (round to nearest-even) and the computation before it. Rounding
     * to p fraction bits moves a value v in [2^e, 2^(e+1)) by at most half an ulp, 2^(e-p-1) <=
     * 2^-(p+1) |v| <= 2^-(p+1) M: 2^-8 of M for bfloat16 (p = 7), 2^-11 for float16 (p = 10).
     * That bound is nearly reached on every large tensor (some value of the top binade lies near
     * a midpoint), and there the computation's own error, which a float32 kernel keeps within
     * {@link #TOLERANCE}, can tip the rounding the other way, so it is added: 2^-8 + 1e-5 and
     * 2^-11 + 1e-5. A conversion that truncates instead of rounding errs by up to a whole ulp,
     * twice the bound, and anything worse, a value read with the wrong layout or type, lands far
     * above; the semantic mistakes that only float32 resolves (eps, the running variance's
     * factor) are caught by the float32 checks.
     */
    static double tolerance(ElementType type) {
        return switch (type) {
            case F32 -> TOLERANCE;
            case BF16 -> 0x1p-8 + TOLERANCE;
            case F16 -> 0x1p-11 + TOLERANCE;
        };
    }

    /**
     * One comparison: an implementation, layout, type, op and thread count over all
     * {@link #SHAPES}. error is the largest relative error of the output that came closest to
     * its tolerance (of all outputs and shapes), worst names that output and shape; failure is
     * an exception the kernel threw.
     */
    record Result(String impl, TensorLayout layout, ElementType type, Op op, int threads,
            double error, double tolerance, String worst, String failure) {

        boolean passed() {
            return failure == null && error <= tolerance;
        }

        /** The suite's "# check" line. */
        String line() {
            return String.format("# check %s %s %s %s threads=%d: max rel err %.2e of %.2e (%s)%s",
                    impl, layout.label(), type.label(), op.label(), threads, error, tolerance,
                    worst, passed() ? "" : " FAILED");
        }

        /** What went wrong, for the error message. */
        String problem() {
            return String.format("%s %s %s %s threads=%d: %s", impl, layout.label(),
                    type.label(), op.label(), threads, failure != null ? failure
                            : String.format("max rel err %.2e in %s, above the tolerance %.2e",
                                    error, worst, tolerance));
        }
    }

    /** The outputs an op produces, by name. */
    private enum Output {
        Y("y", true, Outputs::y),
        RUNNING_MEAN("running_mean", false, Outputs::runningMean),
        RUNNING_VAR("running_var", false, Outputs::runningVar),
        DX("dx", true, Outputs::dx),
        DZ("dz", true, Outputs::dz),
        DWEIGHT("dweight", false, Outputs::dweight),
        DBIAS("dbias", false, Outputs::dbias);

        final String label;
        /** A tensor of the call's element type, or float32 per-channel state. */
        final boolean tensor;
        final Function<Outputs, double[]> values;

        Output(String label, boolean tensor, Function<Outputs, double[]> values) {
            this.label = label;
            this.tensor = tensor;
            this.values = values;
        }

        double tolerance(ElementType type) {
            return tensor ? KernelCheck.tolerance(type) : TOLERANCE;
        }

        /**
         * forward_eval must leave the running statistics as the training forward left them. A
         * fused backward's y is its forward's output, which the backward masks dy with: it is
         * checked too, so that a wrong mask (all zero, say) cannot pass unseen.
         */
        static List<Output> of(Op op) {
            return switch (op) {
                case FORWARD_TRAIN, FORWARD_EVAL, FORWARD_TRAIN_RELU, FORWARD_TRAIN_ADD_RELU ->
                        List.of(Y, RUNNING_MEAN, RUNNING_VAR);
                case BACKWARD -> List.of(DX, DWEIGHT, DBIAS);
                case BACKWARD_RELU -> List.of(Y, DX, DWEIGHT, DBIAS);
                case BACKWARD_ADD_RELU -> List.of(Y, DX, DZ, DWEIGHT, DBIAS);
            };
        }
    }

    private final List<TestData> cases = SHAPES.stream().map(TestData::check).toList();

    /** Runs {@code impl}'s call for {@code op} at {@code threads} on every shape. */
    Result check(String impl, TensorLayout layout, ElementType type, Op op, int threads) {
        double error = 0;
        double tolerance = Double.NaN;
        double closest = -1;
        String worst = null;
        for (TestData data : cases) {
            Dims dims = data.dims();
            Outputs actual;
            try (Kernel kernel = Kernel.create(impl, data, threads, layout, type)) {
                kernel.prepare(op).run();
                actual = kernel.outputs();
            } catch (RuntimeException e) {
                return new Result(impl, layout, type, op, threads, Double.NaN,
                        tolerance(type), "on " + dims, "threw " + e + " on " + dims);
            }
            Outputs expected = reference(data, new TensorFormat(dims, layout, type), op,
                    actual.y());
            for (Output output : Output.of(op)) {
                double e = relativeError(output.values.apply(actual),
                        output.values.apply(expected));
                double t = output.tolerance(type);
                // Double.compare puts NaN above everything: a NaN output stays the worst
                if (worst == null || Double.compare(e / t, closest) > 0) {
                    error = e;
                    tolerance = t;
                    closest = e / t;
                    worst = output.label + " on " + dims;
                }
            }
        }
        return new Result(impl, layout, type, op, threads, error, tolerance, worst, null);
    }

    /**
     * The reference replays what {@link Kernel#prepare} and one run of the call do, on the
     * inputs as {@code format}'s tensors hold them: one training forward (with the op's
     * epilogue), then the op. A fused backward masks dy with the implementation's own y, as the
     * implementation does: where the reference's y and a correct implementation's rounded y
     * disagree on whether a value near 0 is positive (a float16 y below 2^-25 rounds to 0), the
     * reference's own mask would fault it by a whole dy; that y itself is checked against the
     * reference's. The outputs the op does not produce are null.
     */
    private static Outputs reference(TestData d, TensorFormat format, Op op, double[] actualY) {
        int c = d.dims().c();
        Shape shape = Shape.of(d.dims().dims());
        ReferenceBatchNorm module = new ReferenceBatchNorm(BatchNormOptions.of(c)
                .withEps(TestData.EPS).withMomentum(TestData.MOMENTUM));
        System.arraycopy(Outputs.widened(d.weight()), 0, module.weight(), 0, c);
        System.arraycopy(Outputs.widened(d.bias()), 0, module.bias(), 0, c);
        System.arraycopy(Outputs.widened(d.runningMean()), 0, module.runningMean(), 0, c);
        System.arraycopy(Outputs.widened(d.runningVar()), 0, module.runningVar(), 0, c);
        double[] x = Outputs.widened(format.rounded(d.x()));
        double[] z = Outputs.widened(format.rounded(d.z()));
        double[] y = epilogue(op, module.forward(x, shape), z);
        return switch (op) {
            case FORWARD_TRAIN, FORWARD_TRAIN_RELU, FORWARD_TRAIN_ADD_RELU ->
                    forwardOutputs(module, epilogue(op, module.forward(x, shape), z));
            case FORWARD_EVAL -> forwardOutputs(module, module.eval().forward(x, shape));
            case BACKWARD, BACKWARD_RELU, BACKWARD_ADD_RELU -> {
                double[] g = Outputs.widened(format.rounded(d.dy()));
                if (op != Op.BACKWARD) {
                    for (int i = 0; i < g.length; i++) {
                        g[i] = actualY[i] > 0 ? g[i] : 0;
                    }
                }
                ReferenceBatchNorm.Gradients grads = module.backward(g, x, shape);
                yield new Outputs(y, null, null, grads.dx(), grads.dweight(), grads.dbias(),
                        op == Op.BACKWARD_ADD_RELU ? g : null);
            }
        };
    }

    /** relu(y) or relu(y + z) in place for the fused ops, y as it is for the others. */
    private static double[] epilogue(Op op, double[] y, double[] z) {
        boolean relu = op == Op.FORWARD_TRAIN_RELU || op == Op.BACKWARD_RELU;
        boolean addRelu = op == Op.FORWARD_TRAIN_ADD_RELU || op == Op.BACKWARD_ADD_RELU;
        for (int i = 0; (relu || addRelu) && i < y.length; i++) {
            y[i] = Math.max(0, addRelu ? y[i] + z[i] : y[i]);
        }
        return y;
    }

    private static Outputs forwardOutputs(ReferenceBatchNorm module, double[] y) {
        return new Outputs(y, module.runningMean().clone(), module.runningVar().clone(), null,
                null, null, null);
    }

    /** max |actual - expected| / max |expected|; NaN when actual holds a NaN. */
    static double relativeError(double[] actual, double[] expected) {
        if (actual == null || actual.length != expected.length) {
            return Double.POSITIVE_INFINITY;
        }
        double diff = 0;
        double scale = 0;
        for (int i = 0; i < expected.length; i++) {
            diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
            scale = Math.max(scale, Math.abs(expected[i]));
        }
        return diff == 0 ? 0 : diff / scale;
    }
}
