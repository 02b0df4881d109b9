package dev.panamabn.sync;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.DataType;
import dev.panamabn.Layout;
import dev.panamabn.Shape;
import dev.panamabn.TensorSpec;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * A data-parallel training run to check: a whole batch of {@code sum(shardSizes)} samples of
 * (C, H, W) per step, split along N into the ranks' shards, several training steps with their
 * upstream gradients, then an eval forward. Every value is a float, made from a seed, so that
 * every rank (thread or process) builds the same data.
 *
 * <p>Channels have "ugly" means (up to 1e4, not powers of two) and spreads from 0.05 to 2: a
 * merge that loses accuracy to cancellation shows.
 */
record Workload(BatchNormOptions options, int height, int width, int[] shardSizes, int steps, Layout layout,
                long seed) {

    int channels() {
        return options.numFeatures();
    }

    int spatial() {
        return height * width;
    }

    int ranks() {
        return shardSizes.length;
    }

    int total() {
        return Arrays.stream(shardSizes).sum();
    }

    /** The first sample of rank r's shard. */
    int offset(int rank) {
        return Arrays.stream(shardSizes, 0, rank).sum();
    }

    TensorSpec spec(int n) {
        return TensorSpec.of(Shape.of(n, channels(), height, width), layout, DataType.FLOAT32);
    }

    /** Shape of the whole batch, for the double-precision reference (always channels-first). */
    Shape wholeShape() {
        return Shape.of(total(), channels(), height, width);
    }

    /** The whole batch of step t, logical (N, C, S) order, float values. */
    double[] x(int step) {
        SplittableRandom random = new SplittableRandom(seed * 1_000_003L + step);
        int c = channels();
        double[] means = new double[c];
        double[] spreads = new double[c];
        for (int ch = 0; ch < c; ch++) {
            means[ch] = switch (ch % 4) {
                case 0 -> 0.3 + 0.01 * step;
                case 1 -> 1234.567 + step;
                case 2 -> -987.654;
                default -> 10007.31;
            };
            spreads[ch] = 0.05 + 0.5 * (ch % 5);
        }
        double[] x = new double[total() * c * spatial()];
        for (int i = 0; i < total(); i++) {
            for (int ch = 0; ch < c; ch++) {
                for (int j = 0; j < spatial(); j++) {
                    x[(i * c + ch) * spatial() + j] = (float) (means[ch] + spreads[ch] * random.nextGaussian());
                }
            }
        }
        return x;
    }

    /** The upstream gradient of step t, logical order, float values. */
    double[] dy(int step) {
        SplittableRandom random = new SplittableRandom(seed * 7_000_003L + 31L * step + 1);
        double[] dy = new double[total() * channels() * spatial()];
        for (int i = 0; i < dy.length; i++) {
            dy[i] = (float) (0.1 * (i % 3) + random.nextGaussian());
        }
        return dy;
    }

    /** The initial weight and bias every replica gets (not 1 and 0, so that they take part). */
    float[] weight() {
        float[] w = new float[channels()];
        for (int c = 0; c < w.length; c++) {
            w[c] = 0.5f + 0.25f * c;
        }
        return w;
    }

    float[] bias() {
        float[] b = new float[channels()];
        for (int c = 0; c < b.length; c++) {
            b[c] = 0.1f * c - 0.2f;
        }
        return b;
    }

    /** Samples [from, from + n) of a logical whole-batch array, in this workload's layout. */
    float[] physical(double[] logical, int from, int n) {
        int c = channels();
        int s = spatial();
        float[] out = new float[n * c * s];
        for (int i = 0; i < n; i++) {
            for (int ch = 0; ch < c; ch++) {
                for (int j = 0; j < s; j++) {
                    float v = (float) logical[((from + i) * c + ch) * s + j];
                    out[layout == Layout.CHANNELS_FIRST ? (i * c + ch) * s + j : (i * s + j) * c + ch] = v;
                }
            }
        }
        return out;
    }

    /** A tensor of n samples in this workload's layout, back in logical (N, C, S) order. */
    double[] logical(float[] physical, int n) {
        int c = channels();
        int s = spatial();
        double[] out = new double[n * c * s];
        for (int i = 0; i < n; i++) {
            for (int ch = 0; ch < c; ch++) {
                for (int j = 0; j < s; j++) {
                    out[(i * c + ch) * s + j] =
                            physical[layout == Layout.CHANNELS_FIRST ? (i * c + ch) * s + j : (i * s + j) * c + ch];
                }
            }
        }
        return out;
    }
}
