package dev.panamabn;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** PyTorch's semantics, one rule per test, with inputs whose statistics are exact. */
class SemanticsTest {

    @Test
    void initialStateIsPyTorchs() {
        try (BatchNorm bn = BatchNorm.create(4)) {
            assertTrue(bn.isTraining());
            assertEquals(0, bn.numBatchesTracked());
            assertArrayEquals(new float[] {1, 1, 1, 1}, Tensors.floats(bn.weight(), 4));
            assertArrayEquals(new float[4], Tensors.floats(bn.bias(), 4));
            assertArrayEquals(new float[4], Tensors.floats(bn.runningMean(), 4));
            assertArrayEquals(new float[] {1, 1, 1, 1}, Tensors.floats(bn.runningVar(), 4));
            assertArrayEquals(new float[4], Tensors.floats(bn.weightGrad(), 4));
            assertEquals(BatchNormOptions.of(4), bn.options());
            assertEquals("BatchNorm[numFeatures=4, eps=1.0E-5, momentum=0.1, affine=true, trackRunningStats=true, training]",
                    bn.toString());
        }
    }

    /**
     * The benchdnn trick: deviations that are small multiples of 1/4 around a mean that is not a
     * power of two, so mean and variance are exact in any summation order, and so are the saved
     * statistics and the first running update.
     */
    @Test
    void exactStatisticsForLargeMeans() {
        double[] means = {12345.5, -4096.75, 0.125};
        double[] deviations = {1.5, -1.5, 0.25, -0.25, 3, -3, 0.75, -0.75};
        Shape shape = Shape.of(4, 3, 2);
        double[] x = new double[24];
        for (int i = 0; i < 4; i++) {
            for (int c = 0; c < 3; c++) {
                for (int j = 0; j < 2; j++) {
                    x[(i * 3 + c) * 2 + j] = means[c] + deviations[(i * 2 + j + 3 * c) % 8];
                }
            }
        }
        double var = 0;
        for (double d : deviations) {
            var += d * d / 8;
        }
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(3).withMomentum(0.5)); Arena arena = Arena.ofConfined()) {
            bn.forward(Tensors.segment(arena, x), shape, arena);
            double[] savedMean = Tensors.doublesOfDoubles(bn.savedMean(), 3);
            double[] savedInvstd = Tensors.doublesOfDoubles(bn.savedInvstd(), 3);
            for (int c = 0; c < 3; c++) {
                assertEquals(means[c], savedMean[c], 0, "mean of channel " + c);
                assertEquals(1 / Math.sqrt(var + 1e-5), savedInvstd[c], 0, "invstd of channel " + c);
                assertEquals((float) (0.5 * means[c]), Tensors.floats(bn.runningMean(), 3)[c], "running mean " + c);
                float unbiased = (float) (0.5 + 0.5 * var * 8 / 7);
                assertEquals(unbiased, Tensors.floats(bn.runningVar(), 3)[c], Math.ulp(unbiased),
                        "running var (unbiased) " + c);
            }
        }
    }

    @Test
    void cumulativeAverageCountsBeforeTheUpdate() {
        Shape shape = Shape.of(4, 1);
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(1).withCumulativeAverage())) {
            bn.forward(new float[] {1, 2, 3, 4}, shape, new float[4]);
            // factor 1/1: the first batch replaces the initial 0 and 1.
            assertEquals(1, bn.numBatchesTracked());
            assertEquals(2.5f, Tensors.floats(bn.runningMean(), 1)[0]);
            assertEquals((float) (5.0 / 3), Tensors.floats(bn.runningVar(), 1)[0]);
            bn.forward(new float[] {5, 6, 7, 8}, shape, new float[4]);
            assertEquals(2, bn.numBatchesTracked());
            assertEquals(4.5f, Tensors.floats(bn.runningMean(), 1)[0]);
            assertEquals((float) (5.0 / 3), Tensors.floats(bn.runningVar(), 1)[0], 1e-6f);
            bn.setNumBatchesTracked(9);
            bn.forward(new float[] {14.5f, 15.5f, 16.5f, 17.5f}, shape, new float[4]);
            // factor 1/10
            assertEquals(10, bn.numBatchesTracked());
            assertEquals((float) (0.9 * 4.5 + 0.1 * 16), Tensors.floats(bn.runningMean(), 1)[0], 1e-6f);
        }
    }

    @Test
    void momentumZeroAndOne() {
        float[] x = {1, 2, 3, 4};
        try (BatchNorm frozen = BatchNorm.create(BatchNormOptions.of(1).withMomentum(0));
             BatchNorm follows = BatchNorm.create(BatchNormOptions.of(1).withMomentum(1))) {
            frozen.forward(x, Shape.of(4, 1), new float[4]);
            follows.forward(x, Shape.of(4, 1), new float[4]);
            assertEquals(1, frozen.numBatchesTracked());
            assertEquals(0f, Tensors.floats(frozen.runningMean(), 1)[0]);
            assertEquals(1f, Tensors.floats(frozen.runningVar(), 1)[0]);
            assertEquals(2.5f, Tensors.floats(follows.runningMean(), 1)[0]);
            assertEquals((float) (5.0 / 3), Tensors.floats(follows.runningVar(), 1)[0]);
        }
    }

    @Test
    void evalUsesRunningStatisticsAndNeverUpdatesThem() {
        try (BatchNorm bn = BatchNorm.create(1)) {
            Tensors.write(bn.runningMean(), new double[] {10});
            Tensors.write(bn.runningVar(), new double[] {4 - 1e-5});
            bn.setNumBatchesTracked(3);
            bn.eval();
            float[] y = new float[3];
            bn.forward(new float[] {10, 12, 6}, Shape.of(3, 1), y);
            assertArrayEquals(new float[] {0, 1, -2}, y, 1e-6f);
            assertEquals(3, bn.numBatchesTracked());
            assertEquals(10f, Tensors.floats(bn.runningMean(), 1)[0]);
            // One value per channel is fine in eval mode.
            bn.forward(new float[] {14}, Shape.of(1, 1), y);
            assertEquals(2f, y[0], 1e-6f);
        }
    }

    @Test
    void withoutRunningStatisticsEvalUsesBatchStatistics() {
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(1).withTrackRunningStats(false).withEps(0))) {
            bn.eval();
            float[] y = new float[4];
            bn.forward(new float[] {1, 3, 1, 3}, Shape.of(4, 1), y);
            assertArrayEquals(new float[] {-1, 1, -1, 1}, y);
            // Its backward differentiates through the batch statistics: a constant dy moves only
            // the mean, whose gradient cancels it, so dx = 0.
            float[] dx = new float[4];
            bn.backward(new float[] {2, 2, 2, 2}, new float[] {1, 3, 1, 3}, Shape.of(4, 1), dx);
            assertArrayEquals(new float[4], dx, 1e-6f);
            assertEquals(8f, Tensors.floats(bn.biasGrad(), 1)[0]);
        }
    }

    @Test
    void evalBackwardTreatsRunningStatisticsAsConstants() {
        try (BatchNorm bn = BatchNorm.create(1)) {
            Tensors.write(bn.weight(), new double[] {3});
            Tensors.write(bn.runningVar(), new double[] {4 - 1e-5});
            bn.eval();
            float[] x = {1, 2, 3};
            bn.forward(x, Shape.of(3, 1), new float[3]);
            float[] dx = new float[3];
            bn.backward(new float[] {2, 2, 2}, x, Shape.of(3, 1), dx);
            assertArrayEquals(new float[] {3, 3, 3}, dx, 1e-6f);   // dy * gamma / sqrt(var + eps)
            assertEquals(6f, Tensors.floats(bn.biasGrad(), 1)[0]);
            assertEquals(6f, Tensors.floats(bn.weightGrad(), 1)[0], 1e-5f);   // sum dy * x / 2
        }
    }

    @Test
    void emptyBatchCountsButChangesNoStatistics() {
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(3).withCumulativeAverage()); Arena arena = Arena.ofConfined()) {
            for (Shape empty : new Shape[] {Shape.of(0, 3, 4), Shape.of(2, 3, 0, 5)}) {
                MemorySegment x = arena.allocate(0, 4);
                MemorySegment y = bn.forward(x, empty, arena);
                assertEquals(0, y.byteSize());
                MemorySegment dx = bn.backward(x, x, empty, arena);
                assertEquals(0, dx.byteSize());
                bn.forward(new float[0], empty, new float[0]);
                bn.backward(new float[0], new float[0], empty, new float[0]);
            }
            assertEquals(4, bn.numBatchesTracked());
            assertArrayEquals(new float[3], Tensors.floats(bn.runningMean(), 3));
            assertArrayEquals(new float[] {1, 1, 1}, Tensors.floats(bn.runningVar(), 3));
            assertArrayEquals(new float[3], Tensors.floats(bn.weightGrad(), 3));
            assertArrayEquals(new float[3], Tensors.floats(bn.biasGrad(), 3));
        }
    }

    @Test
    void inPlaceMatchesOutOfPlace() {
        SplittableRandom random = new SplittableRandom(3);
        Shape shape = Shape.of(3, 2, 5);
        float[] x = Tensors.toFloat(Tensors.gaussian(random, 30, 2));
        float[] dy = Tensors.toFloat(Tensors.gaussian(random, 30, 1));
        try (BatchNorm a = BatchNorm.create(2); BatchNorm b = BatchNorm.create(2); Arena arena = Arena.ofConfined()) {
            float[] y = new float[30];
            float[] dx = new float[30];
            a.forward(x, shape, y);
            a.backward(dy, x, shape, dx);

            MemorySegment xs = Tensors.segment(arena, x);
            MemorySegment work = Tensors.segment(arena, x);
            b.forward(work, shape, work);
            assertArrayEquals(y, Tensors.floats(work, 30));
            MemorySegment g = Tensors.segment(arena, dy);
            b.backward(g, xs, shape, g);
            assertArrayEquals(dx, Tensors.floats(g, 30));

            float[] inPlace = x.clone();
            b.forward(inPlace, shape, inPlace);
            assertArrayEquals(y, inPlace);
            float[] gradInPlace = dy.clone();
            b.backward(gradInPlace, x, shape, gradInPlace);
            assertArrayEquals(dx, gradInPlace);
        }
    }

    @Test
    void gradientsAccumulateUntilZeroGrad() {
        SplittableRandom random = new SplittableRandom(4);
        Shape shape = Shape.of(4, 2, 3);
        float[] x = Tensors.toFloat(Tensors.gaussian(random, 24, 2));
        float[] dy = Tensors.toFloat(Tensors.gaussian(random, 24, 1));
        try (BatchNorm bn = BatchNorm.create(2)) {
            bn.forward(x, shape, new float[24]);
            bn.backward(dy, x, shape, new float[24]);
            float[] once = Tensors.floats(bn.weightGrad(), 2);
            float[] onceBias = Tensors.floats(bn.biasGrad(), 2);
            bn.forward(x, shape, new float[24]);
            bn.backward(dy, x, shape, new float[24]);
            for (int c = 0; c < 2; c++) {
                assertEquals(2 * once[c], Tensors.floats(bn.weightGrad(), 2)[c]);
                assertEquals(2 * onceBias[c], Tensors.floats(bn.biasGrad(), 2)[c]);
            }
            bn.zeroGrad();
            assertArrayEquals(new float[2], Tensors.floats(bn.weightGrad(), 2));
            assertArrayEquals(new float[2], Tensors.floats(bn.biasGrad(), 2));
        }
    }

    @Test
    void resets() {
        try (BatchNorm bn = BatchNorm.create(2)) {
            Tensors.write(bn.weight(), new double[] {3, 4});
            bn.forward(new float[] {1, 5, 2, 7}, Shape.of(2, 2), new float[4]);
            bn.resetRunningStats();
            assertEquals(0, bn.numBatchesTracked());
            assertArrayEquals(new float[2], Tensors.floats(bn.runningMean(), 2));
            assertArrayEquals(new float[] {1, 1}, Tensors.floats(bn.runningVar(), 2));
            assertArrayEquals(new float[] {3, 4}, Tensors.floats(bn.weight(), 2));
            bn.resetParameters();
            assertArrayEquals(new float[] {1, 1}, Tensors.floats(bn.weight(), 2));
            assertArrayEquals(new float[2], Tensors.floats(bn.bias(), 2));
        }
    }

    @Test
    void modeSwitches() {
        try (BatchNorm bn = BatchNorm.create(2)) {
            assertFalse(bn.eval().isTraining());
            assertTrue(bn.train().isTraining());
        }
    }

    @Test
    void nanPoisonsItsChannelOnly() {
        try (BatchNorm bn = BatchNorm.create(2)) {
            float[] y = new float[6];
            // channel 0 is {1, NaN, 3}, channel 1 is {4, 5, 6}
            bn.forward(new float[] {1, 4, Float.NaN, 5, 3, 6}, Shape.of(3, 2), y);
            assertTrue(Float.isNaN(y[0]) && Float.isNaN(y[2]) && Float.isNaN(y[4]), "channel 0 is NaN");
            assertFalse(Float.isNaN(y[1]) || Float.isNaN(y[3]) || Float.isNaN(y[5]), "channel 1 is not");
            assertTrue(Float.isNaN(Tensors.floats(bn.runningMean(), 2)[0]));
            assertEquals(0.5f, Tensors.floats(bn.runningMean(), 2)[1], 1e-6f);
        }
    }
}
