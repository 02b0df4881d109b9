package dev.panamabn.sync;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.reference.ReferenceBatchNorm;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * How far a synchronised run is from the one-process run on the whole batch, and from the
 * double-precision reference, in units of float rounding:
 * <ul>
 *   <li>{@code y}, running statistics, eval y: ulps of the value itself;</li>
 *   <li>{@code dx}: ulps of the largest |dx| of its channel and step (dx is a difference of
 *       nearly equal terms, so an element's own ulp is no fair unit where it cancels);</li>
 *   <li>weight and bias gradients summed over ranks: ulps of the sum of the ranks' |gradients|
 *       (each rank rounds its share to float once).</li>
 * </ul>
 * The bounds the tests hold these to are in {@link #BOUNDS_ULPS}; every figure is also
 * printed, so a run shows the margins.
 */
final class Agreement {

    /** y, dx, running stats, eval y, gradients: the largest error allowed, in the units above. */
    static final double[] BOUNDS_ULPS = {2, 4, 2, 2, 4};
    static final String[] NAMES = {"y", "dx", "running stats", "eval y", "grad sum"};

    /** The largest error of each kind seen so far. */
    final double[] worst = new double[NAMES.length];
    final List<String> failures = new ArrayList<>();

    /** Rank r's outputs (its samples) against the whole run's. */
    void compareShard(Workload w, int rank, Replica.Result sync, Replica.Result whole) {
        int per = w.channels() * w.spatial();
        int from = w.offset(rank) * per;
        int n = w.shardSizes()[rank];
        for (int t = 0; t < w.steps(); t++) {
            note(0, "step " + t + " y of rank " + rank, elementUlps(sync.y().get(t), whole.y().get(t), from));
            note(1, "step " + t + " dx of rank " + rank, channelUlps(w, sync.dx().get(t), whole.dx().get(t), from, n));
            if (w.options().trackRunningStats()) {
                note(2, "step " + t + " running mean", elementUlps(sync.runningMean().get(t), whole.runningMean().get(t), 0));
                note(2, "step " + t + " running var", elementUlps(sync.runningVar().get(t), whole.runningVar().get(t), 0));
            }
        }
        note(3, "eval y of rank " + rank, elementUlps(sync.evalY(), whole.evalY(), from));
        if (sync.counter() != whole.counter()) {
            failures.add("rank " + rank + ": numBatchesTracked " + sync.counter() + ", one process " + whole.counter());
        }
    }

    /** The ranks' gradients, summed, against the whole run's. */
    void compareGradients(List<float[]> weightGrads, List<float[]> biasGrads, Replica.Result whole) {
        note(4, "weight gradient summed over ranks", sumUlps(weightGrads, whole.weightGrad()));
        note(4, "bias gradient summed over ranks", sumUlps(biasGrads, whole.biasGrad()));
    }

    /** The whole run against the double-precision reference (the one-process run is itself checked). */
    void compareWithReference(Workload w, Replica.Result whole) {
        ReferenceBatchNorm reference = new ReferenceBatchNorm(w.options());
        if (w.options().affine()) {
            float[] weight = w.weight();
            float[] bias = w.bias();
            for (int c = 0; c < w.channels(); c++) {
                reference.weight()[c] = weight[c];
                reference.bias()[c] = bias[c];
            }
        }
        for (int t = 0; t < w.steps(); t++) {
            double[] y = reference.forward(w.x(t), w.wholeShape());
            ReferenceBatchNorm.Gradients g = reference.backward(w.dy(t), w.x(t), w.wholeShape());
            note(0, "step " + t + " y against float64", ulpsFromExact(w.logical(whole.y().get(t), w.total()), y));
            if (w.options().trackRunningStats()) {
                note(2, "step " + t + " running mean against float64",
                        ulpsFromExact(toDouble(whole.runningMean().get(t)), reference.runningMean()));
                // The reference keeps PyTorch's unbiased running variance only; the biased one is
                // still compared with the one-process run in compareShard.
                if (w.options().runningVariance() == BatchNormOptions.RunningVariance.UNBIASED) {
                    note(2, "step " + t + " running var against float64",
                            ulpsFromExact(toDouble(whole.runningVar().get(t)), reference.runningVar()));
                }
            }
            double[] dx = w.logical(whole.dx().get(t), w.total());
            note(1, "step " + t + " dx against float64", channelUlpsExact(w, dx, g.dx()));
        }
    }

    boolean ok() {
        return failures.isEmpty();
    }

    /** One line with every kind's worst error and bound. */
    String summary() {
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < NAMES.length; i++) {
            s.append(i == 0 ? "" : ", ").append(NAMES[i]).append(' ')
                    .append(String.format(Locale.ROOT, "%.2f", worst[i])).append(" ulp (bound ")
                    .append((int) BOUNDS_ULPS[i]).append(')');
        }
        return s.toString();
    }

    private void note(int kind, String what, double ulps) {
        worst[kind] = Math.max(worst[kind], ulps);
        if (!(ulps <= BOUNDS_ULPS[kind])) {
            failures.add(what + ": " + ulps + " ulp, bound " + BOUNDS_ULPS[kind]);
        }
    }

    private static double elementUlps(float[] shard, float[] whole, int from) {
        double worst = 0;
        for (int i = 0; i < shard.length; i++) {
            float expected = whole[from + i];
            worst = Math.max(worst, Math.abs((double) shard[i] - expected) / Math.ulp(expected));
        }
        return worst;
    }

    /** dx errors over the ulp of each channel's largest |dx| (this step, whole batch). */
    private static double channelUlps(Workload w, float[] shard, float[] whole, int from, int n) {
        double[] s = w.logical(shard, n);
        double[] all = w.logical(whole, w.total());
        double[] mine = new double[s.length];
        System.arraycopy(all, from, mine, 0, s.length);
        return channelUlpsExact(w, s, mine, maxPerChannel(w, all, w.total()), n);
    }

    private static double channelUlpsExact(Workload w, double[] actual, double[] exact) {
        return channelUlpsExact(w, actual, exact, maxPerChannel(w, exact, w.total()), w.total());
    }

    private static double channelUlpsExact(Workload w, double[] actual, double[] exact, double[] scale, int n) {
        int c = w.channels();
        int s = w.spatial();
        double worst = 0;
        for (int i = 0; i < n; i++) {
            for (int ch = 0; ch < c; ch++) {
                for (int j = 0; j < s; j++) {
                    int k = (i * c + ch) * s + j;
                    worst = Math.max(worst, Math.abs(actual[k] - exact[k]) / Math.ulp((float) scale[ch]));
                }
            }
        }
        return worst;
    }

    private static double[] maxPerChannel(Workload w, double[] logical, int n) {
        int c = w.channels();
        int s = w.spatial();
        double[] max = new double[c];
        for (int i = 0; i < n; i++) {
            for (int ch = 0; ch < c; ch++) {
                for (int j = 0; j < s; j++) {
                    max[ch] = Math.max(max[ch], Math.abs(logical[(i * c + ch) * s + j]));
                }
            }
        }
        for (int ch = 0; ch < c; ch++) {
            max[ch] = Math.max(max[ch], Float.MIN_NORMAL);
        }
        return max;
    }

    private static double sumUlps(List<float[]> shares, float[] whole) {
        double worst = 0;
        for (int c = 0; c < whole.length; c++) {
            double sum = 0;
            double magnitude = 0;
            for (float[] share : shares) {
                sum += share[c];
                magnitude += Math.abs(share[c]);
            }
            magnitude = Math.max(Math.max(magnitude, Math.abs(whole[c])), Float.MIN_NORMAL);
            worst = Math.max(worst, Math.abs(sum - whole[c]) / Math.ulp((float) magnitude));
        }
        return worst;
    }

    /** Float results against exact values: 0.5 ulp is correct rounding. */
    private static double ulpsFromExact(double[] actual, double[] exact) {
        double worst = 0;
        for (int i = 0; i < actual.length; i++) {
            worst = Math.max(worst, Math.abs(actual[i] - exact[i]) / Math.ulp((float) exact[i]));
        }
        return worst;
    }

    private static double[] toDouble(float[] v) {
        double[] d = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            d[i] = v[i];
        }
        return d;
    }
}
