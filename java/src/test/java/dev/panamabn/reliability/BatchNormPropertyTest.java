package dev.panamabn.reliability;

import dev.panamabn.BatchNormOptions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicLong;

/**
 * Property-based tests of the public API: generated valid calls against the double reference,
 * generated invalid calls against the documented exceptions and failure atomicity. Sizes: see
 * {@link PropertyRunner} ({@code panamabn.reliability.tries}); with
 * {@code panamabn.reliability.minCalls} set the run fails unless it made that many generated calls.
 */
class BatchNormPropertyTest {

    private static final AtomicLong CALLS = new AtomicLong();

    /** Random valid options, shapes, modes, APIs and in-place use against the double reference. */
    @Test
    void validCallsMatchTheReference() {
        PropertyRunner.forAll("validCallsMatchTheReference",
                seed -> ValidCallRunner.run(Scenario.random(new Gen(seed), 6), CALLS));
    }

    /** Random invalid calls throw the documented exception and change nothing. */
    @Test
    void invalidCallsThrowAndChangeNothing() {
        PropertyRunner.forAll("invalidCallsThrowAndChangeNothing", seed -> {
            Gen g = new Gen(seed);
            BatchNormOptions options = Scenario.randomOptions(g);
            boolean training = g.coin();
            long[] dims = Scenario.smallDims(g, options.numFeatures());
            // A non-empty pending forward: faults like "one float too small" need a float.
            dims[0] = Math.max(dims[0], 1);
            for (int i = 2; i < dims.length; i++) {
                dims[i] = Math.max(dims[i], 1);
            }
            boolean batchStatistics = training || !options.trackRunningStats();
            if (batchStatistics && Scenario.valuesPerChannel(dims) < 2) {
                dims[0] = 2;
            }
            InvalidCallRunner.run(options, training, dims, g.pick(InvalidCallRunner.Fault.class), g.nextLong(),
                    CALLS);
        });
    }

    @AfterAll
    static void reportCalls() {
        long calls = CALLS.get();
        long minimum = Long.getLong("panamabn.reliability.minCalls", 0);
        System.out.println("reliability properties: " + calls + " generated calls, " + PropertyRunner.tries()
                + " tries per property" + (minimum > 0 ? " (at least " + minimum + " calls required)" : ""));
        if (calls < minimum) {
            throw new AssertionError("the property run made " + calls + " generated calls, fewer than the "
                    + minimum + " required: raise reliability.tries");
        }
    }
}
