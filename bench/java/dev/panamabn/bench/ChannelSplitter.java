package dev.panamabn.bench;

import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Runs work over channels on a fixed number of platform threads: the calling thread plus
 * {@code threads - 1} pool workers, each taking one contiguous block of channels. This is how
 * the pure-Java implementations use more than one core (channels are independent in NCHW).
 * Tensors below {@link #SERIAL_BELOW} elements run on the calling thread alone: handing work to
 * another thread costs microseconds, more than such a tensor takes (the native library has the
 * same rule).
 */
final class ChannelSplitter implements AutoCloseable {

    /** Work on the channels [c0, c1). */
    interface RangeTask {
        void run(int c0, int c1);
    }

    static final long SERIAL_BELOW = 1 << 16;

    private final int threads;
    private final ExecutorService pool;
    private final Future<?>[] pending;

    ChannelSplitter(int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads: expected >= 1, got " + threads);
        }
        this.threads = threads;
        this.pool = threads == 1 ? null : Executors.newFixedThreadPool(threads - 1, r -> {
            Thread t = new Thread(r, "channel-splitter");
            t.setDaemon(true);
            return t;
        });
        this.pending = new Future<?>[threads - 1];
    }

    int threads() {
        return threads;
    }

    /**
     * Splits [0, channels) into {@code threads} blocks, runs them in parallel and waits for all;
     * {@code elements} is the tensor's size, which decides whether splitting pays.
     */
    void run(int channels, long elements, RangeTask task) {
        if (pool == null || elements < SERIAL_BELOW) {
            task.run(0, channels);
            return;
        }
        for (int t = 0; t < threads - 1; t++) {
            int c0 = block(channels, t);
            int c1 = block(channels, t + 1);
            pending[t] = pool.submit(() -> task.run(c0, c1));
        }
        task.run(block(channels, threads - 1), channels);
        try {
            for (Future<?> f : pending) {
                f.get();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for channel blocks", e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("a channel block failed", e.getCause());
        }
    }

    private int block(int channels, int t) {
        return (int) ((long) channels * t / threads);
    }

    @Override
    public void close() {
        if (pool != null) {
            pool.shutdownNow();
        }
    }
}
