package dev.panamabn.syncdemo;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.Collective;
import dev.panamabn.InProcessCollective;
import dev.panamabn.MpiCollective;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import dev.panamabn.SyncBatchNorm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Data-parallel training of a BatchNorm2d with synchronised statistics. Each rank holds a replica
 * and a shard of every batch of 32 samples, learns weight and bias by gradient descent towards a
 * target (gradients summed over ranks, the same update everywhere), then checks that its running
 * statistics are those of the whole batches, computed here in double, and the same bits as every
 * other rank's. Exit code 1 when a check fails.
 *
 * <pre>
 *   mpirun -np 4 java --enable-native-access=ALL-UNNAMED -cp ... dev.panamabn.syncdemo.SyncDemo
 *   java --enable-native-access=ALL-UNNAMED -cp ... dev.panamabn.syncdemo.SyncDemo --threads 4
 * </pre>
 * Under mpirun each process is a rank ({@link MpiCollective}); with {@code --threads K} the K
 * ranks are threads of one JVM ({@link InProcessCollective}).
 */
public final class SyncDemo {

    private static final int BATCH = 32;
    private static final int CHANNELS = 8;
    private static final Shape SAMPLE = Shape.of(1, CHANNELS, 14, 14);
    private static final int STEPS = 20;
    private static final double LEARNING_RATE = 0.5;
    /** Twenty running averages in float stay well inside this, relative to the channel's spread. */
    private static final double TOLERANCE = 1e-5;
    private static final double[] MEANS = {1234.567, -0.731, 98765.4, 3.14159, -4321.09, 17.5e3, 0.25, -77.7};
    private static final double[] SPREADS = {0.37, 2.9, 1.3, 0.0071, 55.5, 0.9, 1.0, 4.4};

    private SyncDemo() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 2 && args[0].equals("--threads")) {
            int k = Integer.parseInt(args[1]);
            Parallelism.setThreads(1);
            List<Thread> threads = new ArrayList<>();
            boolean[] ok = new boolean[k];
            for (InProcessCollective member : InProcessCollective.group(k)) {
                threads.add(Thread.ofPlatform().start(() -> {
                    try {
                        ok[member.rank()] = train(member, "threads");
                    } catch (RuntimeException e) {
                        member.abort(e); // the other threads stop waiting at once
                        throw e;
                    }
                }));
            }
            for (Thread t : threads) {
                t.join();
            }
            for (boolean b : ok) {
                if (!b) {
                    System.exit(1);
                }
            }
            return;
        }
        if (args.length != 0) {
            System.err.println("usage: SyncDemo [--threads K]   (without arguments: one rank per MPI process)");
            System.exit(2);
        }
        try (MpiCollective world = MpiCollective.world()) {
            if (!train(world, "processes")) {
                MpiCollective.abort(1);
            }
        } catch (Throwable e) {
            // A failed rank ends the job at once instead of leaving the others waiting.
            e.printStackTrace();
            MpiCollective.abort(1);
        }
    }

    /** One rank's training; true when its checks pass. */
    private static boolean train(Collective collective, String kind) {
        int rank = collective.rank();
        int k = collective.size();
        int from = BATCH * rank / k;
        int n = BATCH * (rank + 1) / k - from;
        Shape shard = Shape.of(n, CHANNELS, SAMPLE.dim(2), SAMPLE.dim(3));
        long perSample = SAMPLE.elementCount();
        double[] expectedMean = new double[CHANNELS];
        double[] expectedVar = new double[CHANNELS];
        java.util.Arrays.fill(expectedVar, 1);
        BatchNormOptions options = BatchNormOptions.of(CHANNELS);
        double momentum = options.momentum().orElseThrow();
        try (SyncBatchNorm bn = SyncBatchNorm.create(options, collective); Arena arena = Arena.ofConfined()) {
            if (rank == 0) {
                System.out.printf(Locale.ROOT, "sync demo: %d ranks (%s), batch %d of %s, %d steps%n", k, kind,
                        BATCH, SAMPLE, STEPS);
            }
            MemorySegment x = arena.allocate(ValueLayout.JAVA_FLOAT, Math.max(1, n * perSample));
            MemorySegment y = arena.allocate(ValueLayout.JAVA_FLOAT, Math.max(1, n * perSample));
            MemorySegment dy = arena.allocate(ValueLayout.JAVA_FLOAT, Math.max(1, n * perSample));
            MemorySegment dx = arena.allocate(ValueLayout.JAVA_FLOAT, Math.max(1, n * perSample));
            for (int step = 0; step < STEPS; step++) {
                float[] whole = batch(step);
                MemorySegment.copy(whole, (int) (from * perSample), x, ValueLayout.JAVA_FLOAT, 0, (int) (n * perSample));
                bn.forward(x, shard, y);
                // Loss 0.5 * mean (y - target)^2 over the whole batch, target = 2 x̂ + 1 per channel.
                double loss = 0;
                for (long i = 0; i < n * perSample; i++) {
                    int c = (int) (i / SAMPLE.spatial() % CHANNELS);
                    float xf = x.getAtIndex(ValueLayout.JAVA_FLOAT, i);
                    double target = 2 * (xf - MEANS[c]) / SPREADS[c] + 1;
                    double diff = y.getAtIndex(ValueLayout.JAVA_FLOAT, i) - target;
                    loss += 0.5 * diff * diff;
                    dy.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) (diff / (BATCH * SAMPLE.spatial())));
                }
                bn.backward(dy, x, shard, dx);
                // A data-parallel optimiser: the gradients summed over ranks, the same step everywhere.
                double[] local = new double[2 * CHANNELS + 1];
                for (int c = 0; c < CHANNELS; c++) {
                    local[c] = bn.module().weightGrad().getAtIndex(ValueLayout.JAVA_FLOAT, c);
                    local[CHANNELS + c] = bn.module().biasGrad().getAtIndex(ValueLayout.JAVA_FLOAT, c);
                }
                local[2 * CHANNELS] = loss;
                double[] sum = new double[local.length];
                for (double[] row : collective.allgather(local)) {
                    for (int i = 0; i < sum.length; i++) {
                        sum[i] += row[i];
                    }
                }
                for (int c = 0; c < CHANNELS; c++) {
                    MemorySegment w = bn.module().weight();
                    MemorySegment b = bn.module().bias();
                    w.setAtIndex(ValueLayout.JAVA_FLOAT, c, (float) (w.getAtIndex(ValueLayout.JAVA_FLOAT, c) - LEARNING_RATE * sum[c]));
                    b.setAtIndex(ValueLayout.JAVA_FLOAT, c, (float) (b.getAtIndex(ValueLayout.JAVA_FLOAT, c) - LEARNING_RATE * sum[CHANNELS + c]));
                }
                bn.module().zeroGrad();
                if (rank == 0 && (step % 5 == 0 || step == STEPS - 1)) {
                    System.out.printf(Locale.ROOT, "  step %2d: loss %.6f, weight[0] %.4f, bias[0] %.4f%n", step,
                            sum[2 * CHANNELS] / (BATCH * perSample),
                            bn.module().weight().getAtIndex(ValueLayout.JAVA_FLOAT, 0),
                            bn.module().bias().getAtIndex(ValueLayout.JAVA_FLOAT, 0));
                }
                runningUpdate(whole, momentum, expectedMean, expectedVar);
            }
            return check(bn, collective, n, expectedMean, expectedVar);
        }
    }

    /** This rank's running statistics against the double-precision ones, and against every rank's bits. */
    private static boolean check(SyncBatchNorm bn, Collective collective, int n, double[] expectedMean,
                                 double[] expectedVar) {
        double worst = 0;
        double[] bits = new double[2 * CHANNELS];
        for (int c = 0; c < CHANNELS; c++) {
            float mean = bn.module().runningMean().getAtIndex(ValueLayout.JAVA_FLOAT, c);
            float var = bn.module().runningVar().getAtIndex(ValueLayout.JAVA_FLOAT, c);
            worst = Math.max(worst, Math.abs(mean - expectedMean[c]) / Math.max(Math.abs(expectedMean[c]), SPREADS[c]));
            worst = Math.max(worst, Math.abs(var - expectedVar[c]) / expectedVar[c]);
            bits[c] = Float.floatToRawIntBits(mean);
            bits[CHANNELS + c] = Float.floatToRawIntBits(var);
        }
        boolean same = true;
        for (double[] other : collective.allgather(bits)) {
            same &= java.util.Arrays.equals(other, bits);
        }
        boolean ok = worst <= TOLERANCE && same;
        // One println per rank: a single write, so that the ranks' lines do not interleave.
        System.out.println(String.format(Locale.ROOT,
                "rank %d of %d: %2d samples; running statistics vs the whole batches in double: %.1e relative"
                        + " (bound %.0e), same bits on every rank: %s -> %s",
                collective.rank(), collective.size(), n, worst, TOLERANCE, same, ok ? "ok" : "FAILED"));
        return ok;
    }

    /** The whole batch of a step, NCHW, the same on every rank. */
    private static float[] batch(int step) {
        SplittableRandom random = new SplittableRandom(20261205L + step);
        int s = (int) SAMPLE.spatial();
        float[] x = new float[BATCH * CHANNELS * s];
        for (int i = 0; i < BATCH; i++) {
            for (int c = 0; c < CHANNELS; c++) {
                for (int j = 0; j < s; j++) {
                    x[(i * CHANNELS + c) * s + j] = (float) (MEANS[c] + SPREADS[c] * random.nextGaussian());
                }
            }
        }
        return x;
    }

    /** PyTorch's running update with the whole batch's mean and unbiased variance, in double. */
    private static void runningUpdate(float[] whole, double momentum, double[] mean, double[] var) {
        int s = (int) SAMPLE.spatial();
        long m = (long) BATCH * s;
        for (int c = 0; c < CHANNELS; c++) {
            double sum = 0;
            for (int i = 0; i < BATCH; i++) {
                for (int j = 0; j < s; j++) {
                    sum += whole[(i * CHANNELS + c) * s + j];
                }
            }
            double mu = sum / m;
            double m2 = 0;
            for (int i = 0; i < BATCH; i++) {
                for (int j = 0; j < s; j++) {
                    double d = whole[(i * CHANNELS + c) * s + j] - mu;
                    m2 += d * d;
                }
            }
            mean[c] = (1 - momentum) * mean[c] + momentum * mu;
            var[c] = (1 - momentum) * var[c] + momentum * m2 / (m - 1);
        }
    }
}
