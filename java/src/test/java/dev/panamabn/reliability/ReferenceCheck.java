package dev.panamabn.reliability;

import dev.panamabn.Shape;
import dev.panamabn.reference.ReferenceBatchNorm;

/**
 * Compares float results of the native module with the double reference, with error bounds of a
 * correct float32 kernel (double statistics, float elementwise math) rather than one fixed
 * tolerance: each bound grows with the magnitudes that enter the rounding, so a large-mean channel
 * is held to what float can do and a wrong channel, partition or formula is far outside it.
 */
final class ReferenceCheck {

    /** A few float roundings' worth of relative error. */
    private static final double F32 = 8 * 0x1p-24;
    private static final double TINY = 1e-30;

    private ReferenceCheck() {
    }

    static void assertClose(double got, double want, double tol, String what) {
        if (Double.isNaN(want) ? Double.isNaN(got) : (got == want || Math.abs(got - want) <= tol)) {
            return;
        }
        throw new AssertionError(what + ": got " + got + ", want " + want + " (tolerance " + tol + ")");
    }

    private static double weightOf(ReferenceBatchNorm ref, int c) {
        return ref.weight() == null ? 1 : ref.weight()[c];
    }

    private static double biasOf(ReferenceBatchNorm ref, int c) {
        return ref.bias() == null ? 0 : ref.bias()[c];
    }

    /** Error bound of xhat = (x - mean) * invstd computed in float from a double mean. */
    private static double xhatError(double x, double mean, double invstd) {
        return F32 * (Math.abs(x) + Math.abs(mean)) * Math.abs(invstd) + 1e-7 * Math.abs((x - mean) * invstd);
    }

    /** y against the reference's output of the same forward (ref has just run it). */
    static void assertForward(float[] y, double[] x, Shape shape, ReferenceBatchNorm ref, double[] want,
                              String context) {
        int c = (int) shape.channels();
        long s = shape.spatial();
        for (int k = 0; k < want.length; k++) {
            int ch = (int) ((k / s) % c);
            double mean = ref.savedMean()[ch];
            double invstd = ref.savedInvstd()[ch];
            double w = weightOf(ref, ch);
            double tol = Math.abs(w) * xhatError(x[k], mean, invstd)
                    + F32 * (Math.abs(want[k]) + Math.abs(biasOf(ref, ch))) + TINY;
            assertClose(y[k], want[k], tol, "y[" + k + "] (channel " + ch + ") " + context);
        }
    }

    static void assertRunningStats(float[] runningMean, float[] runningVar, ReferenceBatchNorm ref, String context) {
        for (int ch = 0; ch < runningMean.length; ch++) {
            double m = ref.runningMean()[ch];
            double v = ref.runningVar()[ch];
            assertClose(runningMean[ch], m, 1e-6 * (Math.abs(m) + 1e-3) + F32 * Math.abs(m), "runningMean[" + ch + "] " + context);
            assertClose(runningVar[ch], v, 1e-5 * Math.abs(v) + TINY, "runningVar[" + ch + "] " + context);
        }
    }

    /** Per-channel error bounds of the parameter gradients of one backward call. */
    record GradTolerance(double[] dweight, double[] dbias) {
    }

    /**
     * dx against the reference's gradients of the same backward; returns the bounds for this
     * call's dweight and dbias (the module accumulates them, so the caller sums the bounds).
     */
    static GradTolerance assertBackward(float[] dx, double[] dy, double[] x, Shape shape, ReferenceBatchNorm ref,
                                        ReferenceBatchNorm.Gradients want, boolean batchStatistics, String context) {
        int c = (int) shape.channels();
        long s = shape.spatial();
        long m = shape.valuesPerChannel();
        double[] absDy = new double[c];
        double[] sumDyXhat = new double[c];
        double[] absDyXhat = new double[c];
        double[] dwTol = new double[c];
        for (int k = 0; k < dy.length; k++) {
            int ch = (int) ((k / s) % c);
            double mean = ref.savedMean()[ch];
            double invstd = ref.savedInvstd()[ch];
            double xhat = (x[k] - mean) * invstd;
            absDy[ch] += Math.abs(dy[k]);
            sumDyXhat[ch] += dy[k] * xhat;
            absDyXhat[ch] += Math.abs(dy[k] * xhat);
            dwTol[ch] += Math.abs(dy[k]) * xhatError(x[k], mean, invstd);
        }
        double[] dbTol = new double[c];
        for (int ch = 0; ch < c; ch++) {
            dbTol[ch] = F32 * absDy[ch] + TINY;
            dwTol[ch] += F32 * absDyXhat[ch] + TINY;
        }
        for (int k = 0; k < dy.length; k++) {
            int ch = (int) ((k / s) % c);
            double invstd = Math.abs(ref.savedInvstd()[ch]);
            double w = Math.abs(weightOf(ref, ch));
            double tol;
            if (batchStatistics) {
                double mean = ref.savedMean()[ch];
                double xhat = Math.abs((x[k] - mean) * ref.savedInvstd()[ch]);
                tol = w * invstd * (F32 * (Math.abs(dy[k]) + absDy[ch] / m + xhat * absDyXhat[ch] / m)
                        + dbTol[ch] / m + (xhatError(x[k], mean, ref.savedInvstd()[ch]) * Math.abs(sumDyXhat[ch])
                        + xhat * dwTol[ch]) / m) + TINY;
            } else {
                tol = F32 * Math.abs(want.dx()[k]) + TINY;
            }
            assertClose(dx[k], want.dx()[k], tol, "dx[" + k + "] (channel " + ch + ") " + context);
        }
        return new GradTolerance(dwTol, dbTol);
    }
}
