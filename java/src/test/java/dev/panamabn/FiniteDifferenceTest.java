package dev.panamabn;

import dev.panamabn.reference.ReferenceBatchNorm;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import java.util.function.DoubleUnaryOperator;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Gradient checks: backward against central differences of the scalar loss L = sum(r * y) for a
 * fixed random r (so dL/dy = r), with respect to x, weight and bias, in training mode (gradients
 * flow through the batch statistics), eval mode (running statistics are constants) and eval mode
 * without running statistics (batch statistics again).
 *
 * <p>Twice: all in double through {@link ReferenceBatchNorm} (tight), and through the native
 * module in float32 (loose enough for float rounding, still far tighter than the error of a
 * wrong formula, which the test also demonstrates by rejecting the gradient that ignores the
 * batch statistics).
 */
class FiniteDifferenceTest {

    private static final Shape SHAPE = Shape.of(3, 2, 2, 3);
    private static final int COUNT = (int) SHAPE.elementCount();
    private static final int C = (int) SHAPE.channels();

    enum Mode { TRAIN, EVAL, EVAL_WITHOUT_RUNNING_STATS }

    @ParameterizedTest
    @ValueSource(strings = {"TRAIN", "EVAL", "EVAL_WITHOUT_RUNNING_STATS"})
    void referenceBackwardMatchesFiniteDifferences(Mode mode) {
        SplittableRandom random = new SplittableRandom(11 + mode.ordinal());
        double[] x = Tensors.gaussian(random, COUNT, 1.5);
        double[] r = Tensors.gaussian(random, COUNT, 1);
        ReferenceBatchNorm bn = referenceModule(mode, random);

        ReferenceBatchNorm atX = bn.copy();
        atX.forward(x, SHAPE);
        ReferenceBatchNorm.Gradients g = atX.backward(r, x, SHAPE);
        double h = 1e-5;
        // Truncation O(h^2) ~ 1e-10, rounding ~ 1e-16 / h ~ 1e-11.
        double tolerance = 1e-7;
        for (int k = 0; k < COUNT; k++) {
            int index = k;
            double fd = central(v -> loss(bn, withValue(x, index, v), r), x[k], h);
            assertClose("dx[" + k + "]", fd, g.dx()[k], tolerance);
        }
        for (int c = 0; c < C; c++) {
            int ch = c;
            double fdWeight = central(v -> lossWithParameter(bn, bn.weight(), ch, v, x, r), bn.weight()[c], h);
            double fdBias = central(v -> lossWithParameter(bn, bn.bias(), ch, v, x, r), bn.bias()[c], h);
            assertClose("dweight[" + c + "]", fdWeight, g.dweight()[c], tolerance);
            assertClose("dbias[" + c + "]", fdBias, g.dbias()[c], tolerance);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"TRAIN", "EVAL", "EVAL_WITHOUT_RUNNING_STATS"})
    void nativeBackwardMatchesFiniteDifferencesOfNativeForward(Mode mode) {
        SplittableRandom random = new SplittableRandom(23 + mode.ordinal());
        float[] x = Tensors.toFloat(Tensors.gaussian(random, COUNT, 1.5));
        double[] r = Tensors.gaussian(random, COUNT, 1);
        ReferenceBatchNorm init = referenceModule(mode, random);

        try (BatchNorm bn = BatchNorm.create(init.options())) {
            Tensors.write(bn.weight(), init.weight());
            Tensors.write(bn.bias(), init.bias());
            if (init.runningMean() != null) {
                Tensors.write(bn.runningMean(), init.runningMean());
                Tensors.write(bn.runningVar(), init.runningVar());
            }
            if (mode != Mode.TRAIN) {
                bn.eval();
            }
            float[] y = new float[COUNT];
            bn.forward(x, SHAPE, y);
            float[] dx = new float[COUNT];
            bn.backward(Tensors.toFloat(r), x, SHAPE, dx);
            double[] dweight = Tensors.doubles(bn.weightGrad(), C);
            double[] dbias = Tensors.doubles(bn.biasGrad(), C);

            // Float32 outputs: L carries ~sqrt(36) * 2^-24 ~ 4e-7 of rounding noise, divided by 2h;
            // truncation is O(h^2). With h = 2^-7: ~3e-5 + ~1e-5. A wrong formula is off by O(0.1).
            float h = 0x1p-7f;
            double tolerance = 5e-4;
            double[] fdDx = new double[COUNT];
            for (int k = 0; k < COUNT; k++) {
                float saved = x[k];
                float plus = saved + h;
                float minus = saved - h;
                x[k] = plus;
                double lPlus = nativeLoss(bn, x, r);
                x[k] = minus;
                double lMinus = nativeLoss(bn, x, r);
                x[k] = saved;
                fdDx[k] = (lPlus - lMinus) / ((double) plus - minus);
                assertClose("native dx[" + k + "]", fdDx[k], dx[k], tolerance);
            }
            for (int c = 0; c < C; c++) {
                assertClose("native dweight[" + c + "]", nativeParameterDerivative(bn, bn.weight(), c, h, x, r),
                        dweight[c], tolerance);
                assertClose("native dbias[" + c + "]", nativeParameterDerivative(bn, bn.bias(), c, h, x, r),
                        dbias[c], tolerance);
            }

            if (mode != Mode.EVAL) {
                // The test has teeth: the gradient that treats the batch statistics as constants
                // (dx = gamma * invstd * dy) is rejected by the same comparison.
                double[] invstd = Tensors.doublesOfDoubles(bn.savedInvstd(), C);
                double[] gamma = Tensors.doubles(bn.weight(), C);
                double worst = 0;
                int s = (int) SHAPE.spatial();
                for (int k = 0; k < COUNT; k++) {
                    int c = (k / s) % C;
                    double naive = gamma[c] * invstd[c] * r[k];
                    worst = Math.max(worst, Math.abs(naive - fdDx[k]));
                }
                assertTrue(worst > 100 * tolerance, "a wrong gradient would pass: worst difference " + worst);
            }
        }
    }

    private static ReferenceBatchNorm referenceModule(Mode mode, SplittableRandom random) {
        BatchNormOptions options = BatchNormOptions.of(C).withEps(1e-3)
                .withTrackRunningStats(mode != Mode.EVAL_WITHOUT_RUNNING_STATS);
        ReferenceBatchNorm bn = new ReferenceBatchNorm(options);
        for (int c = 0; c < C; c++) {
            bn.weight()[c] = (float) (0.5 + random.nextDouble());
            bn.bias()[c] = (float) random.nextGaussian();
            if (bn.runningMean() != null) {
                bn.runningMean()[c] = (float) random.nextGaussian();
                bn.runningVar()[c] = (float) (0.5 + random.nextDouble());
            }
        }
        if (mode != Mode.TRAIN) {
            bn.eval();
        }
        return bn;
    }

    private static double loss(ReferenceBatchNorm bn, double[] x, double[] r) {
        double[] y = bn.copy().forward(x, SHAPE);
        double l = 0;
        for (int k = 0; k < y.length; k++) {
            l += r[k] * y[k];
        }
        return l;
    }

    private static double lossWithParameter(ReferenceBatchNorm bn, double[] parameter, int c, double value,
                                            double[] x, double[] r) {
        double saved = parameter[c];
        parameter[c] = value;
        try {
            return loss(bn, x, r);
        } finally {
            parameter[c] = saved;
        }
    }

    private static double nativeLoss(BatchNorm bn, float[] x, double[] r) {
        float[] y = new float[x.length];
        bn.forward(x, SHAPE, y);
        double l = 0;
        for (int k = 0; k < y.length; k++) {
            l += r[k] * y[k];
        }
        return l;
    }

    private static double nativeParameterDerivative(BatchNorm bn, MemorySegment parameter, int c, float h,
                                                    float[] x, double[] r) {
        float saved = parameter.getAtIndex(ValueLayout.JAVA_FLOAT, c);
        float plus = saved + h;
        float minus = saved - h;
        parameter.setAtIndex(ValueLayout.JAVA_FLOAT, c, plus);
        double lPlus = nativeLoss(bn, x, r);
        parameter.setAtIndex(ValueLayout.JAVA_FLOAT, c, minus);
        double lMinus = nativeLoss(bn, x, r);
        parameter.setAtIndex(ValueLayout.JAVA_FLOAT, c, saved);
        return (lPlus - lMinus) / ((double) plus - minus);
    }

    private static double central(DoubleUnaryOperator f, double at, double h) {
        return (f.applyAsDouble(at + h) - f.applyAsDouble(at - h)) / (2 * h);
    }

    private static double[] withValue(double[] x, int index, double value) {
        double[] copy = x.clone();
        copy[index] = value;
        return copy;
    }

    private static void assertClose(String what, double expected, double actual, double tolerance) {
        assertTrue(Math.abs(expected - actual) <= tolerance * (1 + Math.abs(expected)),
                what + ": finite difference " + expected + ", backward " + actual);
    }
}
