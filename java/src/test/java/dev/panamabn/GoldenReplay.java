package dev.panamabn;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Replays a {@link GoldenCase} through the public API and checks every recorded value. */
final class GoldenReplay {

    private GoldenReplay() {
    }

    /** @param arrays true for the float[] overloads, false for MemorySegment */
    static void replay(GoldenCase gc, boolean arrays) {
        Shape shape = gc.shape();
        int channels = (int) shape.channels();
        int count = Math.toIntExact(shape.elementCount());
        try (BatchNorm bn = BatchNorm.create(gc.options()); Arena arena = Arena.ofConfined()) {
            if (gc.affine()) {
                Tensors.write(bn.weight(), gc.weight());
                Tensors.write(bn.bias(), gc.bias());
            }
            double[] meanScale = new double[channels];
            double[] varScale = new double[channels];
            if (gc.trackRunningStats()) {
                Tensors.write(bn.runningMean(), gc.runningMean());
                Tensors.write(bn.runningVar(), gc.runningVar());
                bn.setNumBatchesTracked(gc.numBatchesTracked());
                widen(meanScale, varScale, gc.runningMean(), gc.runningVar());
            }
            long updates = 0;
            for (int i = 0; i < gc.steps().size(); i++) {
                GoldenCase.Step step = gc.steps().get(i);
                String what = gc.name() + " step " + i + (step.training() ? " (train)" : " (eval)")
                        + (arrays ? " via float[]" : " via MemorySegment");
                if (step.training()) {
                    bn.train();
                } else {
                    bn.eval();
                }
                boolean batchStatistics = step.training() || !gc.trackRunningStats();
                var stats = new Expect.Stats(shape, step.saveMean(), step.saveInvstd(), gc.weight(), gc.bias());

                float[] x = Tensors.toFloat(step.x());
                float[] dy = Tensors.toFloat(step.dy());
                float[] y = new float[count];
                float[] dx = new float[count];
                bn.zeroGrad();
                if (arrays) {
                    bn.forward(x, shape, y);
                    bn.backward(dy, x, shape, dx);
                } else {
                    MemorySegment xs = Tensors.segment(arena, x);
                    MemorySegment ys = bn.forward(xs, shape, arena);
                    MemorySegment dxs = bn.backward(Tensors.segment(arena, dy), xs, shape, arena);
                    y = Tensors.floats(ys, count);
                    dx = Tensors.floats(dxs, count);
                }

                if (batchStatistics) {
                    Expect.statistics(what, stats, step.x(), Tensors.doublesOfDoubles(bn.savedMean(), channels),
                            Tensors.doublesOfDoubles(bn.savedInvstd(), channels));
                }
                Expect.forward(what, stats, step.x(), step.y(), Tensors.toDouble(y));
                if (gc.trackRunningStats()) {
                    if (step.training()) {
                        updates++;
                    }
                    widen(meanScale, varScale, step.runningMean(), step.runningVar());
                    Expect.running(what + " running_mean", step.runningMean(),
                            Tensors.doubles(bn.runningMean(), channels), meanScale, updates);
                    Expect.running(what + " running_var", step.runningVar(),
                            Tensors.doubles(bn.runningVar(), channels), varScale, updates);
                    assertEquals(step.numBatchesTracked(), bn.numBatchesTracked(), what + " num_batches_tracked");
                }
                Expect.dx(what, stats, batchStatistics, step.x(), step.dy(), step.dx(), Tensors.toDouble(dx));
                if (gc.affine()) {
                    Expect.parameterGradients(what, stats, step.x(), step.dy(),
                            step.dweight(), Tensors.doubles(bn.weightGrad(), channels),
                            step.dbias(), Tensors.doubles(bn.biasGrad(), channels));
                }
            }
        }
    }

    /** Running means are bounded relative to their magnitude plus the data's spread; variances to theirs. */
    private static void widen(double[] meanScale, double[] varScale, double[] mean, double[] var) {
        for (int c = 0; c < meanScale.length; c++) {
            meanScale[c] = Math.max(meanScale[c], Math.abs(mean[c]) + Math.sqrt(Math.abs(var[c])));
            varScale[c] = Math.max(varScale[c], Math.abs(var[c]));
        }
    }
}
