package dev.panamabn;

import java.util.Arrays;
import java.util.Objects;

/**
 * The logical shape {@code (N, C, spatial...)} of a contiguous tensor, in PyTorch's order:
 * rank 2 {@code (N, C)} and 3 {@code (N, C, L)} for BatchNorm1d, rank 4 {@code (N, C, H, W)} for
 * BatchNorm2d, rank 5 {@code (N, C, D, H, W)} for BatchNorm3d. The module views it as
 * {@code (N, C, S)} with S the product of the spatial dimensions. As a {@link TensorSpec}, a
 * shape alone describes a float32 tensor in the channels-first layout (NCHW);
 * {@link #channelsLast()} and {@link TensorSpec#with(DataType)} describe the others.
 *
 * <p>Every dimension is {@code >= 0} except C, which is {@code >= 1}. An empty tensor (N = 0, or a
 * spatial dimension 0) is a valid shape, as in PyTorch. The native kernel indexes with 64-bit
 * signed integers, so the byte sizes {@code 4 * N * C * S}, {@code 4 * C * S} (one sample, also
 * when N = 0) and {@code 8 * C} (the per-channel statistics in double) must each be below
 * {@code 2^63}, and so must every partial product of the spatial dimensions.
 *
 * <p>Immutable: the dimensions are copied in and out.
 *
 * @param dims the dimensions, outermost first
 */
public record Shape(long[] dims) implements TensorSpec {

    private static final String LIMIT = "4 * N * C * S bytes, 4 * C * S bytes (one sample) and 8 * C bytes"
            + " (the per-channel statistics) must each be < 2^63";

    /**
     * Checks and copies the dimensions.
     *
     * @param dims the dimensions, outermost first
     * @throws IllegalArgumentException for a rank outside 2..5, a negative dimension, C = 0, or a
     *                                  size past the limits above (the message names them)
     */
    public Shape {
        Objects.requireNonNull(dims, "dims");
        dims = dims.clone();
        if (dims.length < 2 || dims.length > 5) {
            throw new IllegalArgumentException("shape must have rank 2 to 5 (N, C, spatial...), got rank "
                    + dims.length + ": " + Arrays.toString(dims));
        }
        for (int i = 0; i < dims.length; i++) {
            if (dims[i] < 0) {
                throw new IllegalArgumentException("dimension " + i + " must be >= 0, got " + dims[i]
                        + " in " + Arrays.toString(dims));
            }
        }
        if (dims[1] < 1) {
            throw new IllegalArgumentException("the channel count (dimension 1) must be >= 1, got " + dims[1]
                    + " in " + Arrays.toString(dims));
        }
        try {
            long spatial = 1;
            for (int i = 2; i < dims.length; i++) {
                spatial = Math.multiplyExact(spatial, dims[i]);
            }
            long sampleBytes = Math.multiplyExact(Math.multiplyExact(dims[1], spatial), (long) Float.BYTES);
            Math.multiplyExact(dims[0], sampleBytes);
            Math.multiplyExact(dims[1], (long) Double.BYTES);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("the size of " + Arrays.toString(dims) + " overflows a long: "
                    + LIMIT + " (also for an empty tensor)");
        }
    }

    /**
     * A shape from its dimensions, outermost first: {@code Shape.of(32, 64, 56, 56)}.
     *
     * @param dims the dimensions, outermost first
     * @return the shape
     * @throws IllegalArgumentException as the constructor
     */
    public static Shape of(long... dims) {
        return new Shape(dims);
    }

    /**
     * The dimensions.
     *
     * @return a copy of the dimensions, outermost first
     */
    @Override
    public long[] dims() {
        return dims.clone();
    }

    /**
     * The number of dimensions.
     *
     * @return the rank, 2 to 5
     */
    public int rank() {
        return dims.length;
    }

    /**
     * One dimension.
     *
     * @param index 0 for N, 1 for C, 2 and up for the spatial dimensions
     * @return the size of that dimension
     * @throws IndexOutOfBoundsException when {@code index} is not below {@link #rank()}
     */
    public long dim(int index) {
        return dims[index];
    }

    /**
     * N, dimension 0.
     *
     * @return the batch size
     */
    public long batch() {
        return dims[0];
    }

    /**
     * C, dimension 1.
     *
     * @return the channel count
     */
    public long channels() {
        return dims[1];
    }

    /**
     * S, the product of the spatial dimensions.
     *
     * @return S (1 for rank 2)
     */
    public long spatial() {
        long s = 1;
        for (int i = 2; i < dims.length; i++) {
            s *= dims[i];
        }
        return s;
    }

    /**
     * The number of elements.
     *
     * @return {@code N * C * S}
     */
    public long elementCount() {
        return dims[0] * dims[1] * spatial();
    }

    /**
     * The number of values that belong to each channel.
     *
     * @return {@code M = N * S}
     */
    public long valuesPerChannel() {
        return dims[0] * spatial();
    }

    /**
     * This shape, as a spec.
     *
     * @return this
     */
    @Override
    public Shape shape() {
        return this;
    }

    /**
     * A shape alone is channels-first.
     *
     * @return {@link Layout#CHANNELS_FIRST}
     */
    @Override
    public Layout layout() {
        return Layout.CHANNELS_FIRST;
    }

    /**
     * A shape alone is float32.
     *
     * @return {@link DataType#FLOAT32}
     */
    @Override
    public DataType dataType() {
        return DataType.FLOAT32;
    }

    /**
     * The spec of a float32 channels-last tensor of this shape (NHWC for a rank-4 shape).
     *
     * @return the spec
     */
    public TensorSpec channelsLast() {
        return with(Layout.CHANNELS_LAST);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Shape other && Arrays.equals(dims, other.dims);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(dims);
    }

    /** Like PyTorch's sizes: {@code [1, 3, 1, 1]}. */
    @Override
    public String toString() {
        return Arrays.toString(dims);
    }
}
