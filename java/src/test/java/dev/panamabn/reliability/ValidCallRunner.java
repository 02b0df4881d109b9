package dev.panamabn.reliability;

import dev.panamabn.BatchNorm;
import dev.panamabn.Shape;
import dev.panamabn.reference.ReferenceBatchNorm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Runs a generated {@link Scenario} on the native module and on the double reference side by side,
 * checking every output, the running statistics, the counter and the accumulated gradients after
 * every call.
 */
final class ValidCallRunner {

    private final Scenario scenario;
    private final AtomicLong calls;
    private final BatchNorm bn;
    private final ReferenceBatchNorm ref;
    private final Arena arena;
    private final int channels;
    private final double[] weightGrad;
    private final double[] biasGrad;
    private final double[] weightGradTol;
    private final double[] biasGradTol;

    private ValidCallRunner(Scenario scenario, AtomicLong calls, BatchNorm bn, Arena arena) {
        this.scenario = scenario;
        this.calls = calls;
        this.bn = bn;
        this.arena = arena;
        this.channels = scenario.options().numFeatures();
        this.ref = new ReferenceBatchNorm(scenario.options());
        this.weightGrad = new double[channels];
        this.biasGrad = new double[channels];
        this.weightGradTol = new double[channels];
        this.biasGradTol = new double[channels];
    }

    static void run(Scenario scenario, AtomicLong calls) {
        try (BatchNorm bn = BatchNorm.create(scenario.options()); Arena arena = Arena.ofConfined()) {
            ValidCallRunner runner = new ValidCallRunner(scenario, calls, bn, arena);
            Data.randomiseState(bn, new SplittableRandom(scenario.stateSeed()));
            runner.syncReferenceState(true);
            for (int i = 0; i < scenario.steps().size(); i++) {
                runner.step(scenario.steps().get(i), "step " + i + " of " + scenario);
            }
        }
    }

    /** The reference starts from the module's float state (and stays on it: no drift between steps). */
    private void syncReferenceState(boolean parameters) {
        if (parameters && bn.options().affine()) {
            System.arraycopy(Data.copyState(bn.weight(), channels), 0, ref.weight(), 0, channels);
            System.arraycopy(Data.copyState(bn.bias(), channels), 0, ref.bias(), 0, channels);
        }
        if (bn.options().trackRunningStats()) {
            System.arraycopy(Data.copyState(bn.runningMean(), channels), 0, ref.runningMean(), 0, channels);
            System.arraycopy(Data.copyState(bn.runningVar(), channels), 0, ref.runningVar(), 0, channels);
        }
    }

    private void step(Scenario.Step step, String context) {
        if (step.training() != bn.isTraining()) {
            if (step.training()) {
                bn.train();
                ref.train();
            } else {
                bn.eval();
                ref.eval();
            }
        }
        if (step.zeroGradFirst()) {
            bn.zeroGrad();
            Arrays.fill(weightGrad, 0);
            Arrays.fill(biasGrad, 0);
            Arrays.fill(weightGradTol, 0);
            Arrays.fill(biasGradTol, 0);
        }
        Shape shape = step.shape();
        long count = shape.elementCount();
        float[] x = Data.floats(step.kind(), step.dataSeed(), count);
        double[] xd = Data.toDouble(x);
        double[] yWant = ref.forward(xd, shape);
        float[] y = forward(step, x, shape, context);
        ReferenceCheck.assertForward(y, xd, shape, ref, yWant, context);
        if (bn.options().trackRunningStats()) {
            assertEquals(ref.numBatchesTracked(), bn.numBatchesTracked(), "numBatchesTracked " + context);
            ReferenceCheck.assertRunningStats(Data.read(bn.runningMean(), channels),
                    Data.read(bn.runningVar(), channels), ref, context);
            syncReferenceState(false);
        }
        if (step.backward()) {
            backward(step, x, xd, shape, context);
        }
    }

    private float[] forward(Scenario.Step step, float[] x, Shape shape, String context) {
        long count = shape.elementCount();
        calls.incrementAndGet();
        switch (step.api()) {
            case ARRAY -> {
                float[] xa = x.clone();
                if (step.inPlace()) {
                    bn.forward(xa, shape, xa);
                    return xa;
                }
                float[] y = new float[(int) count];
                bn.forward(xa, shape, y);
                assertArrayEquals(x, xa, "forward changed its input " + context);
                return y;
            }
            case ARENA -> {
                MemorySegment xs = Data.segment(arena, x, 0);
                MemorySegment y = bn.forward(xs, shape, arena);
                assertArrayEquals(x, Data.read(xs, count), "forward changed its input " + context);
                return Data.read(y, count);
            }
            default -> {
                int offset = step.api() == Scenario.Api.SEGMENT_UNALIGNED ? 1 : 0;
                MemorySegment xs = Data.segment(arena, x, offset);
                if (step.inPlace()) {
                    bn.forward(xs, shape, xs);
                    return Data.read(xs, count);
                }
                float[] sentinel = new float[(int) count];
                Arrays.fill(sentinel, Float.NaN);
                MemorySegment ys = Data.segment(arena, sentinel, offset);
                bn.forward(xs, shape, ys);
                assertArrayEquals(x, Data.read(xs, count), "forward changed its input " + context);
                return Data.read(ys, count);
            }
        }
    }

    private void backward(Scenario.Step step, float[] x, double[] xd, Shape shape, String context) {
        long count = shape.elementCount();
        float[] dy = Data.floats(Data.Kind.GAUSSIAN, step.dataSeed() + 1, count);
        double[] dyd = Data.toDouble(dy);
        ReferenceBatchNorm.Gradients want = ref.backward(dyd, xd, shape);
        float[] dx = backwardCall(step, dy, x, shape, context);
        boolean batchStatistics = step.training() || !bn.options().trackRunningStats();
        ReferenceCheck.GradTolerance tol = ReferenceCheck.assertBackward(dx, dyd, xd, shape, ref, want,
                batchStatistics, context);
        if (!bn.options().affine()) {
            return;
        }
        float[] gotWeightGrad = Data.read(bn.weightGrad(), channels);
        float[] gotBiasGrad = Data.read(bn.biasGrad(), channels);
        for (int c = 0; c < channels; c++) {
            weightGrad[c] += want.dweight()[c];
            biasGrad[c] += want.dbias()[c];
            // The module adds each call's float gradient to a float accumulator.
            weightGradTol[c] += tol.dweight()[c] + 0x1p-23 * Math.abs(weightGrad[c]);
            biasGradTol[c] += tol.dbias()[c] + 0x1p-23 * Math.abs(biasGrad[c]);
            ReferenceCheck.assertClose(gotWeightGrad[c], weightGrad[c], weightGradTol[c],
                    "weightGrad[" + c + "] " + context);
            ReferenceCheck.assertClose(gotBiasGrad[c], biasGrad[c], biasGradTol[c], "biasGrad[" + c + "] " + context);
        }
    }

    private float[] backwardCall(Scenario.Step step, float[] dy, float[] x, Shape shape, String context) {
        long count = shape.elementCount();
        calls.incrementAndGet();
        switch (step.api()) {
            case ARRAY -> {
                float[] dya = dy.clone();
                float[] xa = x.clone();
                if (step.inPlace()) {
                    bn.backward(dya, xa, shape, dya);
                    return dya;
                }
                float[] dx = new float[(int) count];
                bn.backward(dya, xa, shape, dx);
                assertArrayEquals(dy, dya, "backward changed dy " + context);
                assertArrayEquals(x, xa, "backward changed x " + context);
                return dx;
            }
            case ARENA -> {
                MemorySegment dys = Data.segment(arena, dy, 0);
                MemorySegment xs = Data.segment(arena, x, 0);
                MemorySegment dx = bn.backward(dys, xs, shape, arena);
                assertArrayEquals(dy, Data.read(dys, count), "backward changed dy " + context);
                return Data.read(dx, count);
            }
            default -> {
                int offset = step.api() == Scenario.Api.SEGMENT_UNALIGNED ? 1 : 0;
                MemorySegment dys = Data.segment(arena, dy, offset);
                MemorySegment xs = Data.segment(arena, x, offset);
                if (step.inPlace()) {
                    bn.backward(dys, xs, shape, dys);
                    assertArrayEquals(x, Data.read(xs, count), "backward changed x " + context);
                    return Data.read(dys, count);
                }
                float[] sentinel = new float[(int) count];
                Arrays.fill(sentinel, Float.NaN);
                MemorySegment dxs = Data.segment(arena, sentinel, offset);
                bn.backward(dys, xs, shape, dxs);
                assertArrayEquals(dy, Data.read(dys, count), "backward changed dy " + context);
                assertArrayEquals(x, Data.read(xs, count), "backward changed x " + context);
                return Data.read(dxs, count);
            }
        }
    }
}
