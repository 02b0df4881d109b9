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
    BOOL(1, "b1", "BOOL", Kind.INTEGER),
    UINT8(1, "u1", "U8", Kind.INTEGER),
    INT8(1, "i1", "I8", Kind.INTEGER),
    UINT16(2, "u2", "U16", Kind.INTEGER),
    INT16(2, "i2", "I16", Kind.INTEGER),
    UINT32(4, "u4", "U32", Kind.INTEGER),
    INT32(4, "i4", "I32", Kind.INTEGER),
    UINT64(8, "u8", "U64", Kind.INTEGER),
    INT64(8, "i8", "I64", Kind.INTEGER),
    /** IEEE binary16, NumPy's {@code float16}. */
    FLOAT16(2, "f2", "F16", Kind.FLOATING),
    /** The high 16 bits of a binary32; no NumPy type (see the class comment). */
    BFLOAT16(2, null, "BF16", Kind.FLOATING),
    FLOAT32(4, "f4", "F32", Kind.FLOATING),
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

    /** Bytes per element. */
    public int byteSize() {
        return byteSize;
    }

    public boolean isFloatingPoint() {
        return kind == Kind.FLOATING;
    }

    /** BOOL and the signed and unsigned integers. */
    public boolean isInteger() {
        return kind == Kind.INTEGER;
    }

    /** The kind-and-size code of {@code .npy}'s {@code descr} ({@code "f4"}), or null for bfloat16. */
    String npyCode() {
        return npyCode;
    }

    /** The {@code dtype} of safetensors' header ({@code "F32"}). */
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
