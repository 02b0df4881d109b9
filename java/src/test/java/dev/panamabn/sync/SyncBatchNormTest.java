package dev.panamabn.sync;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.Collective;
import dev.panamabn.InProcessCollective;
import dev.panamabn.Layout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * SyncBatchNorm over k in-process replicas equals one BatchNorm on the whole batch, step after
 * step, within float rounding ({@link Agreement}), and is bit-identical across ranks and runs.
 */
@Timeout(300)
class SyncBatchNormTest {

    private static final BatchNormOptions OPTIONS = BatchNormOptions.of(6);

    @Test
    void evenShards() throws Exception {
        for (int k = 1; k <= 4; k++) {
            int[] shards = new int[k];
            Arrays.fill(shards, 12 / k);
            check(new Workload(OPTIONS, 3, 5, shards, 3, Layout.CHANNELS_FIRST, 11 + k));
        }
    }

    @Test
    void unevenShardsWithAnEmptyOne() throws Exception {
        check(new Workload(OPTIONS, 3, 5, new int[] {2, 3}, 3, Layout.CHANNELS_FIRST, 21));
        check(new Workload(OPTIONS, 3, 5, new int[] {4, 0, 1}, 3, Layout.CHANNELS_FIRST, 22));
        check(new Workload(OPTIONS, 3, 5, new int[] {5, 0, 4, 3}, 3, Layout.CHANNELS_FIRST, 23));
    }

    @Test
    void otherOptionsAndChannelsLast() throws Exception {
        check(new Workload(OPTIONS, 2, 7, new int[] {3, 1, 4}, 3, Layout.CHANNELS_LAST, 31));
        check(new Workload(OPTIONS.withCumulativeAverage().withAffine(false), 4, 1, new int[] {2, 2, 0, 3}, 4,
                Layout.CHANNELS_FIRST, 32));
        check(new Workload(OPTIONS.withTrackRunningStats(false).withEps(1e-3), 1, 9, new int[] {1, 5}, 2,
                Layout.CHANNELS_FIRST, 33));
        check(new Workload(OPTIONS.withRunningVariance(BatchNormOptions.RunningVariance.BIASED), 3, 3,
                new int[] {2, 2, 2, 2}, 3, Layout.CHANNELS_FIRST, 34));
    }

    /** Same run twice: every output of every rank has the same bits. */
    @Test
    void repeatedRunsAreBitIdentical() throws Exception {
        Workload w = new Workload(OPTIONS, 3, 5, new int[] {4, 0, 3, 5}, 3, Layout.CHANNELS_FIRST, 41);
        List<Replica.Result> first = runRanks(w, null);
        List<Replica.Result> second = runRanks(w, null);
        for (int r = 0; r < w.ranks(); r++) {
            assertSameBits(first.get(r), second.get(r), "rank " + r);
        }
    }

    /** Exactly one exchange per training pass, none in eval with running statistics. */
    @Test
    void oneExchangePerPassNoneInEval() throws Exception {
        Workload w = new Workload(OPTIONS, 3, 5, new int[] {3, 3}, 4, Layout.CHANNELS_FIRST, 51);
        AtomicInteger calls = new AtomicInteger();
        runRanks(w, calls);
        assertEquals(2 * w.steps() * 2, calls.get(), "allgather calls of 2 ranks over " + w.steps() + " steps");
    }

    /** Runs the workload on its ranks and checks everything against the whole-batch run. */
    private static void check(Workload w) throws Exception {
        List<Replica.Result> ranks = runRanks(w, null);
        Replica.Result whole = Replica.whole(w);
        Agreement exact = new Agreement();
        exact.compareWithReference(w, whole);
        Agreement agreement = new Agreement();
        for (int r = 0; r < w.ranks(); r++) {
            agreement.compareShard(w, r, ranks.get(r), whole);
        }
        if (w.options().affine()) {
            agreement.compareGradients(ranks.stream().map(Replica.Result::weightGrad).toList(),
                    ranks.stream().map(Replica.Result::biasGrad).toList(), whole);
        }
        // Every rank's running statistics have the same bits, step by step.
        for (int r = 1; r < w.ranks(); r++) {
            for (int t = 0; t < ranks.get(r).runningMean().size(); t++) {
                assertArrayEquals(ranks.get(0).runningMean().get(t), ranks.get(r).runningMean().get(t),
                        "running mean of rank " + r + " after step " + t);
                assertArrayEquals(ranks.get(0).runningVar().get(t), ranks.get(r).runningVar().get(t),
                        "running var of rank " + r + " after step " + t);
            }
        }
        System.out.println("SyncBatchNormTest " + Arrays.toString(w.shardSizes()) + " " + w.layout()
                + ": against one BatchNorm on the whole batch: " + agreement.summary()
                + "; that BatchNorm against float64: " + exact.summary());
        assertTrue(exact.ok(), String.join("\n", exact.failures));
        assertTrue(agreement.ok(), String.join("\n", agreement.failures));
    }

    /** The workload on one thread per rank, over an in-process group (counting exchanges when asked). */
    static List<Replica.Result> runRanks(Workload w, AtomicInteger calls) throws Exception {
        List<InProcessCollective> group = InProcessCollective.group(w.ranks(), Duration.ofSeconds(60));
        List<Collective> members = new ArrayList<>();
        for (InProcessCollective member : group) {
            members.add(calls == null ? member : counting(member, calls));
        }
        return InProcessCollectiveTest.onThreads(group, m -> Replica.sync(w, m.rank(), members.get(m.rank())));
    }

    /** A collective that counts its calls: any transport plugs in through the interface. */
    static Collective counting(Collective inner, AtomicInteger calls) {
        return new Collective() {
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
                calls.incrementAndGet();
                return inner.allgather(values);
            }
        };
    }

    private static void assertSameBits(Replica.Result a, Replica.Result b, String what) {
        for (int t = 0; t < a.y().size(); t++) {
            assertArrayEquals(a.y().get(t), b.y().get(t), what + " y step " + t);
            assertArrayEquals(a.dx().get(t), b.dx().get(t), what + " dx step " + t);
            assertArrayEquals(a.runningMean().get(t), b.runningMean().get(t), what + " running mean step " + t);
            assertArrayEquals(a.runningVar().get(t), b.runningVar().get(t), what + " running var step " + t);
        }
        assertArrayEquals(a.weightGrad(), b.weightGrad(), what + " weight grad");
        assertArrayEquals(a.biasGrad(), b.biasGrad(), what + " bias grad");
        assertArrayEquals(a.evalY(), b.evalY(), what + " eval y");
    }
}
