package dev.panamabn.interop;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Eval-mode affine maps and folding into the preceding layer, checked against the unfolded
 * composition computed in double, against the module's own eval output, and against PyTorch's
 * fuse_conv_bn_eval.
 */
class InferenceFoldingTest {

    private static final double U = 0x1p-24;

    /** A module with non-trivial eval parameters (means not powers of two). */
    private static BatchNorm module(int c, long seed) {
        BatchNorm bn = BatchNorm.create(BatchNormOptions.of(c).withEps(1e-3));
        Random r = new Random(seed);
        for (int i = 0; i < c; i++) {
            bn.weight().setAtIndex(ValueLayout.JAVA_FLOAT, i, 0.3f + r.nextFloat());
            bn.bias().setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) r.nextGaussian());
            bn.runningMean().setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) (r.nextGaussian() * 3 + 0.37));
            bn.runningVar().setAtIndex(ValueLayout.JAVA_FLOAT, i, 0.05f + 2 * r.nextFloat());
        }
        bn.eval();
        return bn;
    }

    @Test
    void evalAffineIsTheEvalForward() {
        int c = 6;
        try (BatchNorm bn = module(c, 1)) {
            InferenceFolding.ChannelAffine a = InferenceFolding.evalAffine(bn);
            float[] g = bn.weight().toArray(ValueLayout.JAVA_FLOAT);
            float[] b = bn.bias().toArray(ValueLayout.JAVA_FLOAT);
            float[] m = bn.runningMean().toArray(ValueLayout.JAVA_FLOAT);
            float[] v = bn.runningVar().toArray(ValueLayout.JAVA_FLOAT);
            for (int i = 0; i < c; i++) {
                double s = (double) g[i] / Math.sqrt((double) v[i] + 1e-3);
                assertEquals((float) s, a.scale()[i], "scale rounded once from double");
                assertEquals((float) (b[i] - m[i] * s), a.shift()[i], "shift rounded once from double");
            }
            assertEquals(a, InferenceFolding.evalAffine(g, b, m, v, 1e-3));

            Shape shape = Shape.of(3, c, 5);
            float[] x = randomFloats(shape.elementCount(), 2);
            float[] y = new float[x.length];
            bn.forward(x, shape, y);
            for (int k = 0; k < x.length; k++) {
                int ch = k / 5 % c;
                double viaAffine = a.scale()[ch] * (double) x[k] + a.shift()[ch];
                assertEquals(y[k], viaAffine, 4 * U * (Math.abs(a.scale()[ch] * x[k]) + Math.abs(a.shift()[ch]) + 1),
                        "element " + k);
            }
        }
    }

    @Test
    void affineFalseMeansGammaOneBetaZero() {
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(2).withAffine(false))) {
            bn.runningMean().setAtIndex(ValueLayout.JAVA_FLOAT, 0, 2f);
            bn.runningVar().setAtIndex(ValueLayout.JAVA_FLOAT, 0, 4f);
            InferenceFolding.ChannelAffine a = InferenceFolding.evalAffine(bn);
            assertEquals((float) (1 / Math.sqrt(4 + 1e-5)), a.scale()[0]);
            assertEquals((float) (-2 / Math.sqrt(4 + 1e-5)), a.shift()[0]);
            assertEquals(InferenceFolding.evalAffine(null, null, new float[] {2, 0}, new float[] {4, 1}, 1e-5), a);
        }
    }

    @Test
    void foldedConvolutionEqualsConvolutionThenBatchNorm() {
        int cOut = 5;
        int cIn = 3;
        int k = 3;
        int h = 6;
        int w = 7;
        try (BatchNorm bn = module(cOut, 3)) {
            float[] weight = randomFloats((long) cOut * cIn * k * k, 4);
            float[] bias = randomFloats(cOut, 5);
            float[] x = randomFloats((long) 2 * cIn * h * w, 6);
            for (float[] layerBias : new float[][] {bias, null}) {
                InferenceFolding.FoldedLayer folded = InferenceFolding.fold(bn, weight, new long[] {cOut, cIn, k, k},
                        layerBias);
                double[] z = conv2d(x, 2, cIn, h, w, toDoubles(weight), layerBias == null ? new double[cOut]
                        : toDoubles(layerBias), cOut, k);
                double[] reference = batchNormEval(z, 2, cOut, h * w, bn);
                double[] foldedOut = conv2d(x, 2, cIn, h, w, toDoubles(folded.weight()), toDoubles(folded.bias()), cOut, k);
                double[] magnitude = conv2d(abs(x), 2, cIn, h, w, abs(toDoubles(folded.weight())),
                        abs(toDoubles(folded.bias())), cOut, k);
                double worst = 0;
                for (int i = 0; i < reference.length; i++) {
                    // Each folded weight and the bias carry one rounding (u relative).
                    double bound = 2 * U * magnitude[i];
                    assertEquals(reference[i], foldedOut[i], bound, "output " + i);
                    worst = Math.max(worst, Math.abs(reference[i] - foldedOut[i]) / magnitude[i]);
                }
                System.out.printf("InferenceFoldingTest: conv fold (bias %s) worst error %.2f u of sum |w x|%n",
                        layerBias != null, worst / U);
            }
        }
    }

    @Test
    void foldedLinearEqualsLinearThenBatchNormInPlace() {
        int out = 4;
        int in = 6;
        try (Arena arena = Arena.ofConfined(); BatchNorm bn = module(out, 7)) {
            float[] weight = randomFloats((long) out * in, 8);
            float[] bias = randomFloats(out, 9);
            MemorySegment w = arena.allocateFrom(ValueLayout.JAVA_FLOAT, weight);
            MemorySegment b = arena.allocateFrom(ValueLayout.JAVA_FLOAT, bias);
            InferenceFolding.fold(bn, w, new long[] {out, in}, b, w, b);
            InferenceFolding.FoldedLayer copy = InferenceFolding.fold(bn, weight, new long[] {out, in}, bias);
            assertArrayEquals(copy.weight(), w.toArray(ValueLayout.JAVA_FLOAT), "in place equals out of place");
            assertArrayEquals(copy.bias(), b.toArray(ValueLayout.JAVA_FLOAT));

            float[] x = randomFloats(in, 10);
            double[] z = new double[out];
            for (int o = 0; o < out; o++) {
                z[o] = bias[o];
                for (int i = 0; i < in; i++) {
                    z[o] += (double) weight[o * in + i] * x[i];
                }
            }
            double[] reference = batchNormEval(z, 1, out, 1, bn);
            for (int o = 0; o < out; o++) {
                double y = copy.bias()[o];
                double mag = Math.abs(copy.bias()[o]);
                for (int i = 0; i < in; i++) {
                    y += (double) copy.weight()[o * in + i] * x[i];
                    mag += Math.abs((double) copy.weight()[o * in + i] * x[i]);
                }
                assertEquals(reference[o], y, 2 * U * mag, "output " + o);
            }
        }
    }

    @Test
    void matchesPyTorchsFuseConvBnEval() throws IOException {
        try (Arena arena = Arena.ofConfined(); BatchNorm bn = BatchNorm.create(5)) {
            Map<String, Tensor> state = Npz.read(Fixtures.path("state", "model_state.npz"), arena);
            Map<String, Tensor> fused = Npz.read(Fixtures.path("state", "conv_bn_fused.npz"), arena);
            BatchNormState.load(bn, state, "layer1.0.bn1.");
            Tensor convWeight = state.get("layer1.0.conv1.weight");
            InferenceFolding.FoldedLayer ours = InferenceFolding.fold(bn, convWeight.toFloatArray(), convWeight.shape(),
                    state.get("layer1.0.conv1.bias").toFloatArray());
            float[] torchWeight = fused.get("weight").toFloatArray();
            float[] torchBias = fused.get("bias").toFloatArray();
            double worst = 0;
            for (int i = 0; i < torchWeight.length; i++) {
                double rel = Math.abs(ours.weight()[i] - torchWeight[i]) / Math.abs(torchWeight[i]);
                worst = Math.max(worst, rel);
                // PyTorch computes in float32 (a few roundings), ours once from double.
                assertTrue(rel <= 4 * U, "weight " + i + ": " + ours.weight()[i] + " vs PyTorch " + torchWeight[i]);
            }
            for (int o = 0; o < torchBias.length; o++) {
                assertEquals(torchBias[o], ours.bias()[o], 8 * U * (Math.abs(torchBias[o]) + 1), "bias " + o);
            }
            System.out.printf("InferenceFoldingTest: folded weights vs PyTorch fuse_conv_bn_eval, worst %.2f u%n",
                    worst / U);
        }
    }

    @Test
    void badArgumentsAreRefused() {
        try (Arena arena = Arena.ofConfined(); BatchNorm bn = module(3, 11);
             BatchNorm untracked = BatchNorm.create(BatchNormOptions.of(3).withTrackRunningStats(false))) {
            float[] weight = new float[12];
            IllegalArgumentException channels = assertThrows(IllegalArgumentException.class,
                    () -> InferenceFolding.fold(bn, weight, new long[] {4, 3}, null));
            assertTrue(channels.getMessage().contains("4 output channels"), channels.getMessage());
            assertThrows(IllegalArgumentException.class, () -> InferenceFolding.fold(bn, weight, new long[] {3, 5}, null));
            assertThrows(IllegalArgumentException.class, () -> InferenceFolding.fold(bn, weight, new long[] {3, 4},
                    new float[2]));
            assertThrows(IllegalArgumentException.class, () -> InferenceFolding.fold(bn, weight, new long[] {3}, null));
            IllegalStateException noStats = assertThrows(IllegalStateException.class,
                    () -> InferenceFolding.evalAffine(untracked));
            assertTrue(noStats.getMessage().contains("batch statistics"), noStats.getMessage());

            MemorySegment w = arena.allocate(12 * Float.BYTES);
            MemorySegment b = arena.allocate(3 * Float.BYTES);
            assertThrows(IllegalArgumentException.class, () -> InferenceFolding.fold(bn, w, new long[] {3, 4}, null,
                    w.asReadOnly(), b));
            assertThrows(IllegalArgumentException.class, () -> InferenceFolding.fold(bn, w, new long[] {3, 4}, null,
                    w, b.asSlice(0, 8)));
            assertThrows(IllegalArgumentException.class, () -> InferenceFolding.evalAffine(new float[2], null,
                    new float[3], new float[3], 1e-5));
        }
    }

    // x is (N, cIn, h, w), weight (cOut, cIn, k, k); stride 1, zero padding k/2; returns (N, cOut, h, w)
    private static double[] conv2d(float[] x, int n, int cIn, int h, int w, double[] weight, double[] bias, int cOut,
                                   int k) {
        double[] x64 = toDoubles(x);
        return conv2d(x64, n, cIn, h, w, weight, bias, cOut, k);
    }

    private static double[] conv2d(double[] x, int n, int cIn, int h, int w, double[] weight, double[] bias, int cOut,
                                   int k) {
        double[] z = new double[n * cOut * h * w];
        int pad = k / 2;
        for (int b = 0; b < n; b++) {
            for (int o = 0; o < cOut; o++) {
                for (int i = 0; i < h; i++) {
                    for (int j = 0; j < w; j++) {
                        double sum = bias[o];
                        for (int c = 0; c < cIn; c++) {
                            for (int di = 0; di < k; di++) {
                                for (int dj = 0; dj < k; dj++) {
                                    int ii = i + di - pad;
                                    int jj = j + dj - pad;
                                    if (ii >= 0 && ii < h && jj >= 0 && jj < w) {
                                        sum += weight[((o * cIn + c) * k + di) * k + dj]
                                                * x[((b * cIn + c) * h + ii) * w + jj];
                                    }
                                }
                            }
                        }
                        z[((b * cOut + o) * h + i) * w + j] = sum;
                    }
                }
            }
        }
        return z;
    }

    // z is (n, c, s); the module's eval map in double
    private static double[] batchNormEval(double[] z, int n, int c, int s, BatchNorm bn) {
        double[] y = new double[z.length];
        double eps = bn.options().eps();
        for (int b = 0; b < n; b++) {
            for (int ch = 0; ch < c; ch++) {
                double g = bn.weight().getAtIndex(ValueLayout.JAVA_FLOAT, ch);
                double beta = bn.bias().getAtIndex(ValueLayout.JAVA_FLOAT, ch);
                double m = bn.runningMean().getAtIndex(ValueLayout.JAVA_FLOAT, ch);
                double v = bn.runningVar().getAtIndex(ValueLayout.JAVA_FLOAT, ch);
                for (int i = 0; i < s; i++) {
                    int idx = (b * c + ch) * s + i;
                    y[idx] = (z[idx] - m) / Math.sqrt(v + eps) * g + beta;
                }
            }
        }
        return y;
    }

    private static float[] randomFloats(long count, long seed) {
        Random r = new Random(seed);
        float[] out = new float[(int) count];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) (r.nextGaussian() * 0.7 + 0.1);
        }
        return out;
    }

    private static double[] toDoubles(float[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i];
        }
        return out;
    }

    private static double[] abs(double[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = Math.abs(v[i]);
        }
        return out;
    }

    private static float[] abs(float[] v) {
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = Math.abs(v[i]);
        }
        return out;
    }
}
