package dev.panamabn.sync;

import dev.panamabn.BatchNorm;
import dev.panamabn.Collective;
import dev.panamabn.SyncBatchNorm;
import dev.panamabn.TensorSpec;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs a {@link Workload} on one rank's shard through {@link SyncBatchNorm}, or on the whole batch
 * through one {@link BatchNorm}, and records everything the checks compare.
 */
final class Replica {

    /** What a run produced: per training step y and dx (this rank's samples) and the running stats after it. */
    record Result(List<float[]> y, List<float[]> dx, List<float[]> runningMean, List<float[]> runningVar,
                  long counter, float[] weightGrad, float[] biasGrad, float[] evalY) {
    }

    private Replica() {
    }

    /** Rank r's part of the run, synchronised over the collective. */
    static Result sync(Workload w, int rank, Collective collective) {
        try (Arena arena = Arena.ofConfined();
             SyncBatchNorm bn = SyncBatchNorm.create(w.options(), collective)) {
            Steps steps = new Steps(w, arena, bn.module(), w.offset(rank), w.shardSizes()[rank]);
            return steps.run(() -> bn.forward(steps.x, steps.spec, steps.y),
                    () -> bn.backward(steps.dy, steps.x, steps.spec, steps.dx));
        }
    }

    /** The whole batch through one module: the one-process reference. */
    static Result whole(Workload w) {
        try (Arena arena = Arena.ofConfined();
             BatchNorm bn = BatchNorm.create(w.options())) {
            Steps steps = new Steps(w, arena, bn, 0, w.total());
            return steps.run(() -> bn.forward(steps.x, steps.spec, steps.y),
                    () -> bn.backward(steps.dy, steps.x, steps.spec, steps.dx));
        }
    }

    /** Buffers and records of one run over samples [from, from + n). */
    private static final class Steps {
        final Workload w;
        final BatchNorm module;
        final int from;
        final int n;
        final TensorSpec spec;
        final MemorySegment x;
        final MemorySegment y;
        final MemorySegment dy;
        final MemorySegment dx;
        final List<float[]> ys = new ArrayList<>();
        final List<float[]> dxs = new ArrayList<>();
        final List<float[]> means = new ArrayList<>();
        final List<float[]> vars = new ArrayList<>();

        Steps(Workload w, Arena arena, BatchNorm module, int from, int n) {
            this.w = w;
            this.module = module;
            this.from = from;
            this.n = n;
            this.spec = w.spec(n);
            long count = (long) n * w.channels() * w.spatial();
            this.x = arena.allocate(ValueLayout.JAVA_FLOAT, count);
            this.y = arena.allocate(ValueLayout.JAVA_FLOAT, count);
            this.dy = arena.allocate(ValueLayout.JAVA_FLOAT, count);
            this.dx = arena.allocate(ValueLayout.JAVA_FLOAT, count);
            if (w.options().affine()) {
                MemorySegment.copy(w.weight(), 0, module.weight(), ValueLayout.JAVA_FLOAT, 0, w.channels());
                MemorySegment.copy(w.bias(), 0, module.bias(), ValueLayout.JAVA_FLOAT, 0, w.channels());
            }
        }

        /** The workload's training steps, then an eval forward of step 0's input. */
        Result run(Runnable forward, Runnable backward) {
            for (int t = 0; t < w.steps(); t++) {
                load(t);
                forward.run();
                backward.run();
                record();
            }
            module.eval();
            load(0);
            forward.run();
            return result();
        }

        void load(int step) {
            float[] xs = w.physical(w.x(step), from, n);
            float[] dys = w.physical(w.dy(step), from, n);
            MemorySegment.copy(xs, 0, x, ValueLayout.JAVA_FLOAT, 0, xs.length);
            MemorySegment.copy(dys, 0, dy, ValueLayout.JAVA_FLOAT, 0, dys.length);
        }

        void record() {
            ys.add(y.toArray(ValueLayout.JAVA_FLOAT));
            dxs.add(dx.toArray(ValueLayout.JAVA_FLOAT));
            if (w.options().trackRunningStats()) {
                means.add(module.runningMean().toArray(ValueLayout.JAVA_FLOAT));
                vars.add(module.runningVar().toArray(ValueLayout.JAVA_FLOAT));
            }
        }

        Result result() {
            boolean affine = w.options().affine();
            long counter = w.options().trackRunningStats() ? module.numBatchesTracked() : -1;
            return new Result(ys, dxs, means, vars, counter,
                    affine ? module.weightGrad().toArray(ValueLayout.JAVA_FLOAT) : new float[0],
                    affine ? module.biasGrad().toArray(ValueLayout.JAVA_FLOAT) : new float[0],
                    y.toArray(ValueLayout.JAVA_FLOAT));
        }
    }
}
