package dev.panamabn;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * Element-wise comparison of float32 kernel results with double-precision expectations, with
 * error bounds derived from how each value is computed (u = 2^-24, the float32 unit roundoff):
 *
 * <ul>
 *   <li>statistics: the kernel keeps them in double; anything within {@code u * std} of the
 *       mean and {@code 2u} relative of invstd is invisible in a float32 output, so that is the
 *       bound, plus the worst-case error of a double sum over the channel (a float accumulator
 *       over a channel whose mean is large against its spread misses it by orders of
 *       magnitude);</li>
 *   <li>y = (x - mean) * invstd * gamma + beta: a few roundings of the terms' magnitudes,
 *       {@code 8u (|gamma xhat| + |beta| + |gamma|)}, the last term covering the statistics' error;</li>
 *   <li>dx: {@code 16u |gamma| invstd (|dy| + |mean dy| + |xhat| |mean(dy xhat)|)} in training
 *       (the three terms cancel, so the bound follows the terms, not the result), {@code 8u |dx|}
 *       in eval;</li>
 *   <li>dweight = sum dy*xhat: {@code 4u sum |dy| (1 + |xhat|)}; dbias = sum dy:
 *       {@code 2u sum |dy|};</li>
 *   <li>running statistics, stored in float after every step: {@code 2u (k + 1)} times the largest
 *       magnitude they had, after k updates.</li>
 * </ul>
 * A missing term (e.g. dropping the xhat term of dx) or a float accumulator breaks these bounds by
 * orders of magnitude; NaN and infinities must match exactly.
 */
final class Expect {

    static final double U = 0x1p-24;

    private Expect() {
    }

    /** The statistics a forward pass normalised with, and the parameters, for computing bounds. */
    record Stats(Shape shape, double[] mean, double[] invstd, double[] gamma, double[] beta) {

        int n() {
            return (int) shape.batch();
        }

        int c() {
            return (int) shape.channels();
        }

        int s() {
            return (int) shape.spatial();
        }

        double gamma(int c) {
            return gamma == null ? 1 : gamma[c];
        }

        double beta(int c) {
            return beta == null ? 0 : beta[c];
        }

        double xhat(double[] x, int k, int c) {
            return (x[k] - mean[c]) * invstd[c];
        }
    }

    static void statistics(String what, Stats st, double[] x, double[] actualMean, double[] actualInvstd) {
        double[] maxAbs = new double[st.c()];
        forEach(st, (k, c) -> maxAbs[c] = Math.max(maxAbs[c], Math.abs(x[k])));
        int m = st.n() * st.s();
        double[] meanBound = new double[st.c()];
        double[] invstdBound = new double[st.c()];
        for (int c = 0; c < st.c(); c++) {
            // Plus the worst case of a double sum over M values, which either side may incur.
            meanBound[c] = U / st.invstd()[c] + m * 0x1p-53 * maxAbs[c];
            invstdBound[c] = (2 * U + 4 * m * 0x1p-53) * st.invstd()[c];
        }
        close(what + " save_mean", st.mean(), actualMean, meanBound);
        close(what + " save_invstd", st.invstd(), actualInvstd, invstdBound);
    }

    static void forward(String what, Stats st, double[] x, double[] expectedY, double[] actualY) {
        double[] bound = new double[x.length];
        forEach(st, (k, c) -> {
            double g = Math.abs(st.gamma(c));
            bound[k] = 8 * U * (g * Math.abs(st.xhat(x, k, c)) + Math.abs(st.beta(c)) + g);
        });
        close(what + " y", expectedY, actualY, bound);
    }

    static void dx(String what, Stats st, boolean batchStatistics, double[] x, double[] dy, double[] expectedDx,
                   double[] actualDx) {
        double[] bound = new double[x.length];
        double[] meanDy = new double[st.c()];
        double[] meanDyXhat = new double[st.c()];
        int m = st.n() * st.s();
        forEach(st, (k, c) -> {
            meanDy[c] += dy[k] / m;
            meanDyXhat[c] += dy[k] * st.xhat(x, k, c) / m;
        });
        forEach(st, (k, c) -> {
            double scale = Math.abs(st.gamma(c)) * st.invstd()[c];
            bound[k] = batchStatistics
                    ? 16 * U * scale * (Math.abs(dy[k]) + Math.abs(meanDy[c])
                            + Math.abs(st.xhat(x, k, c)) * Math.abs(meanDyXhat[c]))
                    : 8 * U * scale * Math.abs(dy[k]);
        });
        close(what + " dx", expectedDx, actualDx, bound);
    }

    static void parameterGradients(String what, Stats st, double[] x, double[] dy, double[] expectedDweight,
                                   double[] actualDweight, double[] expectedDbias, double[] actualDbias) {
        close(what + " dweight", expectedDweight, actualDweight, dweightBound(st, x, dy));
        close(what + " dbias", expectedDbias, actualDbias, dbiasBound(st, dy));
    }

    static double[] dweightBound(Stats st, double[] x, double[] dy) {
        double[] bound = new double[st.c()];
        forEach(st, (k, c) -> bound[c] += 4 * U * Math.abs(dy[k]) * (1 + Math.abs(st.xhat(x, k, c))));
        return bound;
    }

    static double[] dbiasBound(Stats st, double[] dy) {
        double[] bound = new double[st.c()];
        forEach(st, (k, c) -> bound[c] += 2 * U * Math.abs(dy[k]));
        return bound;
    }

    /** Running statistics after {@code updates} updates; {@code scale[c]} is the largest magnitude seen. */
    static void running(String what, double[] expected, double[] actual, double[] scale, long updates) {
        double[] bound = new double[expected.length];
        for (int c = 0; c < expected.length; c++) {
            bound[c] = 2 * U * (updates + 1) * scale[c];
        }
        close(what, expected, actual, bound);
    }

    /** |expected - actual| <= bound element-wise (plus the smallest normal float); NaN and infinities exactly. */
    static void close(String what, double[] expected, double[] actual, double[] bound) {
        if (expected.length != actual.length) {
            fail(what + ": expected " + expected.length + " values, got " + actual.length);
        }
        int failures = 0;
        int first = -1;
        double worst = 0;
        for (int i = 0; i < expected.length; i++) {
            double e = expected[i];
            double a = actual[i];
            boolean ok;
            if (Double.isNaN(e) || Double.isInfinite(e)) {
                ok = Double.isNaN(e) ? Double.isNaN(a) : e == a;
            } else {
                double error = Math.abs(e - a);
                ok = error <= bound[i] + Float.MIN_NORMAL;
                if (!ok) {
                    worst = Math.max(worst, error / (bound[i] + Float.MIN_NORMAL));
                }
            }
            if (!ok) {
                failures++;
                if (first < 0) {
                    first = i;
                }
            }
        }
        if (failures > 0) {
            fail(String.format("%s: %d of %d values out of bounds (worst: %.3g times its bound); first at [%d]: "
                            + "expected %.17g, got %.17g, bound %.3g",
                    what, failures, expected.length, worst, first, expected[first], actual[first], bound[first]));
        }
    }

    private interface Element {
        void accept(int k, int c);
    }

    private static void forEach(Stats st, Element element) {
        int n = st.n();
        int cs = st.c();
        int s = st.s();
        for (int i = 0; i < n; i++) {
            for (int c = 0; c < cs; c++) {
                for (int j = 0; j < s; j++) {
                    element.accept((i * cs + c) * s + j, c);
                }
            }
        }
    }
}
