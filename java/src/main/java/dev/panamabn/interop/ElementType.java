package dev.panamabn.interop;

/**
 * The element types a {@link Tensor} can hold, with their names in NumPy's {@code .npy} header
 * ({@code descr}, without the byte-order character) and in safetensors' header ({@code dtype}).
 *
 * <p>{@link #BFLOAT16} has no NumPy type: {@link Npy} writes it as its 16-bit patterns under
 * {@code '<u2'} and reads such a file back as {@link #UINT16}; {@link Tensor#viewAs} turns it back
 * into bfloat16 without a copy.
 */
public enum ElementType {
    /** A boolean in one byte, NumPy's {@code bool}; any nonzero byte reads as true. */
    BOOL(1, "b1", "BOOL", Kind.INTEGER),
    /** An unsigned 8-bit integer, NumPy's {@code uint8}. */
    UINT8(1, "u1", "U8", Kind.INTEGER),
    /** A signed 8-bit integer, NumPy's {@code int8}. */
    INT8(1, "i1", "I8", Kind.INTEGER),
    /** An unsigned 16-bit integer, NumPy's {@code uint16}. */
    UINT16(2, "u2", "U16", Kind.INTEGER),
    /** A signed 16-bit integer, NumPy's {@code int16}. */
    INT16(2, "i2", "I16", Kind.INTEGER),
    /** An unsigned 32-bit integer, NumPy's {@code uint32}. */
    UINT32(4, "u4", "U32", Kind.INTEGER),
    /** A signed 32-bit integer, NumPy's {@code int32}. */
    INT32(4, "i4", "I32", Kind.INTEGER),
    /** An unsigned 64-bit integer, NumPy's {@code uint64}. */
    UINT64(8, "u8", "U64", Kind.INTEGER),
    /** A signed 64-bit integer, NumPy's {@code int64}. */
    INT64(8, "i8", "I64", Kind.INTEGER),
    /** IEEE binary16, NumPy's {@code float16}. */
    FLOAT16(2, "f2", "F16", Kind.FLOATING),
    /** The high 16 bits of a binary32; no NumPy type (see the class comment). */
    BFLOAT16(2, null, "BF16", Kind.FLOATING),
    /** IEEE binary32, NumPy's {@code float32}. */
    FLOAT32(4, "f4", "F32", Kind.FLOATING),
    /** IEEE binary64, NumPy's {@code float64}. */
    FLOAT64(8, "f8", "F64", Kind.FLOATING);

    private enum Kind { INTEGER, FLOATING }

    private final int byteSize;
    private final String npyCode;
    private final String safetensorsName;
    private final Kind kind;

    ElementType(int byteSize, String npyCode, String safetensorsName, Kind kind) {
        this.byteSize = byteSize;
        this.npyCode = npyCode;
        this.safetensorsName = safetensorsName;
        this.kind = kind;
    }

    /**
     * {@return the size of one element in bytes: 1, 2, 4 or 8}
     */
    public int byteSize() {
        return byteSize;
    }

    /**
     * {@return whether this is a floating-point type: {@link #FLOAT16}, {@link #BFLOAT16},
     * {@link #FLOAT32} or {@link #FLOAT64}}
     */
    public boolean isFloatingPoint() {
        return kind == Kind.FLOATING;
    }

    /**
     * {@return whether this is {@link #BOOL} or one of the signed and unsigned integer types}
     */
    public boolean isInteger() {
        return kind == Kind.INTEGER;
    }

    /** The kind-and-size code of {@code .npy}'s {@code descr} ({@code "f4"}), or null for bfloat16. */
    String npyCode() {
        return npyCode;
    }

    /**
     * {@return the name of this type in the {@code dtype} field of a safetensors header, e.g.
     * {@code "F32"}}
     */
    public String safetensorsName() {
        return safetensorsName;
    }

    /** The type whose {@code .npy} code (e.g. {@code "f4"}) this is, or null. */
    static ElementType ofNpyCode(String code) {
        for (ElementType t : values()) {
            if (code.equals(t.npyCode)) {
                return t;
            }
        }
        return null;
    }

    /** The type whose safetensors {@code dtype} (e.g. {@code "F32"}) this is, or null. */
    static ElementType ofSafetensorsName(String name) {
        for (ElementType t : values()) {
            if (name.equals(t.safetensorsName)) {
                return t;
            }
        }
        return null;
    }
}
