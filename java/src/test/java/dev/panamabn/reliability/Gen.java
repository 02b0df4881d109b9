package dev.panamabn.reliability;

import java.util.SplittableRandom;

/**
 * Random choices for generated tests: a seeded source with the few shapes of choice the
 * generators need. One seed fixes every choice of one try, so a failure names a seed that replays
 * it exactly (see {@link PropertyRunner}).
 */
final class Gen {

    private final SplittableRandom random;

    Gen(long seed) {
        this.random = new SplittableRandom(seed);
    }

    int between(int lowInclusive, int highInclusive) {
        return random.nextInt(lowInclusive, highInclusive + 1);
    }

    boolean coin() {
        return random.nextBoolean();
    }

    /** True with probability 1/n. */
    boolean oneIn(int n) {
        return random.nextInt(n) == 0;
    }

    long nextLong() {
        return random.nextLong();
    }

    @SafeVarargs
    final <T> T pick(T... choices) {
        return choices[random.nextInt(choices.length)];
    }

    double pickDouble(double... choices) {
        return choices[random.nextInt(choices.length)];
    }

    <E extends Enum<E>> E pick(Class<E> type) {
        E[] values = type.getEnumConstants();
        return values[random.nextInt(values.length)];
    }
}
