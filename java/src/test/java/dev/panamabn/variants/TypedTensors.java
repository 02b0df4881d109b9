package dev.panamabn.variants;

import dev.panamabn.DataType;
import dev.panamabn.Layout;
import dev.panamabn.Shape;
import dev.panamabn.TensorSpec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Test tensors of any spec: values kept as doubles in logical NCHW order (what the reference
 * computes with), written to and read from memory in the spec's layout and element type.
 */
final class TypedTensors {

    private TypedTensors() {
    }

    /** Random values exactly representable in {@code type}: mean + spread * gaussian, rounded to the type. */
    static double[] random(SplittableRandom random, long count, double mean, double spread, DataType type) {
        double[] v = new double[Math.toIntExact(count)];
        for (int i = 0; i < v.length; i++) {
            v[i] = round(mean + spread * random.nextGaussian(), type);
        }
        return v;
    }

    /** The value of the type nearest to v (through float: the inputs here are far from float's ties). */
    static double round(double v, DataType type) {
        float f = (float) v;
        return type == DataType.FLOAT32 ? f : type.toFloat(type.fromFloat(f));
    }

    /** Index in memory of logical element (i, c, j) of an (N, C, S) tensor. */
    static long memoryIndex(Shape shape, Layout layout, long i, long c, long j) {
        long cs = shape.channels();
        long s = shape.spatial();
        return layout == Layout.CHANNELS_FIRST ? (i * cs + c) * s + j : (i * s + j) * cs + c;
    }

    static MemorySegment write(Arena arena, double[] nchw, TensorSpec spec) {
        MemorySegment m = arena.allocate(spec.byteSize(), 64);
        put(m, nchw, spec);
        return m;
    }

    static void put(MemorySegment m, double[] nchw, TensorSpec spec) {
        Shape shape = spec.shape();
        long c = shape.channels();
        long s = shape.spatial();
        for (long i = 0; i < shape.batch(); i++) {
            for (long ch = 0; ch < c; ch++) {
                for (long j = 0; j < s; j++) {
                    double v = nchw[(int) ((i * c + ch) * s + j)];
                    setElement(m, memoryIndex(shape, spec.layout(), i, ch, j), v, spec.dataType());
                }
            }
        }
    }

    static double[] read(MemorySegment m, TensorSpec spec) {
        Shape shape = spec.shape();
        long c = shape.channels();
        long s = shape.spatial();
        double[] out = new double[Math.toIntExact(shape.elementCount())];
        for (long i = 0; i < shape.batch(); i++) {
            for (long ch = 0; ch < c; ch++) {
                for (long j = 0; j < s; j++) {
                    out[(int) ((i * c + ch) * s + j)] = element(m, memoryIndex(shape, spec.layout(), i, ch, j),
                            spec.dataType());
                }
            }
        }
        return out;
    }

    static void setElement(MemorySegment m, long index, double v, DataType type) {
        if (type == DataType.FLOAT32) {
            m.setAtIndex(ValueLayout.JAVA_FLOAT, index, (float) v);
        } else {
            m.setAtIndex(ValueLayout.JAVA_SHORT, index, type.fromFloat((float) v));
        }
    }

    static double element(MemorySegment m, long index, DataType type) {
        return type == DataType.FLOAT32 ? m.getAtIndex(ValueLayout.JAVA_FLOAT, index)
                : type.toFloat(m.getAtIndex(ValueLayout.JAVA_SHORT, index));
    }

    /** The spacing of the type's values at |v| (its unit in the last place), subnormals included. */
    static double ulp(double v, DataType type) {
        double a = Math.abs(v);
        return switch (type) {
            case FLOAT32 -> Math.ulp((float) a);
            case BFLOAT16 -> Math.max(0x1p-133, Math.scalb(1.0, Math.max(Math.getExponent((float) a), -126) - 7));
            case FLOAT16 -> Math.max(0x1p-24, Math.scalb(1.0, Math.max(Math.getExponent((float) a), -14) - 10));
        };
    }

    /**
     * Every element within one ulp of the type, plus a floor at the tensor's scale for values
     * cancelled to near 0: 1e-12 of it for float32 (computed in double), 2^-22 of it for the 16-bit
     * types, which are computed in float: a few roundings of 2^-24 of the terms remain where the
     * terms cancel to a value far below them (about 2^-15 of a bfloat16 unit at the tensor's scale).
     */
    static void assertWithinUlp(String name, double[] ours, double[] exact, DataType type) {
        double floor = (type == DataType.FLOAT32 ? 1e-12 : 0x1p-22) * maxAbs(exact);
        for (int i = 0; i < exact.length; i++) {
            assertWithinUlp(name + "[" + i + "]", ours[i], exact[i], type, 1, floor);
        }
    }

    static void assertWithinUlp(String name, double ours, double exact, DataType type, double ulps,
                                        double floor) {
        double error = Math.abs(ours - exact);
        assertTrue(error <= ulps * TypedTensors.ulp(exact, type) + floor,
                name + ": " + ours + " vs exact " + exact + ", error " + error + " > " + ulps + " ulp of " + type);
    }

    static double maxAbs(double[] values) {
        double m = 0;
        for (double v : values) {
            m = Math.max(m, Math.abs(v));
        }
        return m;
    }
}
