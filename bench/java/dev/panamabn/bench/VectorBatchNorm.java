package dev.panamabn.bench;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * BatchNorm in pure Java with the Vector API: the fastest straightforward Java a user could
 * write instead of calling native code, and so the baseline panama-batchnorm has to beat.
 *
 * <p>Same semantics and conventions as the C API: tensors are float arrays in (N, C, S) layout,
 * outputs come first, statistics are double and the variance is two-pass. Each function works
 * on the channels {@code [c0, c1)} so that callers can split channels over threads. Each run of
 * S contiguous values is summed in float lanes and the runs are added in double, which keeps
 * the vector loop simple. Float lanes lose about 2^-24 of the values' magnitude per addition,
 * which for a channel whose |mean| is many standard deviations is a visible error in the mean:
 * the second pass therefore also sums the deviations from that first mean, which corrects it
 * (the corrected two-pass algorithm), and its own error scales with the deviations only.
 */
final class VectorBatchNorm {

    private static final VectorSpecies<Float> SPECIES = FloatVector.SPECIES_PREFERRED;

    private VectorBatchNorm() {}

    /**
     * Training forward for channels [c0, c1); sums is scratch space of length 2.
     * x, y are (N,C,S); weight, bias, runningMean, runningVar, saveMean, saveInvstd are (C).
     */
    static void forwardTrain(float[] y, double[] saveMean, double[] saveInvstd,
            float[] runningMean, float[] runningVar, float[] x, float[] weight, float[] bias,
            int n, int c, int s, double eps, double factor, double[] sums, int c0, int c1) {
        long m = (long) n * s;
        for (int ch = c0; ch < c1; ch++) {
            double sum = 0;
            for (int b = 0; b < n; b++) {
                sum += sum(x, (b * c + ch) * s, s);
            }
            float firstMean = (float) (sum / m);
            double deviations = 0;
            double squares = 0;
            for (int b = 0; b < n; b++) {
                deviationSums(sums, x, (b * c + ch) * s, s, firstMean);
                deviations += sums[0];
                squares += sums[1];
            }
            double shift = deviations / m;
            double mean = firstMean + shift;
            double var = Math.max(0, squares / m - shift * shift);
            double invstd = 1 / Math.sqrt(var + eps);
            float scale = (float) (invstd * weight[ch]);
            for (int b = 0; b < n; b++) {
                normalize(y, x, (b * c + ch) * s, s, (float) mean, scale, bias[ch]);
            }
            saveMean[ch] = mean;
            saveInvstd[ch] = invstd;
            runningMean[ch] = (float) ((1 - factor) * runningMean[ch] + factor * mean);
            runningVar[ch] = (float) ((1 - factor) * runningVar[ch] + factor * var * m / (m - 1));
        }
    }

    /**
     * Eval forward for channels [c0, c1).
     * x, y are (N,C,S); weight, bias, runningMean, runningVar are (C).
     */
    static void forwardEval(float[] y, float[] x, float[] weight, float[] bias,
            float[] runningMean, float[] runningVar, int n, int c, int s, double eps,
            int c0, int c1) {
        for (int ch = c0; ch < c1; ch++) {
            float scale = (float) (weight[ch] / Math.sqrt(runningVar[ch] + eps));
            for (int b = 0; b < n; b++) {
                normalize(y, x, (b * c + ch) * s, s, runningMean[ch], scale, bias[ch]);
            }
        }
    }

    /**
     * Backward of a training forward for channels [c0, c1); sums is scratch space of length 2.
     * dx, dy, x are (N,C,S); dweight, dbias, weight, saveMean, saveInvstd are (C).
     */
    static void backwardTrain(float[] dx, float[] dweight, float[] dbias, float[] dy, float[] x,
            float[] weight, double[] saveMean, double[] saveInvstd, int n, int c, int s,
            double[] sums, int c0, int c1) {
        long m = (long) n * s;
        for (int ch = c0; ch < c1; ch++) {
            float mean = (float) saveMean[ch];
            double sumDy = 0;
            double sumDyCentered = 0;
            for (int b = 0; b < n; b++) {
                gradientSums(sums, dy, x, (b * c + ch) * s, s, mean);
                sumDy += sums[0];
                sumDyCentered += sums[1];
            }
            // The sums centred x on the mean rounded to float; (mean - that) * sumDy puts the
            // exact mean back. Without it dweight is off by about 2^-24 |mean| sumDy, which
            // outgrows dweight itself when |mean| >> std and dy has a mean of its own.
            sumDyCentered += (mean - saveMean[ch]) * sumDy;
            double invstd = saveInvstd[ch];
            dbias[ch] = (float) sumDy;
            dweight[ch] = (float) (sumDyCentered * invstd);
            float k = (float) (weight[ch] * invstd);
            float meanDy = (float) (sumDy / m);
            float slope = (float) (sumDyCentered * invstd * invstd / m);
            for (int b = 0; b < n; b++) {
                inputGradient(dx, dy, x, (b * c + ch) * s, s, mean, k, meanDy, slope);
            }
        }
    }

    // a is (len) from off
    private static double sum(float[] a, int off, int len) {
        FloatVector acc = FloatVector.zero(SPECIES);
        int bound = off + SPECIES.loopBound(len);
        int i = off;
        for (; i < bound; i += SPECIES.length()) {
            acc = acc.add(FloatVector.fromArray(SPECIES, a, i));
        }
        double total = acc.reduceLanes(VectorOperators.ADD);
        for (; i < off + len; i++) {
            total += a[i];
        }
        return total;
    }

    // a is (len) from off: sums[0] = sum (a - mean), sums[1] = sum (a - mean)^2
    private static void deviationSums(double[] sums, float[] a, int off, int len, float mean) {
        FloatVector acc = FloatVector.zero(SPECIES);
        FloatVector accSquares = FloatVector.zero(SPECIES);
        int bound = off + SPECIES.loopBound(len);
        int i = off;
        for (; i < bound; i += SPECIES.length()) {
            FloatVector d = FloatVector.fromArray(SPECIES, a, i).sub(mean);
            acc = acc.add(d);
            accSquares = d.fma(d, accSquares);
        }
        double total = acc.reduceLanes(VectorOperators.ADD);
        double squares = accSquares.reduceLanes(VectorOperators.ADD);
        for (; i < off + len; i++) {
            double d = a[i] - mean;
            total += d;
            squares += d * d;
        }
        sums[0] = total;
        sums[1] = squares;
    }

    // y, x are (len) from off: y = (x - mean) * scale + shift
    private static void normalize(float[] y, float[] x, int off, int len, float mean, float scale,
            float shift) {
        int bound = off + SPECIES.loopBound(len);
        int i = off;
        for (; i < bound; i += SPECIES.length()) {
            FloatVector.fromArray(SPECIES, x, i).sub(mean).fma(scale, shift).intoArray(y, i);
        }
        for (; i < off + len; i++) {
            y[i] = (x[i] - mean) * scale + shift;
        }
    }

    // dy, x are (len) from off: sums[0] = sum dy, sums[1] = sum dy * (x - mean)
    private static void gradientSums(double[] sums, float[] dy, float[] x, int off, int len,
            float mean) {
        FloatVector accDy = FloatVector.zero(SPECIES);
        FloatVector accDyCentered = FloatVector.zero(SPECIES);
        int bound = off + SPECIES.loopBound(len);
        int i = off;
        for (; i < bound; i += SPECIES.length()) {
            FloatVector g = FloatVector.fromArray(SPECIES, dy, i);
            accDy = accDy.add(g);
            accDyCentered = FloatVector.fromArray(SPECIES, x, i).sub(mean).fma(g, accDyCentered);
        }
        double sumDy = accDy.reduceLanes(VectorOperators.ADD);
        double sumDyCentered = accDyCentered.reduceLanes(VectorOperators.ADD);
        for (; i < off + len; i++) {
            sumDy += dy[i];
            sumDyCentered += (double) dy[i] * (x[i] - mean);
        }
        sums[0] = sumDy;
        sums[1] = sumDyCentered;
    }

    // dx, dy, x are (len) from off: dx = k * (dy - meanDy - (x - mean) * slope)
    private static void inputGradient(float[] dx, float[] dy, float[] x, int off, int len,
            float mean, float k, float meanDy, float slope) {
        int bound = off + SPECIES.loopBound(len);
        int i = off;
        for (; i < bound; i += SPECIES.length()) {
            FloatVector centered = FloatVector.fromArray(SPECIES, x, i).sub(mean);
            FloatVector.fromArray(SPECIES, dy, i).sub(meanDy).sub(centered.mul(slope)).mul(k)
                    .intoArray(dx, i);
        }
        for (; i < off + len; i++) {
            dx[i] = k * (dy[i] - meanDy - (x[i] - mean) * slope);
        }
    }
}
