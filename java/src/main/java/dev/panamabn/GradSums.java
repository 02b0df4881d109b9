package dev.panamabn;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * The per-channel sums that backward needs from the whole batch: {@code sumDy = Σ g} and
 * {@code sumDyXhat = Σ g·x̂} over the {@code count} values of each channel, in double, with
 * {@code g} the gradient reaching the normalisation and {@code x̂} the normalised input. They
 * are also the shard's share of the bias and weight gradients. The backward phase of
 * data-parallel training: every replica computes its shard's sums ({@link BatchNorm#backwardSums}),
 * the replicas exchange them, each adds them in the same order ({@link #sum}) and computes its
 * shard's dx from the total
 * ({@link BatchNorm#backward(java.lang.foreign.MemorySegment, java.lang.foreign.MemorySegment, TensorSpec, java.lang.foreign.MemorySegment, GradSums, GradSums, BackwardOption...)}).
 *
 * <p>Immutable; arrays are copied in and out. {@link #toArray()} and {@link #fromArray} pack it
 * into {@code 1 + 2C} doubles for a transport.
 */
public final class GradSums {

    private final long count;
    private final double[] sumDy;
    private final double[] sumDyXhat;

    private GradSums(long count, double[] sumDy, double[] sumDyXhat) {
        this.count = count;
        this.sumDy = sumDy;
        this.sumDyXhat = sumDyXhat;
    }

    /**
     * Sums from their values.
     *
     * @param count the number of values per channel summed, {@code >= 0}
     * @param sumDy {@code Σ g} of each channel (C values)
     * @param sumDyXhat {@code Σ g·x̂} of each channel (C values)
     * @return the sums
     * @throws IllegalArgumentException when the arrays differ in length or are empty, or count is
     *                                  negative
     */
    public static GradSums of(long count, double[] sumDy, double[] sumDyXhat) {
        Objects.requireNonNull(sumDy, "sumDy");
        Objects.requireNonNull(sumDyXhat, "sumDyXhat");
        if (count < 0) {
            throw new IllegalArgumentException("count must be >= 0, got " + count);
        }
        if (sumDy.length == 0 || sumDy.length != sumDyXhat.length) {
            throw new IllegalArgumentException("sumDy and sumDyXhat must have the same length >= 1, got "
                    + sumDy.length + " and " + sumDyXhat.length);
        }
        return new GradSums(count, sumDy.clone(), sumDyXhat.clone());
    }

    /**
     * Sums packed by {@link #toArray()}: {@code [count, sumDy[0..C), sumDyXhat[0..C)]}.
     *
     * @param packed the packed values
     * @param offset where they start in {@code packed}
     * @param channels C
     * @return the sums
     * @throws IllegalArgumentException when the count is not a non-negative integer
     * @throws IndexOutOfBoundsException when {@code packed} is too short
     */
    public static GradSums fromArray(double[] packed, int offset, int channels) {
        Objects.checkFromIndexSize(offset, 1 + 2 * channels, packed.length);
        double n = packed[offset];
        if (!(n >= 0 && n == Math.rint(n) && n < 0x1p63)) {
            throw new IllegalArgumentException("the packed count must be a non-negative integer, got " + n);
        }
        return of((long) n, Arrays.copyOfRange(packed, offset + 1, offset + 1 + channels),
                Arrays.copyOfRange(packed, offset + 1 + channels, offset + 1 + 2 * channels));
    }

    /**
     * The sums packed as {@code [count, sumDy[0..C), sumDyXhat[0..C)]}: {@code 1 + 2C} doubles.
     *
     * @return a new array
     */
    public double[] toArray() {
        double[] packed = new double[1 + 2 * sumDy.length];
        packed[0] = count;
        System.arraycopy(sumDy, 0, packed, 1, sumDy.length);
        System.arraycopy(sumDyXhat, 0, packed, 1 + sumDy.length, sumDyXhat.length);
        return packed;
    }

    /**
     * Adds the sums of shards, channel by channel in list order, and their counts: the same list
     * in the same order gives the same bits on every caller.
     *
     * @param shardsInOrder the shards' sums, in a fixed order (a replica's rank)
     * @return the sums of the whole batch
     * @throws IllegalArgumentException when the list is empty or the channel counts differ
     */
    public static GradSums sum(List<GradSums> shardsInOrder) {
        Objects.requireNonNull(shardsInOrder, "shardsInOrder");
        if (shardsInOrder.isEmpty()) {
            throw new IllegalArgumentException("nothing to add: the list of shards is empty");
        }
        int c = shardsInOrder.getFirst().channels();
        long count = 0;
        double[] dy = new double[c];
        double[] dyXhat = new double[c];
        for (int i = 0; i < shardsInOrder.size(); i++) {
            GradSums s = Objects.requireNonNull(shardsInOrder.get(i), "shard " + i);
            if (s.channels() != c) {
                throw new IllegalArgumentException("shard " + i + " has " + s.channels() + " channels, shard 0 has "
                        + c);
            }
            count = Math.addExact(count, s.count);
            for (int ch = 0; ch < c; ch++) {
                dy[ch] += s.sumDy[ch];
                dyXhat[ch] += s.sumDyXhat[ch];
            }
        }
        return new GradSums(count, dy, dyXhat);
    }

    /**
     * C.
     *
     * @return the channel count
     */
    public int channels() {
        return sumDy.length;
    }

    /**
     * The number of values per channel behind the sums.
     *
     * @return the count
     */
    public long count() {
        return count;
    }

    /**
     * {@code Σ g} of each channel: the bias gradient of these values.
     *
     * @return a copy of the C sums
     */
    public double[] sumDy() {
        return sumDy.clone();
    }

    /**
     * {@code Σ g·x̂} of each channel: the weight gradient of these values.
     *
     * @return a copy of the C sums
     */
    public double[] sumDyXhat() {
        return sumDyXhat.clone();
    }

    /** Like {@code GradSums[channels=64, count=200704]}. */
    @Override
    public String toString() {
        return "GradSums[channels=" + sumDy.length + ", count=" + count + "]";
    }
}
