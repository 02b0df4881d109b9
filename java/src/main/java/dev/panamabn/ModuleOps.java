package dev.panamabn;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

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
    private final int flags;
    private final ModuleMemory memory;
    private final TrainingState state;

    ModuleOps(BatchNormOptions options, ModuleMemory memory, TrainingState state) {
        this.channels = options.numFeatures();
        this.affine = options.affine();
        this.track = options.trackRunningStats();
        this.eps = options.eps();
        this.cumulative = options.momentum().isEmpty();
        this.momentum = options.momentum().orElse(0);
        this.flags = options.runningVariance() == BatchNormOptions.RunningVariance.BIASED ? 1 : 0;
        this.memory = memory;
        this.state = state;
    }

    /** Checks that a spec's channel count is the module's. */
    void checkChannels(TensorSpec spec) {
        Shape shape = spec.shape();
        if (shape.channels() != channels) {
            throw new IllegalArgumentException("shape " + shape + " has " + shape.channels()
                    + " channels (dimension 1) but the module has numFeatures=" + channels);
        }
    }

    /**
     * y = epilogue(bn(x) [+ z]), with the batch statistics in training mode (or {@code batch}, the
     * statistics of a whole batch this x is a shard of) or the running statistics in eval mode.
     */
    void forward(Epilogue epilogue, MemorySegment x, MemorySegment z, TensorSpec spec, MemorySegment y,
                 boolean training, ChannelStats batch) {
        checkChannels(spec);
        boolean batchStatistics = training || !track;
        boolean updatesRunningStats = training && track;
        long bytes = spec.byteSize();
        Segments.checkInput("x", x, spec);
        if (z != null) {
            Segments.checkInput("z", z, spec);
        }
        Segments.checkOutput("y", y, spec);
        Segments.checkInPlaceOrDisjoint("y", y, "x", x, bytes);
        if (z != null) {
            Segments.checkDisjoint("y", y, bytes, z, bytes, "z (only x may be y)");
        }
        if (updatesRunningStats) {
            checkNotRunningStats("x", x, bytes);
            if (z != null) {
                checkNotRunningStats("z", z, bytes);
            }
        }
        memory.checkDisjoint("y", y, bytes);
        long values = spec.shape().valuesPerChannel();
        long statsCount = values;
        if (batch != null) {
            if (!batchStatistics) {
                throw new IllegalStateException("eval mode normalises with the running statistics: the statistics"
                        + " of a batch apply in training mode (or without trackRunningStats)");
            }
            statsCount = checkBatch(batch, values);
        }
        if (batchStatistics && statsCount == 1) {
            throw new IllegalArgumentException("Expected more than 1 value per channel when training, got input size "
                    + spec.shape() + (batch != null ? " (statistics of 1 value per channel)" : ""));
        }
        // The new counter and factor are computed here and published only after the call returned OK.
        long count = updatesRunningStats ? state.nextCount() : state.count();
        double factor = factor(updatesRunningStats, count);

        boolean heap = Segments.heap(x) || Segments.heap(z) || Segments.heap(y);
        MemorySegment zs = z == null ? MemorySegment.NULL : z;
        ModuleMemory.KernelBuffers k = memory.kernel;
        Shape shape = spec.shape();
        long n = shape.batch();
        long s = shape.spatial();
        int layout = spec.layout().code();
        int dtype = spec.dataType().code();
        if (batch != null) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment mean = arena.allocateFrom(ValueLayout.JAVA_DOUBLE, batch.mean());
                MemorySegment m2 = arena.allocateFrom(ValueLayout.JAVA_DOUBLE, batch.m2());
                NativeCalls.check(NativeCalls.forwardFromStats(heap, y, k.saveMean(), k.saveInvstd(),
                        k.runningMean(), k.runningVar(), x, zs, k.weight(), k.bias(), mean, m2, statsCount, n,
                        channels, s, layout, dtype, epilogue.code, eps, factor, flags), "bn_forward_from_stats");
            }
        } else if (batchStatistics) {
            NativeCalls.check(NativeCalls.forwardTrain(heap, y, k.saveMean(), k.saveInvstd(), k.runningMean(),
                    k.runningVar(), x, zs, k.weight(), k.bias(), n, channels, s, layout, dtype, epilogue.code, eps,
                    factor, flags), "bn_forward_train");
        } else {
            NativeCalls.check(NativeCalls.forwardEval(heap, y, x, zs, k.weight(), k.bias(), k.runningMean(),
                    k.runningVar(), n, channels, s, layout, dtype, epilogue.code, eps), "bn_forward_eval");
        }
        state.forwardReturned(spec, epilogue, statsCount, count);
    }

    /**
     * {@link #forward} on float32 channels-first Java arrays. The arrays are wrapped right at the
     * critical downcall ({@link NativeCalls}), where escape analysis removes the wrappers: a call
     * allocates nothing once compiled.
     */
    void forward(float[] x, Shape shape, float[] y, boolean training) {
        checkChannels(shape);
        Segments.checkArray("x", x, shape);
        Segments.checkArray("y", y, shape);
        boolean batchStatistics = training || !track;
        boolean updatesRunningStats = training && track;
        long values = shape.valuesPerChannel();
        if (batchStatistics && values == 1) {
            throw new IllegalArgumentException("Expected more than 1 value per channel when training, got input size "
                    + shape);
        }
        long count = updatesRunningStats ? state.nextCount() : state.count();
        double factor = factor(updatesRunningStats, count);
        ModuleMemory.KernelBuffers k = memory.kernel;
        if (batchStatistics) {
            NativeCalls.check(NativeCalls.forwardTrain(y, k.saveMean(), k.saveInvstd(), k.runningMean(),
                    k.runningVar(), x, k.weight(), k.bias(), shape.batch(), channels, shape.spatial(), eps, factor,
                    flags), "bn_forward_train");
        } else {
            NativeCalls.check(NativeCalls.forwardEval(y, x, k.weight(), k.bias(), k.runningMean(), k.runningVar(),
                    shape.batch(), channels, shape.spatial(), eps), "bn_forward_eval");
        }
        state.forwardReturned(shape, Epilogue.NONE, values, count);
    }

    /** {@link #backward} on float32 channels-first Java arrays, allocating nothing once compiled. */
    void backward(float[] dy, float[] x, Shape shape, float[] dx, boolean training, boolean retain) {
        checkChannels(shape);
        state.checkBackward(shape, Epilogue.NONE);
        Segments.checkArray("dy", dy, shape);
        Segments.checkArray("x", x, shape);
        Segments.checkArray("dx", dx, shape);
        if (dx == x) {
            throw new IllegalArgumentException("dx must not be x (in-place backward writes dx into dy)");
        }
        boolean batchStatistics = training || !track;
        checkWholeBatch(batchStatistics, shape.valuesPerChannel());
        ModuleMemory.KernelBuffers k = memory.kernel;
        if (batchStatistics) {
            NativeCalls.check(NativeCalls.backwardTrain(dx, k.stepWeightGrad(), k.stepBiasGrad(), dy, x, k.weight(),
                    k.saveMean(), k.saveInvstd(), shape.batch(), channels, shape.spatial()), "bn_backward_train");
        } else {
            NativeCalls.check(NativeCalls.backwardEval(dx, k.stepWeightGrad(), k.stepBiasGrad(), dy, x, k.weight(),
                    k.runningMean(), k.runningVar(), shape.batch(), channels, shape.spatial(), eps),
                    "bn_backward_eval");
        }
        if (affine) {
            memory.accumulateGradients();
        }
        state.backwardReturned(retain);
    }

    /** The statistics of x, a shard of a batch. Reads nothing of the module's state. */
    ChannelStats batchStats(MemorySegment x, TensorSpec spec) {
        checkChannels(spec);
        Segments.checkInput("x", x, spec);
        Shape shape = spec.shape();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mean = arena.allocate(ValueLayout.JAVA_DOUBLE, channels);
            MemorySegment m2 = arena.allocate(ValueLayout.JAVA_DOUBLE, channels);
            NativeCalls.check(NativeCalls.stats(Segments.heap(x), mean, m2, x, shape.batch(), channels,
                    shape.spatial(), spec.layout().code(), spec.dataType().code()), "bn_stats");
            return ChannelStats.of(shape.valuesPerChannel(), mean.toArray(ValueLayout.JAVA_DOUBLE),
                    m2.toArray(ValueLayout.JAVA_DOUBLE));
        }
    }

    /**
     * dx (and dz for Add+ReLU) for the last forward; the weight and bias gradients accumulate.
     * With {@code total}, the sums of a whole batch this dy is a shard of, dx is this shard's and
     * {@code shard}'s sums are this shard's share of the gradients.
     */
    void backward(Epilogue epilogue, MemorySegment dy, MemorySegment y, MemorySegment x, TensorSpec spec,
                  MemorySegment dx, MemorySegment dz, boolean training, boolean retain, GradSums shard,
                  GradSums total) {
        checkChannels(spec);
        state.checkBackward(spec, epilogue);
        boolean batchStatistics = training || !track;
        checkBackwardTensors(dy, y, x, spec, dx, dz);
        long values = spec.shape().valuesPerChannel();
        long statsCount = state.lastStatsCount();
        if (total != null) {
            if (!batchStatistics) {
                throw new IllegalStateException("eval mode with running statistics differentiates each shard on its"
                        + " own: use backward without sums");
            }
            checkSums("shard", shard, values);
            checkSums("total", total, statsCount);
        } else {
            checkWholeBatch(batchStatistics, values);
        }

        boolean heap = Segments.heap(dy) || Segments.heap(y) || Segments.heap(x) || Segments.heap(dx)
                || Segments.heap(dz);
        MemorySegment ys = y == null ? MemorySegment.NULL : y;
        MemorySegment dzs = dz == null ? MemorySegment.NULL : dz;
        ModuleMemory.KernelBuffers k = memory.kernel;
        Shape shape = spec.shape();
        long n = shape.batch();
        long s = shape.spatial();
        int layout = spec.layout().code();
        int dtype = spec.dataType().code();
        if (total != null) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment sumDy = arena.allocateFrom(ValueLayout.JAVA_DOUBLE, total.sumDy());
                MemorySegment sumDyXhat = arena.allocateFrom(ValueLayout.JAVA_DOUBLE, total.sumDyXhat());
                NativeCalls.check(NativeCalls.backwardFromSums(heap, dx, dzs, dy, ys, x, k.weight(), k.saveMean(),
                        k.saveInvstd(), sumDy, sumDyXhat, total.count(), n, channels, s, layout, dtype,
                        epilogue.code), "bn_backward_from_sums");
            }
            if (affine) {
                memory.accumulateGradients(shard.sumDyXhat(), shard.sumDy());
            }
        } else {
            if (batchStatistics) {
                NativeCalls.check(NativeCalls.backwardTrain(heap, dx, dzs, k.stepWeightGrad(), k.stepBiasGrad(), dy,
                        ys, x, k.weight(), k.saveMean(), k.saveInvstd(), n, channels, s, layout, dtype,
                        epilogue.code), "bn_backward_train");
            } else {
                NativeCalls.check(NativeCalls.backwardEval(heap, dx, dzs, k.stepWeightGrad(), k.stepBiasGrad(), dy,
                        ys, x, k.weight(), k.runningMean(), k.runningVar(), n, channels, s, layout, dtype,
                        epilogue.code, eps), "bn_backward_eval");
            }
            if (affine) {
                memory.accumulateGradients();
            }
        }
        // Published after the call returned OK: the forward is used up unless retained.
        state.backwardReturned(retain);
    }

    /** This shard's backward sums for the last forward (which must be a plain one); publishes nothing. */
    GradSums backwardSums(MemorySegment dy, MemorySegment x, TensorSpec spec, boolean training) {
        checkChannels(spec);
        state.checkBackward(spec, Epilogue.NONE);
        if (!training && track) {
            throw new IllegalStateException("eval mode with running statistics differentiates each shard on its own:"
                    + " use backward without sums");
        }
        Segments.checkInput("dy", dy, spec);
        Segments.checkInput("x", x, spec);
        Shape shape = spec.shape();
        ModuleMemory.KernelBuffers k = memory.kernel;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sumDy = arena.allocate(ValueLayout.JAVA_DOUBLE, channels);
            MemorySegment sumDyXhat = arena.allocate(ValueLayout.JAVA_DOUBLE, channels);
            NativeCalls.check(NativeCalls.backwardReduce(Segments.heap(dy) || Segments.heap(x), sumDy, sumDyXhat,
                    MemorySegment.NULL, MemorySegment.NULL, dy, MemorySegment.NULL, x, k.saveMean(), k.saveInvstd(),
                    shape.batch(), channels, shape.spatial(), spec.layout().code(), spec.dataType().code(),
                    Epilogue.NONE.code), "bn_backward_reduce");
            return GradSums.of(shape.valuesPerChannel(), sumDy.toArray(ValueLayout.JAVA_DOUBLE),
                    sumDyXhat.toArray(ValueLayout.JAVA_DOUBLE));
        }
    }

    /**
     * The tensors of a backward: dy, x (and y for the fused epilogues) are inputs; dx (and dz) are
     * outputs, each either exactly dy or disjoint from every input, and from each other.
     */
    private void checkBackwardTensors(MemorySegment dy, MemorySegment y, MemorySegment x, TensorSpec spec,
                                      MemorySegment dx, MemorySegment dz) {
        long bytes = spec.byteSize();
        Segments.checkInput("dy", dy, spec);
        if (y != null) {
            Segments.checkInput("y", y, spec);
        }
        Segments.checkInput("x", x, spec);
        Segments.checkOutput("dx", dx, spec);
        Segments.checkInPlaceOrDisjoint("dx", dx, "dy", dy, bytes);
        Segments.checkDisjoint("dx", dx, bytes, x, bytes, "x (in-place backward writes dx into dy, not x)");
        if (y != null) {
            Segments.checkDisjoint("dx", dx, bytes, y, bytes, "y (in-place backward writes dx into dy, not y)");
        }
        memory.checkDisjoint("dx", dx, bytes);
        if (dz != null) {
            Segments.checkOutput("dz", dz, spec);
            Segments.checkInPlaceOrDisjoint("dz", dz, "dy", dy, bytes);
            Segments.checkDisjoint("dz", dz, bytes, dx, bytes, "dx (at most one of them may be dy)");
            Segments.checkDisjoint("dz", dz, bytes, x, bytes, "x");
            Segments.checkDisjoint("dz", dz, bytes, y, bytes, "y");
            memory.checkDisjoint("dz", dz, bytes);
        }
    }

    /** A backward without sums differentiates a forward that normalised with its own batch's statistics. */
    private void checkWholeBatch(boolean batchStatistics, long values) {
        long statsCount = state.lastStatsCount();
        if (batchStatistics && statsCount != values) {
            throw new IllegalStateException("the last forward normalised with the statistics of " + statsCount
                    + " values per channel, a larger batch than this " + values + ": its backward needs the whole"
                    + " batch's sums (backwardSums, then backward with GradSums)");
        }
    }

    /** The running statistics' factor: momentum, or {@code 1 / count} for the cumulative average. */
    private double factor(boolean updatesRunningStats, long count) {
        return !updatesRunningStats ? 0 : cumulative ? 1.0 / count : momentum;
    }

    private void checkNotRunningStats(String name, MemorySegment in, long bytes) {
        Segments.checkDisjoint(name, in, bytes, memory.runningMean, "running mean, which this call updates");
        Segments.checkDisjoint(name, in, bytes, memory.runningVar, "running variance, which this call updates");
    }

    /** The statistics of a batch this shard of {@code values} per channel belongs to; returns their count. */
    private long checkBatch(ChannelStats batch, long values) {
        if (batch.channels() != channels) {
            throw new IllegalArgumentException("the batch statistics have " + batch.channels()
                    + " channels but the module has numFeatures=" + channels);
        }
        if (batch.count() < values) {
            throw new IllegalArgumentException("the batch statistics count " + batch.count()
                    + " values per channel, fewer than this shard's " + values + ": they are not of a batch it is part of");
        }
        return batch.count();
    }

    private void checkSums(String name, GradSums sums, long count) {
        if (sums.channels() != channels) {
            throw new IllegalArgumentException("the " + name + " sums have " + sums.channels()
                    + " channels but the module has numFeatures=" + channels);
        }
        if (sums.count() != count) {
            throw new IllegalArgumentException("the " + name + " sums count " + sums.count()
                    + " values per channel, but the " + ("total".equals(name)
                            ? "forward normalised with statistics of " : "shard has ") + count);
        }
    }
}
