package dev.panamabn.interop;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Module state under PyTorch's names: a torch.nn.BatchNorm2d's state written by PyTorch (as .npz
 * and safetensors, beside a convolution's) loads and reproduces PyTorch's eval output; state
 * round-trips through both formats; bad state is refused naming the key and changes nothing.
 */
class BatchNormStateTest {

    private static final String PREFIX = "layer1.0.bn1.";
    private static final int C = 5;
    private static final double U = 0x1p-24;

    @Test
    void pytorchStateFromNpzReproducesPyTorchsEvalOutput() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            checkEvalOutput(Npz.read(Fixtures.path("state", "model_state.npz"), arena));
        }
    }

    @Test
    void pytorchStateFromSafeTensorsReproducesPyTorchsEvalOutput() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            checkEvalOutput(SafeTensors.read(Fixtures.path("state", "model_state.safetensors"), arena));
        }
    }

    /** Loads the module from a whole model's state and compares with PyTorch's outputs. */
    private static void checkEvalOutput(Map<String, Tensor> state) throws IOException {
        try (Arena arena = Arena.ofConfined(); BatchNorm bn = BatchNorm.create(C)) {
            BatchNormState.load(bn, state, PREFIX);
            assertEquals(4, bn.numBatchesTracked());
            Map<String, Tensor> expected = Npz.read(Fixtures.path("state", "eval_output.npz"), arena);
            Tensor x = expected.get("x");
            float[] y = new float[(int) x.elementCount()];
            bn.eval();
            bn.forward(x.toFloatArray(), Shape.of(x.shape()), y);
            double[] y64 = expected.get("y64").toDoubleArray();
            float[] yTorch = expected.get("y").toFloatArray();
            double worst64 = 0;
            double worstTorch = 0;
            for (int i = 0; i < y.length; i++) {
                worst64 = Math.max(worst64, Math.abs(y[i] - y64[i]) / Math.max(1, Math.abs(y64[i])));
                worstTorch = Math.max(worstTorch, Math.abs(y[i] - yTorch[i]) / Math.max(1, Math.abs(yTorch[i])));
            }
            // Rounded once from double: within half an ulp of PyTorch's float64 result (plus its own rounding).
            assertTrue(worst64 <= 2 * U, "error against PyTorch float64: " + worst64);
            // PyTorch's float32 eval rounds several times (x * alpha + beta).
            assertTrue(worstTorch <= 8 * U, "difference from PyTorch float32: " + worstTorch);
            System.out.printf("BatchNormStateTest: eval output vs PyTorch float64 %.2e, vs PyTorch float32 %.2e%n",
                    worst64, worstTorch);
        }
    }

    @Test
    void lowPrecisionStateIsWidenedExactly() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> state = SafeTensors.read(Fixtures.path("state", "low_precision_state.safetensors"), arena);
            Map<String, Tensor> expected = Npz.read(Fixtures.path("state", "eval_output.npz"), arena);
            for (String prefix : List.of("f16.", "bf16.")) {
                assertEquals(prefix.equals("f16.") ? ElementType.FLOAT16 : ElementType.BFLOAT16,
                        state.get(prefix + "weight").type());
                try (BatchNorm bn = BatchNorm.create(C)) {
                    BatchNormState.load(bn, state, prefix);
                    for (String name : List.of("weight", "bias", "running_mean", "running_var")) {
                        float[] want = expected.get("expected." + prefix + name).toFloatArray();
                        MemorySegment got = switch (name) {
                            case "weight" -> bn.weight();
                            case "bias" -> bn.bias();
                            case "running_mean" -> bn.runningMean();
                            default -> bn.runningVar();
                        };
                        assertArrayEquals(want, got.toArray(ValueLayout.JAVA_FLOAT), prefix + name);
                    }
                    assertEquals(4, bn.numBatchesTracked());
                }
            }
        }
    }

    @Test
    void stateRoundTripsThroughNpzAndSafeTensors(@TempDir Path dir) throws IOException {
        try (Arena arena = Arena.ofConfined(); BatchNorm source = BatchNorm.create(BatchNormOptions.of(3))) {
            float[] x = {1, 4, -2, 8, 0.5f, 3, 7, -1, 2, 6, 5, -3};
            source.forward(x, Shape.of(4, 3), new float[12]);
            source.forward(x, Shape.of(2, 3, 2), new float[12]);
            source.weight().setAtIndex(ValueLayout.JAVA_FLOAT, 1, 0.75f);
            source.bias().setAtIndex(ValueLayout.JAVA_FLOAT, 2, -1.25f);
            Map<String, Tensor> state = BatchNormState.stateDict(source, "net.bn.", arena);
            assertEquals(List.of("net.bn.weight", "net.bn.bias", "net.bn.running_mean", "net.bn.running_var",
                    "net.bn.num_batches_tracked"), List.copyOf(state.keySet()));
            assertEquals(ElementType.INT64, state.get("net.bn.num_batches_tracked").type());
            assertEquals(0, state.get("net.bn.num_batches_tracked").rank());

            Npz.write(dir.resolve("s.npz"), state);
            SafeTensors.write(dir.resolve("s.safetensors"), state, Map.of("format", "pt"));
            for (Map<String, Tensor> loaded : List.of(Npz.read(dir.resolve("s.npz"), arena),
                    SafeTensors.read(dir.resolve("s.safetensors"), arena))) {
                try (BatchNorm target = BatchNorm.create(3)) {
                    BatchNormState.load(target, loaded, "net.bn.");
                    assertSameState(source, target);
                }
            }
        }
    }

    @Test
    void modulesWithoutAffineOrTrackingHaveTheirOwnKeys() {
        try (Arena arena = Arena.ofConfined();
             BatchNorm noAffine = BatchNorm.create(BatchNormOptions.of(2).withAffine(false));
             BatchNorm noTracking = BatchNorm.create(BatchNormOptions.of(2).withTrackRunningStats(false))) {
            assertEquals(List.of("running_mean", "running_var", "num_batches_tracked"),
                    List.copyOf(BatchNormState.stateDict(noAffine, "", arena).keySet()));
            assertEquals(List.of("weight", "bias"), List.copyOf(BatchNormState.stateDict(noTracking, "", arena).keySet()));
            Map<String, Tensor> full = new HashMap<>(BatchNormState.stateDict(noTracking, "", arena));
            full.put("running_mean", Tensor.ofFloats(new float[2], 2));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> BatchNormState.load(noTracking, full, ""));
            assertTrue(e.getMessage().contains("unexpected key running_mean"), e.getMessage());
        }
    }

    @Test
    void missingCounterDefaultsToZeroAndShapeOneIsAccepted() {
        try (BatchNorm bn = BatchNorm.create(2)) {
            bn.setNumBatchesTracked(9);
            Map<String, Tensor> state = validState(2, "");
            state.remove("num_batches_tracked");
            BatchNormState.load(bn, state, "");
            assertEquals(0, bn.numBatchesTracked(), "PyTorch's default for an absent num_batches_tracked");
            state.put("num_batches_tracked", Tensor.ofLongs(new long[] {12}, 1));
            BatchNormState.load(bn, state, "");
            assertEquals(12, bn.numBatchesTracked());
        }
    }

    @Test
    void keysOfSubModulesAndOtherPrefixesAreLeftAlone() {
        try (BatchNorm bn = BatchNorm.create(2)) {
            Map<String, Tensor> state = validState(2, "bn.");
            state.put("bn.sub.weight", Tensor.ofFloats(new float[7], 7));
            state.put("conv.weight", Tensor.ofFloats(new float[7], 7));
            state.put("bn2.weight", Tensor.ofFloats(new float[7], 7));
            BatchNormState.load(bn, state, "bn.");
            assertEquals(0.5f, bn.weight().getAtIndex(ValueLayout.JAVA_FLOAT, 0));
        }
    }

    @Test
    void badStateIsRefusedNamingTheKeyAndChangesNothing() {
        try (Arena arena = Arena.ofConfined(); BatchNorm bn = BatchNorm.create(2)) {
            bn.setNumBatchesTracked(3);
            Map<String, Tensor> before = BatchNormState.stateDict(bn, "", arena);

            refused(bn, without(validState(2, "m."), "m.running_var"), "m.", "missing key m.running_var");
            refused(bn, with(validState(2, "m."), "m.weight", Tensor.ofFloats(new float[3], 3)), "m.",
                    "m.weight: shape [3] does not match the module's [2]");
            refused(bn, with(validState(2, "m."), "m.bias", Tensor.ofFloats(new float[2], 1, 2)), "m.",
                    "m.bias: shape [1, 2] does not match the module's [2]");
            refused(bn, with(validState(2, "m."), "m.running_mean", Tensor.ofLongs(new long[2], 2)), "m.",
                    "m.running_mean: dtype INT64, expected a floating-point type");
            refused(bn, with(validState(2, "m."), "m.num_batches_tracked", Tensor.ofFloats(new float[1])), "m.",
                    "m.num_batches_tracked: dtype FLOAT32, expected an integer type");
            refused(bn, with(validState(2, "m."), "m.num_batches_tracked", Tensor.ofLongs(new long[] {1, 2}, 2)), "m.",
                    "m.num_batches_tracked: shape [2] does not match the module's []");
            refused(bn, with(validState(2, "m."), "m.num_batches_tracked", Tensor.ofLongs(new long[] {-1})), "m.",
                    "m.num_batches_tracked: must be >= 0, got -1");
            refused(bn, with(validState(2, "m."), "m.num_batches_tracked", Tensor.ofLongs(new long[] {Long.MAX_VALUE})),
                    "m.", "m.num_batches_tracked: must be < " + Long.MAX_VALUE);
            refused(bn, with(validState(2, "m."), "m.momentum", Tensor.ofFloats(new float[1])), "m.",
                    "unexpected key m.momentum");
            IllegalArgumentException prefix = assertThrows(IllegalArgumentException.class,
                    () -> BatchNormState.load(bn, validState(2, "m."), "m"));
            assertTrue(prefix.getMessage().contains("did you mean 'm.'?"), prefix.getMessage());

            Map<String, Tensor> after = BatchNormState.stateDict(bn, "", arena);
            for (String key : before.keySet()) {
                assertEquals(-1, before.get(key).data().mismatch(after.get(key).data()), key + " changed");
            }
        }
    }

    private static void refused(BatchNorm bn, Map<String, Tensor> state, String prefix, String expected) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> BatchNormState.load(bn, state, prefix));
        assertTrue(e.getMessage().contains(expected), "message '" + e.getMessage() + "' lacks '" + expected + "'");
    }

    /** A valid state whose values differ from a new module's. */
    private static Map<String, Tensor> validState(int c, String prefix) {
        Map<String, Tensor> m = new LinkedHashMap<>();
        float[] ones = new float[c];
        java.util.Arrays.fill(ones, 0.5f);
        m.put(prefix + "weight", Tensor.ofFloats(ones.clone(), c));
        m.put(prefix + "bias", Tensor.ofFloats(ones.clone(), c));
        m.put(prefix + "running_mean", Tensor.ofFloats(ones.clone(), c));
        m.put(prefix + "running_var", Tensor.ofFloats(ones.clone(), c));
        m.put(prefix + "num_batches_tracked", Tensor.ofLongs(new long[] {5}));
        return m;
    }

    private static Map<String, Tensor> without(Map<String, Tensor> m, String key) {
        m.remove(key);
        return m;
    }

    private static Map<String, Tensor> with(Map<String, Tensor> m, String key, Tensor t) {
        m.put(key, t);
        return m;
    }

    private static void assertSameState(BatchNorm a, BatchNorm b) {
        assertArrayEquals(a.weight().toArray(ValueLayout.JAVA_FLOAT), b.weight().toArray(ValueLayout.JAVA_FLOAT));
        assertArrayEquals(a.bias().toArray(ValueLayout.JAVA_FLOAT), b.bias().toArray(ValueLayout.JAVA_FLOAT));
        assertArrayEquals(a.runningMean().toArray(ValueLayout.JAVA_FLOAT), b.runningMean().toArray(ValueLayout.JAVA_FLOAT));
        assertArrayEquals(a.runningVar().toArray(ValueLayout.JAVA_FLOAT), b.runningVar().toArray(ValueLayout.JAVA_FLOAT));
        assertEquals(a.numBatchesTracked(), b.numBatchesTracked());
    }
}
