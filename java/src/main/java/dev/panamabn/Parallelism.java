package dev.panamabn;

import dev.panamabn.internal.BatchNormNative;

/**
 * The number of native threads a BatchNorm call may use.
 *
 * <p>The setting is process-wide and applies to calls from every Java thread. Each Java thread
 * that is inside a native call runs its own team of this many threads, so k Java threads calling
 * at once use up to k times this many; a server that calls from many threads may want
 * {@code setThreads(1)}. Results do not depend on the thread count: the native reductions are
 * ordered by the shape alone.
 */
public final class Parallelism {

    /** The largest thread count {@link #setThreads} accepts (the native library's limit). */
    public static final int MAX_THREADS = 1024;

    private Parallelism() {
    }

    /**
     * Sets the thread count for all later calls.
     *
     * @throws IllegalArgumentException when {@code threads} is outside {@code 1..}{@value #MAX_THREADS}
     */
    public static void setThreads(int threads) {
        if (threads < 1 || threads > MAX_THREADS) {
            throw new IllegalArgumentException("threads must be in 1.." + MAX_THREADS + ", got " + threads);
        }
        NativeLibrary.ensureLoaded();
        NativeCalls.check(BatchNormNative.bn_set_num_threads(threads), "bn_set_num_threads");
    }

    /** The thread count in force (by default, the number of processors the OpenMP runtime reports). */
    public static int threads() {
        NativeLibrary.ensureLoaded();
        return BatchNormNative.bn_get_num_threads();
    }
}
