package dev.panamabn;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

/** Small helpers to move test data between arrays, segments and modules. */
final class Tensors {

    private Tensors() {
    }

    static MemorySegment segment(Arena arena, float[] values) {
        MemorySegment s = arena.allocate((long) values.length * Float.BYTES, Float.BYTES);
        MemorySegment.copy(values, 0, s, ValueLayout.JAVA_FLOAT, 0, values.length);
        return s;
    }

    static MemorySegment segment(Arena arena, double[] values) {
        return segment(arena, toFloat(values));
    }

    static float[] floats(MemorySegment segment, long count) {
        float[] out = new float[Math.toIntExact(count)];
        MemorySegment.copy(segment, ValueLayout.JAVA_FLOAT, 0, out, 0, out.length);
        return out;
    }

    static double[] doubles(MemorySegment floatSegment, long count) {
        return toDouble(floats(floatSegment, count));
    }

    static double[] doublesOfDoubles(MemorySegment doubleSegment, long count) {
        double[] out = new double[Math.toIntExact(count)];
        MemorySegment.copy(doubleSegment, ValueLayout.JAVA_DOUBLE, 0, out, 0, out.length);
        return out;
    }

    static float[] toFloat(double[] values) {
        float[] out = new float[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = (float) values[i];
        }
        return out;
    }

    static double[] toDouble(float[] values) {
        double[] out = new double[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = values[i];
        }
        return out;
    }

    /** Rounds to float and back, so that a double-precision reference sees exactly the kernel's inputs. */
    static double[] roundToFloat(double[] values) {
        return toDouble(toFloat(values));
    }

    static void write(MemorySegment floatSegment, double[] values) {
        for (int i = 0; i < values.length; i++) {
            floatSegment.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) values[i]);
        }
    }

    /**
     * Input whose channel c has mean {@code means[c]} and spread {@code spreads[c]}, already
     * rounded to float values.
     */
    static double[] input(SplittableRandom random, Shape shape, double[] means, double[] spreads) {
        int n = (int) shape.batch();
        int c = (int) shape.channels();
        int s = (int) shape.spatial();
        double[] x = new double[n * c * s];
        for (int i = 0; i < n; i++) {
            for (int ch = 0; ch < c; ch++) {
                for (int j = 0; j < s; j++) {
                    x[(i * c + ch) * s + j] = (float) (means[ch] + spreads[ch] * random.nextGaussian());
                }
            }
        }
        return x;
    }

    static double[] gaussian(SplittableRandom random, int count, double scale) {
        double[] out = new double[count];
        for (int i = 0; i < count; i++) {
            out[i] = (float) (scale * random.nextGaussian());
        }
        return out;
    }

    /**
     * Ugly per-channel means: a mix of ordinary ones and large ones (1e3..1e5) that are not powers
     * of two, where float cancellation shows.
     */
    static double[] uglyMeans(SplittableRandom random, int channels) {
        double[] means = new double[channels];
        for (int c = 0; c < channels; c++) {
            means[c] = switch (random.nextInt(4)) {
                case 0 -> random.nextDouble(-3, 3);
                case 1 -> 1234.567 * (1 + random.nextDouble());
                case 2 -> -98765.4321 * (1 + random.nextDouble());
                default -> 10007.0 + random.nextDouble();
            };
        }
        return means;
    }

    static double[] spreads(SplittableRandom random, int channels) {
        double[] spreads = new double[channels];
        for (int c = 0; c < channels; c++) {
            spreads[c] = Math.exp(random.nextDouble(Math.log(0.05), Math.log(20)));
        }
        return spreads;
    }
}
