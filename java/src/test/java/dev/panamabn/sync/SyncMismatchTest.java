package dev.panamabn.sync;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.CollectiveException;
import dev.panamabn.DataType;
import dev.panamabn.InProcessCollective;
import dev.panamabn.Layout;
import dev.panamabn.Shape;
import dev.panamabn.SyncBatchNorm;
import dev.panamabn.TensorSpec;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.List;
import java.util.function.BiFunction;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Ranks that disagree are caught on the first exchange: every rank throws, naming the field and
 * each rank's value, nothing changes, and no rank waits for ever.
 */
@Timeout(120)
class SyncMismatchTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);

    /** What one rank did in one scenario: its exception (or none) and its module's state after. */
    record Outcome(Throwable error, long counter, float runningMean0) {
    }

    /** One training forward per rank, with each rank's options and spec from the scenario. */
    private static List<Outcome> forwardOnEachRank(int k, BiFunction<Integer, Arena, Call> call) throws Exception {
        List<InProcessCollective> group = InProcessCollective.group(k, TIMEOUT);
        return InProcessCollectiveTest.onThreads(group, member -> {
            try (Arena arena = Arena.ofConfined()) {
                Call c = call.apply(member.rank(), arena);
                try (SyncBatchNorm bn = SyncBatchNorm.create(c.options, member)) {
                    if (!c.training) {
                        bn.eval();
                    }
                    Throwable error = null;
                    try {
                        bn.forward(c.x, c.spec, c.y);
                    } catch (RuntimeException e) {
                        error = e;
                    }
                    boolean running = bn.module().options().trackRunningStats();
                    float mean0 = running ? bn.module().runningMean().get(ValueLayout.JAVA_FLOAT, 0) : Float.NaN;
                    return new Outcome(error, running ? bn.module().numBatchesTracked() : 0, mean0);
                }
            }
        });
    }

    /** A rank's arguments: options, spec, buffers, mode. */
    record Call(BatchNormOptions options, TensorSpec spec, MemorySegment x, MemorySegment y, boolean training) {

        static Call of(Arena arena, BatchNormOptions options, TensorSpec spec, boolean training) {
            MemorySegment x = arena.allocate(spec.byteSize(), 4);
            for (long i = 0; i < x.byteSize() / 4 && spec.dataType() == DataType.FLOAT32; i++) {
                x.setAtIndex(ValueLayout.JAVA_FLOAT, i, 3 + (i % 7));
            }
            return new Call(options, spec, x, arena.allocate(spec.byteSize(), 4), training);
        }
    }

    private static TensorSpec spec(int n, int c) {
        return TensorSpec.of(Shape.of(n, c, 2, 3), Layout.CHANNELS_FIRST, DataType.FLOAT32);
    }

    /** Every rank threw an IllegalStateException with the text, and changed nothing. */
    private static void everyRankRefused(List<Outcome> outcomes, String... texts) {
        for (int r = 0; r < outcomes.size(); r++) {
            Outcome o = outcomes.get(r);
            IllegalStateException e = assertInstanceOf(IllegalStateException.class, o.error(), "rank " + r);
            for (String text : texts) {
                assertTrue(e.getMessage().contains(text), "rank " + r + ": " + e.getMessage());
            }
            assertEquals(0, o.counter(), "rank " + r + " counted a step");
            assertTrue(Float.isNaN(o.runningMean0()) || o.runningMean0() == 0, "rank " + r + " moved its running mean");
        }
    }

    @Test
    void channels() throws Exception {
        everyRankRefused(forwardOnEachRank(3, (r, arena) -> {
            int c = r == 1 ? 4 : 5;
            return Call.of(arena, BatchNormOptions.of(c), spec(2, c), true);
        }), "channels differ: rank 0: 5, rank 1: 4, rank 2: 5");
    }

    @Test
    void layout() throws Exception {
        everyRankRefused(forwardOnEachRank(2, (r, arena) -> Call.of(arena, BatchNormOptions.of(5),
                spec(2, 5).with(r == 1 ? Layout.CHANNELS_LAST : Layout.CHANNELS_FIRST), true)),
                "layout differ: rank 0: CHANNELS_FIRST, rank 1: CHANNELS_LAST");
    }

    @Test
    void elementType() throws Exception {
        everyRankRefused(forwardOnEachRank(2, (r, arena) -> Call.of(arena, BatchNormOptions.of(5),
                spec(2, 5).with(r == 0 ? DataType.BFLOAT16 : DataType.FLOAT32), true)),
                "element type differ: rank 0: BFLOAT16, rank 1: FLOAT32");
    }

    /** Training on one rank, eval with batch statistics (no running stats) on the other. */
    @Test
    void mode() throws Exception {
        BatchNormOptions noRunning = BatchNormOptions.of(5).withTrackRunningStats(false);
        everyRankRefused(forwardOnEachRank(2, (r, arena) -> Call.of(arena, noRunning, spec(3, 5), r == 0)),
                "mode differ: rank 0: training, rank 1: eval with batch statistics");
    }

    @Test
    void optionsAndSeveralFieldsAtOnce() throws Exception {
        everyRankRefused(forwardOnEachRank(2, (r, arena) -> Call.of(arena,
                        r == 0 ? BatchNormOptions.of(5) : BatchNormOptions.of(5).withEps(1e-3).withMomentum(0.2),
                        spec(2, 5), true)),
                "eps differ: rank 0: 1.0E-5, rank 1: 0.001", "momentum differ: rank 0: 0.1, rank 1: 0.2");
    }

    /**
     * Refused inputs (rank 2: x too small, rank 3: y read-only): those ranks throw their own
     * exception, the others name them; nothing changes and all stay in step.
     */
    @Test
    void refusedInputsOnSomeRanks() throws Exception {
        List<InProcessCollective> group = InProcessCollective.group(4, TIMEOUT);
        List<String> outcomes = InProcessCollectiveTest.onThreads(group, member -> {
            try (Arena arena = Arena.ofConfined();
                 SyncBatchNorm bn = SyncBatchNorm.create(BatchNormOptions.of(5), member)) {
                Call good = Call.of(arena, BatchNormOptions.of(5), spec(2, 5), true);
                MemorySegment x = member.rank() == 2 ? good.x().asSlice(0, 8) : good.x();
                MemorySegment y = member.rank() == 3 ? good.y().asReadOnly() : good.y();
                String first;
                try {
                    bn.forward(x, good.spec(), y);
                    first = "no error";
                } catch (RuntimeException e) {
                    first = e.getClass().getSimpleName() + ": " + e.getMessage();
                }
                long counter = bn.module().numBatchesTracked();
                bn.forward(good.x(), good.spec(), good.y()); // every rank again, in step
                bn.backward(good.x(), good.x(), good.spec(), arena.allocate(good.spec().byteSize(), 4));
                return first + " | counter " + counter + " then " + bn.module().numBatchesTracked();
            }
        });
        assertTrue(outcomes.get(2).startsWith("IllegalArgumentException: x is too small"), outcomes.get(2));
        assertTrue(outcomes.get(3).startsWith("IllegalArgumentException: y is read-only"), outcomes.get(3));
        for (int r = 0; r < 2; r++) {
            assertTrue(outcomes.get(r).startsWith("IllegalStateException: rank(s) [2, 3] refused their input in this forward"),
                    outcomes.get(r));
        }
        for (String o : outcomes) {
            assertTrue(o.endsWith("| counter 0 then 1"), o);
        }
    }

    /**
     * A NaN in one rank's shard: its statistics are refused there (ChannelStats holds finite
     * values only), and every other rank names that rank; nothing changes anywhere.
     */
    @Test
    void aNanInOneShard() throws Exception {
        List<Outcome> outcomes = forwardOnEachRank(3, (r, arena) -> {
            Call c = Call.of(arena, BatchNormOptions.of(5), spec(2, 5), true);
            if (r == 1) {
                c.x().setAtIndex(ValueLayout.JAVA_FLOAT, 7, Float.NaN);
            }
            return c;
        });
        assertInstanceOf(IllegalArgumentException.class, outcomes.get(1).error());
        for (int r : new int[] {0, 2}) {
            assertTrue(outcomes.get(r).error().getMessage().startsWith("rank(s) [1] refused their input"),
                    outcomes.get(r).error().getMessage());
        }
        for (Outcome o : outcomes) {
            assertEquals(0, o.counter());
            assertEquals(0, o.runningMean0());
        }
    }

    /** Layers called in different orders on different ranks. */
    @Test
    void layersOutOfOrder() throws Exception {
        List<InProcessCollective> group = InProcessCollective.group(2, TIMEOUT);
        List<Throwable> errors = InProcessCollectiveTest.onThreads(group, member -> {
            try (Arena arena = Arena.ofConfined();
                 SyncBatchNorm first = SyncBatchNorm.create(BatchNormOptions.of(5), member);
                 SyncBatchNorm second = SyncBatchNorm.create(BatchNormOptions.of(5), member)) {
                Call c = Call.of(arena, BatchNormOptions.of(5), spec(2, 5), true);
                try {
                    (member.rank() == 0 ? first : second).forward(c.x(), c.spec(), c.y());
                    return null;
                } catch (RuntimeException e) {
                    return e;
                }
            }
        });
        for (Throwable e : errors) {
            assertInstanceOf(IllegalStateException.class, e);
            assertTrue(e.getMessage().contains("different layers: rank 0: layer 0, rank 1: layer 1"), e.getMessage());
        }
    }

    /**
     * One rank in eval mode with running statistics exchanges nothing: the training rank cannot
     * tell it from a slow one, and gives up at the collective's timeout, naming it; the module then
     * refuses further passes.
     */
    @Test
    void aRankThatDoesNotExchangeTimesOut() throws Exception {
        List<InProcessCollective> group = InProcessCollective.group(2, Duration.ofMillis(500));
        List<String> outcomes = InProcessCollectiveTest.onThreads(group, member -> {
            try (Arena arena = Arena.ofConfined();
                 SyncBatchNorm bn = SyncBatchNorm.create(BatchNormOptions.of(5), member)) {
                Call c = Call.of(arena, BatchNormOptions.of(5), spec(2, 5), true);
                if (member.rank() == 1) {
                    bn.eval();
                }
                try {
                    bn.forward(c.x(), c.spec(), c.y());
                } catch (CollectiveException e) {
                    String again;
                    try {
                        bn.forward(c.x(), c.spec(), c.y());
                        again = "no error";
                    } catch (IllegalStateException refused) {
                        again = refused.getMessage();
                    }
                    return e.getMessage() + " | " + again;
                }
                return "no error";
            }
        });
        assertEquals("no error", outcomes.get(1));
        assertTrue(outcomes.get(0).contains("for rank(s) [1]"), outcomes.get(0));
        assertTrue(outcomes.get(0).contains("refuses further passes"), outcomes.get(0));
    }
}
