package dev.panamabn;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.Objects;

/**
 * The per-channel statistics of a batch or of a shard of one: how many values each channel has
 * ({@code count}), their mean, and {@code m2}, the sum of their squared deviations from the mean,
 * in double. The first phase of data-parallel training: every replica computes its shard's
 * statistics ({@link BatchNorm#batchStats}), the replicas exchange them, each merges them in the
 * same order ({@link #merge}) and normalises its shard with the result
 * ({@link BatchNorm#forward(MemorySegment, TensorSpec, MemorySegment, ChannelStats)}).
 *
 * <p>Immutable; arrays are copied in and out. {@link #toArray()} and {@link #fromArray} pack it
 * into {@code 1 + 2C} doubles for a transport.
 */
public final class ChannelStats {

    private final long count;
    private final double[] mean;
    private final double[] m2;

    private ChannelStats(long count, double[] mean, double[] m2) {
        this.count = count;
        this.mean = mean;
        this.m2 = m2;
    }

    /**
     * Statistics from their values.
     *
     * @param count the number of values per channel, {@code >= 0}
     * @param mean the mean of each channel (C values, finite)
     * @param m2 the sum of squared deviations of each channel (C values, finite, {@code >= 0})
     * @return the statistics
     * @throws IllegalArgumentException when the arrays differ in length or are empty, or a value
     *                                  is out of range (the message names it)
     */
    public static ChannelStats of(long count, double[] mean, double[] m2) {
        Objects.requireNonNull(mean, "mean");
        Objects.requireNonNull(m2, "m2");
        if (count < 0) {
            throw new IllegalArgumentException("count must be >= 0, got " + count);
        }
        if (mean.length == 0 || mean.length != m2.length) {
            throw new IllegalArgumentException("mean and m2 must have the same length >= 1, got " + mean.length
                    + " and " + m2.length);
        }
        for (int c = 0; c < mean.length; c++) {
            if (!Double.isFinite(mean[c]) || !Double.isFinite(m2[c]) || m2[c] < 0) {
                throw new IllegalArgumentException("channel " + c + ": mean must be finite and m2 finite and >= 0, got "
                        + mean[c] + " and " + m2[c]);
            }
        }
        return new ChannelStats(count, mean.clone(), m2.clone());
    }

    /**
     * Statistics packed by {@link #toArray()}: {@code [count, mean[0..C), m2[0..C)]}.
     *
     * @param packed the packed values
     * @param offset where they start in {@code packed}
     * @param channels C
     * @return the statistics
     * @throws IllegalArgumentException when the count is not a non-negative integer, or as
     *                                  {@link #of}
     * @throws IndexOutOfBoundsException when {@code packed} is too short
     */
    public static ChannelStats fromArray(double[] packed, int offset, int channels) {
        Objects.checkFromIndexSize(offset, 1 + 2 * channels, packed.length);
        double n = packed[offset];
        if (!(n >= 0 && n == Math.rint(n) && n < 0x1p63)) {
            throw new IllegalArgumentException("the packed count must be a non-negative integer, got " + n);
        }
        double[] mean = java.util.Arrays.copyOfRange(packed, offset + 1, offset + 1 + channels);
        double[] m2 = java.util.Arrays.copyOfRange(packed, offset + 1 + channels, offset + 1 + 2 * channels);
        return of((long) n, mean, m2);
    }

    /**
     * The statistics packed as {@code [count, mean[0..C), m2[0..C)]}: {@code 1 + 2C} doubles. A count
     * up to {@code 2^53} is exact in a double.
     *
     * @return a new array
     */
    public double[] toArray() {
        double[] packed = new double[1 + 2 * mean.length];
        packed[0] = count;
        System.arraycopy(mean, 0, packed, 1, mean.length);
        System.arraycopy(m2, 0, packed, 1 + mean.length, m2.length);
        return packed;
    }

    /**
     * Merges the statistics of shards into those of their union, in list order, with Chan's
     * formula in the native library: the same list in the same order gives the same bits on every
     * caller, whatever the timing of the exchange. Shards with count 0 are skipped.
     *
     * @param shardsInOrder the shards' statistics, in a fixed order (a replica's rank)
     * @return the statistics of the whole batch
     * @throws IllegalArgumentException when the list is empty or the channel counts differ
     */
    public static ChannelStats merge(List<ChannelStats> shardsInOrder) {
        Objects.requireNonNull(shardsInOrder, "shardsInOrder");
        if (shardsInOrder.isEmpty()) {
            throw new IllegalArgumentException("nothing to merge: the list of shards is empty");
        }
        int k = shardsInOrder.size();
        int c = shardsInOrder.getFirst().channels();
        for (int i = 0; i < k; i++) {
            int ci = Objects.requireNonNull(shardsInOrder.get(i), "shard " + i).channels();
            if (ci != c) {
                throw new IllegalArgumentException("shard " + i + " has " + ci + " channels, shard 0 has " + c);
            }
        }
        NativeLibrary.ensureLoaded();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment counts = arena.allocate(ValueLayout.JAVA_LONG, k);
            MemorySegment means = arena.allocate(ValueLayout.JAVA_DOUBLE, (long) k * c);
            MemorySegment m2s = arena.allocate(ValueLayout.JAVA_DOUBLE, (long) k * c);
            for (int i = 0; i < k; i++) {
                ChannelStats s = shardsInOrder.get(i);
                counts.setAtIndex(ValueLayout.JAVA_LONG, i, s.count);
                MemorySegment.copy(s.mean, 0, means, ValueLayout.JAVA_DOUBLE, (long) i * c * Double.BYTES, c);
                MemorySegment.copy(s.m2, 0, m2s, ValueLayout.JAVA_DOUBLE, (long) i * c * Double.BYTES, c);
            }
            MemorySegment count = arena.allocate(ValueLayout.JAVA_LONG);
            MemorySegment mean = arena.allocate(ValueLayout.JAVA_DOUBLE, c);
            MemorySegment m2 = arena.allocate(ValueLayout.JAVA_DOUBLE, c);
            NativeCalls.check(NativeCalls.mergeStats(count, mean, m2, counts, means, m2s, k, c), "bn_merge_stats");
            return new ChannelStats(count.get(ValueLayout.JAVA_LONG, 0), mean.toArray(ValueLayout.JAVA_DOUBLE),
                    m2.toArray(ValueLayout.JAVA_DOUBLE));
        }
    }

    /**
     * C.
     *
     * @return the channel count
     */
    public int channels() {
        return mean.length;
    }

    /**
     * The number of values behind each channel's statistics ({@code N * S} of a whole batch).
     *
     * @return the count
     */
    public long count() {
        return count;
    }

    /**
     * The mean of each channel.
     *
     * @return a copy of the C means
     */
    public double[] mean() {
        return mean.clone();
    }

    /**
     * The sum of squared deviations from the mean of each channel.
     *
     * @return a copy of the C sums
     */
    public double[] m2() {
        return m2.clone();
    }

    /**
     * The biased variance {@code m2 / count} of each channel, the one that normalises; 0 for an
     * empty batch.
     *
     * @return C variances
     */
    public double[] variance() {
        double[] v = new double[m2.length];
        for (int c = 0; c < v.length; c++) {
            v[c] = count == 0 ? 0 : m2[c] / count;
        }
        return v;
    }

    /** Like {@code ChannelStats[channels=64, count=200704]}. */
    @Override
    public String toString() {
        return "ChannelStats[channels=" + mean.length + ", count=" + count + "]";
    }
}
