package dev.panamabn;

import dev.panamabn.reference.ReferenceBatchNorm;
import dev.panamabn.reference.ScalarBatchNorm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The java-scalar benchmark baseline computes the same thing as the reference, to float accuracy. */
class ScalarBatchNormTest {

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 4, 5, 6, 7, 8})
    void matchesTheReference(long seed) {
        SplittableRandom random = new SplittableRandom(seed);
        Shape shape = RandomShapesTest.randomShape(random);
        if (shape.valuesPerChannel() == 1) {
            shape = Shape.of(2, shape.channels());
        }
        int c = (int) shape.channels();
        int count = (int) shape.elementCount();
        long n = shape.batch();
        long s = shape.spatial();
        double eps = 1e-3;
        double factor = 0.25;
        BatchNormOptions options = BatchNormOptions.of(c).withEps(eps).withMomentum(factor);
        ReferenceBatchNorm ref = new ReferenceBatchNorm(options);
        for (int ch = 0; ch < c; ch++) {
            ref.weight()[ch] = (float) random.nextDouble(0.2, 2);
            ref.bias()[ch] = (float) random.nextGaussian();
        }
        double[] x = Tensors.input(random, shape, Tensors.uglyMeans(random, c), Tensors.spreads(random, c));
        double[] dy = Tensors.gaussian(random, count, 1);
        float[] weight = Tensors.toFloat(ref.weight());
        float[] bias = Tensors.toFloat(ref.bias());
        float[] runningMean = new float[c];
        float[] runningVar = new float[c];
        java.util.Arrays.fill(runningVar, 1f);

        // training
        float[] y = new float[count];
        double[] saveMean = new double[c];
        double[] saveInvstd = new double[c];
        ScalarBatchNorm.forwardTrain(y, saveMean, saveInvstd, runningMean, runningVar, Tensors.toFloat(x), weight, bias,
                n, c, s, eps, factor);
        double[] yRef = ref.forward(x, shape);
        var stats = new Expect.Stats(shape, ref.savedMean(), ref.savedInvstd(), ref.weight(), ref.bias());
        Expect.statistics("scalar train", stats, x, saveMean, saveInvstd);
        Expect.forward("scalar train", stats, x, yRef, Tensors.toDouble(y));
        double[] scale = new double[c];
        double[] varScale = new double[c];
        for (int ch = 0; ch < c; ch++) {
            scale[ch] = Math.abs(ref.runningMean()[ch]) + Math.sqrt(ref.runningVar()[ch]);
            varScale[ch] = Math.max(1, ref.runningVar()[ch]);
        }
        Expect.running("scalar running_mean", ref.runningMean(), Tensors.toDouble(runningMean), scale, 1);
        Expect.running("scalar running_var", ref.runningVar(), Tensors.toDouble(runningVar), varScale, 1);

        float[] dx = new float[count];
        float[] dweight = new float[c];
        float[] dbias = new float[c];
        ScalarBatchNorm.backwardTrain(dx, dweight, dbias, Tensors.toFloat(dy), Tensors.toFloat(x), weight, saveMean,
                saveInvstd, n, c, s);
        ReferenceBatchNorm.Gradients g = ref.backward(dy, x, shape);
        Expect.dx("scalar train", stats, true, x, dy, g.dx(), Tensors.toDouble(dx));
        Expect.parameterGradients("scalar train", stats, x, dy, g.dweight(), Tensors.toDouble(dweight), g.dbias(),
                Tensors.toDouble(dbias));

        // eval, from the running statistics the training step left
        ref.eval();
        for (int ch = 0; ch < c; ch++) {
            ref.runningMean()[ch] = runningMean[ch];
            ref.runningVar()[ch] = runningVar[ch];
        }
        ScalarBatchNorm.forwardEval(y, Tensors.toFloat(x), weight, bias, runningMean, runningVar, n, c, s, eps);
        yRef = ref.forward(x, shape);
        stats = new Expect.Stats(shape, ref.savedMean(), ref.savedInvstd(), ref.weight(), ref.bias());
        Expect.forward("scalar eval", stats, x, yRef, Tensors.toDouble(y));
        ScalarBatchNorm.backwardEval(dx, dweight, dbias, Tensors.toFloat(dy), Tensors.toFloat(x), weight, runningMean,
                runningVar, n, c, s, eps);
        g = ref.backward(dy, x, shape);
        Expect.dx("scalar eval", stats, false, x, dy, g.dx(), Tensors.toDouble(dx));
        Expect.parameterGradients("scalar eval", stats, x, dy, g.dweight(), Tensors.toDouble(dweight), g.dbias(),
                Tensors.toDouble(dbias));
    }

    /**
     * PyTorch's rule for batch statistics: a constant channel with eps 0 has invstd 0, so y = bias
     * and dx = dweight = 0 instead of NaN; the other channel is normalised as usual.
     */
    @Test
    void epsZeroWithAConstantChannelGivesBias() {
        Shape shape = Shape.of(3, 2, 2);
        double[] x = {7.3, 7.3, 1, 2, 7.3, 7.3, 3, 5, 7.3, 7.3, -4, 0.5};
        double[] dy = {1, -2, 0.5, 1, 3, 0.25, -1, 2, 1, 1, -0.5, 0.75};
        float[] weight = {1.5f, 0.5f};
        float[] bias = {0.25f, -1};
        ReferenceBatchNorm ref = new ReferenceBatchNorm(BatchNormOptions.of(2).withEps(0));
        ref.weight()[0] = weight[0];
        ref.weight()[1] = weight[1];
        ref.bias()[0] = bias[0];
        ref.bias()[1] = bias[1];
        double[] yRef = ref.forward(x, shape);
        ReferenceBatchNorm.Gradients g = ref.backward(dy, x, shape);

        float[] y = new float[x.length];
        double[] saveMean = new double[2];
        double[] saveInvstd = new double[2];
        ScalarBatchNorm.forwardTrain(y, saveMean, saveInvstd, null, null, Tensors.toFloat(x), weight, bias,
                3, 2, 2, 0, 0.1);
        float[] dx = new float[x.length];
        float[] dweight = new float[2];
        float[] dbias = new float[2];
        ScalarBatchNorm.backwardTrain(dx, dweight, dbias, Tensors.toFloat(dy), Tensors.toFloat(x), weight, saveMean,
                saveInvstd, 3, 2, 2);

        assertEquals(0, ref.savedInvstd()[0]);
        assertEquals(0, saveInvstd[0]);
        assertTrue(ref.savedInvstd()[1] > 0 && saveInvstd[1] > 0);
        assertEquals(0, g.dweight()[0]);
        assertEquals(0, dweight[0]);
        assertEquals(4.25, g.dbias()[0], 1e-12);
        assertEquals(4.25f, dbias[0]);
        for (int n = 0; n < 3; n++) {
            for (int j = 0; j < 2; j++) {
                int i = n * 4 + j;
                assertEquals(bias[0], yRef[i]);
                assertEquals(bias[0], y[i]);
                assertEquals(0, g.dx()[i], 0.0);
                assertEquals(0, dx[i], 0.0f);
                assertTrue(Double.isFinite(yRef[i + 2]) && Math.abs(yRef[i + 2] - y[i + 2]) < 1e-5);
            }
        }
    }
}
