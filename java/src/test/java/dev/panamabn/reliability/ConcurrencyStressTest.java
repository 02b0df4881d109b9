package dev.panamabn.reliability;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import dev.panamabn.reference.ReferenceBatchNorm;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One module used from 8 Java threads at once. The documented contract (BatchNorm's Javadoc):
 * calls that change state run one at a time, so no update of the running statistics is lost and
 * each update is whole; eval-mode forward calls with running statistics run concurrently.
 * None of these tests asserts on time: they observe orderings that are possible only under (or
 * only without) mutual exclusion.
 */
class ConcurrencyStressTest {

    private static final int THREADS = 8;
    private static final int CALLS_PER_THREAD = 25;
    private static final int CHANNELS = 3;
    private static final Shape SHAPE = Shape.of(4, CHANNELS, 5, 7);

    private int threadsBefore;

    @BeforeEach
    void rememberThreads() {
        threadsBefore = Parallelism.threads();
    }

    @AfterEach
    void restoreThreads() {
        Parallelism.setThreads(threadsBefore);
    }

    /** Batch b of thread t: its own data, means spread so that a lost or torn update shows. */
    private static float[] batch(int thread, int call) {
        float[] x = Data.floats(Data.Kind.GAUSSIAN, 1000L * thread + call, SHAPE.elementCount());
        float shift = 10f * thread + call;
        for (int i = 0; i < x.length; i++) {
            x[i] += shift;
        }
        return x;
    }

    private static void runAll(List<? extends java.util.concurrent.Callable<?>> tasks) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(tasks.size());
        try {
            List<Future<?>> futures = new ArrayList<>();
            for (var task : tasks) {
                futures.add(pool.submit(task));
            }
            for (Future<?> f : futures) {
                f.get();
            }
        } finally {
            pool.shutdown();
        }
    }

    /**
     * With momentum None the running statistics are the plain average of every batch's statistics,
     * the same for any order: 200 concurrent training forwards must all be counted and averaged,
     * and each thread's outputs must be those of its own batch.
     */
    @Test
    void concurrentTrainingForwardsLoseNoUpdate() throws Exception {
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(CHANNELS).withCumulativeAverage())) {
            CyclicBarrier start = new CyclicBarrier(THREADS);
            List<java.util.concurrent.Callable<Void>> tasks = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                int thread = t;
                tasks.add(() -> {
                    start.await();
                    for (int call = 0; call < CALLS_PER_THREAD; call++) {
                        float[] x = batch(thread, call);
                        float[] y = new float[x.length];
                        bn.forward(x, SHAPE, y);
                        ReferenceBatchNorm ref = new ReferenceBatchNorm(BatchNormOptions.of(CHANNELS));
                        double[] xd = Data.toDouble(x);
                        ReferenceCheck.assertForward(y, xd, SHAPE, ref, ref.forward(xd, SHAPE),
                                "thread " + thread + " call " + call);
                    }
                    return null;
                });
            }
            runAll(tasks);

            long total = (long) THREADS * CALLS_PER_THREAD;
            assertEquals(total, bn.numBatchesTracked());
            double[] meanOfMeans = new double[CHANNELS];
            double[] meanOfVars = new double[CHANNELS];
            for (int t = 0; t < THREADS; t++) {
                for (int call = 0; call < CALLS_PER_THREAD; call++) {
                    double[][] stats = batchStatistics(batch(t, call));
                    for (int c = 0; c < CHANNELS; c++) {
                        meanOfMeans[c] += stats[0][c] / total;
                        meanOfVars[c] += stats[1][c] / total;
                    }
                }
            }
            float[] runningMean = Data.read(bn.runningMean(), CHANNELS);
            float[] runningVar = Data.read(bn.runningVar(), CHANNELS);
            for (int c = 0; c < CHANNELS; c++) {
                // One lost update moves the mean by about (spread of batch means) / 200 = 0.2.
                ReferenceCheck.assertClose(runningMean[c], meanOfMeans[c], 1e-4 * Math.abs(meanOfMeans[c]),
                        "running mean, channel " + c);
                ReferenceCheck.assertClose(runningVar[c], meanOfVars[c], 1e-4 * meanOfVars[c],
                        "running var, channel " + c);
            }
        }
    }

    /** Per channel: {means, unbiased variances} of one batch of SHAPE. */
    private static double[][] batchStatistics(float[] x) {
        int m = (int) SHAPE.valuesPerChannel();
        long s = SHAPE.spatial();
        double[] sum = new double[CHANNELS];
        for (int k = 0; k < x.length; k++) {
            sum[(int) ((k / s) % CHANNELS)] += x[k];
        }
        double[] mean = new double[CHANNELS];
        for (int c = 0; c < CHANNELS; c++) {
            mean[c] = sum[c] / m;
        }
        double[] sq = new double[CHANNELS];
        for (int k = 0; k < x.length; k++) {
            int c = (int) ((k / s) % CHANNELS);
            sq[c] += (x[k] - mean[c]) * (x[k] - mean[c]);
        }
        double[] var = new double[CHANNELS];
        for (int c = 0; c < CHANNELS; c++) {
            var[c] = sq[c] / (m - 1);
        }
        return new double[][] {mean, var};
    }

    /**
     * With momentum 1 the running statistics become those of the last batch. After 200 concurrent
     * forwards every channel must hold the statistics of the same batch: an update interleaved
     * with another would leave channels from different batches.
     */
    @Test
    void concurrentUpdatesAreWhole() throws Exception {
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(CHANNELS).withMomentum(1.0))) {
            CyclicBarrier start = new CyclicBarrier(THREADS);
            List<java.util.concurrent.Callable<Void>> tasks = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                int thread = t;
                tasks.add(() -> {
                    start.await();
                    try (Arena arena = Arena.ofConfined()) {
                        for (int call = 0; call < CALLS_PER_THREAD; call++) {
                            bn.forward(Data.segment(arena, batch(thread, call), 0), SHAPE, arena);
                        }
                    }
                    return null;
                });
            }
            runAll(tasks);

            float[] runningMean = Data.read(bn.runningMean(), CHANNELS);
            float[] runningVar = Data.read(bn.runningVar(), CHANNELS);
            int matches = 0;
            for (int t = 0; t < THREADS; t++) {
                for (int call = 0; call < CALLS_PER_THREAD; call++) {
                    double[][] stats = batchStatistics(batch(t, call));
                    boolean all = true;
                    for (int c = 0; c < CHANNELS; c++) {
                        all &= Math.abs(runningMean[c] - stats[0][c]) <= 1e-5 * Math.abs(stats[0][c])
                                && Math.abs(runningVar[c] - stats[1][c]) <= 1e-5 * stats[1][c];
                    }
                    matches += all ? 1 : 0;
                }
            }
            assertEquals(1, matches, "the running statistics must be those of exactly one whole batch: mean "
                    + java.util.Arrays.toString(runningMean) + " var " + java.util.Arrays.toString(runningVar));
            assertEquals((long) THREADS * CALLS_PER_THREAD, bn.numBatchesTracked());
        }
    }

    /** Whether a thread is inside a native BatchNorm kernel call (and so holds the module's lock). */
    private static boolean inNativeCall(Thread thread) {
        for (StackTraceElement frame : thread.getStackTrace()) {
            if (frame.getClassName().startsWith("dev.panamabn.internal.")) {
                return true;
            }
        }
        return false;
    }

    /**
     * A long call that has entered native code, and a short one started afterwards: returns
     * whether the short one finished while the long one was still inside the kernel (seen on its
     * stack after the short call returned), that is, while the long call held the module's lock.
     */
    private static boolean shortCallFinishesInsideLongCall(Runnable longCall, Runnable shortCall) throws Exception {
        AtomicBoolean longInside = new AtomicBoolean(true);
        AtomicReferenceThrowable failure = new AtomicReferenceThrowable();
        Thread longThread = new Thread(() -> {
            try {
                longCall.run();
            } catch (Throwable t) {
                failure.set(t);
            } finally {
                longInside.set(false);
            }
        }, "bn-long-call");
        longThread.start();
        while (longInside.get() && !inNativeCall(longThread)) {
            Thread.onSpinWait();
        }
        boolean overlapped = false;
        if (longInside.get()) {
            CountDownLatch done = new CountDownLatch(1);
            AtomicBoolean finishedInside = new AtomicBoolean();
            Thread shortThread = new Thread(() -> {
                try {
                    shortCall.run();
                    finishedInside.set(inNativeCall(longThread));
                } catch (Throwable t) {
                    failure.set(t);
                } finally {
                    done.countDown();
                }
            }, "bn-short-call");
            shortThread.start();
            done.await();
            overlapped = finishedInside.get();
        }
        longThread.join();
        failure.rethrow();
        return overlapped;
    }

    private static final class AtomicReferenceThrowable {
        private volatile Throwable value;

        void set(Throwable t) {
            value = t;
        }

        void rethrow() throws Exception {
            if (value instanceof Exception e) {
                throw e;
            }
            if (value instanceof Error e) {
                throw e;
            }
        }
    }

    /**
     * Eval-mode forward calls share the module: a short eval call completes while a long one is
     * inside the kernel. Were they serialised this could never happen; if the long call is too
     * quick to catch, the attempt repeats with a bigger tensor.
     */
    @Test
    void evalForwardsRunConcurrently() throws Exception {
        try (BatchNorm bn = BatchNorm.create(CHANNELS); Arena arena = Arena.ofShared()) {
            bn.eval();
            boolean overlapped = false;
            for (long spatial = 1 << 21; spatial <= 1 << 23 && !overlapped; spatial *= 2) {
                Shape big = Shape.of(4, CHANNELS, spatial);
                MemorySegment x = arena.allocate(big.elementCount() * Float.BYTES, 64);
                MemorySegment y = arena.allocate(big.elementCount() * Float.BYTES, 64);
                overlapped = shortCallFinishesInsideLongCall(
                        () -> bn.forward(x, big, y),
                        () -> bn.forward(new float[(int) SHAPE.elementCount()], SHAPE,
                                new float[(int) SHAPE.elementCount()]));
            }
            assertTrue(overlapped, "a short eval forward never completed while a long one was inside the kernel");
        }
    }

    /** Training forward calls exclude each other: a short one never completes inside a long one. */
    @Test
    void trainingForwardsRunOneAtATime() throws Exception {
        try (BatchNorm bn = BatchNorm.create(CHANNELS); Arena arena = Arena.ofShared()) {
            Shape big = Shape.of(4, CHANNELS, 1 << 22);
            MemorySegment x = arena.allocate(big.elementCount() * Float.BYTES, 64);
            x.fill((byte) 1);
            MemorySegment y = arena.allocate(big.elementCount() * Float.BYTES, 64);
            float[] small = batch(0, 0);
            for (int attempt = 0; attempt < 3; attempt++) {
                boolean overlapped = shortCallFinishesInsideLongCall(
                        () -> bn.forward(x, big, y),
                        () -> bn.forward(small, SHAPE, new float[small.length]));
                assertTrue(!overlapped, "a training forward completed inside another one");
            }
            assertEquals(6, bn.numBatchesTracked());
        }
    }

    /** Names of the OS threads of this process (15-character Linux thread names). */
    private static List<String> nativeThreadNames() throws IOException {
        try (Stream<Path> tasks = Files.list(Path.of("/proc/self/task"))) {
            List<String> names = new ArrayList<>();
            for (Path task : tasks.toList()) {
                try {
                    names.add(Files.readString(task.resolve("comm")).strip());
                } catch (IOException gone) {
                    // the thread ended while we listed
                }
            }
            return names;
        }
    }

    /** How many OS threads of this process carry exactly this name. */
    private static long threadsNamed(String name) throws IOException {
        return nativeThreadNames().stream().filter(name::equals).count();
    }

    /**
     * A thread that makes one call, then stays alive until released, so that the OpenMP helpers
     * it may have started (kept per calling thread, named after it) can be counted.
     */
    private static final class ParkedCaller {
        private final CountDownLatch called = new CountDownLatch(1);
        private final CountDownLatch release = new CountDownLatch(1);
        private final AtomicReferenceThrowable failure = new AtomicReferenceThrowable();
        private final Thread thread;

        ParkedCaller(String name, Runnable call) {
            thread = new Thread(() -> {
                try {
                    call.run();
                } catch (Throwable t) {
                    failure.set(t);
                } finally {
                    called.countDown();
                }
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }, name);
            thread.start();
        }

        /** Waits for the call, returns the helper threads its thread has, and lets it end. */
        long helpersAfterCall(String name) throws Exception {
            called.await();
            long helpers = threadsNamed(name) - 1;
            release.countDown();
            thread.join();
            failure.rethrow();
            return helpers;
        }
    }

    /**
     * The team slot, observed without timing: a large call started while another thread's call
     * runs its team (that call's helper thread exists and it is still inside the kernel before and
     * after) starts no helper thread: it runs on its calling thread. The same call made when the
     * team is free does start one, which shows that the count would see it.
     */
    @Test
    void aLargeCallWhileTheTeamIsBusyRunsOnItsCallingThread() throws Exception {
        Parallelism.setThreads(2);
        Shape mid = Shape.of(2, CHANNELS, 1 << 16);
        boolean observed = false;
        try (BatchNorm holder = BatchNorm.create(CHANNELS); BatchNorm other = BatchNorm.create(CHANNELS);
             Arena shared = Arena.ofShared()) {
            holder.eval();
            other.eval();
            MemorySegment xm = shared.allocate(mid.elementCount() * Float.BYTES, 64);
            MemorySegment ym = shared.allocate(mid.elementCount() * Float.BYTES, 64);
            for (int attempt = 0; attempt < 3 && !observed; attempt++) {
                Shape big = Shape.of(4, CHANNELS, 1L << (21 + attempt));
                try (Arena arena = Arena.ofShared()) {
                    MemorySegment x = arena.allocate(big.elementCount() * Float.BYTES, 64);
                    MemorySegment y = arena.allocate(big.elementCount() * Float.BYTES, 64);
                    String holderName = "bnhold" + attempt;
                    String loneName = "bnlone" + attempt;
                    AtomicBoolean holding = new AtomicBoolean(true);
                    Thread holderThread = new Thread(() -> {
                        try {
                            holder.forward(x, big, y);
                        } finally {
                            holding.set(false);
                        }
                    }, holderName);
                    holderThread.start();
                    // its helper exists once its team has started, that is, once it holds the slot
                    while (holding.get() && threadsNamed(holderName) < 2) {
                        Thread.onSpinWait();
                    }
                    if (!holding.get()) {
                        holderThread.join();
                        continue;
                    }
                    ParkedCaller lone = new ParkedCaller(loneName, () -> other.forward(xm, mid, ym));
                    lone.called.await();
                    boolean holderStillInside = holding.get() && inNativeCall(holderThread);
                    long loneHelpers = lone.helpersAfterCall(loneName);
                    holderThread.join();
                    if (holderStillInside) {
                        assertEquals(0, loneHelpers, "a large call made while another call held the team started "
                                + loneHelpers + " helper threads");
                        observed = true;
                    }
                }
            }
            assertTrue(observed, "never caught a call running its team: the holder call was always too quick");
            String freeName = "bnfree";
            long freeHelpers = new ParkedCaller(freeName, () -> other.forward(xm, mid, ym)).helpersAfterCall(freeName);
            assertTrue(freeHelpers >= 1, "the same call with the team free started no helper: the count is blind");
            System.out.println("OpenMP policy: a large call while the team was busy started 0 helpers; with the"
                    + " team free it started " + freeHelpers);
        }
    }

    /**
     * The OpenMP policy, measured over many callers: at most one call at a time runs a team of
     * {@link Parallelism#threads()} threads, itself plus helpers that OpenMP creates for that
     * Java thread (they inherit its OS thread name, which is how they are counted here) and keeps
     * while that Java thread lives. So with {@code setThreads(1)} concurrent callers never start a
     * helper, and with {@code setThreads(t)}, k callers have at most {@code k * (t - 1)} helpers in
     * all, of which at most {@code t - 1} run at any time (the test above shows the exclusion).
     */
    @Test
    void nativeThreadsPerCallingThread() throws Exception {
        for (int threads : new int[] {1, 2}) {
            Parallelism.setThreads(threads);
            String prefix = "bnomp" + threads + "-";
            Shape big = Shape.of(2, CHANNELS, 1 << 16);
            CyclicBarrier start = new CyclicBarrier(THREADS + 1);
            CyclicBarrier called = new CyclicBarrier(THREADS + 1);
            CountDownLatch release = new CountDownLatch(1);
            AtomicInteger failures = new AtomicInteger();
            List<Thread> callers = new ArrayList<>();
            try (BatchNorm bn = BatchNorm.create(CHANNELS); Arena arena = Arena.ofShared()) {
                bn.eval();
                MemorySegment x = arena.allocate(big.elementCount() * Float.BYTES, 64);
                for (int t = 0; t < THREADS; t++) {
                    Thread caller = new Thread(() -> {
                        try (Arena own = Arena.ofConfined()) {
                            start.await();
                            bn.forward(x, big, own);
                            called.await();
                            release.await();
                        } catch (Exception e) {
                            failures.incrementAndGet();
                        }
                    }, prefix + t);
                    callers.add(caller);
                    caller.start();
                }
                start.await();
                called.await();
                // Every caller has made its call and is still alive, so OpenMP keeps its helpers.
                long named = nativeThreadNames().stream().filter(n -> n.startsWith(prefix)).count();
                release.countDown();
                for (Thread caller : callers) {
                    caller.join();
                }
                assertEquals(0, failures.get());
                long helpers = named - THREADS;
                assertTrue(helpers >= 0, "the callers' own threads must carry their names: " + named);
                if (threads == 1) {
                    assertEquals(0, helpers, "setThreads(1) must not start OpenMP helper threads");
                } else {
                    assertTrue(helpers <= (long) THREADS * (threads - 1),
                            helpers + " helper threads for " + THREADS + " callers at " + threads + " threads");
                }
                System.out.println("OpenMP policy: " + THREADS + " concurrent callers at setThreads(" + threads
                        + ") started " + helpers + " helper threads");
            }
        }
    }

    /** Used by the counting test above: the JVM must name OS threads after Java threads. */
    @Test
    void javaThreadNamesReachTheOs() throws Exception {
        AtomicLong seen = new AtomicLong();
        Thread t = new Thread(() -> {
            try {
                seen.set(nativeThreadNames().stream().filter("bn-name-probe"::equals).count());
            } catch (IOException e) {
                seen.set(-1);
            }
        }, "bn-name-probe");
        t.start();
        t.join();
        assertEquals(1, seen.get());
    }
}
