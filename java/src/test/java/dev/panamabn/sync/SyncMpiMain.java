package dev.panamabn.sync;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.CollectiveException;
import dev.panamabn.Layout;
import dev.panamabn.MpiCollective;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import dev.panamabn.SyncBatchNorm;
import dev.panamabn.TensorSpec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * One rank of the MPI check, run by {@link SyncMpiTest} as {@code mpirun -np 4 java ... SyncMpiMain
 * [mode]}. Every rank computes the one-process reference on the whole batch itself and compares
 * its shard's results with it, then the ranks compare their running statistics bit for bit and
 * their summed gradients. Prints {@code rank R ok: ...} and exits 0, or prints what failed and
 * exits 1.
 *
 * <p>Modes that check failure handling: {@code die} (rank 2 exits with status 3 while the others
 * wait in an exchange: mpirun must end the job) and {@code stall} (rank 1 sleeps instead of
 * exchanging: the others must give up at the 2 s timeout and end the job).
 */
public final class SyncMpiMain {

    private SyncMpiMain() {
    }

    public static void main(String[] args) throws Exception {
        String mode = args.length > 0 ? args[0] : "check";
        Parallelism.setThreads(1);
        Duration timeout = mode.equals("stall") ? Duration.ofSeconds(2) : Duration.ofSeconds(60);
        try (MpiCollective world = MpiCollective.world(timeout)) {
            int rank = world.rank();
            switch (mode) {
                case "die" -> {
                    world.allgather(new double[] {rank});
                    if (rank == 2) {
                        System.out.println("rank 2 exits with status 3");
                        System.out.flush();
                        Runtime.getRuntime().halt(3);
                    }
                    world.allgather(new double[] {rank});
                    System.out.println("rank " + rank + ": the exchange completed without rank 2");
                    Runtime.getRuntime().halt(0);
                }
                case "stall" -> {
                    world.allgather(new double[] {rank});
                    if (rank == 1) {
                        Thread.sleep(60_000);
                    }
                    try {
                        world.allgather(new double[] {rank});
                    } catch (CollectiveException e) {
                        System.out.println("rank " + rank + " gave up: " + e.getMessage());
                        System.out.flush();
                        Runtime.getRuntime().halt(4);
                    }
                    Runtime.getRuntime().halt(0);
                }
                default -> check(world, rank);
            }
        } catch (Throwable e) {
            e.printStackTrace(System.out);
            System.out.flush();
            MpiCollective.abort(1);
        }
    }

    private static void check(MpiCollective world, int rank) {
        List<String> failures = new ArrayList<>();
        int k = world.size();

        // The collective itself: rank order, and a mismatch seen by every rank.
        double[][] all = world.allgather(new double[] {rank + 0.5, -rank});
        for (int r = 0; r < k; r++) {
            if (all[r][0] != r + 0.5 || all[r][1] != -r) {
                failures.add("allgather row " + r + ": " + Arrays.toString(all[r]));
            }
        }
        try {
            world.allgather(new double[rank == 1 ? 3 : 2]);
            failures.add("no error for different lengths");
        } catch (CollectiveException e) {
            if (!e.isLengthMismatch() || e.lengths()[1] != 3 || e.lengths()[0] != 2) {
                failures.add("length mismatch: " + e.getMessage());
            }
        }

        // A caller's communicator by its Fortran handle: Open MPI's MPI_COMM_WORLD is 0 and
        // MPI_COMM_SELF is 1.
        try (MpiCollective again = MpiCollective.of(0, Duration.ofSeconds(60));
             MpiCollective self = MpiCollective.of(1, Duration.ofSeconds(60))) {
            if (again.rank() != rank || again.size() != k || again.allgather(new double[] {rank})[k - 1][0] != k - 1) {
                failures.add("MpiCollective.of(MPI_COMM_WORLD): " + again);
            }
            if (self.rank() != 0 || self.size() != 1 || self.allgather(new double[] {rank})[0][0] != rank) {
                failures.add("MpiCollective.of(MPI_COMM_SELF): " + self);
            }
        }
        try {
            MpiCollective.of(123456, Duration.ofSeconds(1)).close();
            failures.add("no error for a handle that names no communicator");
        } catch (IllegalArgumentException expected) {
            // the message names the handle
        }

        Agreement agreement = new Agreement();
        BatchNormOptions options = BatchNormOptions.of(6);
        int[][] splits = {evenSplit(k, 3), unevenSplit(k)};
        for (int[] shards : splits) {
            Workload w = new Workload(options, 3, 5, shards, 3, Layout.CHANNELS_FIRST, 7 + shards[0]);
            Replica.Result mine = Replica.sync(w, rank, world);
            Replica.Result whole = Replica.whole(w);
            agreement.compareShard(w, rank, mine, whole);
            List<float[]> weightGrads = gatherFloats(world, mine.weightGrad());
            List<float[]> biasGrads = gatherFloats(world, mine.biasGrad());
            agreement.compareGradients(weightGrads, biasGrads, whole);
            // The same bits on every rank.
            int last = w.steps() - 1;
            List<float[]> means = gatherFloats(world, mine.runningMean().get(last));
            List<float[]> vars = gatherFloats(world, mine.runningVar().get(last));
            for (int r = 1; r < k; r++) {
                if (!Arrays.equals(means.get(0), means.get(r)) || !Arrays.equals(vars.get(0), vars.get(r))) {
                    failures.add("running statistics of rank " + r + " differ from rank 0's in their bits");
                }
            }
            // And on a second run.
            Replica.Result again = Replica.sync(w, rank, world);
            for (int t = 0; t < w.steps(); t++) {
                if (!Arrays.equals(mine.y().get(t), again.y().get(t)) || !Arrays.equals(mine.dx().get(t), again.dx().get(t))) {
                    failures.add("a second run of " + Arrays.toString(shards) + " differs at step " + t);
                }
            }
        }
        failures.addAll(agreement.failures);

        // Ranks that disagree on channels: every rank throws, naming each rank's count.
        int channels = rank == k - 1 ? 4 : 6;
        try (Arena arena = Arena.ofConfined();
             SyncBatchNorm bn = SyncBatchNorm.create(BatchNormOptions.of(channels), world)) {
            TensorSpec spec = Shape.of(2, channels, 3);
            MemorySegment x = arena.allocate(spec.byteSize(), 4);
            bn.forward(x, spec, arena.allocate(spec.byteSize(), 4));
            failures.add("no error for different channel counts");
        } catch (IllegalStateException e) {
            String expected = "channels differ: rank 0: 6";
            if (!e.getMessage().contains(expected) || !e.getMessage().contains("rank " + (k - 1) + ": 4")) {
                failures.add("channel mismatch message: " + e.getMessage());
            }
        }

        if (failures.isEmpty()) {
            System.out.println("rank " + rank + " ok: " + agreement.summary());
        } else {
            System.out.println("rank " + rank + " FAILED:\n  " + String.join("\n  ", failures));
            System.out.flush();
            MpiCollective.abort(1);
        }
    }

    private static int[] evenSplit(int k, int each) {
        int[] shards = new int[k];
        Arrays.fill(shards, each);
        return shards;
    }

    /** Uneven, with an empty shard on rank 1: 5, 0, 4, 3, 5, 0, 4, 3, ... */
    private static int[] unevenSplit(int k) {
        int[] pattern = {5, 0, 4, 3};
        int[] shards = new int[k];
        for (int r = 0; r < k; r++) {
            shards[r] = pattern[r % pattern.length];
        }
        if (k == 1) {
            shards[0] = 3;
        }
        return shards;
    }

    private static List<float[]> gatherFloats(MpiCollective world, float[] values) {
        double[] d = new double[values.length];
        for (int i = 0; i < d.length; i++) {
            d[i] = values[i];
        }
        List<float[]> out = new ArrayList<>();
        for (double[] row : world.allgather(d)) {
            float[] f = new float[row.length];
            for (int i = 0; i < f.length; i++) {
                f[i] = (float) row[i];
            }
            out.add(f);
        }
        return out;
    }
}
