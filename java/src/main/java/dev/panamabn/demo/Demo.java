package dev.panamabn.demo;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import dev.panamabn.reference.ReferenceBatchNorm;
import dev.panamabn.reference.ScalarBatchNorm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Trains a BatchNorm2d on synthetic data for a few steps, switches to eval, prints the running
 * statistics and checks them against the double-precision Java reference, then times one forward
 * pass of the native module against plain scalar Java. Exit code 1 when the check fails.
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
        // momentum=None: the running statistics become the average over all batches so far.
        BatchNormOptions options = BatchNormOptions.of(CHANNELS).withCumulativeAverage();
        var reference = new ReferenceBatchNorm(options);

        try (var bn = BatchNorm.create(options); var arena = Arena.ofConfined()) {
            System.out.printf(Locale.ROOT, "panama-batchnorm demo: %s, %d native threads%n", bn, Parallelism.threads());
            System.out.printf(Locale.ROOT, "training %d steps on %s with per-channel means %s%n",
                    STEPS, TRAIN_SHAPE, Arrays.toString(means));
            long count = TRAIN_SHAPE.elementCount();
            MemorySegment x = arena.allocate(count * Float.BYTES, Float.BYTES);
            MemorySegment y = arena.allocate(count * Float.BYTES, Float.BYTES);
            for (int step = 0; step < STEPS; step++) {
                double[] xd = synthetic(TRAIN_SHAPE, means, spreads, random);
                for (int i = 0; i < count; i++) {
                    x.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) xd[i]);
                    xd[i] = (float) xd[i];   // the reference sees exactly the floats the kernel sees
                }
                bn.forward(x, TRAIN_SHAPE, y);
                reference.forward(xd, TRAIN_SHAPE);
            }
            bn.eval();
            reference.eval();

            System.out.printf(Locale.ROOT, "after %d steps (numBatchesTracked=%d), eval mode:%n",
                    STEPS, bn.numBatchesTracked());
            System.out.println("  channel     running_mean     running_var   (data: mean, variance)");
            double maxError = 0;
            for (int c = 0; c < CHANNELS; c++) {
                float mean = bn.runningMean().getAtIndex(ValueLayout.JAVA_FLOAT, c);
                float var = bn.runningVar().getAtIndex(ValueLayout.JAVA_FLOAT, c);
                System.out.printf(Locale.ROOT, "  %7d  %15.6f  %14.8g   (%s, %.6g)%n",
                        c, mean, var, means[c], spreads[c] * spreads[c]);
                maxError = Math.max(maxError, relativeError(mean, reference.runningMean()[c]));
                maxError = Math.max(maxError, relativeError(var, reference.runningVar()[c]));
            }
            boolean pass = maxError <= TOLERANCE && bn.numBatchesTracked() == reference.numBatchesTracked();
            System.out.printf(Locale.ROOT, "max relative error vs the double-precision Java reference: %.2e (limit %.0e): %s%n",
                    maxError, TOLERANCE, pass ? "PASS" : "FAIL");
            return pass;
        }
    }

    private static void time() {
        Shape shape = TIMING_SHAPE;
        int count = Math.toIntExact(shape.elementCount());
        int c = (int) shape.channels();
        float[] xa = new float[count];
        SplittableRandom random = new SplittableRandom(7);
        for (int i = 0; i < count; i++) {
            xa[i] = (float) (100 + random.nextGaussian());
        }
        float[] ya = new float[count];
        float[] weight = new float[c];
        float[] bias = new float[c];
        float[] runningMean = new float[c];
        float[] runningVar = new float[c];
        Arrays.fill(weight, 1f);
        Arrays.fill(runningVar, 1f);
        double[] saveMean = new double[c];
        double[] saveInvstd = new double[c];

        try (var bn = BatchNorm.create(c); var arena = Arena.ofConfined()) {
            MemorySegment x = arena.allocate((long) count * Float.BYTES, 64);
            MemorySegment y = arena.allocate((long) count * Float.BYTES, 64);
            MemorySegment.copy(xa, 0, x, ValueLayout.JAVA_FLOAT, 0, count);
            long[][] times = timeInterleaved(() -> bn.forward(x, shape, y),
                    () -> ScalarBatchNorm.forwardTrain(ya, saveMean, saveInvstd, runningMean, runningVar, xa, weight,
                            bias, shape.batch(), c, shape.spatial(), 1e-5, 0.1));
            long nativeNanos = median(times[0]);
            long scalarNanos = median(times[1]);
            System.out.printf(Locale.ROOT, "forward (training) on %s, median of %d runs, %d native threads:%n",
                    shape, RUNS, Parallelism.threads());
            System.out.printf(Locale.ROOT, "  panama-batchnorm %8.2f ms%n", nativeNanos / 1e6);
            System.out.printf(Locale.ROOT, "  java-scalar      %8.2f ms%n", scalarNanos / 1e6);
            System.out.printf(Locale.ROOT, "  ratio            %8.1fx%n", (double) scalarNanos / nativeNanos);
            double load = ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage();
            int processors = Runtime.getRuntime().availableProcessors();
            if (load > processors) {
                System.out.printf(Locale.ROOT, "  (load average %.1f on %d processors: other work shares the CPUs,"
                        + " so these times are unreliable)%n", load, processors);
            }
        }
    }

    /** Runs a and b alternately, so that both see the same load on a shared machine. */
    private static long[][] timeInterleaved(Runnable a, Runnable b) {
        for (int i = 0; i < WARMUP; i++) {
            a.run();
            b.run();
        }
        long[][] times = new long[2][RUNS];
        for (int i = 0; i < RUNS; i++) {
            times[0][i] = time(a);
            times[1][i] = time(b);
        }
        return times;
    }

    private static long time(Runnable run) {
        long start = System.nanoTime();
        run.run();
        return System.nanoTime() - start;
    }

    private static long median(long[] times) {
        long[] sorted = times.clone();
        Arrays.sort(sorted);
        return sorted[sorted.length / 2];
    }

    private static double[] synthetic(Shape shape, double[] means, double[] spreads, SplittableRandom random) {
        int n = (int) shape.batch();
        int c = (int) shape.channels();
        int s = (int) shape.spatial();
        double[] x = new double[n * c * s];
        for (int i = 0; i < n; i++) {
            for (int ch = 0; ch < c; ch++) {
                for (int j = 0; j < s; j++) {
                    x[(i * c + ch) * s + j] = means[ch] + spreads[ch] * random.nextGaussian();
                }
            }
        }
        return x;
    }

    private static double relativeError(double actual, double expected) {
        return Math.abs(actual - expected) / Math.max(Math.abs(expected), Double.MIN_NORMAL);
    }
}
