package dev.panamabn.sync;

import dev.panamabn.CollectiveException;
import dev.panamabn.InProcessCollective;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The in-process collective: values in rank order, mismatches on every rank, no wait for ever. */
@Timeout(60)
class InProcessCollectiveTest {

    /** rank r's i-th value in exchange e: distinct, exact. */
    private static double value(int e, int r, int i) {
        return e * 1e6 + r * 1e3 + i + 0.125;
    }

    @Test
    void everyRankGetsEveryRanksValuesInRankOrder() throws Exception {
        for (int k = 1; k <= 4; k++) {
            List<InProcessCollective> group = InProcessCollective.group(k, Duration.ofSeconds(20));
            List<List<double[][]>> results = onThreads(group, member -> {
                List<double[][]> mine = new ArrayList<>();
                for (int e = 0; e < 50; e++) {
                    double[] values = new double[e % 7];
                    for (int i = 0; i < values.length; i++) {
                        values[i] = value(e, member.rank(), i);
                    }
                    double[][] all = member.allgather(values);
                    if (values.length > 0) {
                        values[0] = -1; // the collective kept a copy, not the caller's array
                    }
                    mine.add(all);
                }
                return mine;
            });
            for (int r = 0; r < k; r++) {
                for (int e = 0; e < 50; e++) {
                    double[][] all = results.get(r).get(e);
                    assertEquals(k, all.length);
                    for (int q = 0; q < k; q++) {
                        double[] expected = new double[e % 7];
                        for (int i = 0; i < expected.length; i++) {
                            expected[i] = value(e, q, i);
                        }
                        assertArrayEquals(expected, all[q], "k=" + k + " rank " + r + " exchange " + e + " row " + q);
                    }
                }
            }
            // Each rank got its own arrays.
            if (k > 1) {
                results.get(0).get(3)[1][0] = 42;
                assertEquals(value(3, 1, 0), results.get(1).get(3)[1][0]);
            }
        }
    }

    @Test
    void differentLengthsFailOnEveryRankAndLeaveTheGroupUsable() throws Exception {
        List<InProcessCollective> group = InProcessCollective.group(3, Duration.ofSeconds(20));
        List<String> outcomes = onThreads(group, member -> {
            CollectiveException e = assertThrows(CollectiveException.class,
                    () -> member.allgather(new double[member.rank() == 2 ? 5 : 4]));
            assertTrue(e.isLengthMismatch());
            assertArrayEquals(new long[] {4, 4, 5}, e.lengths());
            double[][] after = member.allgather(new double[] {member.rank()});
            return e.getMessage() + " | " + after[2][0];
        });
        for (String outcome : outcomes) {
            assertEquals("the ranks passed arrays of different lengths: rank 0: 4, rank 1: 4, rank 2: 5 | 2.0", outcome);
        }
    }

    @Test
    void aMissingRankTimesOutNamingItAndBreaksTheGroup() throws Exception {
        List<InProcessCollective> group = InProcessCollective.group(3, Duration.ofMillis(300));
        // Rank 1 never calls.
        List<InProcessCollective> present = List.of(group.get(0), group.get(2));
        long start = System.nanoTime();
        List<CollectiveException> errors = onThreads(present,
                member -> assertThrows(CollectiveException.class, () -> member.allgather(new double[2])));
        double seconds = (System.nanoTime() - start) / 1e9;
        assertTrue(seconds < 10, "waited " + seconds + " s");
        for (CollectiveException e : errors) {
            assertTrue(e.getMessage().contains("for rank(s) [1]"), e.getMessage());
            assertTrue(e.getMessage().contains("broken"), e.getMessage());
        }
        assertTrue(group.get(1).isBroken());
        CollectiveException later = assertThrows(CollectiveException.class, () -> group.get(1).allgather(new double[2]));
        assertTrue(later.getMessage().contains("broken"), later.getMessage());
    }

    @Test
    void abortWakesTheOthersAtOnceWithTheCause() throws Exception {
        List<InProcessCollective> group = InProcessCollective.group(3, Duration.ofMinutes(10));
        CountDownLatch waiting = new CountDownLatch(2);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            List<Future<CollectiveException>> futures = new ArrayList<>();
            for (int r = 0; r < 2; r++) {
                InProcessCollective member = group.get(r);
                futures.add(pool.submit(() -> {
                    waiting.countDown();
                    return assertThrows(CollectiveException.class, () -> member.allgather(new double[1]));
                }));
            }
            waiting.await();
            Thread.sleep(50);
            IllegalStateException cause = new IllegalStateException("rank 2 ran out of data");
            group.get(2).abort(cause);
            for (Future<CollectiveException> f : futures) {
                CollectiveException e = f.get();
                assertTrue(e.getMessage().contains("rank 2 aborted the group"), e.getMessage());
                assertEquals(cause, e.getCause());
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void anInterruptedWaitBreaksTheGroupAndKeepsTheFlag() throws Exception {
        List<InProcessCollective> group = InProcessCollective.group(2, Duration.ofMinutes(10));
        ExecutorService pool = Executors.newSingleThreadExecutor();
        try {
            Future<Boolean> waiter = pool.submit(() -> {
                CollectiveException e = assertThrows(CollectiveException.class, () -> group.get(0).allgather(new double[1]));
                assertInstanceOf(InterruptedException.class, e.getCause());
                return Thread.currentThread().isInterrupted();
            });
            Thread.sleep(100);
            pool.shutdownNow();
            assertTrue(waiter.get());
            assertTrue(group.get(1).isBroken());
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void oneMemberIsForOneThreadAtATime() throws Exception {
        List<InProcessCollective> group = InProcessCollective.group(2, Duration.ofSeconds(2));
        ExecutorService pool = Executors.newSingleThreadExecutor();
        try {
            Future<?> first = pool.submit(() -> group.get(0).allgather(new double[1]));
            Thread.sleep(100);
            assertThrows(IllegalStateException.class, () -> group.get(0).allgather(new double[1]));
            group.get(1).allgather(new double[1]);
            first.get();
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void refusesBadArguments() {
        assertThrows(IllegalArgumentException.class, () -> InProcessCollective.group(0));
        assertThrows(IllegalArgumentException.class, () -> InProcessCollective.group(2, Duration.ZERO));
        assertThrows(NullPointerException.class, () -> InProcessCollective.group(2, null));
        InProcessCollective alone = InProcessCollective.group(1).getFirst();
        assertThrows(NullPointerException.class, () -> alone.allgather(null));
        assertEquals(0, alone.rank());
        assertEquals(1, alone.size());
        assertArrayEquals(new double[] {1.5}, alone.allgather(new double[] {1.5})[0]);
    }

    /** Runs body on one thread per member; returns the results in member order. */
    static <T> List<T> onThreads(List<InProcessCollective> members, Function<InProcessCollective, T> body)
            throws InterruptedException, ExecutionException {
        ExecutorService pool = Executors.newFixedThreadPool(members.size());
        try {
            List<Future<T>> futures = new ArrayList<>();
            for (InProcessCollective member : members) {
                futures.add(pool.submit(() -> body.apply(member)));
            }
            List<T> results = new ArrayList<>();
            for (Future<T> f : futures) {
                results.add(f.get());
            }
            return results;
        } finally {
            pool.shutdownNow();
        }
    }
}
