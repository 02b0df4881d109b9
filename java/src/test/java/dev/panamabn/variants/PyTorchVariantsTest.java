package dev.panamabn.variants;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.DataType;
import dev.panamabn.Layout;
import dev.panamabn.Shape;
import dev.panamabn.TensorSpec;
import dev.panamabn.interop.Npz;
import dev.panamabn.interop.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Channels-last, bfloat16 and the fused epilogues against PyTorch, with cases generated now by
 * {@code scripts/gen_variants.py}: every output within one unit in the last place of its type of
 * PyTorch's float64 autograd result for {@code relu(bn(x) [+ z])}, and y close, norm-wise, to PyTorch's own float32 channels_last and bfloat16 kernels (which
 * accumulate in float and round more often).
 * Skipped, with the reason printed, when python3 or torch is missing.
 */
class PyTorchVariantsTest {

    private static final String PYTHON = System.getProperty("panamabn.python", "/usr/bin/python3");
    private static final int NO_TORCH = 3;
    /**
     * Distance to PyTorch's own kernels in units of the last place of max|y| (norm-wise): its
     * float32 kernel accumulates the statistics in float, its bfloat16 kernel rounds bn(x) before
     * adding z. Measured: at most 2 float32 ulps and 1 bfloat16 ulp.
     */
    private static final double FLOAT32_KERNEL_ULPS = 8;
    private static final double BFLOAT16_KERNEL_ULPS = 2;

    @Test
    void channelsLastBfloat16AndFusedMatchPyTorch(@TempDir Path out) throws IOException, InterruptedException {
        Path script = Path.of(System.getProperty("panamabn.scripts", "scripts"), "gen_variants.py");
        assertTrue(Files.isRegularFile(script), script + " is missing");
        skipIf(!Files.isExecutable(Path.of(PYTHON)), PYTHON + " is not installed");
        long seed = Long.getLong("panamabn.seed", ThreadLocalRandom.current().nextLong(1L << 31));
        System.out.println("PyTorchVariantsTest: seed " + seed + " (rerun with -Dpanamabn.seed=" + seed + ")");
        Process p = new ProcessBuilder(PYTHON, script.toString(), "--seed", Long.toString(seed), "--out",
                out.toString()).redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes());
        if (!p.waitFor(5, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            fail("gen_variants.py did not finish within 5 minutes");
        }
        skipIf(p.exitValue() == NO_TORCH, "torch is not importable by " + PYTHON + ": " + output.strip());
        assertEquals(0, p.exitValue(), "gen_variants.py failed:\n" + output);

        List<Path> cases;
        try (Stream<Path> files = Files.list(out)) {
            cases = files.filter(f -> f.toString().endsWith(".npz")).sorted().toList();
        }
        assertEquals(96, cases.size(), "cases written");
        List<String> failures = new ArrayList<>();
        double[] worstTorchUlps = new double[2];
        for (Path file : cases) {
            try (Arena arena = Arena.ofConfined()) {
                int type = file.toString().contains("bfloat16") ? 1 : 0;
                worstTorchUlps[type] = Math.max(worstTorchUlps[type], replay(Npz.read(file, arena), arena));
            } catch (AssertionError | RuntimeException e) {
                failures.add(file.getFileName() + ": " + e.getMessage());
            }
        }
        System.out.printf("PyTorchVariantsTest: %d cases within 1 ulp of float64 PyTorch; y within %.2f float32 ulp"
                + " and %.2f bfloat16 ulp of max|y| from PyTorch's own kernels%n", cases.size(), worstTorchUlps[0],
                worstTorchUlps[1]);
        assertTrue(failures.isEmpty(), failures.size() + " cases failed:\n" + String.join("\n", failures));
    }

    /** Runs one case through the module; returns y's largest distance to PyTorch's own kernel, in ulps. */
    private static double replay(Map<String, Tensor> t, Arena arena) {
        double[] meta = t.get("meta").toDoubleArray();
        Shape shape = Shape.of(t.get("shape").toLongArray());
        int act = (int) meta[3];
        Layout layout = Layout.values()[(int) meta[4]];
        DataType type = meta[5] == 0 ? DataType.FLOAT32 : DataType.BFLOAT16;
        TensorSpec spec = TensorSpec.of(shape, layout, type);
        boolean training = meta[2] != 0;
        int c = (int) shape.channels();
        BatchNormOptions options = BatchNormOptions.of(c).withEps(meta[0]).withMomentum(meta[1]);
        try (BatchNorm bn = BatchNorm.create(options)) {
            copy(t.get("weight"), bn.weight());
            copy(t.get("bias"), bn.bias());
            copy(t.get("running_mean0"), bn.runningMean());
            copy(t.get("running_var0"), bn.runningVar());
            if (!training) {
                bn.eval();
            }
            MemorySegment x = encode(t.get("x"), type, arena);
            MemorySegment z = encode(t.get("z"), type, arena);
            MemorySegment dy = encode(t.get("dy"), type, arena);
            MemorySegment y = arena.allocate(spec.byteSize(), 64);
            MemorySegment dx = arena.allocate(spec.byteSize(), 64);
            MemorySegment dz = arena.allocate(spec.byteSize(), 64);
            switch (act) {
                case 0 -> bn.forward(x, spec, y);
                case 1 -> bn.forwardRelu(x, spec, y);
                default -> bn.forwardAddRelu(x, z, spec, y);
            }
            switch (act) {
                case 0 -> bn.backward(dy, x, spec, dx);
                case 1 -> bn.backwardRelu(dy, y, x, spec, dx);
                default -> bn.backwardAddRelu(dy, y, x, spec, dx, dz);
            }
            double[] ours = decode(y, type, shape.elementCount());
            TypedTensors.assertWithinUlp("y", ours, t.get("y").toDoubleArray(), type);
            TypedTensors.assertWithinUlp("dx", decode(dx, type, shape.elementCount()), t.get("dx").toDoubleArray(),
                    type);
            if (act == 2) {
                TypedTensors.assertWithinUlp("dz", decode(dz, type, shape.elementCount()),
                        t.get("dz").toDoubleArray(), type);
            }
            TypedTensors.assertWithinUlp("running mean", floats(bn.runningMean(), c),
                    t.get("running_mean").toDoubleArray(), DataType.FLOAT32);
            TypedTensors.assertWithinUlp("running var", floats(bn.runningVar(), c),
                    t.get("running_var").toDoubleArray(), DataType.FLOAT32);
            double[] dw = t.get("dweight").toDoubleArray();
            double[] db = t.get("dbias").toDoubleArray();
            double scale = TypedTensors.maxAbs(dw) + TypedTensors.maxAbs(db);
            double[] ourDw = floats(bn.weightGrad(), c);
            double[] ourDb = floats(bn.biasGrad(), c);
            for (int ch = 0; ch < c; ch++) {
                TypedTensors.assertWithinUlp("dweight", ourDw[ch], dw[ch], DataType.FLOAT32, 1, 1e-12 * scale);
                TypedTensors.assertWithinUlp("dbias", ourDb[ch], db[ch], DataType.FLOAT32, 1, 1e-12 * scale);
            }
            // Norm-wise: PyTorch's kernels compute x*alpha + beta in float (and round bn(x) before
            // adding z), so their error scales with the tensor's size, not with each element's.
            double[] torch = t.get("y_torch").toDoubleArray();
            double size = TypedTensors.maxAbs(torch) + (act == 2 ? TypedTensors.maxAbs(t.get("z").toDoubleArray()) : 0);
            double worst = 0;
            for (int i = 0; i < torch.length; i++) {
                worst = Math.max(worst, Math.abs(ours[i] - torch[i]) / TypedTensors.ulp(size, type));
            }
            double bound = type == DataType.FLOAT32 ? FLOAT32_KERNEL_ULPS : BFLOAT16_KERNEL_ULPS;
            assertTrue(worst <= bound, "y is " + worst + " ulp of max|y| from PyTorch's own " + type + " kernel");
            return worst;
        }
    }

    private static MemorySegment encode(Tensor values, DataType type, Arena arena) {
        float[] f = values.toFloatArray();
        MemorySegment m = arena.allocate((long) f.length * type.byteSize(), 64);
        for (int i = 0; i < f.length; i++) {
            TypedTensors.setElement(m, i, f[i], type);
        }
        return m;
    }

    private static double[] decode(MemorySegment m, DataType type, long count) {
        double[] out = new double[Math.toIntExact(count)];
        for (int i = 0; i < out.length; i++) {
            out[i] = TypedTensors.element(m, i, type);
        }
        return out;
    }

    private static void copy(Tensor from, MemorySegment to) {
        float[] f = from.toFloatArray();
        MemorySegment.copy(f, 0, to, ValueLayout.JAVA_FLOAT, 0, f.length);
    }

    private static double[] floats(MemorySegment m, int count) {
        double[] out = new double[count];
        for (int i = 0; i < count; i++) {
            out[i] = m.getAtIndex(ValueLayout.JAVA_FLOAT, i);
        }
        return out;
    }

    private static void skipIf(boolean missing, String why) {
        if (missing) {
            System.out.println("PyTorchVariantsTest SKIPPED: " + why);
        }
        assumeTrue(!missing, why);
    }
}
