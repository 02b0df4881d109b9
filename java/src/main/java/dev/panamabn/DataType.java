package dev.panamabn;

/**
 * The element type of the tensors of a call (x, y, the residual z and the gradients). Per-channel
 * state (weight, bias, running statistics, gradients) is float32 whatever the tensors' type, and
 * statistics accumulate in double; every output element is rounded once, to nearest-even, from
 * its value computed in double (float32) or in float (the 16-bit types, as PyTorch does).
 *
 * <p>Accuracy: every 16-bit output is the exact result for the inputs as given (statistics in
 * double, whose own error is about 1e-15 relative), computed in float (a few roundings of 2^-24 of
 * its largest term among |x - mean| * scale, bias and z) and rounded once to the type, so within
 * half a unit in its last place and that margin: a relative precision of 2^-9 (0.2%) for bfloat16,
 * 2^-12 for float16. The margin is about 2^-13 of a unit, except where the terms cancel to an
 * output thousands of times smaller than they are: there it can exceed the output's own unit, as
 * in any float computation of the same sum. Per-channel constants beyond float's comfortable range
 * (a scale below 2^-100 or above 2^100, an offset above 2^110) are computed in double for that
 * call. What a 16-bit input cannot hold is lost before the call: around a mean of 1e4 bfloat16's
 * values are 64 apart, so a channel of mean 1e4 and spread 1 arrives as a few distinct values,
 * which the statistics then describe exactly. float16 overflows past 65504.
 *
 * <p>The 16-bit types hold their bits in a {@code short}: {@link #fromFloat} and {@link #toFloat}
 * convert one value, {@link #encode} and {@link #decode} whole arrays, the same way the kernel
 * does (round to nearest-even, NaN stays NaN, overflow goes to infinity).
 */
public enum DataType {
    /** IEEE 754 binary32, Java's {@code float}. */
    FLOAT32(0, 4),
    /** bfloat16: the high 16 bits of a binary32 (8 exponent bits, 7 fraction bits). */
    BFLOAT16(1, 2),
    /** IEEE 754 binary16 (5 exponent bits, 10 fraction bits), as {@link Float#floatToFloat16}. */
    FLOAT16(2, 2);

    private final int code;
    private final int byteSize;

    DataType(int code, int byteSize) {
        this.code = code;
        this.byteSize = byteSize;
    }

    /**
     * The size of one element.
     *
     * @return 4 for {@link #FLOAT32}, 2 for the 16-bit types
     */
    public int byteSize() {
        return byteSize;
    }

    /**
     * The bits of {@code value} in this 16-bit type, rounded to nearest-even.
     *
     * @param value the value
     * @return its bits in this type
     * @throws UnsupportedOperationException for {@link #FLOAT32}, which is no 16-bit type
     */
    public short fromFloat(float value) {
        return switch (this) {
            case BFLOAT16 -> bfloat16(value);
            case FLOAT16 -> Float.floatToFloat16(value);
            case FLOAT32 -> throw notSixteenBits();
        };
    }

    /**
     * The value of {@code bits} in this 16-bit type, exactly (every 16-bit value is a float).
     *
     * @param bits the bits of a value of this type
     * @return the value
     * @throws UnsupportedOperationException for {@link #FLOAT32}
     */
    public float toFloat(short bits) {
        return switch (this) {
            case BFLOAT16 -> Float.intBitsToFloat((bits & 0xffff) << 16);
            case FLOAT16 -> Float.float16ToFloat(bits);
            case FLOAT32 -> throw notSixteenBits();
        };
    }

    /**
     * {@link #fromFloat} on every element.
     *
     * @param values the values
     * @return a new array of their bits in this type
     * @throws UnsupportedOperationException for {@link #FLOAT32}
     */
    public short[] encode(float[] values) {
        short[] bits = new short[values.length];
        for (int i = 0; i < values.length; i++) {
            bits[i] = fromFloat(values[i]);
        }
        return bits;
    }

    /**
     * {@link #toFloat} on every element.
     *
     * @param bits values of this type
     * @return a new array of their values
     * @throws UnsupportedOperationException for {@link #FLOAT32}
     */
    public float[] decode(short[] bits) {
        float[] values = new float[bits.length];
        for (int i = 0; i < bits.length; i++) {
            values[i] = toFloat(bits[i]);
        }
        return values;
    }

    /** The native {@code BN_F32}, {@code BN_BF16} or {@code BN_F16} value. */
    int code() {
        return code;
    }

    /** Round to nearest-even on the 16 bits dropped; a NaN keeps its sign and becomes quiet. */
    private static short bfloat16(float value) {
        int bits = Float.floatToRawIntBits(value);
        if (Float.isNaN(value)) {
            return (short) ((bits >>> 16) | 0x0040);
        }
        int lsb = (bits >>> 16) & 1;
        return (short) ((bits + 0x7fff + lsb) >>> 16);
    }

    private UnsupportedOperationException notSixteenBits() {
        return new UnsupportedOperationException(this + " is not a 16-bit type: use the float values as they are");
    }
}
