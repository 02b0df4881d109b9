package dev.panamabn.demo;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.DataType;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import dev.panamabn.TensorSpec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Trains a BatchNorm2d on synthetic data for a few steps, checks its running statistics against
 * the same statistics computed here in double precision, then times training forward, eval
 * forward and backward on a ResNet-sized tensor, and the fused relu(bn(x) + z) on the same tensor
 * in channels-last bfloat16. Uses only the public API. Exit code 1 when the
 * check fails.
 */
public final class Demo {

    private static final int CHANNELS = 6;
    private static final int STEPS = 5;
    private static final Shape TRAIN_SHAPE = Shape.of(16, CHANNELS, 12, 12);
    private static final Shape TIMING_SHAPE = Shape.of(32, 64, 56, 56);
    /** float32 stores about 7 digits; five steps of running averages stay well inside this. */
    private static final double TOLERANCE = 1e-5;
    private static final int WARMUP = 3;
    private static final int RUNS = 9;

    private Demo() {
    }

    public static void main(String[] args) {
        boolean pass = trainAndCheck();
        time();
        if (!pass) {
            System.exit(1);
        }
    }

    private static boolean trainAndCheck() {
        // Ugly means and spreads: large, negative, not powers of two, so that a variance computed
        // as E[x^2] - E[x]^2 in float would show.
        double[] means = {1234.567, -0.731, 98765.4, 3.14159, -4321.09, 17.5e3};
        double[] spreads = {0.37, 2.9, 1.3, 0.0071, 55.5, 0.9};
        SplittableRandom random = new SplittableRandom(20261126);
        // Cumulative average (PyTorch's momentum=None): the running statistics become the average
        // of the batches' statistics, which is easy to compute here.
        BatchNormOptions options = BatchNormOptions.of(CHANNELS).withCumulativeAverage();
        double[] expectedMean = new double[CHANNELS];
        double[] expectedVar = new double[CHANNELS];

        try (var bn = BatchNorm.create(options); var arena = Arena.ofConfined()) {
            System.out.printf(Locale.ROOT, "panama-batchnorm demo: %s, %d native threads%n", bn, Parallelism.threads());
            System.out.printf(Locale.ROOT, "training %d steps on %s with per-channel means %s%n",
                    STEPS, TRAIN_SHAPE, Arrays.toString(means));
            long count = TRAIN_SHAPE.elementCount();
            MemorySegment x = arena.allocate(count * Float.BYTES, 64);
            MemorySegment y = arena.allocate(count * Float.BYTES, 64);
            for (int step = 0; step < STEPS; step++) {
                float[] xf = synthetic(TRAIN_SHAPE, means, spreads, random);
                MemorySegment.copy(xf, 0, x, ValueLayout.JAVA_FLOAT, 0, xf.length);
                bn.forward(x, TRAIN_SHAPE, y);
                double[][] batch = batchStatistics(xf, TRAIN_SHAPE);
                for (int c = 0; c < CHANNELS; c++) {
                    expectedMean[c] += batch[0][c] / STEPS;
                    expectedVar[c] += batch[1][c] / STEPS;
                }
            }
            bn.eval();

            System.out.printf(Locale.ROOT, "after %d steps (numBatchesTracked=%d), eval mode:%n",
                    STEPS, bn.numBatchesTracked());
            System.out.println("  channel     running_mean     running_var   (data: mean, variance)");
            double maxError = 0;
            for (int c = 0; c < CHANNELS; c++) {
                float mean = bn.runningMean().getAtIndex(ValueLayout.JAVA_FLOAT, c);
                float var = bn.runningVar().getAtIndex(ValueLayout.JAVA_FLOAT, c);
                System.out.printf(Locale.ROOT, "  %7d  %15.6f  %14.8g   (%s, %.6g)%n",
                        c, mean, var, means[c], spreads[c] * spreads[c]);
                maxError = Math.max(maxError, relativeError(mean, expectedMean[c]));
                maxError = Math.max(maxError, relativeError(var, expectedVar[c]));
            }
            boolean pass = maxError <= TOLERANCE && bn.numBatchesTracked() == STEPS;
            System.out.printf(Locale.ROOT, "max relative error vs the statistics computed in double: %.2e (limit %.0e): %s%n",
                    maxError, TOLERANCE, pass ? "PASS" : "FAIL");
            return pass;
        }
    }

    /** Per channel: the batch mean and the unbiased batch variance, in double, two passes. */
    private static double[][] batchStatistics(float[] x, Shape shape) {
        int n = (int) shape.batch();
        int channels = (int) shape.channels();
        int s = (int) shape.spatial();
        double m = (double) n * s;
        double[] mean = new double[channels];
        double[] var = new double[channels];
        for (int c = 0; c < channels; c++) {
            double sum = 0;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < s; j++) {
                    sum += x[(i * channels + c) * s + j];
                }
            }
            mean[c] = sum / m;
            double squares = 0;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < s; j++) {
                    double d = x[(i * channels + c) * s + j] - mean[c];
                    squares += d * d;
                }
            }
            var[c] = squares / (m - 1);
        }
        return new double[][] {mean, var};
    }

    private static void time() {
        Shape shape = TIMING_SHAPE;
        long bytes = shape.elementCount() * Float.BYTES;
        try (var bn = BatchNorm.create((int) shape.channels()); var arena = Arena.ofConfined()) {
            MemorySegment x = arena.allocate(bytes, 64);
            MemorySegment y = arena.allocate(bytes, 64);
            MemorySegment dx = arena.allocate(bytes, 64);
            SplittableRandom random = new SplittableRandom(7);
            for (long i = 0; i < shape.elementCount(); i++) {
                x.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) (100 + random.nextGaussian()));
            }
            long train = median(() -> bn.forward(x, shape, y));
            // Each backward needs a forward of its own: time the pair, then take the forward off.
            long pair = median(() -> {
                bn.forward(x, shape, y);
                bn.backward(y, x, shape, dx);
            });
            bn.eval();
            long eval = median(() -> bn.forward(x, shape, y));
            System.out.printf(Locale.ROOT, "timing %s float32, median of %d runs, %d native threads:%n",
                    shape, RUNS, Parallelism.threads());
            print("forward, training", train, 2 * bytes);
            print("forward, eval", eval, 2 * bytes);
            print("backward", Math.max(pair - train, 0), 3 * bytes);
            timeFusedBfloat16(shape, random);
            System.out.println("(GB/s counts each tensor read or written once: the least traffic an op needs;"
                    + " docs/PERFORMANCE.md compares with other libraries)");
        }
    }

    /** relu(bn(x) + z) and its backward, NHWC bfloat16: a residual block's end in mixed precision. */
    private static void timeFusedBfloat16(Shape shape, SplittableRandom random) {
        TensorSpec spec = shape.channelsLast().with(DataType.BFLOAT16);
        long bytes = spec.byteSize();
        try (var bn = BatchNorm.create((int) shape.channels()); var arena = Arena.ofConfined()) {
            MemorySegment x = arena.allocate(bytes, 64);
            MemorySegment z = arena.allocate(bytes, 64);
            MemorySegment y = arena.allocate(bytes, 64);
            MemorySegment dx = arena.allocate(bytes, 64);
            MemorySegment dz = arena.allocate(bytes, 64);
            for (long i = 0; i < shape.elementCount(); i++) {
                x.setAtIndex(ValueLayout.JAVA_SHORT, i, DataType.BFLOAT16.fromFloat((float) random.nextGaussian()));
                z.setAtIndex(ValueLayout.JAVA_SHORT, i, DataType.BFLOAT16.fromFloat((float) random.nextGaussian()));
            }
            long train = median(() -> bn.forwardAddRelu(x, z, spec, y));
            long pair = median(() -> {
                bn.forwardAddRelu(x, z, spec, y);
                bn.backwardAddRelu(z, y, x, spec, dx, dz);
            });
            System.out.printf(Locale.ROOT, "timing relu(bn(x) + z), %s channels-last bfloat16:%n", shape);
            print("forward, training", train, 3 * bytes);
            print("backward", Math.max(pair - train, 0), 5 * bytes);
        }
    }

    private static void print(String op, long nanos, long bytesMoved) {
        System.out.printf(Locale.ROOT, "  %-18s %8.2f ms  %6.1f GB/s%n", op, nanos / 1e6, bytesMoved / (double) nanos);
    }

    private static long median(Runnable op) {
        for (int i = 0; i < WARMUP; i++) {
            op.run();
        }
        long[] times = new long[RUNS];
        for (int i = 0; i < RUNS; i++) {
            long start = System.nanoTime();
            op.run();
            times[i] = System.nanoTime() - start;
        }
        Arrays.sort(times);
        return times[RUNS / 2];
    }

    private static float[] synthetic(Shape shape, double[] means, double[] spreads, SplittableRandom random) {
        int n = (int) shape.batch();
        int c = (int) shape.channels();
        int s = (int) shape.spatial();
        float[] x = new float[n * c * s];
        for (int i = 0; i < n; i++) {
            for (int ch = 0; ch < c; ch++) {
                for (int j = 0; j < s; j++) {
                    x[(i * c + ch) * s + j] = (float) (means[ch] + spreads[ch] * random.nextGaussian());
                }
            }
        }
        return x;
    }

    private static double relativeError(double actual, double expected) {
        return Math.abs(actual - expected) / Math.max(Math.abs(expected), Double.MIN_NORMAL);
    }
}
