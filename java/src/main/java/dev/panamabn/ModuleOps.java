package dev.panamabn;

import dev.panamabn.internal.BatchNormNative;

import java.lang.foreign.MemorySegment;

/**
 * The operations of a module, each in the same three steps: check every argument
 * ({@link Segments}, and the module's own buffers), compute what the call will publish, run the
 * downcall and check its status, and only then publish ({@link TrainingState}, the gradients).
 * The caller ({@link BatchNorm}) holds the module's lock, has checked that the module is open, and
 * keeps the module reachable until the call returns.
 */
final class ModuleOps {

    private final int channels;
    private final boolean affine;
    private final boolean track;
    private final double eps;
    private final boolean cumulative;
    private final double momentum;
    private final ModuleMemory memory;
    private final TrainingState state;

    ModuleOps(BatchNormOptions options, ModuleMemory memory, TrainingState state) {
        this.channels = options.numFeatures();
        this.affine = options.affine();
        this.track = options.trackRunningStats();
        this.eps = options.eps();
        this.cumulative = options.momentum().isEmpty();
        this.momentum = options.momentum().orElse(0);
        this.memory = memory;
        this.state = state;
    }

    /** The byte size of a float32 tensor of this shape, after checking its channel count. */
    long tensorBytes(Shape shape) {
        if (shape.channels() != channels) {
            throw new IllegalArgumentException("shape " + shape + " has " + shape.channels()
                    + " channels (dimension 1) but the module has numFeatures=" + channels);
        }
        return shape.elementCount() * Float.BYTES;
    }

    /** Either the segments (xs, ys) or the arrays (xa, ya) are given; {@code bytes} is x's size. */
    void forward(MemorySegment xs, float[] xa, Shape shape, long bytes, MemorySegment ys, float[] ya,
                 boolean training) {
        boolean batchStatistics = training || !track;
        boolean updatesRunningStats = training && track;
        if (xa != null) {
            Segments.checkArray("x", xa, shape);
            Segments.checkArray("y", ya, shape);
        } else {
            Segments.checkInput("x", xs, shape, bytes);
            if (updatesRunningStats) {
                Segments.checkDisjoint("x", xs, bytes, memory.runningMean, "running mean, which this call updates");
                Segments.checkDisjoint("x", xs, bytes, memory.runningVar, "running variance, which this call updates");
            }
            Segments.checkOutput("y", ys, shape, bytes);
            Segments.checkInPlaceOrDisjoint("y", ys, "x", xs, bytes);
            memory.checkDisjoint("y", ys, bytes);
        }
        if (batchStatistics && shape.valuesPerChannel() == 1) {
            throw new IllegalArgumentException(
                    "Expected more than 1 value per channel when training, got input size " + shape);
        }
        // The new counter and factor are computed here and published only after the call returned OK.
        long count = updatesRunningStats ? state.nextCount() : state.count();
        double factor = !updatesRunningStats ? 0 : cumulative ? 1.0 / count : momentum;

        ModuleMemory.KernelBuffers k = memory.kernel;
        long n = shape.batch();
        long s = shape.spatial();
        if (batchStatistics) {
            NativeCalls.check(xa != null
                    ? NativeCalls.forwardTrain(ya, k.saveMean(), k.saveInvstd(), k.runningMean(), k.runningVar(),
                            xa, k.weight(), k.bias(), n, channels, s, eps, factor)
                    : BatchNormNative.bn_forward_train_f32(ys, k.saveMean(), k.saveInvstd(), k.runningMean(),
                            k.runningVar(), xs, k.weight(), k.bias(), n, channels, s, NativeCalls.LAYOUT_NCS, eps,
                            factor), "bn_forward_train_f32");
        } else {
            NativeCalls.check(xa != null
                    ? NativeCalls.forwardEval(ya, xa, k.weight(), k.bias(), k.runningMean(), k.runningVar(),
                            n, channels, s, eps)
                    : BatchNormNative.bn_forward_eval_f32(ys, xs, k.weight(), k.bias(), k.runningMean(),
                            k.runningVar(), n, channels, s, NativeCalls.LAYOUT_NCS, eps), "bn_forward_eval_f32");
        }
        state.forwardReturned(shape, count);
    }

    /** Either the segments (dys, xs, dxs) or the arrays (dya, xa, dxa) are given. */
    void backward(MemorySegment dys, float[] dya, MemorySegment xs, float[] xa, Shape shape, long bytes,
                  MemorySegment dxs, float[] dxa, boolean training, boolean retain) {
        state.checkBackward(shape);
        if (xa != null) {
            Segments.checkArray("dy", dya, shape);
            Segments.checkArray("x", xa, shape);
            Segments.checkArray("dx", dxa, shape);
            if (dxa == xa) {
                throw new IllegalArgumentException("dx must not be x (in-place backward writes dx into dy)");
            }
        } else {
            Segments.checkInput("dy", dys, shape, bytes);
            Segments.checkInput("x", xs, shape, bytes);
            Segments.checkOutput("dx", dxs, shape, bytes);
            Segments.checkInPlaceOrDisjoint("dx", dxs, "dy", dys, bytes);
            Segments.checkDisjoint("dx", dxs, bytes, xs, "x (in-place backward writes dx into dy, not x)");
            memory.checkDisjoint("dx", dxs, bytes);
        }

        ModuleMemory.KernelBuffers k = memory.kernel;
        long n = shape.batch();
        long s = shape.spatial();
        if (training || !track) {
            NativeCalls.check(xa != null
                    ? NativeCalls.backwardTrain(dxa, k.stepWeightGrad(), k.stepBiasGrad(), dya, xa, k.weight(),
                            k.saveMean(), k.saveInvstd(), n, channels, s)
                    : BatchNormNative.bn_backward_train_f32(dxs, k.stepWeightGrad(), k.stepBiasGrad(), dys, xs,
                            k.weight(), k.saveMean(), k.saveInvstd(), n, channels, s, NativeCalls.LAYOUT_NCS),
                    "bn_backward_train_f32");
        } else {
            NativeCalls.check(xa != null
                    ? NativeCalls.backwardEval(dxa, k.stepWeightGrad(), k.stepBiasGrad(), dya, xa, k.weight(),
                            k.runningMean(), k.runningVar(), n, channels, s, eps)
                    : BatchNormNative.bn_backward_eval_f32(dxs, k.stepWeightGrad(), k.stepBiasGrad(), dys, xs,
                            k.weight(), k.runningMean(), k.runningVar(), n, channels, s, NativeCalls.LAYOUT_NCS,
                            eps), "bn_backward_eval_f32");
        }
        // Published after the call returned OK: the gradients, and the forward used up unless retained.
        if (affine) {
            memory.accumulateGradients();
        }
        state.backwardReturned(retain);
    }
}
