package dev.panamabn;

import dev.panamabn.internal.BatchNormNative;

/**
 * The number of native threads a BatchNorm call may use.
 *
 * <p>The setting is process-wide and applies to calls from every Java thread. Results do not
 * depend on it: the native reductions are ordered by the shape alone.
 *
 * <p>Oversubscription policy: the process has one team of native threads. A call large enough to
 * be worth splitting takes the team if it is free and runs on {@link #threads()} threads; a call
 * made while another Java thread's call holds the team runs on its own calling thread alone
 * (with the same results, just serially). So k Java threads calling at once use at most
 * {@code k + threads() - 1} threads, not {@code k * threads()}. Small tensors never use the team.
 * The OpenMP runtime keeps idle helper threads for each Java thread that has led the team, until
 * that Java thread ends; a server that calls from many threads and wants no helpers at all can
 * use {@code setThreads(1)}.
 */
public final class Parallelism {

    /** The largest thread count {@link #setThreads} accepts (the native library's limit). */
    public static final int MAX_THREADS = 1024;

    private Parallelism() {
    }

    /**
     * Sets the thread count for all later calls.
     *
     * @param threads the thread count, {@code 1..}{@value #MAX_THREADS}
     * @throws IllegalArgumentException when {@code threads} is outside {@code 1..}{@value #MAX_THREADS}
     */
    public static void setThreads(int threads) {
        if (threads < 1 || threads > MAX_THREADS) {
            throw new IllegalArgumentException("threads must be in 1.." + MAX_THREADS + ", got " + threads);
        }
        NativeLibrary.ensureLoaded();
        NativeCalls.check(BatchNormNative.bn_set_num_threads(threads), "bn_set_num_threads");
    }

    /**
     * The thread count in force.
     *
     * @return the count; by default the number of processors the OpenMP runtime reports
     */
    public static int threads() {
        NativeLibrary.ensureLoaded();
        return BatchNormNative.bn_get_num_threads();
    }
}
