package dev.panamabn.reliability;

import dev.panamabn.BatchNorm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

/** Test data and the plumbing between float segments, float arrays and double arrays. */
final class Data {

    /** The shapes of data that break BatchNorm kernels. */
    enum Kind {
        /** N(0,1) around an ugly mean: mean and spread of the same order. */
        GAUSSIAN,
        /** 1e4 + N(0, 0.3): float variance by E[x^2]-E[x]^2 would be garbage. */
        LARGE_MEAN,
        /** Small integers: exact in any summation order, and often a constant channel. */
        SMALL_INTS,
        /** Uniform in [-1e3, 1e3]. */
        WIDE
    }

    private Data() {
    }

    static float[] floats(Kind kind, long seed, long count) {
        SplittableRandom random = new SplittableRandom(seed);
        float[] data = new float[Math.toIntExact(count)];
        for (int i = 0; i < data.length; i++) {
            data[i] = switch (kind) {
                case GAUSSIAN -> (float) (3.7 + random.nextGaussian());
                case LARGE_MEAN -> (float) (1e4 + 0.3 * random.nextGaussian());
                case SMALL_INTS -> random.nextInt(-2, 3);
                case WIDE -> (float) random.nextDouble(-1e3, 1e3);
            };
        }
        return data;
    }

    static double[] toDouble(float[] values) {
        double[] d = new double[values.length];
        for (int i = 0; i < values.length; i++) {
            d[i] = values[i];
        }
        return d;
    }

    static float[] read(MemorySegment segment, long count) {
        float[] values = new float[Math.toIntExact(count)];
        MemorySegment.copy(segment, ValueLayout.JAVA_FLOAT, 0, values, 0, values.length);
        return values;
    }

    static void write(MemorySegment segment, float[] values) {
        MemorySegment.copy(values, 0, segment, ValueLayout.JAVA_FLOAT, 0, values.length);
    }

    /**
     * A native segment holding values, starting offsetFloats floats past a 64-byte boundary (so a
     * kernel that assumes vector alignment would fault or misread), with its own allocation.
     */
    static MemorySegment segment(Arena arena, float[] values, int offsetFloats) {
        long bytes = (long) values.length * Float.BYTES;
        MemorySegment block = arena.allocate(bytes + (long) offsetFloats * Float.BYTES, 64);
        MemorySegment segment = block.asSlice((long) offsetFloats * Float.BYTES, bytes);
        write(segment, values);
        return segment;
    }

    /** Copies a float array into double, float by float (what the reference gets). */
    static double[] copyState(MemorySegment segment, int count) {
        return toDouble(read(segment, count));
    }

    /** Sets a module's weight and bias (when affine) and running statistics (when tracked). */
    static void randomiseState(BatchNorm bn, SplittableRandom random) {
        int c = bn.options().numFeatures();
        if (bn.options().affine()) {
            write(bn.weight(), randomFloats(random, c, 0.2, 2.0, true));
            write(bn.bias(), randomFloats(random, c, -1.0, 1.0, false));
        }
        if (bn.options().trackRunningStats()) {
            write(bn.runningMean(), randomFloats(random, c, -2.0, 2.0, false));
            write(bn.runningVar(), randomFloats(random, c, 0.1, 3.0, false));
        }
    }

    private static float[] randomFloats(SplittableRandom random, int count, double low, double high,
                                        boolean randomSign) {
        float[] values = new float[count];
        for (int i = 0; i < count; i++) {
            double v = random.nextDouble(low, high);
            values[i] = (float) (randomSign && random.nextBoolean() ? -v : v);
        }
        return values;
    }
}
