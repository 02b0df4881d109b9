package dev.panamabn;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.OptionalDouble;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every kind of bad input: the exception type, a message that names the argument and what was
 * expected, and a module and outputs left exactly as they were (counter, running statistics,
 * parameters, gradients, mode, outputs).
 */
class BadInputTest {

    private static final Shape SHAPE = Shape.of(2, 3, 2, 2);
    private static final int COUNT = (int) SHAPE.elementCount();
    private static final long BYTES = COUNT * 4L;
    private static final float SENTINEL = 7.25f;

    private Arena arena;
    private BatchNorm bn;
    private MemorySegment x;
    private MemorySegment dy;
    private MemorySegment y;
    private MemorySegment dx;
    private float[] xa;
    private float[] dya;
    private float[] ya;
    private float[] dxa;

    @BeforeEach
    void setUp() {
        arena = Arena.ofConfined();
        SplittableRandom random = new SplittableRandom(5);
        xa = Tensors.toFloat(Tensors.gaussian(random, COUNT, 3));
        dya = Tensors.toFloat(Tensors.gaussian(random, COUNT, 1));
        x = Tensors.segment(arena, xa);
        dy = Tensors.segment(arena, dya);
        bn = BatchNorm.create(BatchNormOptions.of(3).withMomentum(0.2));
        Tensors.write(bn.weight(), new double[] {0.5, 1.5, -2});
        Tensors.write(bn.bias(), new double[] {0.25, -1, 3});
        // A state worth preserving: moved running statistics, non-zero gradients, a forward to
        // differentiate.
        bn.forward(x, SHAPE, arena);
        bn.backward(dy, x, SHAPE, arena);
        bn.forward(x, SHAPE, arena);
        y = filled(BYTES);
        dx = filled(BYTES);
        ya = new float[COUNT];
        dxa = new float[COUNT];
        Arrays.fill(ya, SENTINEL);
        Arrays.fill(dxa, SENTINEL);
    }

    @AfterEach
    void tearDown() {
        bn.close();
        arena.close();
    }

    // ---- null arguments ----

    @Test
    void nullArguments() {
        rejected(NullPointerException.class, "x", () -> bn.forward((MemorySegment) null, SHAPE, y));
        rejected(NullPointerException.class, "spec", () -> bn.forward(x, null, y));
        rejected(NullPointerException.class, "y", () -> bn.forward(x, SHAPE, (MemorySegment) null));
        rejected(NullPointerException.class, "arena", () -> bn.forward(x, SHAPE, (Arena) null));
        rejected(NullPointerException.class, "x", () -> bn.forward((float[]) null, SHAPE, ya));
        rejected(NullPointerException.class, "y", () -> bn.forward(xa, SHAPE, (float[]) null));
        rejected(NullPointerException.class, "dy", () -> bn.backward((MemorySegment) null, x, SHAPE, dx));
        rejected(NullPointerException.class, "x", () -> bn.backward(dy, null, SHAPE, dx));
        rejected(NullPointerException.class, "spec", () -> bn.backward(dy, x, null, dx));
        rejected(NullPointerException.class, "dx", () -> bn.backward(dy, x, SHAPE, (MemorySegment) null));
        rejected(NullPointerException.class, "arena", () -> bn.backward(dy, x, SHAPE, (Arena) null));
        rejected(NullPointerException.class, "dx", () -> bn.backward(dya, xa, SHAPE, (float[]) null));
        rejected(NullPointerException.class, "options", () -> BatchNorm.create(null));
        rejected(NullPointerException.class, "dims", () -> Shape.of((long[]) null));
    }

    // ---- shapes ----

    @Test
    void wrongRank() {
        rejected(IllegalArgumentException.class, "rank 2 to 5", () -> Shape.of(24));
        rejected(IllegalArgumentException.class, "got rank 6: [1, 3, 1, 2, 2, 1]", () -> Shape.of(1, 3, 1, 2, 2, 1));
    }

    @Test
    void channelCountOtherThanNumFeatures() {
        rejected(IllegalArgumentException.class, "[2, 4, 3] has 4 channels (dimension 1) but the module has numFeatures=3",
                () -> bn.forward(x, Shape.of(2, 4, 3), y));
        rejected(IllegalArgumentException.class, "numFeatures=3", () -> bn.forward(xa, Shape.of(4, 2, 3), ya));
        rejected(IllegalArgumentException.class, "numFeatures=3", () -> bn.backward(dy, x, Shape.of(1, 24), dx));
    }

    @Test
    void zeroAndNegativeDimensions() {
        rejected(IllegalArgumentException.class, "dimension 2 must be >= 0, got -2", () -> Shape.of(2, 3, -2, 2));
        rejected(IllegalArgumentException.class, "dimension 0 must be >= 0, got -1", () -> Shape.of(-1, 3));
        rejected(IllegalArgumentException.class, "channel count (dimension 1) must be >= 1, got 0", () -> Shape.of(4, 0, 2));
    }

    @Test
    void elementCountOverflow() {
        rejected(IllegalArgumentException.class, "overflows", () -> Shape.of(1L << 40, 3, 1L << 22));
        rejected(IllegalArgumentException.class, "overflows", () -> Shape.of(0, 3, 1L << 40, 1L << 40));
        rejected(IllegalArgumentException.class, "overflows", () -> Shape.of(Long.MAX_VALUE / 4, 3));
    }

    @Test
    void oneValuePerChannelInTraining() {
        MemorySegment x3 = Tensors.segment(arena, new float[] {1, 2, 3});
        MemorySegment y3 = filled(12);
        var e = rejected(IllegalArgumentException.class, "", () -> bn.forward(x3, Shape.of(1, 3, 1, 1), y3));
        assertEquals("Expected more than 1 value per channel when training, got input size [1, 3, 1, 1]", e.getMessage());
        rejected(IllegalArgumentException.class, "got input size [1, 3]", () -> bn.forward(new float[3], Shape.of(1, 3), new float[3]));
        rejected(IllegalArgumentException.class, "got input size [1, 3, 1]", () -> bn.forward(x3, Shape.of(1, 3, 1), arena));
        assertAllSentinel(y3);
    }

    // ---- segments and arrays ----

    @Test
    void segmentsTooSmall() {
        MemorySegment small = filled(BYTES - 4);
        rejected(IllegalArgumentException.class, "x is too small: shape [2, 3, 2, 2] needs 96 bytes, x has 92",
                () -> bn.forward(small, SHAPE, y));
        rejected(IllegalArgumentException.class, "y is too small", () -> bn.forward(x, SHAPE, small));
        rejected(IllegalArgumentException.class, "dy is too small", () -> bn.backward(small, x, SHAPE, dx));
        rejected(IllegalArgumentException.class, "dx is too small", () -> bn.backward(dy, x, SHAPE, small));
        rejected(IllegalArgumentException.class, "x is too small: shape [2, 3, 2, 2] needs 24 floats, x has 23",
                () -> bn.forward(new float[COUNT - 1], SHAPE, ya));
        rejected(IllegalArgumentException.class, "dx is too small", () -> bn.backward(dya, xa, SHAPE, new float[1]));
    }

    @Test
    void readOnlyOutputs() {
        rejected(IllegalArgumentException.class, "y is read-only", () -> bn.forward(x, SHAPE, y.asReadOnly()));
        rejected(IllegalArgumentException.class, "dx is read-only", () -> bn.backward(dy, x, SHAPE, dx.asReadOnly()));
    }

    @Test
    void closedSegments() {
        Arena closed = Arena.ofConfined();
        MemorySegment gone = closed.allocate(BYTES, 4);
        closed.close();
        rejected(IllegalStateException.class, "x cannot be used: the arena of its memory is closed", () -> bn.forward(gone, SHAPE, y));
        rejected(IllegalStateException.class, "y cannot be used", () -> bn.forward(x, SHAPE, gone));
        rejected(IllegalStateException.class, "dy cannot be used", () -> bn.backward(gone, x, SHAPE, dx));
        rejected(IllegalStateException.class, "dx cannot be used", () -> bn.backward(dy, x, SHAPE, gone));
        Arena closedOut = Arena.ofConfined();
        closedOut.close();
        rejected(IllegalStateException.class, "arena is closed: y cannot be allocated in it",
                () -> bn.forward(x, SHAPE, closedOut));
        rejected(IllegalStateException.class, "arena is closed: dx cannot be allocated in it",
                () -> bn.backward(dy, x, SHAPE, closedOut));
    }

    @Test
    void segmentsOfAnotherThread() throws Exception {
        ExecutorService owner = Executors.newSingleThreadExecutor();
        try {
            Arena[] foreignArena = new Arena[1];
            MemorySegment foreign = owner.submit(() -> {
                foreignArena[0] = Arena.ofConfined();
                return foreignArena[0].allocate(BYTES, 4);
            }).get();
            rejected(WrongThreadException.class, "x is confined to another thread", () -> bn.forward(foreign, SHAPE, y));
            rejected(WrongThreadException.class, "y is confined to another thread", () -> bn.forward(x, SHAPE, foreign));
            owner.submit(() -> foreignArena[0].close()).get();
        } finally {
            owner.shutdown();
        }
    }

    @Test
    void misalignedSegments() {
        MemorySegment block = arena.allocate(BYTES + 8, 8);
        MemorySegment odd = block.asSlice(2, BYTES);
        rejected(IllegalArgumentException.class, "x must be aligned to 4 bytes (FLOAT32), got address 0x",
                () -> bn.forward(odd, SHAPE, y));
        rejected(IllegalArgumentException.class, "y must be aligned to 4 bytes", () -> bn.forward(x, SHAPE, odd));
        rejected(IllegalArgumentException.class, "dy must be aligned", () -> bn.backward(odd, x, SHAPE, dx));
        rejected(IllegalArgumentException.class, "dx must be aligned", () -> bn.backward(dy, x, SHAPE, odd));
    }

    @Test
    void badHeapAndNullSegments() {
        rejected(IllegalArgumentException.class, "x is too small",
                () -> bn.forward(MemorySegment.ofArray(new float[COUNT - 1]), SHAPE, y));
        rejected(IllegalArgumentException.class, "y is read-only",
                () -> bn.forward(x, SHAPE, MemorySegment.ofArray(new float[COUNT]).asReadOnly()));
        MemorySegment shared = MemorySegment.ofArray(new float[COUNT + 1]);
        rejected(IllegalArgumentException.class, "y overlaps x", () -> bn.forward(shared.asSlice(0, BYTES), SHAPE,
                shared.asSlice(Float.BYTES, BYTES)));
        rejected(IllegalArgumentException.class, "x must not be MemorySegment.NULL",
                () -> bn.forward(MemorySegment.NULL, SHAPE, y));
    }

    // ---- overlap ----

    @Test
    void outputOverlappingAnInput() {
        MemorySegment block = arena.allocate(2 * BYTES, 4);
        MemorySegment in = block.asSlice(0, BYTES);
        MemorySegment.copy(x, 0, in, 0, BYTES);
        MemorySegment shifted = block.asSlice(8, BYTES);
        rejected(IllegalArgumentException.class, "y overlaps x", () -> bn.forward(in, SHAPE, shifted));
        rejected(IllegalArgumentException.class, "in-place use needs y to be exactly x", () -> bn.forward(shifted, SHAPE, in));
        rejected(IllegalArgumentException.class, "dx overlaps dy", () -> bn.backward(in, x, SHAPE, shifted));
        rejected(IllegalArgumentException.class, "dx overlaps x", () -> bn.backward(dy, x, SHAPE, x));
        rejected(IllegalArgumentException.class, "dx overlaps x", () -> bn.backward(dy, in, SHAPE, shifted));
        rejected(IllegalArgumentException.class, "dx must not be x", () -> bn.backward(dya, xa, SHAPE, xa));
    }

    @Test
    void outputOverlappingModuleState() {
        Shape small = Shape.of(1, 3);
        MemorySegment x3 = Tensors.segment(arena, new float[] {1, 2, 3});
        rejected(IllegalArgumentException.class, "x overlaps running mean, which this call updates",
                () -> bn.forward(bn.runningMean(), small, filled(12)));
        bn.eval();
        rejected(IllegalArgumentException.class, "y overlaps the module's running mean", () -> bn.forward(x3, small, bn.runningMean()));
        rejected(IllegalArgumentException.class, "y overlaps the module's weight", () -> bn.forward(x3, small, bn.weight()));
        bn.forward(x3, small, filled(12));
        rejected(IllegalArgumentException.class, "dx overlaps the module's weight gradient",
                () -> bn.backward(x3, x3, small, bn.weightGrad()));
        rejected(IllegalArgumentException.class, "dx overlaps the module's running variance",
                () -> bn.backward(x3, x3, small, bn.runningVar()));
    }

    // ---- state ----

    @Test
    void backwardWithoutMatchingForward() {
        try (BatchNorm fresh = BatchNorm.create(3)) {
            var e = assertThrows(IllegalStateException.class, () -> fresh.backward(dy, x, SHAPE, dx));
            assertTrue(e.getMessage().contains("backward needs a forward pass first"), e.getMessage());
        }
        rejected(IllegalStateException.class, "backward got shape [4, 3, 2] but the last forward pass had shape [2, 3, 2, 2]",
                () -> bn.backward(dy, x, Shape.of(4, 3, 2), dx));
        bn.eval();
        rejected(IllegalStateException.class, "backward needs a forward pass first", () -> bn.backward(dy, x, SHAPE, dx));
        bn.train();
        bn.resetRunningStats();
        rejected(IllegalStateException.class, "backward needs a forward pass first", () -> bn.backward(dya, xa, SHAPE, dxa));
    }

    @Test
    void closedModule() {
        bn.close();
        bn.close();
        for (Executable call : new Executable[] {
                () -> bn.forward(x, SHAPE, y), () -> bn.forward(xa, SHAPE, ya), () -> bn.forward(x, SHAPE, arena),
                () -> bn.backward(dy, x, SHAPE, dx), () -> bn.backward(dya, xa, SHAPE, dxa), bn::zeroGrad,
                bn::train, bn::eval, bn::resetRunningStats, bn::resetParameters, bn::weight, bn::runningVar,
                bn::numBatchesTracked, () -> bn.setNumBatchesTracked(1)}) {
            var e = assertThrows(IllegalStateException.class, call);
            assertEquals("this BatchNorm is closed", e.getMessage());
        }
        assertAllSentinel(y);
        assertAllSentinel(dx);
        for (float v : ya) {
            assertEquals(SENTINEL, v);
        }
    }

    @Test
    void buffersTheOptionsLeaveOut() {
        try (BatchNorm plain = BatchNorm.create(BatchNormOptions.of(3).withAffine(false).withTrackRunningStats(false))) {
            var e = assertThrows(IllegalStateException.class, plain::weight);
            assertEquals("weight does not exist: the module was created with affine=false", e.getMessage());
            assertThrows(IllegalStateException.class, plain::biasGrad);
            e = assertThrows(IllegalStateException.class, plain::runningMean);
            assertEquals("runningMean does not exist: the module was created with trackRunningStats=false", e.getMessage());
            assertThrows(IllegalStateException.class, plain::numBatchesTracked);
            assertThrows(IllegalStateException.class, () -> plain.setNumBatchesTracked(0));
        }
    }

    @Test
    void badCounterAndThreadCount() {
        rejected(IllegalArgumentException.class, "numBatchesTracked must be >= 0 and < 9223372036854775807 (the next training step adds 1), got -1", () -> bn.setNumBatchesTracked(-1));
        int threads = Parallelism.threads();
        rejected(IllegalArgumentException.class, "threads must be in 1..1024, got 0", () -> Parallelism.setThreads(0));
        rejected(IllegalArgumentException.class, "threads must be in 1..1024, got 1025", () -> Parallelism.setThreads(1025));
        assertEquals(threads, Parallelism.threads());
    }

    // ---- options ----

    @Test
    void badOptions() {
        BatchNormOptions ok = BatchNormOptions.of(3);
        rejected(IllegalArgumentException.class, "eps must be finite and >= 0, got NaN", () -> ok.withEps(Double.NaN));
        rejected(IllegalArgumentException.class, "eps must be finite and >= 0, got -1.0E-5", () -> ok.withEps(-1e-5));
        rejected(IllegalArgumentException.class, "eps must be finite and >= 0, got Infinity", () -> ok.withEps(Double.POSITIVE_INFINITY));
        rejected(IllegalArgumentException.class, "momentum must be in [0, 1], got -0.1", () -> ok.withMomentum(-0.1));
        rejected(IllegalArgumentException.class, "momentum must be in [0, 1], got 1.5", () -> ok.withMomentum(1.5));
        rejected(IllegalArgumentException.class, "momentum must be in [0, 1], got NaN", () -> ok.withMomentum(Double.NaN));
        rejected(IllegalArgumentException.class, "numFeatures must be >= 1, got 0", () -> BatchNormOptions.of(0));
        rejected(NullPointerException.class, "momentum",
                () -> new BatchNormOptions(3, 1e-5, (OptionalDouble) null, true, true));
    }

    // ---- helpers ----

    /** Runs a call that must fail, and checks the message and that nothing changed. */
    private <T extends Throwable> T rejected(Class<T> type, String messagePart, Executable call) {
        String before = snapshot();
        T e = assertThrows(type, call);
        String message = String.valueOf(e.getMessage());
        assertTrue(message.contains(messagePart), "message \"" + message + "\" lacks \"" + messagePart + "\"");
        assertEquals(before, snapshot(), "state or outputs changed by a rejected call: " + message);
        return e;
    }

    private String snapshot() {
        return "counter=" + bn.numBatchesTracked() + " training=" + bn.isTraining()
                + " runningMean=" + Arrays.toString(Tensors.floats(bn.runningMean(), 3))
                + " runningVar=" + Arrays.toString(Tensors.floats(bn.runningVar(), 3))
                + " weight=" + Arrays.toString(Tensors.floats(bn.weight(), 3))
                + " bias=" + Arrays.toString(Tensors.floats(bn.bias(), 3))
                + " weightGrad=" + Arrays.toString(Tensors.floats(bn.weightGrad(), 3))
                + " biasGrad=" + Arrays.toString(Tensors.floats(bn.biasGrad(), 3))
                + " y=" + Arrays.toString(Tensors.floats(y, COUNT)) + " dx=" + Arrays.toString(Tensors.floats(dx, COUNT))
                + " ya=" + Arrays.toString(ya) + " dxa=" + Arrays.toString(dxa)
                + " x=" + Arrays.toString(Tensors.floats(x, COUNT)) + " dy=" + Arrays.toString(Tensors.floats(dy, COUNT));
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
