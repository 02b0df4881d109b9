package dev.panamabn.reliability;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import dev.panamabn.reference.ReferenceBatchNorm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * One invalid call on a module in a generated state: the call must throw the documented exception,
 * name the faulty argument, and change nothing (module state, outputs, inputs, the statistics
 * saved for backward: a valid backward afterwards still matches the reference).
 */
final class InvalidCallRunner {

    /** Every argument of every public method, each perturbed on its own. */
    enum Fault {
        F_X_NULL, F_SHAPE_NULL, F_Y_NULL, F_WRONG_CHANNELS, F_X_TOO_SMALL, F_Y_TOO_SMALL, F_Y_READ_ONLY,
        F_X_CLOSED, F_Y_CLOSED, F_X_MISALIGNED, F_Y_MISALIGNED, F_Y_OVERLAPS_X, F_X_OVERLAPS_Y, F_X_HEAP_SHORT, F_Y_HEAP_READ_ONLY,
        F_X_OTHER_THREAD, F_Y_OTHER_THREAD, F_ONE_VALUE_PER_CHANNEL, F_Y_IS_MODULE_STATE,
        F_X_OVERLAPS_RUNNING_STATS,
        FA_ARENA_NULL, FA_ARENA_CLOSED, FA_ARENA_OTHER_THREAD, FA_X_CLOSED,
        FR_X_NULL, FR_Y_NULL, FR_X_SHORT, FR_Y_SHORT, FR_WRONG_CHANNELS,
        B_DY_NULL, B_X_NULL, B_SHAPE_NULL, B_DX_NULL, B_DY_SHORT, B_X_SHORT, B_DX_SHORT, B_DX_READ_ONLY,
        B_DY_CLOSED, B_X_CLOSED, B_DX_CLOSED, B_DY_MISALIGNED, B_X_MISALIGNED, B_DX_MISALIGNED,
        B_DX_OVERLAPS_DY, B_DX_OVERLAPS_X, B_DX_IS_X, B_DY_HEAP_SHORT, B_X_HEAP_SHORT, B_DX_HEAP_OVERLAPS_DY, B_DX_OTHER_THREAD,
        B_SHAPE_MISMATCH, B_WRONG_CHANNELS, B_AFTER_MODE_CHANGE, B_DX_IS_MODULE_STATE,
        BR_DX_IS_X, BR_DY_SHORT, BR_DX_NULL, BA_ARENA_CLOSED,
        O_EPS, O_MOMENTUM, O_FEATURES, S_SHAPE, P_THREADS, M_COUNTER, M_ABSENT_BUFFER
    }

    private static final double[] BAD_EPS = {Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, -1e-5,
        -Double.MIN_VALUE};
    private static final double[] BAD_MOMENTUM = {Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY,
        -0.1, Math.nextUp(1.0), -Double.MIN_VALUE};
    private static final int[] BAD_COUNTS = {0, -1, Integer.MIN_VALUE};
    private static final long[][] BAD_DIMS = {{5}, {}, {1, 2, 3, 4, 5, 6}, {2, 0, 3}, {-1, 2}, {2, 3, -4},
        {Long.MAX_VALUE / 2, 2, 2}, {1L << 31, 1L << 31, 1L << 2}, {Long.MIN_VALUE, 1}};

    private final BatchNorm bn;
    private final ReferenceBatchNorm ref;
    private final Arena arena;
    private final SplittableRandom random;
    private final int channels;
    private final Shape shape;
    private final long count;
    private final float[] x;
    private final AtomicLong calls;
    private ForeignThread foreign;

    private InvalidCallRunner(BatchNorm bn, Arena arena, long seed, Shape shape, AtomicLong calls) {
        this.bn = bn;
        this.ref = new ReferenceBatchNorm(bn.options());
        this.arena = arena;
        this.random = new SplittableRandom(seed);
        this.channels = bn.options().numFeatures();
        this.shape = shape;
        this.count = shape.elementCount();
        this.x = Data.floats(Data.Kind.GAUSSIAN, seed, count);
        this.calls = calls;
    }

    /**
     * Sets up a module (random state, one training forward + backward so gradients are non-zero,
     * then a forward in the given mode that backward may use), then makes the faulty call.
     */
    static void run(BatchNormOptions options, boolean training, long[] dims, Fault fault, long seed, AtomicLong calls) {
        try (BatchNorm bn = BatchNorm.create(options); Arena arena = Arena.ofConfined()) {
            InvalidCallRunner runner = new InvalidCallRunner(bn, arena, seed, Shape.of(dims), calls);
            try {
                runner.setUp(training);
                runner.checkFault(fault);
            } finally {
                if (runner.foreign != null) {
                    runner.foreign.close();
                }
            }
        }
    }

    private void setUp(boolean training) {
        Data.randomiseState(bn, random);
        if (bn.options().affine()) {
            System.arraycopy(Data.copyState(bn.weight(), channels), 0, ref.weight(), 0, channels);
            System.arraycopy(Data.copyState(bn.bias(), channels), 0, ref.bias(), 0, channels);
        }
        if (bn.options().trackRunningStats()) {
            System.arraycopy(Data.copyState(bn.runningMean(), channels), 0, ref.runningMean(), 0, channels);
            System.arraycopy(Data.copyState(bn.runningVar(), channels), 0, ref.runningVar(), 0, channels);
        }
        // A training step first (two values per channel at least), so the running statistics and
        // the gradients are not at their initial values.
        long[] warmDims = shape.dims();
        warmDims[0] = Math.max(2, warmDims[0]);
        Shape warmShape = Shape.of(warmDims);
        int warmCount = (int) warmShape.elementCount();
        float[] warm = Data.floats(Data.Kind.WIDE, random.nextLong(), warmCount);
        bn.forward(warm, warmShape, new float[warmCount]);
        bn.backward(Data.floats(Data.Kind.GAUSSIAN, random.nextLong(), warmCount), warm, warmShape,
                new float[warmCount]);
        calls.addAndGet(2);
        ref.forward(Data.toDouble(warm), warmShape);
        if (!training) {
            bn.eval();
            ref.eval();
        }
        bn.forward(x.clone(), shape, new float[(int) count]);
        calls.incrementAndGet();
        ref.forward(Data.toDouble(x), shape);
    }

    private MemorySegment fresh(long floats) {
        float[] values = Data.floats(Data.Kind.GAUSSIAN, random.nextLong(), floats);
        return Data.segment(arena, values, 0);
    }

    private MemorySegment closedSegment() {
        Arena other = Arena.ofConfined();
        MemorySegment s = other.allocate(count * Float.BYTES, 64);
        other.close();
        return s;
    }

    /** An arena confined to another (live) thread, closed by that thread when the check is over. */
    private static final class ForeignThread implements AutoCloseable {
        private final ExecutorService thread = Executors.newSingleThreadExecutor();
        private final Arena arena;

        ForeignThread() {
            arena = onThread(Arena::ofConfined);
        }

        MemorySegment segment(long bytes) {
            return onThread(() -> arena.allocate(bytes, 64));
        }

        private <T> T onThread(java.util.concurrent.Callable<T> task) {
            try {
                return thread.submit(task).get();
            } catch (InterruptedException | ExecutionException e) {
                throw new AssertionError(e);
            }
        }

        @Override
        public void close() {
            onThread(() -> {
                arena.close();
                return null;
            });
            thread.shutdown();
        }
    }

    private ForeignThread foreign() {
        if (foreign == null) {
            foreign = new ForeignThread();
        }
        return foreign;
    }

    /** A segment starting 1..3 bytes past a float boundary. */
    private MemorySegment misaligned(long floats) {
        long skew = 1 + random.nextInt(3);
        return arena.allocate(floats * Float.BYTES + 4, 64).asSlice(skew, floats * Float.BYTES);
    }

    private Shape otherChannels() {
        long[] d = shape.dims();
        d[1] = channels + 1 + random.nextInt(3);
        return Shape.of(d);
    }

    private Shape otherBatch() {
        long[] d = shape.dims();
        d[0] = d[0] + 1;
        return Shape.of(d);
    }

    /** What the faulty call must throw, and the argument its message must name (null: not checked). */
    private record Expected(Class<? extends Throwable> type, String argument) {
    }

    private interface Call {
        void run() throws Throwable;
    }

    private void checkFault(Fault fault) {
        MemorySegment xs = Data.segment(arena, x, 0);
        MemorySegment y = fresh(count);
        MemorySegment dy = fresh(count);
        MemorySegment dx = fresh(count);
        MemorySegment[] buffers = {xs, y, dy, dx};
        float[][] before = new float[buffers.length][];
        for (int i = 0; i < buffers.length; i++) {
            before[i] = Data.read(buffers[i], count);
        }
        boolean pendingForward = true;
        boolean batchStatistics = bn.isTraining() || !bn.options().trackRunningStats();
        float[] ya = new float[(int) count];
        float[] xa = x.clone();
        Expected expected;
        Call call;
        switch (fault) {
            case F_X_NULL -> {
                expected = new Expected(NullPointerException.class, "x");
                call = () -> bn.forward((MemorySegment) null, shape, y);
            }
            case F_SHAPE_NULL -> {
                expected = new Expected(NullPointerException.class, "spec");
                call = () -> bn.forward(xs, null, y);
            }
            case F_Y_NULL -> {
                expected = new Expected(NullPointerException.class, "y");
                call = () -> bn.forward(xs, shape, (MemorySegment) null);
            }
            case F_WRONG_CHANNELS -> {
                Shape wrong = otherChannels();
                MemorySegment big = fresh(wrong.elementCount());
                expected = new Expected(IllegalArgumentException.class, "numFeatures");
                call = () -> bn.forward(big, wrong, fresh(wrong.elementCount()));
            }
            case F_X_TOO_SMALL -> {
                expected = new Expected(IllegalArgumentException.class, "x");
                call = () -> bn.forward(xs.asSlice(0, (count - 1) * Float.BYTES), shape, y);
            }
            case F_Y_TOO_SMALL -> {
                expected = new Expected(IllegalArgumentException.class, "y");
                call = () -> bn.forward(xs, shape, y.asSlice(0, (count - 1) * Float.BYTES));
            }
            case F_Y_READ_ONLY -> {
                expected = new Expected(IllegalArgumentException.class, "y");
                call = () -> bn.forward(xs, shape, y.asReadOnly());
            }
            case F_X_CLOSED -> {
                expected = new Expected(IllegalStateException.class, "x");
                call = () -> bn.forward(closedSegment(), shape, y);
            }
            case F_Y_CLOSED -> {
                expected = new Expected(IllegalStateException.class, "y");
                call = () -> bn.forward(xs, shape, closedSegment());
            }
            case F_X_MISALIGNED -> {
                expected = new Expected(IllegalArgumentException.class, "x");
                call = () -> bn.forward(misaligned(count), shape, y);
            }
            case F_Y_MISALIGNED -> {
                expected = new Expected(IllegalArgumentException.class, "y");
                call = () -> bn.forward(xs, shape, misaligned(count));
            }
            case F_Y_OVERLAPS_X, F_X_OVERLAPS_Y -> {
                if (count < 2) { // one float cannot overlap another float partially
                    checkFault(Fault.F_Y_READ_ONLY);
                    return;
                }
                // One block, x and y at different starts inside it: they overlap but are not the same.
                long shift = 1 + random.nextLong(count - 1);
                MemorySegment block = fresh(count + shift);
                MemorySegment early = block.asSlice(0, count * Float.BYTES);
                MemorySegment late = block.asSlice(shift * Float.BYTES, count * Float.BYTES);
                buffers[1] = block;
                before[1] = Data.read(block, count + shift);
                boolean yLate = fault == Fault.F_Y_OVERLAPS_X;
                expected = new Expected(IllegalArgumentException.class, "y");
                call = () -> bn.forward(yLate ? early : late, shape, yLate ? late : early);
            }
            case F_X_HEAP_SHORT -> {
                expected = new Expected(IllegalArgumentException.class, "x");
                call = () -> bn.forward(MemorySegment.ofArray(new float[(int) count - 1]), shape, y);
            }
            case F_Y_HEAP_READ_ONLY -> {
                expected = new Expected(IllegalArgumentException.class, "y");
                call = () -> bn.forward(xs, shape, MemorySegment.ofArray(new float[(int) count]).asReadOnly());
            }
            case F_X_OTHER_THREAD -> {
                expected = new Expected(WrongThreadException.class, "x");
                call = () -> bn.forward(foreign().segment(count * Float.BYTES), shape, y);
            }
            case F_Y_OTHER_THREAD -> {
                expected = new Expected(WrongThreadException.class, "y");
                call = () -> bn.forward(xs, shape, foreign().segment(count * Float.BYTES));
            }
            case F_ONE_VALUE_PER_CHANNEL -> {
                if (!batchStatistics) {
                    checkFault(Fault.F_Y_READ_ONLY);
                    return;
                }
                Shape one = random.nextBoolean() ? Shape.of(1, channels) : Shape.of(1, channels, 1, 1);
                expected = new Expected(IllegalArgumentException.class, "Expected more than 1 value per channel");
                call = () -> bn.forward(fresh(channels), one, fresh(channels));
            }
            case F_Y_IS_MODULE_STATE -> {
                // Eval with running statistics accepts (1, C): y can be exactly a module buffer.
                if (batchStatistics) {
                    checkFault(Fault.F_Y_OVERLAPS_X);
                    return;
                }
                MemorySegment state = pickModuleBuffer();
                expected = new Expected(IllegalArgumentException.class, "y");
                call = () -> bn.forward(fresh(channels), Shape.of(1, channels), state);
            }
            case F_X_OVERLAPS_RUNNING_STATS -> {
                if (!(bn.isTraining() && bn.options().trackRunningStats())) {
                    checkFault(Fault.F_X_HEAP_SHORT);
                    return;
                }
                Shape two = Shape.of(2, channels);
                @SuppressWarnings("restricted")
                MemorySegment aliased = bn.runningMean().reinterpret(two.elementCount() * Float.BYTES);
                expected = new Expected(IllegalArgumentException.class, "x");
                call = () -> bn.forward(aliased, two, fresh(two.elementCount()));
            }
            case FA_ARENA_NULL -> {
                expected = new Expected(NullPointerException.class, "arena");
                call = () -> bn.forward(xs, shape, (Arena) null);
            }
            case FA_ARENA_CLOSED -> {
                Arena closed = Arena.ofConfined();
                closed.close();
                expected = new Expected(IllegalStateException.class, null);
                call = () -> bn.forward(xs, shape, closed);
            }
            case FA_ARENA_OTHER_THREAD -> {
                Arena confinedElsewhere = foreign().arena;
                expected = new Expected(WrongThreadException.class, null);
                call = () -> bn.forward(xs, shape, confinedElsewhere);
            }
            case FA_X_CLOSED -> {
                expected = new Expected(IllegalStateException.class, "x");
                call = () -> bn.forward(closedSegment(), shape, arena);
            }
            case FR_X_NULL -> {
                expected = new Expected(NullPointerException.class, "x");
                call = () -> bn.forward((float[]) null, shape, ya);
            }
            case FR_Y_NULL -> {
                expected = new Expected(NullPointerException.class, "y");
                call = () -> bn.forward(xa, shape, (float[]) null);
            }
            case FR_X_SHORT -> {
                expected = new Expected(IllegalArgumentException.class, "x");
                call = () -> bn.forward(Arrays.copyOf(xa, xa.length - 1), shape, ya);
            }
            case FR_Y_SHORT -> {
                expected = new Expected(IllegalArgumentException.class, "y");
                call = () -> bn.forward(xa, shape, new float[ya.length - 1]);
            }
            case FR_WRONG_CHANNELS -> {
                Shape wrong = otherChannels();
                expected = new Expected(IllegalArgumentException.class, "numFeatures");
                call = () -> bn.forward(new float[(int) wrong.elementCount()], wrong, new float[(int) wrong.elementCount()]);
            }
            case B_DY_NULL -> {
                expected = new Expected(NullPointerException.class, "dy");
                call = () -> bn.backward(null, xs, shape, dx);
            }
            case B_X_NULL -> {
                expected = new Expected(NullPointerException.class, "x");
                call = () -> bn.backward(dy, null, shape, dx);
            }
            case B_SHAPE_NULL -> {
                expected = new Expected(NullPointerException.class, "spec");
                call = () -> bn.backward(dy, xs, null, dx);
            }
            case B_DX_NULL -> {
                expected = new Expected(NullPointerException.class, "dx");
                call = () -> bn.backward(dy, xs, shape, (MemorySegment) null);
            }
            case B_DY_SHORT -> {
                expected = new Expected(IllegalArgumentException.class, "dy");
                call = () -> bn.backward(dy.asSlice(0, (count - 1) * Float.BYTES), xs, shape, dx);
            }
            case B_X_SHORT -> {
                expected = new Expected(IllegalArgumentException.class, "x");
                call = () -> bn.backward(dy, xs.asSlice(0, (count - 1) * Float.BYTES), shape, dx);
            }
            case B_DX_SHORT -> {
                expected = new Expected(IllegalArgumentException.class, "dx");
                call = () -> bn.backward(dy, xs, shape, dx.asSlice(0, (count - 1) * Float.BYTES));
            }
            case B_DX_READ_ONLY -> {
                expected = new Expected(IllegalArgumentException.class, "dx");
                call = () -> bn.backward(dy, xs, shape, dx.asReadOnly());
            }
            case B_DY_CLOSED -> {
                expected = new Expected(IllegalStateException.class, "dy");
                call = () -> bn.backward(closedSegment(), xs, shape, dx);
            }
            case B_X_CLOSED -> {
                expected = new Expected(IllegalStateException.class, "x");
                call = () -> bn.backward(dy, closedSegment(), shape, dx);
            }
            case B_DX_CLOSED -> {
                expected = new Expected(IllegalStateException.class, "dx");
                call = () -> bn.backward(dy, xs, shape, closedSegment());
            }
            case B_DY_MISALIGNED -> {
                expected = new Expected(IllegalArgumentException.class, "dy");
                call = () -> bn.backward(misaligned(count), xs, shape, dx);
            }
            case B_X_MISALIGNED -> {
                expected = new Expected(IllegalArgumentException.class, "x");
                call = () -> bn.backward(dy, misaligned(count), shape, dx);
            }
            case B_DX_MISALIGNED -> {
                expected = new Expected(IllegalArgumentException.class, "dx");
                call = () -> bn.backward(dy, xs, shape, misaligned(count));
            }
            case B_DX_OVERLAPS_DY, B_DX_OVERLAPS_X -> {
                if (count < 2) {
                    checkFault(Fault.B_DX_IS_X);
                    return;
                }
                long shift = 1 + random.nextLong(count - 1);
                MemorySegment block = fresh(count + shift);
                buffers[3] = block;
                before[3] = Data.read(block, count + shift);
                MemorySegment early = block.asSlice(0, count * Float.BYTES);
                MemorySegment late = block.asSlice(shift * Float.BYTES, count * Float.BYTES);
                boolean dxLate = random.nextBoolean();
                expected = new Expected(IllegalArgumentException.class, "dx");
                call = fault == Fault.B_DX_OVERLAPS_DY
                        ? () -> bn.backward(dxLate ? early : late, xs, shape, dxLate ? late : early)
                        : () -> bn.backward(dy, dxLate ? early : late, shape, dxLate ? late : early);
            }
            case B_DX_IS_X -> {
                expected = new Expected(IllegalArgumentException.class, "dx");
                call = () -> bn.backward(dy, xs, shape, xs);
            }
            case B_DY_HEAP_SHORT -> {
                expected = new Expected(IllegalArgumentException.class, "dy");
                call = () -> bn.backward(MemorySegment.ofArray(new float[(int) count - 1]), xs, shape, dx);
            }
            case B_X_HEAP_SHORT -> {
                expected = new Expected(IllegalArgumentException.class, "x");
                call = () -> bn.backward(dy, MemorySegment.ofArray(new float[(int) count - 1]), shape, dx);
            }
            case B_DX_HEAP_OVERLAPS_DY -> {
                // One array: dy at its start, dx one element later.
                MemorySegment both = MemorySegment.ofArray(new float[(int) count + 1]);
                expected = new Expected(IllegalArgumentException.class, "dx");
                call = () -> bn.backward(both.asSlice(0, count * Float.BYTES), xs, shape,
                        both.asSlice(Float.BYTES, count * Float.BYTES));
            }
            case B_DX_OTHER_THREAD -> {
                expected = new Expected(WrongThreadException.class, "dx");
                call = () -> bn.backward(dy, xs, shape, foreign().segment(count * Float.BYTES));
            }
            case B_SHAPE_MISMATCH -> {
                Shape other = otherBatch();
                long n = other.elementCount();
                expected = new Expected(IllegalStateException.class, "shape");
                call = () -> bn.backward(fresh(n), fresh(n), other, fresh(n));
            }
            case B_WRONG_CHANNELS -> {
                Shape wrong = otherChannels();
                long n = wrong.elementCount();
                expected = new Expected(IllegalArgumentException.class, "numFeatures");
                call = () -> bn.backward(fresh(n), fresh(n), wrong, fresh(n));
            }
            case B_AFTER_MODE_CHANGE -> {
                if (bn.isTraining()) {
                    bn.eval();
                } else {
                    bn.train();
                }
                pendingForward = false;
                expected = new Expected(IllegalStateException.class, "forward");
                call = () -> bn.backward(dy, xs, shape, dx);
            }
            case B_DX_IS_MODULE_STATE -> {
                if (count > channels) {
                    checkFault(Fault.B_DX_IS_X);
                    return;
                }
                MemorySegment state = pickModuleBuffer();
                expected = new Expected(IllegalArgumentException.class, "dx");
                call = () -> bn.backward(dy, xs, shape, state);
            }
            case BR_DX_IS_X -> {
                expected = new Expected(IllegalArgumentException.class, "dx");
                call = () -> bn.backward(Data.read(dy, count), xa, shape, xa);
            }
            case BR_DY_SHORT -> {
                expected = new Expected(IllegalArgumentException.class, "dy");
                call = () -> bn.backward(new float[(int) count - 1], xa, shape, new float[(int) count]);
            }
            case BR_DX_NULL -> {
                expected = new Expected(NullPointerException.class, "dx");
                call = () -> bn.backward(Data.read(dy, count), xa, shape, (float[]) null);
            }
            case BA_ARENA_CLOSED -> {
                Arena closed = Arena.ofConfined();
                closed.close();
                expected = new Expected(IllegalStateException.class, null);
                call = () -> bn.backward(dy, xs, shape, closed);
            }
            case O_EPS -> {
                double eps = BAD_EPS[random.nextInt(BAD_EPS.length)];
                expected = new Expected(IllegalArgumentException.class, "eps");
                call = () -> bn.options().withEps(eps);
            }
            case O_MOMENTUM -> {
                double momentum = BAD_MOMENTUM[random.nextInt(BAD_MOMENTUM.length)];
                expected = new Expected(IllegalArgumentException.class, "momentum");
                call = () -> bn.options().withMomentum(momentum);
            }
            case O_FEATURES -> {
                int features = BAD_COUNTS[random.nextInt(BAD_COUNTS.length)];
                expected = new Expected(IllegalArgumentException.class, "numFeatures");
                call = () -> BatchNormOptions.of(features);
            }
            case S_SHAPE -> {
                long[] dims = BAD_DIMS[random.nextInt(BAD_DIMS.length)];
                expected = new Expected(IllegalArgumentException.class, null);
                call = () -> Shape.of(dims);
            }
            case P_THREADS -> {
                int threads = BAD_COUNTS[random.nextInt(BAD_COUNTS.length)];
                int current = Parallelism.threads();
                expected = new Expected(IllegalArgumentException.class, "threads");
                call = () -> {
                    try {
                        Parallelism.setThreads(threads);
                    } finally {
                        assertEquals(current, Parallelism.threads(), "a rejected setThreads changed the thread count");
                    }
                };
            }
            case M_COUNTER -> {
                if (!bn.options().trackRunningStats()) {
                    checkFault(Fault.M_ABSENT_BUFFER);
                    return;
                }
                long bad = -1 - random.nextLong(Long.MAX_VALUE);
                expected = new Expected(IllegalArgumentException.class, "numBatchesTracked");
                call = () -> bn.setNumBatchesTracked(bad);
            }
            case M_ABSENT_BUFFER -> {
                if (bn.options().affine() && bn.options().trackRunningStats()) {
                    checkFault(Fault.O_EPS);
                    return;
                }
                expected = new Expected(IllegalStateException.class, bn.options().affine() ? "runningVar" : "weightGrad");
                call = bn.options().affine() ? bn::runningVar : bn::weightGrad;
            }
            default -> throw new AssertionError("unhandled fault " + fault);
        }
        ModuleState state = ModuleState.of(bn);
        calls.incrementAndGet();
        Throwable thrown = null;
        try {
            call.run();
        } catch (Throwable t) {
            thrown = t;
        }
        String context = fault + " on " + bn + " shape " + shape;
        if (thrown == null) {
            throw new AssertionError(context + ": expected " + expected.type().getSimpleName() + ", nothing was thrown");
        }
        if (!expected.type().isInstance(thrown)) {
            throw new AssertionError(context + ": expected " + expected.type().getSimpleName() + ", got " + thrown, thrown);
        }
        if (expected.argument() != null) {
            String message = String.valueOf(thrown.getMessage());
            if (!Pattern.compile("\\b" + Pattern.quote(expected.argument()) + "\\b").matcher(message).find()) {
                throw new AssertionError(context + ": the message does not name " + expected.argument() + ": " + message);
            }
        }
        state.assertSameAs(ModuleState.of(bn), context);
        for (int i = 0; i < buffers.length; i++) {
            assertArrayEquals(before[i], Data.read(buffers[i], before[i].length), "buffer " + i + " changed: " + context);
        }
        if (pendingForward) {
            backwardStillMatchesReference(context);
        }
    }

    private MemorySegment pickModuleBuffer() {
        boolean affine = bn.options().affine();
        boolean track = bn.options().trackRunningStats();
        int pick = random.nextInt(6);
        if (affine && (pick < 4 || !track)) {
            return switch (pick % 4) {
                case 0 -> bn.weight();
                case 1 -> bn.bias();
                case 2 -> bn.weightGrad();
                default -> bn.biasGrad();
            };
        }
        if (track) {
            return pick % 2 == 0 ? bn.runningMean() : bn.runningVar();
        }
        // Neither affine nor tracking: there is no module buffer to alias; any output overlap will do.
        MemorySegment block = fresh(count + 1);
        return block.asSlice(Float.BYTES, count * Float.BYTES);
    }

    /** The statistics saved by the last valid forward survived the rejected call. */
    private void backwardStillMatchesReference(String context) {
        float[] dy = Data.floats(Data.Kind.GAUSSIAN, random.nextLong(), count);
        float[] dx = new float[(int) count];
        bn.backward(dy, x.clone(), shape, dx);
        calls.incrementAndGet();
        double[] dyd = Data.toDouble(dy);
        double[] xd = Data.toDouble(x);
        ReferenceBatchNorm.Gradients want = ref.backward(dyd, xd, shape);
        boolean batchStatistics = bn.isTraining() || !bn.options().trackRunningStats();
        ReferenceCheck.assertBackward(dx, dyd, xd, shape, ref, want, batchStatistics, "backward after " + context);
    }
}
