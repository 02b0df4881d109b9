package dev.panamabn.interop;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Objects;

/**
 * An n-dimensional array as files and other frameworks hand it over: an element type, a shape
 * and the elements in a {@link MemorySegment}, C-contiguous (row-major, last index fastest) and
 * in the platform's byte order, exactly {@code type.byteSize() * elementCount()} bytes.
 *
 * <p>The record does not copy the data: the segment is a view (of a memory-mapped file, an arena
 * allocation or a Java array) and lives as long as its owner. Rank 0 is a scalar (one element).
 * The data of a tensor read from a safetensors file may be unaligned; the accessors here read any
 * alignment.
 *
 * @param type the element type
 * @param shape the dimensions, outermost first, each {@code >= 0}
 * @param data the elements
 */
public record Tensor(ElementType type, long[] shape, MemorySegment data) {

    /**
     * Creates a tensor over {@code data}, which is not copied; the shape is.
     *
     * @param type the element type
     * @param shape the dimensions, outermost first, each {@code >= 0}
     * @param data the elements, exactly {@code type.byteSize() * elementCount()} bytes
     * @throws IllegalArgumentException for a negative dimension, a size that overflows a long, or
     *                                  data of another byte size
     */
    public Tensor {
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(data, "data");
        shape = Objects.requireNonNull(shape, "shape").clone();
        long bytes = byteSize(type, shape);
        if (data.byteSize() != bytes) {
            throw new IllegalArgumentException("a " + type + " tensor of shape " + Arrays.toString(shape) + " has "
                    + bytes + " bytes, the data has " + data.byteSize());
        }
    }

    /**
     * Allocates a tensor with zeroed data in {@code arena}, aligned to its element size (at most 8
     * bytes).
     *
     * @param type the element type
     * @param arena the arena that allocates, and owns, the data
     * @param shape the dimensions, outermost first; none for a scalar
     * @return a new tensor
     * @throws IllegalArgumentException for a negative dimension or a size that overflows a long
     */
    public static Tensor allocate(ElementType type, Arena arena, long... shape) {
        return new Tensor(type, shape, arena.allocate(byteSize(type, shape), Math.min(type.byteSize(), 8)));
    }

    /**
     * Returns a float32 tensor over a Java array, which is not copied.
     *
     * @param values the elements in C order
     * @param shape the dimensions, outermost first; their product must be {@code values.length}
     * @return a tensor whose data is {@code MemorySegment.ofArray(values)}
     * @throws IllegalArgumentException for a negative dimension, or a shape of another element count
     */
    public static Tensor ofFloats(float[] values, long... shape) {
        return new Tensor(ElementType.FLOAT32, shape, MemorySegment.ofArray(values));
    }

    /**
     * Returns a float64 tensor over a Java array, which is not copied.
     *
     * @param values the elements in C order
     * @param shape the dimensions, outermost first; their product must be {@code values.length}
     * @return a tensor whose data is {@code MemorySegment.ofArray(values)}
     * @throws IllegalArgumentException for a negative dimension, or a shape of another element count
     */
    public static Tensor ofDoubles(double[] values, long... shape) {
        return new Tensor(ElementType.FLOAT64, shape, MemorySegment.ofArray(values));
    }

    /**
     * Returns an int64 tensor over a Java array, which is not copied.
     *
     * @param values the elements in C order
     * @param shape the dimensions, outermost first; their product must be {@code values.length}
     * @return a tensor whose data is {@code MemorySegment.ofArray(values)}
     * @throws IllegalArgumentException for a negative dimension, or a shape of another element count
     */
    public static Tensor ofLongs(long[] values, long... shape) {
        return new Tensor(ElementType.INT64, shape, MemorySegment.ofArray(values));
    }

    /**
     * {@return a copy of the dimensions, outermost first}
     */
    @Override
    public long[] shape() {
        return shape.clone();
    }

    /**
     * {@return the number of dimensions, 0 for a scalar}
     */
    public int rank() {
        return shape.length;
    }

    /**
     * Returns one dimension.
     *
     * @param index the dimension's position, 0 for the outermost
     * @return the size of that dimension
     * @throws IndexOutOfBoundsException when {@code index} is not in {@code [0, rank())}
     */
    public long dim(int index) {
        return shape[index];
    }

    /**
     * {@return the number of elements: the product of the dimensions, 1 for a scalar}
     */
    public long elementCount() {
        return elementCount(shape);
    }

    /**
     * Returns the same bytes as another type of the same size, without a copy; e.g. bfloat16 bit
     * patterns read from a {@code '<u2'} {@code .npy} file:
     * {@code tensor.viewAs(ElementType.BFLOAT16)}.
     *
     * @param newType the element type to view the data as
     * @return a tensor of {@code newType} with this shape and data
     * @throws IllegalArgumentException when the element sizes differ
     */
    public Tensor viewAs(ElementType newType) {
        if (newType.byteSize() != type.byteSize()) {
            throw new IllegalArgumentException("cannot view " + type + " (" + type.byteSize() + " bytes) as " + newType
                    + " (" + newType.byteSize() + " bytes)");
        }
        return new Tensor(newType, shape, data);
    }

    /**
     * Returns the same data under another shape of the same element count, without a copy.
     *
     * @param newShape the new dimensions, outermost first
     * @return a tensor of this type and data with {@code newShape}
     * @throws IllegalArgumentException for a negative dimension, or a shape of another element count
     */
    public Tensor reshape(long... newShape) {
        if (elementCount(newShape) != elementCount()) {
            throw new IllegalArgumentException("cannot reshape " + Arrays.toString(shape) + " to "
                    + Arrays.toString(newShape) + ": the element counts differ");
        }
        return new Tensor(type, newShape, data);
    }

    /**
     * Copies the elements into a new float array, in C order. float16, bfloat16 and float32
     * values are exact; float64 values are rounded to nearest.
     *
     * @return the elements as floats
     * @throws IllegalStateException when the type is not floating-point, or the tensor has more than
     *                               {@code Integer.MAX_VALUE - 8} elements
     */
    public float[] toFloatArray() {
        if (!type.isFloatingPoint()) {
            throw new IllegalStateException("toFloatArray needs a floating-point tensor, this one is " + type);
        }
        float[] out = new float[arrayLength()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) doubleAt(i);
        }
        return out;
    }

    /**
     * Copies the elements into a new double array, in C order; every floating-point type converts
     * exactly.
     *
     * @return the elements as doubles
     * @throws IllegalStateException as {@link #toFloatArray()}
     */
    public double[] toDoubleArray() {
        if (!type.isFloatingPoint()) {
            throw new IllegalStateException("toDoubleArray needs a floating-point tensor, this one is " + type);
        }
        double[] out = new double[arrayLength()];
        for (int i = 0; i < out.length; i++) {
            out[i] = doubleAt(i);
        }
        return out;
    }

    /**
     * Copies the elements into a new long array, in C order; BOOL elements become 0 or 1.
     *
     * @return the elements as longs
     * @throws IllegalStateException when the type is not an integer type, a UINT64 value exceeds
     *                               {@code Long.MAX_VALUE}, or the tensor is too large for an array
     */
    public long[] toLongArray() {
        if (!type.isInteger()) {
            throw new IllegalStateException("toLongArray needs an integer tensor, this one is " + type);
        }
        long[] out = new long[arrayLength()];
        for (int i = 0; i < out.length; i++) {
            out[i] = longAt(i);
        }
        return out;
    }

    /**
     * Compares this tensor with another: equal when both have the same element type, the same
     * shape and equal data segments (by {@link MemorySegment#equals}: the same memory region, not
     * equal contents).
     *
     * @param o the object to compare with
     * @return whether {@code o} is a tensor equal to this one
     */
    @Override
    public boolean equals(Object o) {
        return o instanceof Tensor other && type == other.type && Arrays.equals(shape, other.shape)
                && data.equals(other.data);
    }

    @Override
    public int hashCode() {
        return Objects.hash(type, Arrays.hashCode(shape), data);
    }

    @Override
    public String toString() {
        return "Tensor[" + type + " " + Arrays.toString(shape) + "]";
    }

    // ---- internals ----

    private double doubleAt(long i) {
        return switch (type) {
            case FLOAT16 -> Float.float16ToFloat(data.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i));
            case BFLOAT16 -> Float.intBitsToFloat((data.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i) & 0xffff) << 16);
            case FLOAT32 -> data.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i);
            case FLOAT64 -> data.getAtIndex(ValueLayout.JAVA_DOUBLE_UNALIGNED, i);
            default -> throw new AssertionError(type);
        };
    }

    private long longAt(long i) {
        return switch (type) {
            case BOOL -> data.get(ValueLayout.JAVA_BYTE, i) != 0 ? 1 : 0;
            case UINT8 -> data.get(ValueLayout.JAVA_BYTE, i) & 0xffL;
            case INT8 -> data.get(ValueLayout.JAVA_BYTE, i);
            case UINT16 -> data.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i) & 0xffffL;
            case INT16 -> data.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i);
            case UINT32 -> data.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, i) & 0xffff_ffffL;
            case INT32 -> data.getAtIndex(ValueLayout.JAVA_INT_UNALIGNED, i);
            case INT64 -> data.getAtIndex(ValueLayout.JAVA_LONG_UNALIGNED, i);
            case UINT64 -> {
                long v = data.getAtIndex(ValueLayout.JAVA_LONG_UNALIGNED, i);
                if (v < 0) {
                    throw new IllegalStateException("UINT64 element " + i + " = " + Long.toUnsignedString(v)
                            + " does not fit in a long");
                }
                yield v;
            }
            default -> throw new AssertionError(type);
        };
    }

    private int arrayLength() {
        long count = elementCount();
        if (count > Integer.MAX_VALUE - 8) {
            throw new IllegalStateException("a tensor of " + count + " elements does not fit in a Java array");
        }
        return (int) count;
    }

    static long elementCount(long[] shape) {
        long count = 1;
        for (long d : shape) {
            count *= d;
        }
        return count;
    }

    /** The byte size of a tensor, checking the dimensions. */
    static long byteSize(ElementType type, long[] shape) {
        long count = 1;
        for (int i = 0; i < shape.length; i++) {
            if (shape[i] < 0) {
                throw new IllegalArgumentException("dimension " + i + " must be >= 0, got " + shape[i] + " in "
                        + Arrays.toString(shape));
            }
            try {
                count = Math.multiplyExact(count, shape[i]);
            } catch (ArithmeticException e) {
                throw new IllegalArgumentException("the element count of " + Arrays.toString(shape) + " overflows a long");
            }
        }
        try {
            return Math.multiplyExact(count, type.byteSize());
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("the byte size of " + Arrays.toString(shape) + " " + type
                    + " overflows a long");
        }
    }
}
