package dev.panamabn.reliability;

import java.util.SplittableRandom;
import java.util.function.LongConsumer;

/**
 * Runs a property over many generated tries, each from its own seed.
 *
 * <ul>
 *   <li>{@code panamabn.reliability.tries}: tries per property (the pom sets it; the profile
 *       {@code properties-full} raises it).</li>
 *   <li>{@code panamabn.reliability.seed}: the seed the try seeds are drawn from (fixed by default,
 *       so CI runs are repeatable; change it to explore).</li>
 *   <li>{@code panamabn.reliability.replay}: run only the try with this seed, as printed by a
 *       failure.</li>
 * </ul>
 */
final class PropertyRunner {

    static final long DEFAULT_SEED = 0x5eed_ba7c_402e_1a6bL;

    private PropertyRunner() {
    }

    static int tries() {
        return Integer.getInteger("panamabn.reliability.tries", 150);
    }

    static void forAll(String property, LongConsumer trial) {
        String replay = System.getProperty("panamabn.reliability.replay", "");
        if (!replay.isEmpty()) {
            runOne(property, replay.startsWith("0x") ? Long.parseUnsignedLong(replay.substring(2), 16)
                    : Long.parseLong(replay), trial);
            return;
        }
        long seed = Long.getLong("panamabn.reliability.seed", DEFAULT_SEED);
        SplittableRandom seeds = new SplittableRandom(seed);
        int tries = tries();
        for (int i = 0; i < tries; i++) {
            runOne(property, seeds.nextLong(), trial);
        }
    }

    private static void runOne(String property, long trySeed, LongConsumer trial) {
        try {
            trial.accept(trySeed);
        } catch (RuntimeException | AssertionError e) {
            throw new AssertionError(property + " failed for the try with seed 0x" + Long.toHexString(trySeed)
                    + " (replay: -Dpanamabn.reliability.replay=0x" + Long.toHexString(trySeed) + "): "
                    + e.getMessage(), e);
        }
    }
}
