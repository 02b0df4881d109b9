package dev.panamabn.interop;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The ONNX adapter against a float64 reference of ONNX's definition on data with large, ugly
 * means, the node's attributes per operator version, and its argument checks.
 */
class OnnxBatchNormalizationTest {

    private static final double U = 0x1p-24;

    /** ONNX's training outputs computed in double from the float inputs. */
    private record Reference(double[] y, double[] runningMean, double[] runningVar) {

        static Reference of(float[] x, Shape shape, float[] scale, float[] b, float[] mean, float[] var, double eps,
                            double momentum) {
            int n = (int) shape.batch();
            int c = (int) shape.channels();
            int s = (int) shape.spatial();
            double[] y = new double[x.length];
            double[] rm = new double[c];
            double[] rv = new double[c];
            for (int ch = 0; ch < c; ch++) {
                double sum = 0;
                for (int i = 0; i < n; i++) {
                    for (int k = 0; k < s; k++) {
                        sum += x[(i * c + ch) * s + k];
                    }
                }
                double mu = sum / (n * s);
                double m2 = 0;
                for (int i = 0; i < n; i++) {
                    for (int k = 0; k < s; k++) {
                        double d = x[(i * c + ch) * s + k] - mu;
                        m2 += d * d;
                    }
                }
                double v = m2 / (n * s);
                for (int i = 0; i < n; i++) {
                    for (int k = 0; k < s; k++) {
                        int idx = (i * c + ch) * s + k;
                        y[idx] = (x[idx] - mu) / Math.sqrt(v + eps) * scale[ch] + b[ch];
                    }
                }
                rm[ch] = momentum * mean[ch] + (1 - momentum) * mu;
                rv[ch] = momentum * var[ch] + (1 - momentum) * v;
            }
            return new Reference(y, rm, rv);
        }
    }

    @Test
    void trainingMatchesOnnxsDefinitionWithUglyMeans() {
        Shape shape = Shape.of(4, 3, 5, 7);
        Random r = new Random(14);
        int c = 3;
        float[] x = new float[(int) shape.elementCount()];
        double[] centre = {1234.567, -0.0371, 98765.4};
        for (int i = 0; i < x.length; i++) {
            int ch = i / 35 % c;
            x[i] = (float) (centre[ch] + r.nextGaussian() * (ch + 0.3));
        }
        float[] scale = {0.7f, 1.3f, -0.4f};
        float[] b = {0.1f, -2f, 0.33f};
        float[] mean = {1200f, 0.2f, 98000f};
        float[] var = {3f, 0.5f, 2f};
        OnnxBatchNormalization node = OnnxBatchNormalization.training(1e-3, 0.9f);
        OnnxBatchNormalization.Outputs out = node.run(x, shape, scale, b, mean, var);
        Reference ref = Reference.of(x, shape, scale, b, mean, var, 1e-3, 0.9f);
        for (int i = 0; i < x.length; i++) {
            assertEquals(ref.y()[i], out.y()[i], 4 * U * (Math.abs(ref.y()[i]) + 1), "y " + i);
        }
        for (int ch = 0; ch < c; ch++) {
            // The batch statistics pass through float once (mean, unbiased variance) before the update.
            assertEquals(ref.runningMean()[ch], out.runningMean()[ch], 3 * U * Math.abs(ref.runningMean()[ch]),
                    "running_mean " + ch);
            assertEquals(ref.runningVar()[ch], out.runningVar()[ch], 4 * U * Math.abs(ref.runningVar()[ch]),
                    "running_var " + ch);
        }
    }

    @Test
    void inferenceUsesTheGivenStatistics() {
        Shape shape = Shape.of(2, 2, 3);
        float[] x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
        OnnxBatchNormalization.Outputs out = OnnxBatchNormalization.inference(1e-5)
                .run(x, shape, new float[] {2, 1}, new float[] {0, 1}, new float[] {2, 5}, new float[] {4, 1});
        assertNull(out.runningMean());
        assertNull(out.runningVar());
        for (int i = 0; i < x.length; i++) {
            int ch = i / 3 % 2;
            double scaled = ch == 0 ? (x[i] - 2) / Math.sqrt(4 + 1e-5) * 2 : (x[i] - 5) / Math.sqrt(1 + 1e-5);
            double bias = ch == 0 ? 0 : 1;
            // The kernel's vector paths normalise in float: a few roundings of the terms' size.
            assertEquals(scaled + bias, out.y()[i], 4 * U * (Math.abs(scaled) + bias), "y " + i);
        }
    }

    @Test
    void oneValuePerChannelInTrainingHasVarianceZero() {
        OnnxBatchNormalization.Outputs out = OnnxBatchNormalization.training(1e-5, 0.9)
                .run(new float[] {3, -7}, Shape.of(1, 2), new float[] {2, 2}, new float[] {0.5f, -1}, new float[] {1, 1},
                        new float[] {4, 4});
        assertArrayEquals(new float[] {0.5f, -1}, out.y());
        assertArrayEquals(new float[] {(float) (0.9 + 0.1 * 3), (float) (0.9 - 0.1 * 7)}, out.runningMean());
        assertArrayEquals(new float[] {(float) (0.9 * 4), (float) (0.9 * 4)}, out.runningVar());
    }

    @Test
    void runningOutputsMayUpdateTheInputsInPlace() {
        try (Arena arena = Arena.ofConfined()) {
            Shape shape = Shape.of(3, 2);
            MemorySegment x = arena.allocateFrom(ValueLayout.JAVA_FLOAT, 1, 2, 3, 5, 8, 13);
            MemorySegment ones = arena.allocateFrom(ValueLayout.JAVA_FLOAT, 1, 1);
            MemorySegment zeros = arena.allocateFrom(ValueLayout.JAVA_FLOAT, 0, 0);
            MemorySegment mean = arena.allocateFrom(ValueLayout.JAVA_FLOAT, 0, 0);
            MemorySegment var = arena.allocateFrom(ValueLayout.JAVA_FLOAT, 1, 1);
            OnnxBatchNormalization.training(0, 0.5).run(x, shape, ones, zeros, mean, var, x, mean, var);
            assertArrayEquals(new float[] {2, (float) (0.5 * 20 / 3.0)}, mean.toArray(ValueLayout.JAVA_FLOAT));
            double v0 = ((1 - 4) * (1 - 4) + (3 - 4) * (3 - 4) + (8 - 4) * (8 - 4)) / 3.0;
            assertEquals((float) (0.5 + 0.5 * v0), var.getAtIndex(ValueLayout.JAVA_FLOAT, 0));
            assertEquals((float) ((1 - 4) / Math.sqrt(v0)), x.getAtIndex(ValueLayout.JAVA_FLOAT, 0), 4 * U);
        }
    }

    @Test
    void attributesFollowTheOperatorVersion() {
        OnnxBatchNormalization v15 = OnnxBatchNormalization.fromNode(15, Map.of("epsilon", 0.01f, "training_mode", 1L), 3);
        assertEquals(15, v15.version());
        assertTrue(v15.isTraining());
        assertEquals(0.01f, v15.epsilon());
        assertEquals(0.9, v15.momentum());

        OnnxBatchNormalization v14 = OnnxBatchNormalization.fromNode(14, Map.of(), 1);
        assertFalse(v14.isTraining());
        assertEquals(1e-5, v14.epsilon());

        assertEquals(9, OnnxBatchNormalization.fromNode(13, Map.of("momentum", 0.8f), 1).version());
        assertTrue(OnnxBatchNormalization.fromNode(9, Map.of(), 3).isTraining());
        assertEquals(7, OnnxBatchNormalization.fromNode(8, Map.of("spatial", 1L), 1).version());
        OnnxBatchNormalization v6 = OnnxBatchNormalization.fromNode(6, Map.of("is_test", 1L, "epsilon", 1e-5f,
                "momentum", 0.9f), 1);
        assertFalse(v6.isTraining());
        assertTrue(OnnxBatchNormalization.fromNode(6, Map.of(), 3).isTraining(), "is_test defaults to 0");
        assertEquals(15, OnnxBatchNormalization.fromNode(22, Map.of(), 1).version());

        assertRefused(() -> OnnxBatchNormalization.fromNode(5, Map.of(), 1), "opset 5 is not supported");
        assertRefused(() -> OnnxBatchNormalization.fromNode(23, Map.of(), 1), "opset 23 is not supported");
        assertRefused(() -> OnnxBatchNormalization.fromNode(9, Map.of("training_mode", 1L), 3),
                "BatchNormalization-9 has no attribute 'training_mode'");
        assertRefused(() -> OnnxBatchNormalization.fromNode(15, Map.of("is_test", 1L), 1),
                "BatchNormalization-15 has no attribute 'is_test'");
        assertRefused(() -> OnnxBatchNormalization.fromNode(7, Map.of("spatial", 0L), 1), "spatial = 0");
        assertRefused(() -> OnnxBatchNormalization.fromNode(9, Map.of(), 5), "saved_mean and saved_var are not supported");
        assertRefused(() -> OnnxBatchNormalization.fromNode(15, Map.of("training_mode", 1L), 1),
                "training mode: 1 outputs");
        assertRefused(() -> OnnxBatchNormalization.fromNode(15, Map.of("training_mode", 0.5f), 1),
                "'training_mode' is an int attribute");
        assertRefused(() -> OnnxBatchNormalization.fromNode(15, Map.of("momentum", 1.5f), 1), "momentum must be in [0, 1]");
        assertRefused(() -> OnnxBatchNormalization.fromNode(15, Map.of("epsilon", -1f), 1), "epsilon must be finite");
    }

    @Test
    void toOptionsConvertsTheConventions() {
        BatchNormOptions o = OnnxBatchNormalization.training(1e-3, 0.75).toOptions(8);
        assertEquals(8, o.numFeatures());
        assertEquals(1e-3, o.eps());
        assertEquals(0.25, o.momentum().getAsDouble());
        assertEquals(BatchNormOptions.RunningVariance.BIASED, o.runningVariance());
    }

    @Test
    void badArgumentsAreRefusedBeforeAnythingIsWritten() {
        OnnxBatchNormalization train = OnnxBatchNormalization.training(1e-5, 0.9);
        Shape shape = Shape.of(2, 3);
        float[] x = new float[6];
        float[] c3 = new float[3];
        assertRefused(() -> train.run(new float[5], shape, c3, c3, c3, c3), "x has 5 floats");
        assertRefused(() -> train.run(x, shape, new float[2], c3, c3, c3), "scale is too small");
        assertThrows(NullPointerException.class, () -> train.run(x, shape, c3, null, c3, c3));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment xs = arena.allocate(24);
            MemorySegment y = arena.allocate(24);
            MemorySegment c = MemorySegment.ofArray(new float[3]);
            MemorySegment rm = arena.allocateFrom(ValueLayout.JAVA_FLOAT, 7, 7, 7);
            assertRefused(() -> train.run(xs, shape, c, c, c, c, y, null, null), "needs the outputs");
            assertRefused(() -> OnnxBatchNormalization.inference(1e-5).run(xs, shape, c, c, c, c, y, rm, rm),
                    "inference mode has no outputs");
            assertRefused(() -> train.run(xs, shape, c, c, c, c, y.asReadOnly(), rm, rm), "Y is read-only");
            assertRefused(() -> train.run(xs, shape, c, c, c, c, y, rm.asSlice(0, 8), rm), "running_mean is too small");
            assertArrayEquals(new float[] {7, 7, 7}, rm.toArray(ValueLayout.JAVA_FLOAT));
        }
    }

    private static void assertRefused(org.junit.jupiter.api.function.Executable call, String expected) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(expected), "message '" + e.getMessage() + "' lacks '" + expected + "'");
    }
}
