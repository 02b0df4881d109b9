package dev.panamabn.reliability;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;
import dev.panamabn.reference.ReferenceBatchNorm;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Numerical edge cases against live PyTorch (float32, CPU, run by Debian's python3): NaN and Inf
 * in one channel, eps = 0 with a constant channel, running_var = 0 in eval, empty batches. Each
 * case compares forward output, running statistics, counter, dx and the parameter gradients, with
 * NaN positions and infinities exact. Values near float overflow, where PyTorch's float statistics
 * overflow and this library's double statistics do not, are checked against the double reference
 * instead (see {@link #valuesNearFloatOverflow()}). Skipped, with the reason printed, without torch.
 */
class EdgeCaseTest {

    private static final String PYTHON = System.getProperty("panamabn.python", "/usr/bin/python3");

    /** Reads a case file (key count values...), runs it in torch float32, writes the results. */
    private static final String TORCH_SCRIPT = """
            import sys
            import torch
            torch.set_num_threads(1)
            rec = {}
            for line in open(sys.argv[1]):
                w = line.split()
                rec[w[0]] = [float(v) for v in w[2:]]
            dims = [int(d) for d in rec['dims']]
            eps, train = rec['eps'][0], rec['train'][0] == 1
            cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}
            bn = cls[len(dims)](dims[1], eps=eps, momentum=rec['momentum'][0])
            with torch.no_grad():
                for k in ('weight', 'bias', 'running_mean', 'running_var'):
                    getattr(bn, k).copy_(torch.tensor(rec[k]))
            bn.train(train)
            x = torch.tensor(rec['x'], dtype=torch.float32).reshape(dims).requires_grad_(True)
            y = bn(x)
            y.backward(torch.tensor(rec['dy'], dtype=torch.float32).reshape(dims))
            out = {'y': y, 'running_mean': bn.running_mean, 'running_var': bn.running_var,
                   'num_batches_tracked': bn.num_batches_tracked, 'dx': x.grad,
                   'dweight': bn.weight.grad, 'dbias': bn.bias.grad}
            with open(sys.argv[2], 'w') as f:
                for k, v in out.items():
                    vals = [repr(float(t)) for t in v.detach().flatten().tolist()]
                    f.write(k + ' ' + str(len(vals)) + ' ' + ' '.join(vals) + '\\n')
            """;

    private static String torchMissing;

    @BeforeAll
    static void findTorch() throws Exception {
        if (!Files.isExecutable(Path.of(PYTHON))) {
            torchMissing = PYTHON + " is not installed";
            return;
        }
        Process p = new ProcessBuilder(PYTHON, "-c", "import torch").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        if (!p.waitFor(120, TimeUnit.SECONDS) || p.exitValue() != 0) {
            torchMissing = "torch is not importable by " + PYTHON + ": " + out.strip();
        }
    }

    private static void requireTorch() {
        if (torchMissing != null) {
            System.out.println("SKIPPED EdgeCaseTest (live PyTorch): " + torchMissing);
        }
        assumeTrue(torchMissing == null, torchMissing);
    }

    /** One module call (forward, then backward with dy) from a given state. */
    private record Case(String name, long[] dims, float[] x, float[] dy, double eps, double momentum, boolean train,
                        float[] weight, float[] bias, float[] runningMean, float[] runningVar) {

        Shape shape() {
            return Shape.of(dims);
        }
    }

    private static Case randomCase(String name, long[] dims, double eps, boolean train, long seed) {
        Shape shape = Shape.of(dims);
        int c = (int) shape.channels();
        SplittableRandom r = new SplittableRandom(seed);
        float[] w = new float[c];
        float[] b = new float[c];
        float[] rm = new float[c];
        float[] rv = new float[c];
        for (int i = 0; i < c; i++) {
            w[i] = (float) r.nextDouble(0.5, 2);
            b[i] = (float) r.nextDouble(-1, 1);
            rm[i] = (float) r.nextDouble(-1, 1);
            rv[i] = (float) r.nextDouble(0.5, 2);
        }
        return new Case(name, dims, Data.floats(Data.Kind.GAUSSIAN, seed, shape.elementCount()),
                Data.floats(Data.Kind.WIDE, seed + 1, shape.elementCount()), eps, 0.1, train, w, b, rm, rv);
    }

    /** Sets x[n, channel, ...] for every n and spatial position. */
    private static void fillChannel(Case k, int channel, float value) {
        long s = k.shape().spatial();
        for (long n = 0; n < k.shape().batch(); n++) {
            for (long j = 0; j < s; j++) {
                k.x()[(int) ((n * k.shape().channels() + channel) * s + j)] = value;
            }
        }
    }

    private static int index(Case k, long n, int channel, long j) {
        return (int) ((n * k.shape().channels() + channel) * k.shape().spatial() + j);
    }

    /** The results of one case, by record name, from this library. */
    private static Map<String, float[]> runNative(Case k) {
        int c = (int) k.shape().channels();
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(c).withEps(k.eps()).withMomentum(k.momentum()))) {
            Data.write(bn.weight(), k.weight());
            Data.write(bn.bias(), k.bias());
            Data.write(bn.runningMean(), k.runningMean());
            Data.write(bn.runningVar(), k.runningVar());
            if (!k.train()) {
                bn.eval();
            }
            float[] y = new float[k.x().length];
            bn.forward(k.x(), k.shape(), y);
            float[] dx = new float[k.x().length];
            bn.backward(k.dy(), k.x(), k.shape(), dx);
            Map<String, float[]> out = new HashMap<>();
            out.put("y", y);
            out.put("running_mean", Data.read(bn.runningMean(), c));
            out.put("running_var", Data.read(bn.runningVar(), c));
            out.put("num_batches_tracked", new float[] {bn.numBatchesTracked()});
            out.put("dx", dx);
            out.put("dweight", Data.read(bn.weightGrad(), c));
            out.put("dbias", Data.read(bn.biasGrad(), c));
            return out;
        }
    }

    private static Map<String, double[]> runTorch(Case k) throws IOException, InterruptedException {
        Path dir = Files.createTempDirectory("bn-edge");
        try {
            Path in = dir.resolve("case.txt");
            Path out = dir.resolve("out.txt");
            StringBuilder text = new StringBuilder();
            record(text, "dims", toDoubles(k.dims()));
            record(text, "eps", new double[] {k.eps()});
            record(text, "momentum", new double[] {k.momentum()});
            record(text, "train", new double[] {k.train() ? 1 : 0});
            record(text, "weight", Data.toDouble(k.weight()));
            record(text, "bias", Data.toDouble(k.bias()));
            record(text, "running_mean", Data.toDouble(k.runningMean()));
            record(text, "running_var", Data.toDouble(k.runningVar()));
            record(text, "x", Data.toDouble(k.x()));
            record(text, "dy", Data.toDouble(k.dy()));
            Files.writeString(in, text);
            Process p = new ProcessBuilder(PYTHON, "-c", TORCH_SCRIPT, in.toString(), out.toString())
                    .redirectErrorStream(true).start();
            String log = new String(p.getInputStream().readAllBytes());
            assertTrue(p.waitFor(300, TimeUnit.SECONDS), "torch timed out");
            assertEquals(0, p.exitValue(), "torch failed on " + k.name() + ":\n" + log);
            Map<String, double[]> results = new HashMap<>();
            for (String line : Files.readAllLines(out)) {
                String[] w = line.trim().split(" ");
                double[] v = new double[Integer.parseInt(w[1])];
                for (int i = 0; i < v.length; i++) {
                    v[i] = parsePython(w[2 + i]);
                }
                results.put(w[0], v);
            }
            return results;
        } finally {
            try (var files = Files.list(dir)) {
                for (Path f : files.toList()) {
                    Files.delete(f);
                }
            }
            Files.delete(dir);
        }
    }

    private static double[] toDoubles(long[] v) {
        double[] d = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            d[i] = v[i];
        }
        return d;
    }

    private static void record(StringBuilder text, String key, double[] values) {
        text.append(key).append(' ').append(values.length);
        for (double v : values) {
            text.append(' ').append(Double.isNaN(v) ? "nan" : Double.isInfinite(v) ? (v > 0 ? "inf" : "-inf")
                    : Double.toString(v));
        }
        text.append('\n');
    }

    private static double parsePython(String word) {
        return switch (word) {
            case "nan" -> Double.NaN;
            case "inf" -> Double.POSITIVE_INFINITY;
            case "-inf" -> Double.NEGATIVE_INFINITY;
            default -> Double.parseDouble(word);
        };
    }

    /** NaN where torch has NaN, the same infinities, finite values within float32 rounding. */
    private static void assertMatchesTorch(Case k) throws Exception {
        Map<String, float[]> got = runNative(k);
        Map<String, double[]> want = runTorch(k);
        List<String> mismatches = new ArrayList<>();
        for (var entry : want.entrySet()) {
            float[] g = got.get(entry.getKey());
            double[] w = entry.getValue();
            assertEquals(w.length, g.length, entry.getKey() + " length, case " + k.name());
            double scale = 0;
            for (double v : w) {
                scale = Double.isFinite(v) ? Math.max(scale, Math.abs(v)) : scale;
            }
            for (int i = 0; i < w.length; i++) {
                boolean same = Double.isNaN(w[i]) ? Float.isNaN(g[i])
                        : Double.isInfinite(w[i]) ? g[i] == w[i]
                        : Float.isFinite(g[i]) && Math.abs(g[i] - w[i]) <= 1e-4 * (Math.abs(w[i]) + 1e-2 * scale) + 1e-6;
                if (!same) {
                    mismatches.add(entry.getKey() + "[" + i + "]: got " + g[i] + ", torch " + w[i]);
                }
            }
        }
        assertTrue(mismatches.isEmpty(), "case " + k.name() + " differs from torch in " + mismatches.size()
                + " values, first: " + mismatches.subList(0, Math.min(8, mismatches.size())));
    }

    @Test
    void nanInOneChannelPoisonsOnlyThatChannel() throws Exception {
        requireTorch();
        Case k = randomCase("nan in channel 1", new long[] {3, 4, 2, 3}, 1e-5, true, 11);
        k.x()[index(k, 1, 1, 2)] = Float.NaN;
        assertMatchesTorch(k);
        Map<String, float[]> got = runNative(k);
        assertTrue(Float.isNaN(got.get("running_mean")[1]) && Float.isNaN(got.get("running_var")[1]));
        Case clean = randomCase("clean", new long[] {3, 4, 2, 3}, 1e-5, true, 11);
        Map<String, float[]> reference = runNative(clean);
        for (int c : new int[] {0, 2, 3}) {
            for (long n = 0; n < 3; n++) {
                for (long j = 0; j < 6; j++) {
                    int i = index(k, n, c, j);
                    assertEquals(reference.get("y")[i], got.get("y")[i], "other channels keep their exact outputs");
                    assertEquals(reference.get("dx")[i], got.get("dx")[i], "other channels keep their exact gradients");
                }
            }
        }
    }

    @Test
    void infinityInOneChannelInTraining() throws Exception {
        requireTorch();
        Case k = randomCase("inf in channel 0", new long[] {4, 3, 5}, 1e-5, true, 12);
        k.x()[index(k, 2, 0, 1)] = Float.POSITIVE_INFINITY;
        k.x()[index(k, 1, 2, 4)] = Float.NEGATIVE_INFINITY;
        assertMatchesTorch(k);
    }

    @Test
    void nonFiniteValuesInEvalStayElementwise() throws Exception {
        requireTorch();
        Case k = randomCase("eval with nan and inf", new long[] {2, 3, 4, 4}, 1e-5, false, 13);
        k.x()[index(k, 0, 1, 5)] = Float.NaN;
        k.x()[index(k, 1, 2, 0)] = Float.POSITIVE_INFINITY;
        k.x()[index(k, 1, 0, 7)] = Float.NEGATIVE_INFINITY;
        assertMatchesTorch(k);
    }

    /** PyTorch defines invstd = 0 when var == 0 and eps == 0 (no NaN): y = bias, zero gradients. */
    @Test
    void epsZeroWithAConstantChannel() throws Exception {
        requireTorch();
        Case k = randomCase("eps 0, constant channel 2", new long[] {2, 3, 2, 2}, 0.0, true, 14);
        fillChannel(k, 2, 3.7f);
        assertMatchesTorch(k);
    }

    @Test
    void runningVarZeroInEval() throws Exception {
        requireTorch();
        Case k = randomCase("eval, running_var 0", new long[] {3, 3, 7}, 1e-5, false, 15);
        k.runningVar()[0] = 0;
        k.runningVar()[2] = 0;
        assertMatchesTorch(k);
    }

    @Test
    void emptyBatchInTrainingAndEval() throws Exception {
        requireTorch();
        assertMatchesTorch(randomCase("empty batch, training", new long[] {0, 3, 2, 2}, 1e-5, true, 16));
        assertMatchesTorch(randomCase("empty batch, eval", new long[] {0, 3, 4}, 1e-5, false, 17));
        assertMatchesTorch(randomCase("empty spatial, training", new long[] {2, 3, 0, 5}, 1e-5, true, 18));
    }

    /**
     * Values near float overflow: statistics in double stay exact here, where PyTorch's float
     * variance overflows to inf, its invstd becomes 0 and it outputs y = bias and NaN gradients
     * (a documented difference: ours are the true values). Checked against the double reference;
     * the running variance overflows float in both (inf), the running mean agrees with PyTorch.
     */
    @Test
    void valuesNearFloatOverflow() throws Exception {
        Case k = randomCase("near float overflow", new long[] {2, 3, 2, 2}, 1e-5, true, 19);
        float[] huge = {3e38f, -3e38f, 3.2e38f, -2e38f, 1e38f, -3.4e38f, 3.4e38f, 0};
        for (long n = 0; n < 2; n++) {
            for (long j = 0; j < 4; j++) {
                k.x()[index(k, n, 0, j)] = huge[(int) (n * 4 + j)];
            }
        }
        Map<String, float[]> got = runNative(k);
        ReferenceBatchNorm ref = new ReferenceBatchNorm(BatchNormOptions.of(3));
        System.arraycopy(Data.toDouble(k.weight()), 0, ref.weight(), 0, 3);
        System.arraycopy(Data.toDouble(k.bias()), 0, ref.bias(), 0, 3);
        System.arraycopy(Data.toDouble(k.runningMean()), 0, ref.runningMean(), 0, 3);
        System.arraycopy(Data.toDouble(k.runningVar()), 0, ref.runningVar(), 0, 3);
        double[] xd = Data.toDouble(k.x());
        double[] y = ref.forward(xd, k.shape());
        ReferenceCheck.assertForward(got.get("y"), xd, k.shape(), ref, y, "near float overflow");
        assertEquals(Float.POSITIVE_INFINITY, got.get("running_var")[0], "unbiased variance ~1e77 overflows float");
        ReferenceCheck.assertClose(got.get("running_mean")[0], ref.runningMean()[0], 1e-6 * Math.abs(ref.runningMean()[0]),
                "running mean");
        ReferenceBatchNorm.Gradients g = ref.backward(Data.toDouble(k.dy()), xd, k.shape());
        ReferenceCheck.assertBackward(got.get("dx"), Data.toDouble(k.dy()), xd, k.shape(), ref, g, true,
                "near float overflow");
        if (torchMissing == null) {
            Map<String, double[]> torch = runTorch(k);
            assertEquals(got.get("running_mean")[0], (float) torch.get("running_mean")[0], 1e-6 * Math.abs(got.get("running_mean")[0]));
            assertEquals(Double.POSITIVE_INFINITY, torch.get("running_var")[0]);
            System.out.println("near float overflow, channel 0: torch y[0] = " + torch.get("y")[0] + " (its invstd "
                    + "overflowed to 0), ours " + got.get("y")[0] + ", exact " + y[0]);
        }
    }

    /** A channel that is entirely NaN in training: its statistics are NaN, never an exception. */
    @Test
    void aChannelOfNanRunsAndStaysIsolated() {
        Case k = randomCase("all-NaN channel", new long[] {4, 2, 3}, 1e-5, true, 20);
        fillChannel(k, 1, Float.NaN);
        Map<String, float[]> got = runNative(k);
        for (long n = 0; n < 4; n++) {
            for (long j = 0; j < 3; j++) {
                assertTrue(Float.isNaN(got.get("y")[index(k, n, 1, j)]));
                assertTrue(Float.isFinite(got.get("y")[index(k, n, 0, j)]));
            }
        }
        assertArrayEquals(new float[] {1}, got.get("num_batches_tracked"));
        assertTrue(Float.isFinite(got.get("running_var")[0]) && Float.isNaN(got.get("running_var")[1]));
        assertTrue(Float.isFinite(got.get("dweight")[0]) && Float.isNaN(got.get("dweight")[1]));
    }
}
