package dev.panamabn;

import dev.panamabn.internal.BatchNormNative;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Objects;
import java.util.concurrent.locks.StampedLock;

/**
 * Batch normalization over the channel dimension of float32 tensors, with the semantics of
 * PyTorch's {@code torch.nn.BatchNorm1d/2d/3d} (any rank 2..5; see {@link Shape}).
 *
 * <p>The module owns its state in native memory, in an arena of its own that {@link #close()}
 * frees: weight (gamma) and bias (beta) with their gradients when {@code affine}, running mean and
 * running variance with {@code num_batches_tracked} when {@code trackRunningStats}, and the
 * per-channel statistics of the last forward pass, which {@link #backward} uses.
 *
 * <pre>{@code
 * try (var bn = BatchNorm.create(64); var arena = Arena.ofConfined()) {
 *     Shape shape = Shape.of(32, 64, 56, 56);
 *     MemorySegment x = arena.allocate(shape.elementCount() * Float.BYTES, Float.BYTES);
 *     // ... fill x ...
 *     MemorySegment y = bn.forward(x, shape, arena);          // training mode: batch statistics
 *     MemorySegment dx = bn.backward(dy, x, shape, arena);    // dweight, dbias accumulate into bn.weightGrad(), bn.biasGrad()
 *     bn.eval();
 *     bn.forward(x, shape, y);                                // running statistics, into y
 * }
 * }</pre>
 *
 * <h2>Semantics</h2>
 * <ul>
 *   <li>Training mode normalises with the batch mean and the biased batch variance, increments
 *       {@code numBatchesTracked} before the update, and moves the running statistics by the
 *       factor {@code momentum} (or {@code 1 / numBatchesTracked} without momentum) towards the
 *       batch mean and the <em>unbiased</em> batch variance {@code var * M / (M - 1)}. As in
 *       PyTorch, a channel whose batch variance is 0 gets {@code invstd = 0} when {@code eps} is 0
 *       (its output is the bias and its dx and weight gradient are 0, not NaN); eval mode with the
 *       running statistics has no such rule.</li>
 *   <li>Eval mode normalises with the running statistics and never changes them. Without
 *       {@code trackRunningStats} there are none, and eval mode uses the batch statistics too.</li>
 *   <li>Training with one value per channel ({@code N * S == 1}) is refused with PyTorch's message
 *       and changes nothing. An empty batch ({@code N * S == 0}) is accepted, as in PyTorch: it
 *       increments the counter, leaves the running statistics alone, and adds zero gradients.</li>
 *   <li>{@link #backward} differentiates the last forward pass, which must have had the same
 *       shape and happened in the current mode and state: training mode (and eval without
 *       tracking) uses the saved batch statistics; eval mode with tracking treats the running
 *       statistics as constants. Weight and bias gradients accumulate like PyTorch's
 *       {@code .grad}; {@link #zeroGrad()} clears them.</li>
 * </ul>
 *
 * <h2>Arguments</h2>
 * Tensors are contiguous float32 in NCHW order, given as native {@link MemorySegment}s (passed to
 * native code without a copy; a segment may be longer than the shape needs) or as {@code float[]}
 * (passed without a copy through critical downcalls, which hold off the garbage collector while
 * the kernel runs: prefer segments for large tensors). Every argument is checked before any state
 * changes; a rejected call changes nothing (counter, running statistics, gradients, outputs):
 * <ul>
 *   <li>{@link NullPointerException}: a null argument.</li>
 *   <li>{@link IllegalArgumentException}: channel count other than {@code numFeatures}, a segment
 *       or array smaller than the shape, a heap segment where a native one is needed, a segment
 *       not aligned to 4 bytes, a read-only output, an output that overlaps an input or the
 *       module's own buffers, one value per channel in training.</li>
 *   <li>{@link IllegalStateException}: a closed module, a segment whose arena is closed, a
 *       backward without a matching forward, a state buffer the options leave out (e.g.
 *       {@link #weight()} when not affine). {@link WrongThreadException}: a segment confined to
 *       another thread.</li>
 * </ul>
 * In-place use is supported in one form each: {@code forward(x, shape, x)} (y is x: the same
 * address and size) and {@code backward(dy, x, shape, dy)} (dx is dy). Any other overlap between an
 * output and an input is rejected.
 *
 * <h2>Thread safety</h2>
 * A module may be shared between threads. Calls that change its state (training-mode forward,
 * forward without running statistics, backward, {@link #train()}, {@link #eval()},
 * {@link #zeroGrad()}, the resets, {@link #close()}) run one at a time, so no update of the running
 * statistics or gradients is lost. Eval-mode forward calls with running statistics only read the
 * module and run concurrently with each other. The segments returned by {@link #weight()} and
 * friends are views of the module's state: write to them only while no call runs. Pairing a
 * forward with its backward is the caller's business, as with a PyTorch module: backward uses the
 * statistics of the module's last forward, whichever thread ran it.
 */
public final class BatchNorm implements AutoCloseable {

    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT;
    private static final long ALIGNMENT = 64;

    private final BatchNormOptions options;
    private final int channels;
    private final boolean affine;
    private final boolean track;
    private final double eps;
    private final boolean cumulative;
    private final double momentum;

    private final Arena arena;
    // MemorySegment.NULL when absent (affine or trackRunningStats false): passed to C as NULL.
    private final MemorySegment weight;
    private final MemorySegment bias;
    private final MemorySegment weightGrad;
    private final MemorySegment biasGrad;
    private final MemorySegment stepWeightGrad;
    private final MemorySegment stepBiasGrad;
    private final MemorySegment runningMean;
    private final MemorySegment runningVar;
    private final MemorySegment saveMean;
    private final MemorySegment saveInvstd;
    /** The buffers the kernels read and write, as the downcalls get them (see {@link KernelBuffers}). */
    private final KernelBuffers kernel;

    /** Write mode for every change of state, read mode for eval-mode forward with running statistics. */
    private final StampedLock lock = new StampedLock();

    private volatile boolean open = true;
    private volatile boolean training = true;
    /** Guarded by the lock's write mode (read in read mode). */
    private long numBatchesTracked;
    /**
     * Shape of the last forward whose statistics backward may use; null after any change of mode or
     * state. Written in write mode, or in read mode by eval-mode forward calls with running
     * statistics (racing writes of a reference, which cannot tear); read only by backward, in write
     * mode, which the lock orders after every earlier write: no volatile needed.
     */
    private Shape lastForward;

    private BatchNorm(BatchNormOptions options) {
        this.options = options;
        this.channels = options.numFeatures();
        this.affine = options.affine();
        this.track = options.trackRunningStats();
        this.eps = options.eps();
        this.cumulative = options.momentum().isEmpty();
        this.momentum = options.momentum().orElse(0);
        this.arena = Arena.ofShared();
        long floats = (long) channels * Float.BYTES;
        long doubles = (long) channels * Double.BYTES;
        this.weight = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        this.bias = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        this.weightGrad = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        this.biasGrad = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        this.stepWeightGrad = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        this.stepBiasGrad = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        this.runningMean = track ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        this.runningVar = track ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        this.saveMean = arena.allocate(doubles, ALIGNMENT);
        this.saveInvstd = arena.allocate(doubles, ALIGNMENT);
        this.kernel = new KernelBuffers(weight, bias, runningMean, runningVar, saveMean, saveInvstd, stepWeightGrad,
                stepBiasGrad);
        initParameters();
        initRunningStats();
    }

    /** A module with PyTorch's defaults for {@code numFeatures} channels (see {@link BatchNormOptions#of}). */
    public static BatchNorm create(int numFeatures) {
        return create(BatchNormOptions.of(numFeatures));
    }

    /**
     * A module in training mode with weight 1, bias 0, running mean 0, running variance 1, zero
     * gradients and {@code numBatchesTracked} 0. Loads the native library on first use.
     *
     * @throws UnsatisfiedLinkError when the native library cannot be loaded (the message lists the
     *                              places tried)
     * @throws UnsupportedOperationException for {@link BatchNormOptions.RunningVariance#BIASED}
     */
    public static BatchNorm create(BatchNormOptions options) {
        Objects.requireNonNull(options, "options");
        if (options.runningVariance() != BatchNormOptions.RunningVariance.UNBIASED) {
            throw new UnsupportedOperationException("the running-variance rule " + options.runningVariance()
                    + " is not implemented by this BatchNorm (only UNBIASED, PyTorch's)");
        }
        NativeLibrary.ensureLoaded();
        return new BatchNorm(options);
    }

    public BatchNormOptions options() {
        return options;
    }

    public boolean isTraining() {
        return training;
    }

    /** Switches to training mode (batch statistics, running statistics updated). */
    public BatchNorm train() {
        return setTraining(true);
    }

    /** Switches to eval mode (running statistics, or batch statistics without tracking). */
    public BatchNorm eval() {
        return setTraining(false);
    }

    // ---- forward ----

    /**
     * Normalises {@code x} into {@code y} (which may be {@code x} itself).
     *
     * @param x the input, native, at least {@code shape.elementCount()} floats
     * @param shape the shape of x and y; its channel count must equal {@code numFeatures}
     * @param y the output, native and writable, at least {@code shape.elementCount()} floats
     */
    public void forward(MemorySegment x, Shape shape, MemorySegment y) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(y, "y");
        forward(x, null, shape, y, null, null);
    }

    /** Like {@link #forward(MemorySegment, Shape, MemorySegment)}, with y allocated in {@code arena}. */
    public MemorySegment forward(MemorySegment x, Shape shape, Arena arena) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(arena, "arena");
        return forward(x, null, shape, null, null, arena);
    }

    /** Like {@link #forward(MemorySegment, Shape, MemorySegment)} on Java arrays, without copying them. */
    public void forward(float[] x, Shape shape, float[] y) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(y, "y");
        forward(null, x, shape, null, y, null);
    }

    /** Either the segments (xs, and ys or outArena) or the arrays (xa, ya) are given. */
    private MemorySegment forward(MemorySegment xs, float[] xa, Shape shape, MemorySegment ys, float[] ya,
                                  Arena outArena) {
        long stamp = lockForForward();
        try {
            ensureOpen();
            long bytes = checkChannels(shape);
            boolean batchStatistics = training || !track;
            boolean updatesRunningStats = training && track;
            if (xa != null) {
                checkArray("x", xa, shape);
                checkArray("y", ya, shape);
            } else {
                checkSegment("x", xs, shape, bytes);
                if (updatesRunningStats) {
                    checkNoOverlap("x", xs, bytes, runningMean, "running mean, which this call updates");
                    checkNoOverlap("x", xs, bytes, runningVar, "running variance, which this call updates");
                }
                if (ys != null) {
                    checkOutput("y", ys, shape, bytes);
                    checkInPlace("y", ys, "x", xs, bytes);
                    checkNotModuleState("y", ys, bytes);
                } else {
                    checkArena("y", outArena);
                }
            }
            if (batchStatistics && shape.valuesPerChannel() == 1) {
                throw new IllegalArgumentException(
                        "Expected more than 1 value per channel when training, got input size " + shape);
            }
            if (xa == null && ys == null) {
                ys = outArena.allocate(bytes, Float.BYTES);
            }

            long n = shape.batch();
            long s = shape.spatial();
            int status;
            if (batchStatistics) {
                double factor = 0;
                if (updatesRunningStats) {
                    numBatchesTracked++;
                    factor = cumulative ? 1.0 / numBatchesTracked : momentum;
                }
                status = xa != null
                        ? forwardTrain(ya, kernel.saveMean(), kernel.saveInvstd(), kernel.runningMean(),
                                kernel.runningVar(), xa, kernel.weight(), kernel.bias(), n, channels, s, eps, factor)
                        : BatchNormNative.bn_forward_train_f32(ys, kernel.saveMean(), kernel.saveInvstd(),
                                kernel.runningMean(), kernel.runningVar(), xs, kernel.weight(), kernel.bias(), n,
                                channels, s, NativeCalls.LAYOUT_NCS, eps, factor);
                if (status != NativeCalls.OK && updatesRunningStats) {
                    numBatchesTracked--;
                }
                NativeCalls.check(status, "bn_forward_train_f32");
            } else {
                status = xa != null
                        ? forwardEval(ya, xa, kernel.weight(), kernel.bias(), kernel.runningMean(),
                                kernel.runningVar(), n, channels, s, eps)
                        : BatchNormNative.bn_forward_eval_f32(ys, xs, kernel.weight(), kernel.bias(),
                                kernel.runningMean(), kernel.runningVar(), n, channels, s, NativeCalls.LAYOUT_NCS, eps);
                NativeCalls.check(status, "bn_forward_eval_f32");
            }
            lastForward = shape;
            return ys;
        } finally {
            lock.unlock(stamp);
        }
    }

    /** Write mode for calls that change state, read mode for eval with running statistics. */
    private long lockForForward() {
        if (!track) {
            return lock.writeLock();
        }
        while (true) {
            if (training) {
                return lock.writeLock();
            }
            long stamp = lock.readLock();
            // The mode changes only in write mode, so it cannot change while we hold this.
            if (!training) {
                return stamp;
            }
            lock.unlockRead(stamp);
        }
    }

    // ---- backward ----

    /**
     * Computes dx from dy for the last forward pass (same shape, same mode) and adds the weight and
     * bias gradients into {@link #weightGrad()} and {@link #biasGrad()} when affine.
     *
     * @param dy the gradient of the loss with respect to y, native
     * @param x the input of the forward pass, native
     * @param shape the shape of the forward pass
     * @param dx the output, native and writable; may be {@code dy} itself
     */
    public void backward(MemorySegment dy, MemorySegment x, Shape shape, MemorySegment dx) {
        Objects.requireNonNull(dy, "dy");
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(dx, "dx");
        backward(dy, null, x, null, shape, dx, null, null);
    }

    /** Like {@link #backward(MemorySegment, MemorySegment, Shape, MemorySegment)}, with dx allocated in {@code arena}. */
    public MemorySegment backward(MemorySegment dy, MemorySegment x, Shape shape, Arena arena) {
        Objects.requireNonNull(dy, "dy");
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(arena, "arena");
        return backward(dy, null, x, null, shape, null, null, arena);
    }

    /** Like {@link #backward(MemorySegment, MemorySegment, Shape, MemorySegment)} on Java arrays, without copying them. */
    public void backward(float[] dy, float[] x, Shape shape, float[] dx) {
        Objects.requireNonNull(dy, "dy");
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(dx, "dx");
        backward(null, dy, null, x, shape, null, dx, null);
    }

    /** Either the segments (dys, xs, and dxs or outArena) or the arrays (dya, xa, dxa) are given. */
    private MemorySegment backward(MemorySegment dys, float[] dya, MemorySegment xs, float[] xa, Shape shape,
                                   MemorySegment dxs, float[] dxa, Arena outArena) {
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            long bytes = checkChannels(shape);
            Shape forwardShape = lastForward;
            if (!shape.equals(forwardShape)) {
                throw new IllegalStateException(forwardShape == null
                        ? "backward needs a forward pass first, in the current mode and since the last change of state"
                        : "backward got shape " + shape + " but the last forward pass had shape " + forwardShape);
            }
            if (xa != null) {
                checkArray("dy", dya, shape);
                checkArray("x", xa, shape);
                checkArray("dx", dxa, shape);
                if (dxa == xa) {
                    throw new IllegalArgumentException("dx must not be x (in-place backward writes dx into dy)");
                }
            } else {
                checkSegment("dy", dys, shape, bytes);
                checkSegment("x", xs, shape, bytes);
                if (dxs != null) {
                    checkOutput("dx", dxs, shape, bytes);
                    checkInPlace("dx", dxs, "dy", dys, bytes);
                    checkNoOverlap("dx", dxs, bytes, xs, "x (in-place backward writes dx into dy, not x)");
                    checkNotModuleState("dx", dxs, bytes);
                } else {
                    checkArena("dx", outArena);
                    dxs = outArena.allocate(bytes, Float.BYTES);
                }
            }

            long n = shape.batch();
            long s = shape.spatial();
            int status;
            if (training || !track) {
                status = xa != null
                        ? backwardTrain(dxa, kernel.stepWeightGrad(), kernel.stepBiasGrad(), dya, xa, kernel.weight(),
                                kernel.saveMean(), kernel.saveInvstd(), n, channels, s)
                        : BatchNormNative.bn_backward_train_f32(dxs, kernel.stepWeightGrad(), kernel.stepBiasGrad(), dys,
                                xs, kernel.weight(), kernel.saveMean(), kernel.saveInvstd(), n, channels, s,
                                NativeCalls.LAYOUT_NCS);
                NativeCalls.check(status, "bn_backward_train_f32");
            } else {
                status = xa != null
                        ? backwardEval(dxa, kernel.stepWeightGrad(), kernel.stepBiasGrad(), dya, xa, kernel.weight(),
                                kernel.runningMean(), kernel.runningVar(), n, channels, s, eps)
                        : BatchNormNative.bn_backward_eval_f32(dxs, kernel.stepWeightGrad(), kernel.stepBiasGrad(), dys,
                                xs, kernel.weight(), kernel.runningMean(), kernel.runningVar(), n, channels, s,
                                NativeCalls.LAYOUT_NCS, eps);
                NativeCalls.check(status, "bn_backward_eval_f32");
            }
            if (affine) {
                for (long i = 0; i < channels; i++) {
                    weightGrad.setAtIndex(FLOAT, i, weightGrad.getAtIndex(FLOAT, i) + stepWeightGrad.getAtIndex(FLOAT, i));
                    biasGrad.setAtIndex(FLOAT, i, biasGrad.getAtIndex(FLOAT, i) + stepBiasGrad.getAtIndex(FLOAT, i));
                }
            }
            return dxs;
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    // ---- state ----

    /**
     * Gamma, {@code numFeatures} floats, module-owned.
     *
     * @throws IllegalStateException when not affine
     */
    public MemorySegment weight() {
        return affineBuffer(weight, "weight");
    }

    /**
     * Beta, {@code numFeatures} floats, module-owned.
     *
     * @throws IllegalStateException when not affine
     */
    public MemorySegment bias() {
        return affineBuffer(bias, "bias");
    }

    /**
     * The accumulated gradient of gamma.
     *
     * @throws IllegalStateException when not affine
     */
    public MemorySegment weightGrad() {
        return affineBuffer(weightGrad, "weightGrad");
    }

    /**
     * The accumulated gradient of beta.
     *
     * @throws IllegalStateException when not affine
     */
    public MemorySegment biasGrad() {
        return affineBuffer(biasGrad, "biasGrad");
    }

    /**
     * The running mean, {@code numFeatures} floats.
     *
     * @throws IllegalStateException without trackRunningStats
     */
    public MemorySegment runningMean() {
        return trackedBuffer(runningMean, "runningMean");
    }

    /**
     * The running variance (unbiased, as PyTorch stores it; ONNX, DL4J and oneDNN store the biased
     * one).
     *
     * @throws IllegalStateException without trackRunningStats
     */
    public MemorySegment runningVar() {
        return trackedBuffer(runningVar, "runningVar");
    }

    /**
     * How many training batches have updated the running statistics.
     *
     * @throws IllegalStateException without trackRunningStats
     */
    public long numBatchesTracked() {
        trackedBuffer(runningMean, "numBatchesTracked");
        long stamp = lock.readLock();
        try {
            return numBatchesTracked;
        } finally {
            lock.unlockRead(stamp);
        }
    }

    /**
     * Sets the counter, e.g. when loading a saved state (it matters for the cumulative average).
     *
     * @throws IllegalArgumentException when {@code count < 0}
     * @throws IllegalStateException without trackRunningStats
     */
    public void setNumBatchesTracked(long count) {
        if (count < 0) {
            throw new IllegalArgumentException("numBatchesTracked must be >= 0, got " + count);
        }
        trackedBuffer(runningMean, "numBatchesTracked");
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            numBatchesTracked = count;
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    /** Sets the weight and bias gradients to zero (PyTorch's {@code zero_grad()}, without setting them to None). */
    public void zeroGrad() {
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            if (affine) {
                weightGrad.fill((byte) 0);
                biasGrad.fill((byte) 0);
            }
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    /** Running mean 0, running variance 1, {@code numBatchesTracked} 0 (PyTorch's {@code reset_running_stats()}). */
    public void resetRunningStats() {
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            initRunningStats();
            lastForward = null;
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    /** {@link #resetRunningStats()}, then weight 1 and bias 0 (PyTorch's {@code reset_parameters()}). */
    public void resetParameters() {
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            initRunningStats();
            initParameters();
            lastForward = null;
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    /** Frees the module's native memory; later calls throw {@link IllegalStateException}. Idempotent. */
    @Override
    public void close() {
        long stamp = lock.writeLock();
        try {
            if (open) {
                open = false;
                lastForward = null;
                arena.close();
            }
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    @Override
    public String toString() {
        return "BatchNorm[numFeatures=" + channels + ", eps=" + eps
                + ", momentum=" + (cumulative ? "None" : Double.toString(momentum))
                + ", affine=" + affine + ", trackRunningStats=" + track
                + ", " + (training ? "training" : "eval") + (open ? "" : ", closed") + "]";
    }

    /** The batch means saved by the last forward that used batch statistics (C doubles). For tests. */
    MemorySegment savedMean() {
        ensureOpen();
        return saveMean;
    }

    /** The batch 1/sqrt(var + eps) saved by the last forward that used batch statistics (C doubles). For tests. */
    MemorySegment savedInvstd() {
        ensureOpen();
        return saveInvstd;
    }

    // ---- internals ----

    private BatchNorm setTraining(boolean mode) {
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            if (training != mode) {
                training = mode;
                lastForward = null;
            }
            return this;
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    private void initParameters() {
        if (affine) {
            for (long i = 0; i < channels; i++) {
                weight.setAtIndex(FLOAT, i, 1f);
            }
            bias.fill((byte) 0);
        }
    }

    private void initRunningStats() {
        if (track) {
            runningMean.fill((byte) 0);
            for (long i = 0; i < channels; i++) {
                runningVar.setAtIndex(FLOAT, i, 1f);
            }
            numBatchesTracked = 0;
        }
    }

    private void ensureOpen() {
        if (!open) {
            throw new IllegalStateException("this BatchNorm is closed");
        }
    }

    private MemorySegment affineBuffer(MemorySegment buffer, String name) {
        ensureOpen();
        if (!affine) {
            throw new IllegalStateException(name + " does not exist: the module was created with affine=false");
        }
        return buffer;
    }

    private MemorySegment trackedBuffer(MemorySegment buffer, String name) {
        ensureOpen();
        if (!track) {
            throw new IllegalStateException(name + " does not exist: the module was created with trackRunningStats=false");
        }
        return buffer;
    }

    /** Returns the byte size of a tensor of this shape. */
    private long checkChannels(Shape shape) {
        if (shape.channels() != channels) {
            throw new IllegalArgumentException("shape " + shape + " has " + shape.channels()
                    + " channels (dimension 1) but the module has numFeatures=" + channels);
        }
        return shape.elementCount() * Float.BYTES;
    }

    private static void checkArray(String name, float[] array, Shape shape) {
        if (array.length < shape.elementCount()) {
            throw new IllegalArgumentException(name + " is too small: shape " + shape + " needs " + shape.elementCount()
                    + " floats, " + name + " has " + array.length);
        }
    }

    private static void checkSegment(String name, MemorySegment segment, Shape shape, long bytes) {
        if (!segment.scope().isAlive()) {
            throw new IllegalStateException(name + " cannot be used: the arena of its memory is closed");
        }
        if (!segment.isAccessibleBy(Thread.currentThread())) {
            throw new WrongThreadException(name + " is confined to another thread than " + Thread.currentThread().getName());
        }
        if (!segment.isNative()) {
            throw new IllegalArgumentException(name + " must be a native segment, got a heap segment"
                    + " (use the float[] overloads for Java arrays)");
        }
        if (segment.address() == 0) {
            throw new IllegalArgumentException(name + " must not be MemorySegment.NULL");
        }
        if (segment.address() % Float.BYTES != 0) {
            throw new IllegalArgumentException(name + " must be aligned to " + Float.BYTES
                    + " bytes (float), got address 0x" + Long.toHexString(segment.address()));
        }
        if (segment.byteSize() < bytes) {
            throw new IllegalArgumentException(name + " is too small: shape " + shape + " needs " + bytes
                    + " bytes, " + name + " has " + segment.byteSize());
        }
    }

    private static void checkArena(String output, Arena arena) {
        if (!arena.scope().isAlive()) {
            throw new IllegalStateException("arena is closed: " + output + " cannot be allocated in it");
        }
    }

    private static void checkOutput(String name, MemorySegment segment, Shape shape, long bytes) {
        checkSegment(name, segment, shape, bytes);
        if (segment.isReadOnly()) {
            throw new IllegalArgumentException(name + " is read-only, but it is an output");
        }
    }

    /** Output and input may be the same memory (in-place) but must not overlap otherwise. */
    private static void checkInPlace(String outName, MemorySegment out, String inName, MemorySegment in, long bytes) {
        if (overlaps(out, bytes, in, bytes) && out.address() != in.address()) {
            throw new IllegalArgumentException(outName + " overlaps " + inName + " (" + outName + " at 0x"
                    + Long.toHexString(out.address()) + ", " + inName + " at 0x" + Long.toHexString(in.address())
                    + ", " + bytes + " bytes each): in-place use needs " + outName + " to be exactly " + inName);
        }
    }

    private static void checkNoOverlap(String name, MemorySegment segment, long bytes, MemorySegment other,
                                       String otherName) {
        if (overlaps(segment, bytes, other, other.byteSize())) {
            throw new IllegalArgumentException(name + " overlaps " + otherName);
        }
    }

    private void checkNotModuleState(String name, MemorySegment out, long bytes) {
        checkNoOverlap(name, out, bytes, weight, "the module's weight");
        checkNoOverlap(name, out, bytes, bias, "the module's bias");
        checkNoOverlap(name, out, bytes, weightGrad, "the module's weight gradient");
        checkNoOverlap(name, out, bytes, biasGrad, "the module's bias gradient");
        checkNoOverlap(name, out, bytes, runningMean, "the module's running mean");
        checkNoOverlap(name, out, bytes, runningVar, "the module's running variance");
    }

    private static boolean overlaps(MemorySegment a, long aBytes, MemorySegment b, long bBytes) {
        if (aBytes == 0 || bBytes == 0) {
            return false;
        }
        long a0 = a.address();
        long b0 = b.address();
        return a0 < b0 + bBytes && b0 < a0 + aBytes;
    }

    /**
     * The module's native buffers as the kernels get them: views of the same memory that belong to
     * no arena. A downcall acquires and releases the arena of every segment it passes, an atomic
     * update each for the module's shared arena, which made up a good part of a small call's cost.
     * Passing these views is safe because the module frees its arena only in {@link #close()},
     * under the write lock, and every call passes them while holding the lock after
     * {@code ensureOpen()}. {@code MemorySegment.NULL} (an absent buffer) stays NULL.
     */
    private record KernelBuffers(MemorySegment weight, MemorySegment bias, MemorySegment runningMean,
                                 MemorySegment runningVar, MemorySegment saveMean, MemorySegment saveInvstd,
                                 MemorySegment stepWeightGrad, MemorySegment stepBiasGrad) {

        KernelBuffers {
            weight = unscoped(weight);
            bias = unscoped(bias);
            runningMean = unscoped(runningMean);
            runningVar = unscoped(runningVar);
            saveMean = unscoped(saveMean);
            saveInvstd = unscoped(saveInvstd);
            stepWeightGrad = unscoped(stepWeightGrad);
            stepBiasGrad = unscoped(stepBiasGrad);
        }

        @SuppressWarnings("restricted") // the module's own memory, kept alive as described above
        private static MemorySegment unscoped(MemorySegment owned) {
            return MemorySegment.ofAddress(owned.address()).reinterpret(owned.byteSize());
        }
    }

    // The critical calls wrap the arrays right at the call, where escape analysis can remove the
    // wrappers once the constant method handle is inlined.

    private static int forwardTrain(float[] y, MemorySegment saveMean, MemorySegment saveInvstd,
                                    MemorySegment runningMean, MemorySegment runningVar, float[] x,
                                    MemorySegment weight, MemorySegment bias,
                                    long n, long c, long s, double eps, double factor) {
        try {
            return (int) NativeCalls.Critical.FORWARD_TRAIN.invokeExact(MemorySegment.ofArray(y), saveMean, saveInvstd,
                    runningMean, runningVar, MemorySegment.ofArray(x), weight, bias, n, c, s, NativeCalls.LAYOUT_NCS,
                    eps, factor);
        } catch (Error | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("a downcall threw a checked exception", t);
        }
    }

    private static int forwardEval(float[] y, float[] x, MemorySegment weight, MemorySegment bias,
                                   MemorySegment runningMean, MemorySegment runningVar,
                                   long n, long c, long s, double eps) {
        try {
            return (int) NativeCalls.Critical.FORWARD_EVAL.invokeExact(MemorySegment.ofArray(y), MemorySegment.ofArray(x),
                    weight, bias, runningMean, runningVar, n, c, s, NativeCalls.LAYOUT_NCS, eps);
        } catch (Error | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("a downcall threw a checked exception", t);
        }
    }

    private static int backwardTrain(float[] dx, MemorySegment dweight, MemorySegment dbias, float[] dy, float[] x,
                                     MemorySegment weight, MemorySegment saveMean, MemorySegment saveInvstd,
                                     long n, long c, long s) {
        try {
            return (int) NativeCalls.Critical.BACKWARD_TRAIN.invokeExact(MemorySegment.ofArray(dx), dweight, dbias,
                    MemorySegment.ofArray(dy), MemorySegment.ofArray(x), weight, saveMean, saveInvstd, n, c, s,
                    NativeCalls.LAYOUT_NCS);
        } catch (Error | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("a downcall threw a checked exception", t);
        }
    }

    private static int backwardEval(float[] dx, MemorySegment dweight, MemorySegment dbias, float[] dy, float[] x,
                                    MemorySegment weight, MemorySegment runningMean, MemorySegment runningVar,
                                    long n, long c, long s, double eps) {
        try {
            return (int) NativeCalls.Critical.BACKWARD_EVAL.invokeExact(MemorySegment.ofArray(dx), dweight, dbias,
                    MemorySegment.ofArray(dy), MemorySegment.ofArray(x), weight, runningMean, runningVar, n, c, s,
                    NativeCalls.LAYOUT_NCS, eps);
        } catch (Error | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("a downcall threw a checked exception", t);
        }
    }
}
