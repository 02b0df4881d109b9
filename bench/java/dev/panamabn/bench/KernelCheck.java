package dev.panamabn.bench;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;
import dev.panamabn.reference.ReferenceBatchNorm;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * Checks that the implementations compute BatchNorm before their speed is measured: a fast wrong
 * kernel would otherwise win the table. Each implementation gets ready and runs its timed call
 * once, exactly as the benchmark does (see {@link Kernel#prepare}), on {@link TestData#check}
 * data, and its outputs are compared with {@link ReferenceBatchNorm}, a plain double-precision
 * BatchNorm, put through the same steps. It covers what the implementations time today, float32
 * NCHW tensors and the unfused ops; an implementation that gains layouts, element types or fused
 * ops needs its outputs checked here too before they are timed.
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
     * The largest error allowed in an output, relative to that output's largest magnitude.
     * A correct float32 kernel is off the double reference by a few roundings of 2^-24 each;
     * the largest comes from the mean, which a float kernel rounds before subtracting (and
     * stores, as the running mean): that moves (x - mean) by up to 2^-24 |mean|, which the check
     * data keep within 35 standard deviations, so by up to about 20 * 2^-24 (1.2e-6) of y's
     * range. Float partial sums (vector lanes, blocks) and the roundings of invstd, scale and
     * the result add a few 2^-24 more. 1e-5 is about 170 * 2^-24: room for all that several
     * times over, while the mistakes that matter land above it: eps left out or a biased
     * running variance (1e-3 and up on the check data), channels mixed up or dropped (order 1),
     * and, closest, a variance taken as E[x^2] - E[x]^2 from float sums (1e-5 to 6e-5): its
     * error grows as (mean / std)^2 and a correct kernel's as mean / std, so more distant
     * means would show it better but would also eat into the correct kernels' margin.
     */
    static final double TOLERANCE = 1e-5;

    /**
     * One comparison: an implementation, op and thread count over all {@link #SHAPES}; worst
     * names the output and shape of the largest error, failure an exception the kernel threw.
     */
    record Result(String impl, Op op, int threads, double error, String worst, String failure) {

        boolean passed() {
            return failure == null && error <= TOLERANCE;
        }

        /** The suite's "# check" line. */
        String line() {
            return String.format("# check %s %s threads=%d: max rel err %.2e (%s)%s", impl,
                    op.label(), threads, error, worst, passed() ? "" : " FAILED");
        }

        /** What went wrong, for the error message. */
        String problem() {
            return String.format("%s %s threads=%d: %s", impl, op.label(), threads,
                    failure != null ? failure : String.format(
                            "max rel err %.2e in %s, above the tolerance %.0e", error, worst,
                            TOLERANCE));
        }
    }

    /** The outputs an op produces, by name. */
    private enum Output {
        Y("y", Outputs::y),
        RUNNING_MEAN("running_mean", Outputs::runningMean),
        RUNNING_VAR("running_var", Outputs::runningVar),
        DX("dx", Outputs::dx),
        DWEIGHT("dweight", Outputs::dweight),
        DBIAS("dbias", Outputs::dbias);

        final String label;
        final Function<Outputs, double[]> values;

        Output(String label, Function<Outputs, double[]> values) {
            this.label = label;
            this.values = values;
        }

        /** forward_eval must leave the running statistics as the training forward left them. */
        static List<Output> of(Op op) {
            return switch (op) {
                case FORWARD_TRAIN, FORWARD_EVAL -> List.of(Y, RUNNING_MEAN, RUNNING_VAR);
                case BACKWARD -> List.of(DX, DWEIGHT, DBIAS);
                default -> throw new UnsupportedOperationException("no check for " + op.label());
            };
        }
    }

    /** One shape's check data and the reference's outputs for each op. */
    private record Case(TestData data, Map<Op, Outputs> expected) {}

    private final List<Case> cases;

    /** Computes the reference outputs of {@code ops} on every shape. */
    KernelCheck(List<Op> ops) {
        cases = SHAPES.stream().map(TestData::check).map(d -> {
            Map<Op, Outputs> expected = new EnumMap<>(Op.class);
            ops.forEach(op -> expected.put(op, reference(d, op)));
            return new Case(d, expected);
        }).toList();
    }

    /** Runs {@code impl}'s call for {@code op} at {@code threads} on every shape. */
    Result check(String impl, Op op, int threads) {
        double error = 0;
        String worst = null;
        for (Case c : cases) {
            Dims dims = c.data().dims();
            Outputs actual;
            try (Kernel kernel = Kernel.create(impl, c.data(), threads, TensorLayout.NCHW,
                    ElementType.F32)) {
                kernel.prepare(op).run();
                actual = kernel.outputs();
            } catch (RuntimeException e) {
                return new Result(impl, op, threads, Double.NaN, "on " + dims,
                        "threw " + e + " on " + dims);
            }
            for (Output output : Output.of(op)) {
                double e = relativeError(output.values.apply(actual),
                        output.values.apply(c.expected().get(op)));
                // Double.compare puts NaN above everything: a NaN output stays the worst
                if (worst == null || Double.compare(e, error) > 0) {
                    error = e;
                    worst = output.label + " on " + dims;
                }
            }
        }
        return new Result(impl, op, threads, error, worst, null);
    }

    /**
     * The reference replays what {@link Kernel#prepare} and one run of the call do: one training
     * forward, then the op. The outputs the op does not produce are null.
     */
    private static Outputs reference(TestData d, Op op) {
        int c = d.dims().c();
        Shape shape = Shape.of(d.dims().dims());
        ReferenceBatchNorm module = new ReferenceBatchNorm(BatchNormOptions.of(c)
                .withEps(TestData.EPS).withMomentum(TestData.MOMENTUM));
        System.arraycopy(Outputs.widened(d.weight()), 0, module.weight(), 0, c);
        System.arraycopy(Outputs.widened(d.bias()), 0, module.bias(), 0, c);
        System.arraycopy(Outputs.widened(d.runningMean()), 0, module.runningMean(), 0, c);
        System.arraycopy(Outputs.widened(d.runningVar()), 0, module.runningVar(), 0, c);
        double[] x = Outputs.widened(d.x());
        module.forward(x, shape);
        return switch (op) {
            case FORWARD_TRAIN -> forwardOutputs(module, module.forward(x, shape));
            case FORWARD_EVAL -> forwardOutputs(module, module.eval().forward(x, shape));
            case BACKWARD -> {
                ReferenceBatchNorm.Gradients g = module.backward(Outputs.widened(d.dy()), x, shape);
                yield new Outputs(null, null, null, g.dx(), g.dweight(), g.dbias());
            }
            default -> throw new UnsupportedOperationException("no check for " + op.label());
        };
    }

    private static Outputs forwardOutputs(ReferenceBatchNorm module, double[] y) {
        return new Outputs(y, module.runningMean().clone(), module.runningVar().clone(), null,
                null, null);
    }

    /** max |actual - expected| / max |expected|; NaN when actual holds a NaN. */
    static double relativeError(double[] actual, double[] expected) {
        if (actual.length != expected.length) {
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
