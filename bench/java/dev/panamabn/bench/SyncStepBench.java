package dev.panamabn.bench;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.ChannelStats;
import dev.panamabn.Collective;
import dev.panamabn.GradSums;
import dev.panamabn.MpiCollective;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import dev.panamabn.SyncBatchNorm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * One rank of the synchronised training step benchmark, under {@code mpirun -np K}
 * ({@code scripts/bench_sync.sh} drives it): the whole batch {@code --shape} is split along N over
 * the K ranks; each rank times a training step (forward + backward) of {@link SyncBatchNorm} on its
 * shard, and of a local {@link BatchNorm} on the same shard, all ranks at once, in alternating
 * rounds. The step time of a rank is the median over rounds; the job's is the slowest rank's.
 * Rank 0 prints the suite's CSV rows ({@code op = sync_step}, impls
 * {@code panama-batchnorm-sync-Kranks} and {@code panama-batchnorm-local-Kranks}, threads = K x
 * threads per rank, the shape of the whole batch) and a comment with the exchange's share: the
 * time spent inside the collective's allgather during the synchronised steps.
 *
 * <p>A third step, {@code panama-batchnorm-phases-Kranks}, is the local step run through the
 * public phases with nothing exchanged (statistics, then the forward from them; gradient sums,
 * then the backward from them): the synchronised step's memory traffic without its messages. One
 * exchange per pass means that every channel's statistics exist before any output, so x (and in
 * backward dy) is read again after the reduction; the local step's fused schedule reads them
 * once. This step measures that cost alone: the bound of a synchronised step at one exchange per
 * pass.
 *
 * <p>Options: {@code --shape NxCxHxW} (32x64x56x56), {@code --threads T} per rank (1),
 * {@code --rounds R} (9), {@code --steps S} per round (10), {@code --warmup W} steps (5).
 */
public final class SyncStepBench {

    private SyncStepBench() {
    }

    public static void main(String[] args) {
        long[] dims = {32, 64, 56, 56};
        int threads = 1;
        int rounds = 9;
        int steps = 10;
        int warmup = 5;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--shape" -> dims = Arrays.stream(args[i + 1].split("x")).mapToLong(Long::parseLong).toArray();
                case "--threads" -> threads = Integer.parseInt(args[i + 1]);
                case "--rounds" -> rounds = Integer.parseInt(args[i + 1]);
                case "--steps" -> steps = Integer.parseInt(args[i + 1]);
                case "--warmup" -> warmup = Integer.parseInt(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]
                        + " (--shape NxCxHxW --threads T --rounds R --steps S --warmup W)");
            }
        }
        Parallelism.setThreads(threads);
        try (MpiCollective world = MpiCollective.world()) {
            run(world, dims, threads, rounds, steps, warmup);
        } catch (Throwable e) {
            e.printStackTrace();
            MpiCollective.abort(1);
        }
    }

    private static void run(MpiCollective world, long[] dims, int threads, int rounds, int steps, int warmup) {
        int k = world.size();
        int rank = world.rank();
        long n = dims[0] * (rank + 1) / k - dims[0] * rank / k;
        Shape shard = Shape.of(n, dims[1], dims[2], dims[3]);
        TimedCollective timed = new TimedCollective(world);
        BatchNormOptions options = BatchNormOptions.of((int) dims[1]);
        try (Arena arena = Arena.ofConfined();
             SyncBatchNorm sync = SyncBatchNorm.create(options, timed);
             BatchNorm local = BatchNorm.create(options);
             BatchNorm phased = BatchNorm.create(options)) {
            long count = Math.max(1, shard.elementCount());
            MemorySegment x = fill(arena.allocate(ValueLayout.JAVA_FLOAT, count), 1 + rank);
            MemorySegment dy = fill(arena.allocate(ValueLayout.JAVA_FLOAT, count), 100 + rank);
            MemorySegment y = arena.allocate(ValueLayout.JAVA_FLOAT, count);
            MemorySegment dx = arena.allocate(ValueLayout.JAVA_FLOAT, count);
            Runnable syncStep = () -> {
                sync.forward(x, shard, y);
                sync.backward(dy, x, shard, dx);
            };
            Runnable localStep = () -> {
                local.forward(x, shard, y);
                local.backward(dy, x, shard, dx);
            };
            Runnable phasesStep = () -> {
                ChannelStats stats = phased.batchStats(x, shard);
                phased.forward(x, shard, y, stats);
                GradSums sums = phased.backwardSums(dy, x, shard);
                phased.backward(dy, x, shard, dx, sums, sums);
            };
            Runnable[] kinds = {syncStep, localStep, phasesStep};
            for (int i = 0; i < warmup; i++) {
                for (Runnable step : kinds) {
                    step.run();
                }
            }
            double[][] ns = new double[kinds.length][rounds];
            double[] exchangeNs = new double[rounds];
            for (int r = 0; r < rounds; r++) {
                // Rotating order, every rank at once: each step sees the same neighbours on the memory bus.
                for (int j = 0; j < kinds.length; j++) {
                    int kind = (r + j) % kinds.length;
                    ns[kind][r] = timeSteps(world, kinds[kind], steps, timed, kind == 0);
                }
                exchangeNs[r] = timed.takeNanos() / (double) steps;
            }
            double[] mine = {median(ns[0]), median(ns[1]), median(exchangeNs), timed.medianCallNanos(),
                    median(ns[2])};
            double[][] all = world.allgather(mine);
            if (rank == 0) {
                report(all, dims, k, threads, timed.calls() / (double) ((long) rounds * steps + warmup));
            }
        }
    }

    /** Mean ns per step over `steps` steps, started together on every rank. */
    private static double timeSteps(Collective world, Runnable step, int steps, TimedCollective timed, boolean timedRun) {
        world.allgather(new double[0]);
        if (timedRun) {
            timed.takeNanos();
        }
        long start = System.nanoTime();
        for (int i = 0; i < steps; i++) {
            step.run();
        }
        return (System.nanoTime() - start) / (double) steps;
    }

    private static void report(double[][] all, long[] dims, int k, int threads, double exchangesPerStep) {
        double sync = 0;
        double local = 0;
        double exchange = 0;
        double call = Double.MAX_VALUE;
        double phases = 0;
        for (double[] rank : all) {
            phases = Math.max(phases, rank[4]);
            sync = Math.max(sync, rank[0]);
            local = Math.max(local, rank[1]);
            exchange = Math.max(exchange, rank[2]);
            call = Math.min(call, rank[3]);
        }
        String shape = dims[0] + "x" + dims[1] + "x" + dims[2] + "x" + dims[3];
        int total = k * threads;
        System.out.printf(Locale.ROOT, "%s,nchw,f32,sync_step,panama-batchnorm-sync-%dranks,%d,warm,%.0f%n", shape, k,
                total, sync);
        System.out.printf(Locale.ROOT, "%s,nchw,f32,sync_step,panama-batchnorm-local-%dranks,%d,warm,%.0f%n", shape, k,
                total, local);
        System.out.printf(Locale.ROOT, "%s,nchw,f32,sync_step,panama-batchnorm-phases-%dranks,%d,warm,%.0f%n", shape, k,
                total, phases);
        System.out.printf(Locale.ROOT, "# sync_step %d ranks x %d threads: local through the phases, nothing "
                + "exchanged, %.3f ms (%.2fx the local step): the bound at one exchange per pass%n",
                k, threads, phases / 1e6, phases / local);
        System.out.printf(Locale.ROOT, "# sync_step %d ranks x %d threads, shard %dx%dx%dx%d: synchronised %.3f ms, "
                        + "local %.3f ms (%.2fx); in the exchange %.1f us per step (%.1f%% of the synchronised step, "
                        + "waits for the slowest rank included; median call %.1f us), %.2f collective calls per step%n",
                k, threads, dims[0] / k, dims[1], dims[2], dims[3], sync / 1e6, local / 1e6, sync / local,
                exchange / 1e3, 100 * exchange / sync, call / 1e3, exchangesPerStep);
    }

    private static MemorySegment fill(MemorySegment s, long seed) {
        SplittableRandom random = new SplittableRandom(seed);
        for (long i = 0; i < s.byteSize() / Float.BYTES; i++) {
            s.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) (3 + random.nextGaussian()));
        }
        return s;
    }

    private static double median(double[] values) {
        double[] v = values.clone();
        Arrays.sort(v);
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }

    /** The collective with a stopwatch: the time spent inside allgather, and the calls. */
    private static final class TimedCollective implements Collective {
        private final Collective inner;
        private long nanos;
        private long calls;
        // Each call's time, for the median: the transfer itself, without the waits for a late rank.
        private final long[] each = new long[1 << 16];

        TimedCollective(Collective inner) {
            this.inner = inner;
        }

        @Override
        public int rank() {
            return inner.rank();
        }

        @Override
        public int size() {
            return inner.size();
        }

        @Override
        public double[][] allgather(double[] values) {
            long start = System.nanoTime();
            try {
                return inner.allgather(values);
            } finally {
                long t = System.nanoTime() - start;
                nanos += t;
                each[(int) (calls++ & (each.length - 1))] = t;
            }
        }

        long takeNanos() {
            long n = nanos;
            nanos = 0;
            return n;
        }

        long calls() {
            return calls;
        }

        double medianCallNanos() {
            long[] t = Arrays.copyOf(each, (int) Math.min(calls, each.length));
            Arrays.sort(t);
            return t.length == 0 ? 0 : t[t.length / 2];
        }
    }
}
