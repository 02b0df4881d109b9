package dev.panamabn.reliability;

import dev.panamabn.BatchNorm;

import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Everything observable about a module, copied out: compared bit for bit before and after a call
 * that must change nothing. Buffers the options leave out are null.
 */
record ModuleState(float[] weight, float[] bias, float[] weightGrad, float[] biasGrad, float[] runningMean,
                   float[] runningVar, long numBatchesTracked, boolean training) {

    static ModuleState of(BatchNorm bn) {
        int c = bn.options().numFeatures();
        boolean affine = bn.options().affine();
        boolean track = bn.options().trackRunningStats();
        return new ModuleState(
                affine ? Data.read(bn.weight(), c) : null,
                affine ? Data.read(bn.bias(), c) : null,
                affine ? Data.read(bn.weightGrad(), c) : null,
                affine ? Data.read(bn.biasGrad(), c) : null,
                track ? Data.read(bn.runningMean(), c) : null,
                track ? Data.read(bn.runningVar(), c) : null,
                track ? bn.numBatchesTracked() : -1,
                bn.isTraining());
    }

    /** Fails naming the first component that differs. */
    void assertSameAs(ModuleState after, String context) {
        assertBits(weight, after.weight, "weight", context);
        assertBits(bias, after.bias, "bias", context);
        assertBits(weightGrad, after.weightGrad, "weightGrad", context);
        assertBits(biasGrad, after.biasGrad, "biasGrad", context);
        assertBits(runningMean, after.runningMean, "runningMean", context);
        assertBits(runningVar, after.runningVar, "runningVar", context);
        assertEquals(numBatchesTracked, after.numBatchesTracked, "numBatchesTracked changed: " + context);
        assertEquals(training, after.training, "mode changed: " + context);
    }

    private static void assertBits(float[] before, float[] after, String name, String context) {
        if (!Arrays.equals(before, after)) {
            throw new AssertionError(name + " changed: " + context + "\n  before " + Arrays.toString(before)
                    + "\n  after  " + Arrays.toString(after));
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ModuleState s && Arrays.equals(weight, s.weight) && Arrays.equals(bias, s.bias)
                && Arrays.equals(weightGrad, s.weightGrad) && Arrays.equals(biasGrad, s.biasGrad)
                && Arrays.equals(runningMean, s.runningMean) && Arrays.equals(runningVar, s.runningVar)
                && numBatchesTracked == s.numBatchesTracked && training == s.training;
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(weight) * 31 + Long.hashCode(numBatchesTracked);
    }

    @Override
    public String toString() {
        return "ModuleState[runningMean=" + Arrays.toString(runningMean) + ", numBatchesTracked="
                + numBatchesTracked + ", training=" + training + "]";
    }
}
