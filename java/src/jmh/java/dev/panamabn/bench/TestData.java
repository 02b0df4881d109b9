package dev.panamabn.bench;

/** The inputs every implementation gets: the same values in each, so their work is the same. */
final class TestData {

    static final float WEIGHT = 1.5f;
    static final float BIAS = 0.25f;
    static final double EPS = 1e-5;
    static final double MOMENTUM = 0.1;

    private TestData() {}

    /** Deterministic values in [-2, 2) (a linear congruential generator, seeded). */
    static float[] uniform(int count, int seed) {
        float[] v = new float[count];
        int state = seed;
        for (int i = 0; i < count; i++) {
            state = state * 1664525 + 1013904223;
            v[i] = (state >>> 8) / (float) (1 << 24) * 4.0f - 2.0f;
        }
        return v;
    }

    static float[] filled(int count, float value) {
        float[] v = new float[count];
        java.util.Arrays.fill(v, value);
        return v;
    }
}
