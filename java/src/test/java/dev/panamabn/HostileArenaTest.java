package dev.panamabn;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.LongFunction;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The {@code Arena} overloads with caller-written {@code Arena} implementations that return
 * whatever they like, throw, or call back into the module: every segment an arena returns gets
 * the checks a caller's own output gets, a rejected call changes nothing, and the module never
 * holds its lock while the caller's code runs.
 */
class HostileArenaTest {

    private static final Shape SHAPE = Shape.of(4, 3, 5);
    private static final int COUNT = (int) SHAPE.elementCount();
    private static final long BYTES = COUNT * 4L;
    private static final float SENTINEL = -3.5f;

    private Arena arena;
    private BatchNorm bn;
    private MemorySegment x;
    private MemorySegment dy;

    /** An arena whose allocate is the test's; scope and close are those of a real arena. */
    private static final class ScriptedArena implements Arena {
        private final Arena backing = Arena.ofShared();
        private final LongFunction<MemorySegment> allocate;
        final AtomicInteger allocations = new AtomicInteger();
        final List<Long> alignments = new CopyOnWriteArrayList<>();

        ScriptedArena(LongFunction<MemorySegment> allocate) {
            this.allocate = allocate;
        }

        @Override
        public MemorySegment allocate(long byteSize, long byteAlignment) {
            allocations.incrementAndGet();
            alignments.add(byteAlignment);
            return allocate.apply(byteSize);
        }

        @Override
        public MemorySegment.Scope scope() {
            return backing.scope();
        }

        @Override
        public void close() {
            backing.close();
        }
    }

    @BeforeEach
    void setUp() {
        // Shared: the calls that guard against a deadlock run on JUnit's timeout thread.
        arena = Arena.ofShared();
        SplittableRandom random = new SplittableRandom(11);
        x = Tensors.segment(arena, Tensors.gaussian(random, COUNT, 2));
        dy = Tensors.segment(arena, Tensors.gaussian(random, COUNT, 1));
        // The cumulative average makes the counter part of every running-statistics update.
        bn = BatchNorm.create(BatchNormOptions.of(3).withCumulativeAverage());
        bn.forward(x, SHAPE, arena);
        bn.backward(dy, x, SHAPE, arena);
        bn.forward(x, SHAPE, arena);
    }

    /** Closes on a helper thread: a module left locked by a failed test must not hang the suite. */
    @AfterEach
    void tearDown() throws InterruptedException {
        Thread closer = new Thread(bn::close);
        closer.setDaemon(true);
        closer.start();
        closer.join(TimeUnit.SECONDS.toMillis(10));
        if (!closer.isAlive()) {
            arena.close();
        }
    }

    @Test
    void outputsAreAskedForOnACacheLine() {
        ScriptedArena recording = new ScriptedArena(bytes -> arena.allocate(bytes, 64));
        try (recording) {
            bn.forward(x, SHAPE, recording);
            bn.backward(dy, x, SHAPE, recording);
            assertEquals(List.of(64L, 64L), recording.alignments);
        }
    }

    @Test
    void aSegmentTooSmall() {
        // A 4-byte view at the start of a full-size block: a write past the view lands in the block.
        MemorySegment block = filled(BYTES);
        ScriptedArena tiny = new ScriptedArena(bytes -> block.asSlice(0, 4));
        rejected(IllegalArgumentException.class, "y is too small", () -> bn.forward(x, SHAPE, tiny), block);
        rejected(IllegalArgumentException.class, "dx is too small", () -> bn.backward(dy, x, SHAPE, tiny), block);
    }

    @Test
    void aSegmentOverlappingAnInput() {
        MemorySegment block = arena.allocate(2 * BYTES, 4);
        MemorySegment in = block.asSlice(0, BYTES);
        MemorySegment.copy(x, 0, in, 0, BYTES);
        ScriptedArena overlapping = new ScriptedArena(bytes -> block.asSlice(8, bytes));
        rejected(IllegalArgumentException.class, "y overlaps x", () -> bn.forward(in, SHAPE, overlapping), block);
        rejected(IllegalArgumentException.class, "dx overlaps dy", () -> bn.backward(in, x, SHAPE, overlapping), block);
        rejected(IllegalArgumentException.class, "dx overlaps x", () -> bn.backward(dy, in, SHAPE, overlapping), block);
    }

    @Test
    void theModulesOwnBuffers() {
        Shape one = Shape.of(1, 3);
        MemorySegment x3 = Tensors.segment(arena, new float[] {1, 2, 3});
        bn.eval();
        bn.forward(x3, one, filled(12));
        rejected(IllegalArgumentException.class, "y overlaps the module's running mean",
                () -> bn.forward(x3, one, new ScriptedArena(bytes -> bn.runningMean())));
        rejected(IllegalArgumentException.class, "y overlaps the module's weight",
                () -> bn.forward(x3, one, new ScriptedArena(bytes -> bn.weight())));
        rejected(IllegalArgumentException.class, "dx overlaps the module's weight gradient",
                () -> bn.backward(x3, x3, one, new ScriptedArena(bytes -> bn.weightGrad())));
        rejected(IllegalArgumentException.class, "dx overlaps the module's running variance",
                () -> bn.backward(x3, x3, one, new ScriptedArena(bytes -> bn.runningVar())));
    }

    @Test
    void aHeapSegment() {
        ScriptedArena heap = new ScriptedArena(bytes -> MemorySegment.ofArray(new float[(int) (bytes / 4)]));
        rejected(IllegalArgumentException.class, "y must be a native segment", () -> bn.forward(x, SHAPE, heap));
        rejected(IllegalArgumentException.class, "dx must be a native segment", () -> bn.backward(dy, x, SHAPE, heap));
    }

    @Test
    void aReadOnlyOrClosedSegment() {
        MemorySegment block = filled(BYTES);
        ScriptedArena readOnly = new ScriptedArena(bytes -> block.asReadOnly());
        rejected(IllegalArgumentException.class, "y is read-only", () -> bn.forward(x, SHAPE, readOnly), block);
        rejected(IllegalArgumentException.class, "dx is read-only", () -> bn.backward(dy, x, SHAPE, readOnly), block);
        Arena gone = Arena.ofConfined();
        MemorySegment dead = gone.allocate(BYTES, 4);
        gone.close();
        ScriptedArena closed = new ScriptedArena(bytes -> dead);
        rejected(IllegalStateException.class, "y cannot be used", () -> bn.forward(x, SHAPE, closed));
        rejected(IllegalStateException.class, "dx cannot be used", () -> bn.backward(dy, x, SHAPE, closed));
    }

    @Test
    void aSegmentOfAnotherThread() throws Exception {
        ExecutorService owner = Executors.newSingleThreadExecutor();
        try {
            Arena[] foreignArena = new Arena[1];
            MemorySegment foreign = owner.submit(() -> {
                foreignArena[0] = Arena.ofConfined();
                return foreignArena[0].allocate(BYTES, 4);
            }).get();
            ScriptedArena other = new ScriptedArena(bytes -> foreign);
            rejected(WrongThreadException.class, "y is confined to another thread", () -> bn.forward(x, SHAPE, other));
            rejected(WrongThreadException.class, "dx is confined to another thread", () -> bn.backward(dy, x, SHAPE, other));
            owner.submit(() -> foreignArena[0].close()).get();
        } finally {
            owner.shutdown();
        }
    }

    @Test
    void anArenaThatThrows() {
        IllegalStateException refusal = new IllegalStateException("arena refuses");
        ScriptedArena throwing = new ScriptedArena(bytes -> {
            throw refusal;
        });
        assertSame(refusal, rejected(IllegalStateException.class, "arena refuses", () -> bn.forward(x, SHAPE, throwing)));
        assertSame(refusal, rejected(IllegalStateException.class, "arena refuses", () -> bn.backward(dy, x, SHAPE, throwing)));
    }

    /** allocate reads the module: no deadlock, and the call then runs normally. */
    @Test
    void anArenaThatCallsBackIntoTheModule() {
        long counter = bn.numBatchesTracked();
        long[] seen = new long[2];
        ScriptedArena reentrant = new ScriptedArena(bytes -> {
            seen[0] = bn.numBatchesTracked();
            seen[1] = bn.runningMean().byteSize();
            return arena.allocate(bytes, 4);
        });
        MemorySegment y = assertTimeoutPreemptively(Duration.ofSeconds(20), () -> bn.forward(x, SHAPE, reentrant),
                "forward deadlocked when its arena read the module");
        assertEquals(counter, seen[0]);
        assertEquals(12, seen[1]);
        assertEquals(counter + 1, bn.numBatchesTracked());
        assertEquals(BYTES, y.byteSize());
        MemorySegment dx = assertTimeoutPreemptively(Duration.ofSeconds(20), () -> bn.backward(dy, x, SHAPE, reentrant),
                "backward deadlocked when its arena read the module");
        assertEquals(BYTES, dx.byteSize());
    }

    /** Another thread closes the module while the arena allocates: close returns, the call then refuses. */
    @Test
    void theModuleClosedWhileTheArenaAllocates() {
        boolean[] closedInTime = new boolean[1];
        MemorySegment block = filled(BYTES);
        ScriptedArena slow = new ScriptedArena(bytes -> {
            Thread closer = new Thread(bn::close);
            closer.setDaemon(true);
            closer.start();
            try {
                closer.join(TimeUnit.SECONDS.toMillis(10));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            closedInTime[0] = !closer.isAlive();
            return block;
        });
        var e = assertThrows(IllegalStateException.class, () -> bn.forward(x, SHAPE, slow));
        assertTrue(closedInTime[0], "close() from another thread waited for the caller's arena");
        assertEquals("this BatchNorm is closed", e.getMessage());
        assertAllSentinel(block);
    }

    /** The arena closes the module itself: the call refuses, the segment stays untouched. */
    @Test
    void anArenaThatClosesTheModule() {
        MemorySegment block = filled(BYTES);
        ScriptedArena closing = new ScriptedArena(bytes -> {
            bn.close();
            return block;
        });
        var e = assertTimeoutPreemptively(Duration.ofSeconds(20),
                () -> assertThrows(IllegalStateException.class, () -> bn.forward(x, SHAPE, closing)));
        assertEquals("this BatchNorm is closed", e.getMessage());
        assertAllSentinel(block);
    }

    // ---- helpers ----

    private <T extends Throwable> T rejected(Class<T> type, String messagePart, Executable call,
                                             MemorySegment... buffers) {
        MemorySegment[] watched = new MemorySegment[buffers.length + 2];
        watched[0] = x;
        watched[1] = dy;
        System.arraycopy(buffers, 0, watched, 2, buffers.length);
        String before = Snapshot.of(bn, watched);
        T e = assertThrows(type, call);
        String message = String.valueOf(e.getMessage());
        assertTrue(message.contains(messagePart), "message \"" + message + "\" lacks \"" + messagePart + "\"");
        Snapshot.assertUnchanged(before, bn, message, watched);
        return e;
    }

    private MemorySegment filled(long bytes) {
        MemorySegment s = arena.allocate(bytes, 4);
        for (long i = 0; i < bytes / 4; i++) {
            s.setAtIndex(ValueLayout.JAVA_FLOAT, i, SENTINEL);
        }
        return s;
    }

    private static void assertAllSentinel(MemorySegment s) {
        for (long i = 0; i < s.byteSize() / 4; i++) {
            assertEquals(SENTINEL, s.getAtIndex(ValueLayout.JAVA_FLOAT, i), "output changed at " + i);
        }
    }
}
