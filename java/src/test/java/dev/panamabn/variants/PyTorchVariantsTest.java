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
 * PyTorch's float64 autograd result for {@code relu(bn(x) [+ z])}, and y, norm-wise, no further from
 * that result than PyTorch's own float32 channels_last and bfloat16 kernels are (which accumulate in
 * float and round more often) or than half a unit when theirs is closer.
 * Skipped, with the reason printed, when python3 or torch is missing.
 */
class PyTorchVariantsTest {

    private static final String PYTHON = System.getProperty("panamabn.python", "/usr/bin/python3");
    private static final int NO_TORCH = 3;
    /** An output rounded once is within half a unit of the exact value; 2^-10 of a unit covers float arithmetic. */
    private static final double ROUNDED_ONCE_ULPS = 0.5 + 0x1p-10;

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
        double[][] worst = new double[2][2];
        for (Path file : cases) {
            try (Arena arena = Arena.ofConfined()) {
                int type = file.toString().contains("bfloat16") ? 1 : 0;
                double[] errors = replay(Npz.read(file, arena), arena);
                worst[type][0] = Math.max(worst[type][0], errors[0]);
                worst[type][1] = Math.max(worst[type][1], errors[1]);
            } catch (AssertionError | RuntimeException e) {
                failures.add(file.getFileName() + ": " + e.getMessage());
            }
        }
        System.out.printf("PyTorchVariantsTest: %d cases within 1 ulp of float64 PyTorch; y's largest error, in ulp of"
                + " max|y|: float32 %.3f (PyTorch's kernel %.2f), bfloat16 %.3f (PyTorch's kernel %.2f)%n",
                cases.size(), worst[0][0], worst[0][1], worst[1][0], worst[1][1]);
        assertTrue(failures.isEmpty(), "seed " + seed + ": " + failures.size() + " cases failed:\n"
                + String.join("\n", failures));
    }

    /** Runs one case through the module; returns y's largest error and PyTorch's kernel's, in ulps of max|y|. */
    private static double[] replay(Map<String, Tensor> t, Arena arena) {
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
            // Norm-wise, in units of the last place of the tensor's scale: PyTorch's kernels compute
            // x*alpha + beta in float (and round bn(x) before adding z), so their error scales with the
            // tensor, not with each element. Ours is each element rounded once: half a unit, plus the
            // float arithmetic of the 16-bit types (a few 2^-24 of max|y|: about 2^-12 of a unit, 2^-10 allowed).
            double[] torch = t.get("y_torch").toDoubleArray();
            double[] exact = t.get("y").toDoubleArray();
            double size = Math.max(TypedTensors.maxAbs(torch), TypedTensors.maxAbs(exact))
                    + (act == 2 ? TypedTensors.maxAbs(t.get("z").toDoubleArray()) : 0);
            double unit = TypedTensors.ulp(size, type);
            double oursError = 0;
            double torchError = 0;
            for (int i = 0; i < exact.length; i++) {
                oursError = Math.max(oursError, Math.abs(ours[i] - exact[i]) / unit);
                torchError = Math.max(torchError, Math.abs(torch[i] - exact[i]) / unit);
            }
            assertTrue(oursError <= Math.max(torchError, ROUNDED_ONCE_ULPS), "y is " + oursError
                    + " ulp of max|y| from the exact result, PyTorch's own " + type + " kernel " + torchError);
            return new double[] {oursError, torchError};
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
