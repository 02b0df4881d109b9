package dev.panamabn;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.util.Objects;
import java.util.concurrent.locks.StampedLock;
import java.util.function.Supplier;

/**
 * Batch normalization over the channel dimension, with the semantics of PyTorch's
 * {@code torch.nn.BatchNorm1d/2d/3d} (any rank 2..5; see {@link Shape}), for float32, bfloat16
 * and float16 tensors in channels-first or channels-last layout, with fused ReLU and Add+ReLU
 * epilogues, and the statistics as public phases for data-parallel training.
 *
 * <p>The module owns its state in native memory, in an arena of its own that {@link #close()}
 * frees: weight (gamma) and bias (beta) with their gradients when {@code affine}, running mean and
 * running variance with {@code num_batches_tracked} when {@code trackRunningStats}, and the
 * per-channel statistics of the last forward pass, which {@link #backward} uses. A module that
 * becomes unreachable without {@code close()} has its memory freed by the garbage collector's
 * {@link Cleaner}, eventually; {@code close()} is the prompt way.
 *
 * {@snippet :
 * try (var bn = BatchNorm.create(64); var arena = Arena.ofConfined()) {
 *     Shape shape = Shape.of(32, 64, 56, 56);
 *     MemorySegment x = arena.allocate(shape.elementCount() * Float.BYTES, 64); // a cache line
 *     // ... fill x, and dy from the layer above ...
 *     MemorySegment y = bn.forward(x, shape, arena);          // training mode: batch statistics
 *     MemorySegment dx = bn.backward(dy, x, shape, arena);    // gradients accumulate into bn.weightGrad(), bn.biasGrad()
 *     bn.eval();
 *     bn.forward(x, shape, y);                                // running statistics, into y
 * }
 * }
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
 *   <li>One backward per forward, as PyTorch refuses a second backward through the same graph: a
 *       second backward without a new forward throws {@link IllegalStateException}, unless the
 *       earlier one was given {@link BackwardOption#RETAIN_STATISTICS} (PyTorch's
 *       {@code retain_graph=True}).</li>
 * </ul>
 *
 * <h2>Arguments</h2>
 * Tensors are contiguous, described by a {@link TensorSpec}: the logical shape
 * {@code (N, C, ...)}, the {@link Layout} (channels-first NCHW or channels-last NHWC) and the
 * {@link DataType} (float32, bfloat16, float16). A {@link Shape} alone is a float32 channels-first
 * spec. Tensors are {@link MemorySegment}s, passed to native code without a copy: native memory,
 * or heap segments over Java arrays ({@code MemorySegment.ofArray(float[])}, {@code ofArray(short[])}
 * for the 16-bit types), which go through critical downcalls that hold off the garbage collector
 * while the kernel runs (prefer native memory for large tensors); {@code float[]} overloads exist
 * for float32 NCHW. A segment may be longer than the spec needs. Tensors on a cache line
 * (64-byte alignment) run fastest: memory aligned only to its element costs some operations a
 * few percent. The {@link Arena} overloads allocate the output in the caller's arena first (64
 * bytes aligned), without holding the module's lock, and then check the segment it returned like
 * any other output. Every argument is checked before any
 * state changes; a rejected call changes nothing (counter, running statistics, gradients, the
 * statistics saved for backward, outputs):
 * <ul>
 *   <li>{@link NullPointerException}: a null argument.</li>
 *   <li>{@link IllegalArgumentException}: channel count other than {@code numFeatures}, a segment
 *       or array smaller than the spec, a segment not aligned to its element size, a read-only
 *       output, an output that overlaps an input or the
 *       module's own buffers, one value per channel in training.</li>
 *   <li>{@link IllegalStateException}: a closed module, a segment whose arena is closed, a
 *       backward without a matching forward or a second one, a counter at {@code Long.MAX_VALUE}
 *       in training, a state buffer the options leave out (e.g. {@link #weight()} when not
 *       affine). {@link WrongThreadException}: a segment confined to another thread.</li>
 * </ul>
 * The module's state changes only after the native call has returned successfully, so a call
 * that fails for any reason, including an exception thrown by the JDK or by the caller's arena
 * half-way through, leaves it as it was. In-place use is supported in one form each:
 * {@code forward(x, spec, x)} (y is x: the same address and size), {@code backward(dy, x, spec, dy)}
 * (dx is dy), and for the fused backward of Add+ReLU dx or dz (not both) may be dy. Any other
 * overlap between an output and an input, or between two outputs, is rejected.
 *
 * <h2>Fused epilogues</h2>
 * {@link #forwardRelu} computes {@code relu(bn(x))} and {@link #forwardAddRelu}
 * {@code relu(bn(x) + z)} (a residual block's end) in one pass over memory; their backward,
 * {@link #backwardRelu} and {@link #backwardAddRelu}, takes the forward's output y to mask dy.
 * A backward must match its forward: the same spec and the same epilogue.
 *
 * <h2>Data-parallel training</h2>
 * A batch split across replicas (threads or processes, each with its own module) is normalised
 * with the statistics of the whole batch in three phases per pass: {@link #batchStats} on each
 * shard, an exchange, {@link ChannelStats#merge} in a fixed order, then
 * {@link #forward(MemorySegment, TensorSpec, MemorySegment, ChannelStats)}; backward is
 * {@link #backwardSums}, an exchange, {@link GradSums#sum}, then
 * {@link #backward(MemorySegment, MemorySegment, TensorSpec, MemorySegment, GradSums, GradSums, BackwardOption...)}.
 * Every replica then holds the same bits of the statistics, as one module on the whole batch
 * would (within the rounding of a different summation order).
 *
 * <h2>Thread safety</h2>
 * A module may be shared between threads. Calls that change its state (training-mode forward,
 * forward without running statistics, backward, {@link #train()}, {@link #eval()},
 * {@link #zeroGrad()}, the resets, {@link #close()}) run one at a time, so no update of the running
 * statistics or gradients is lost. Eval-mode forward calls with running statistics only read the
 * module and run concurrently with each other. The segments returned by {@link #weight()} and
 * friends are views of the module's state: write to them only while no call runs, and keep the
 * module reachable while you use them. Pairing a forward with its backward is the caller's
 * business, as with a PyTorch module: backward uses the statistics of the module's last forward,
 * whichever thread ran it.
 */
public final class BatchNorm implements AutoCloseable {

    /** Frees the memory of modules that became unreachable without {@link #close()}. */
    private static final Cleaner CLEANER = Cleaner.create();

    private final BatchNormOptions options;
    private final int channels;
    private final boolean affine;
    private final boolean track;
    private final double eps;
    private final boolean cumulative;
    private final double momentum;

    private final ModuleMemory memory;
    private final Cleaner.Cleanable cleanable;

    /** Write mode for every change of state, read mode for eval-mode forward with running statistics. */
    private final StampedLock lock = new StampedLock();

    private volatile boolean open = true;
    private volatile boolean training = true;
    /** Counter and pending forward, guarded by the lock (see {@link TrainingState}). */
    private final TrainingState state = new TrainingState();
    /** The checks, downcalls and publishing of forward and backward. */
    private final ModuleOps ops;

    private BatchNorm(BatchNormOptions options, ModuleMemory memory) {
        this.options = options;
        this.channels = options.numFeatures();
        this.affine = options.affine();
        this.track = options.trackRunningStats();
        this.eps = options.eps();
        this.cumulative = options.momentum().isEmpty();
        this.momentum = options.momentum().orElse(0);
        this.memory = memory;
        this.ops = new ModuleOps(options, memory, state);
        memory.initParameters();
        memory.initRunningStats();
        this.cleanable = CLEANER.register(this, memory.releaser());
    }

    /**
     * A module with PyTorch's defaults for {@code numFeatures} channels.
     *
     * @param numFeatures the channel count C
     * @return a new module in training mode
     * @throws IllegalArgumentException when {@code numFeatures < 1}
     * @see #create(BatchNormOptions)
     * @see BatchNormOptions#of(int)
     */
    public static BatchNorm create(int numFeatures) {
        return create(BatchNormOptions.of(numFeatures));
    }

    /**
     * A module in training mode with weight 1, bias 0, running mean 0, running variance 1, zero
     * gradients and {@code numBatchesTracked} 0. Loads the native library on first use.
     *
     * @param options the hyper-parameters
     * @return a new module, which the caller closes
     * @throws UnsatisfiedLinkError when the native library cannot be loaded, or lacks a function
     *                              the bindings use (the message names the places tried, or the
     *                              library file and the missing symbol)
     * @throws OutOfMemoryError when the module's state (about 48 bytes a channel) is larger than
     *                          the machine's memory, before any memory is touched; it is an
     *                          error, not an {@code IllegalArgumentException}, because the same
     *                          count fits on a larger machine. Also when an allocation fails: then
     *                          whatever was allocated is freed before the error is thrown
     */
    public static BatchNorm create(BatchNormOptions options) {
        return create(options, Arena::ofShared);
    }

    /** {@link #create(BatchNormOptions)} with the module's arena from {@code arenas}: tests inject failures. */
    static BatchNorm create(BatchNormOptions options, Supplier<Arena> arenas) {
        Objects.requireNonNull(options, "options");
        NativeLibrary.ensureLoaded();
        ModuleMemory.checkFits(options);
        ModuleMemory memory = ModuleMemory.allocate(arenas.get(), options);
        try {
            return new BatchNorm(options, memory);
        } catch (Throwable t) {
            memory.releaser().run();
            throw t;
        }
    }

    /**
     * The options this module was created with.
     *
     * @return the options
     */
    public BatchNormOptions options() {
        return options;
    }

    /**
     * Whether the module is in training mode.
     *
     * @return true in training mode, false in eval mode
     */
    public boolean isTraining() {
        return training;
    }

    /**
     * Switches to training mode (batch statistics, running statistics updated).
     *
     * @return this module
     * @throws IllegalStateException when the module is closed
     */
    public BatchNorm train() {
        return setTraining(true);
    }

    /**
     * Switches to eval mode (running statistics, or batch statistics without tracking).
     *
     * @return this module
     * @throws IllegalStateException when the module is closed
     */
    public BatchNorm eval() {
        return setTraining(false);
    }

    // ---- forward ----

    /**
     * Normalises {@code x} into {@code y} (which may be {@code x} itself).
     *
     * @param x the input: native memory, or a heap segment over a Java array
     * @param spec the shape, layout and element type of x and y (a {@link Shape} for float32
     *             channels-first); its channel count must equal {@code numFeatures}
     * @param y the output, writable, at least {@code spec.byteSize()} bytes
     */
    public void forward(MemorySegment x, TensorSpec spec, MemorySegment y) {
        forward(Epilogue.NONE, x, null, spec, y, null);
    }

    /**
     * Like {@link #forward(MemorySegment, TensorSpec, MemorySegment)}, with y allocated in
     * {@code arena} first; the segment the arena returns is checked like a caller's y.
     *
     * @param x the input
     * @param spec the shape, layout and element type of x and y
     * @param arena where y is allocated ({@code spec.byteSize()} bytes)
     * @return y
     */
    public MemorySegment forward(MemorySegment x, TensorSpec spec, Arena arena) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(arena, "arena");
        ops.checkChannels(spec);
        MemorySegment y = Segments.allocateOutput("y", arena, spec);
        forward(Epilogue.NONE, x, null, spec, y, null);
        return y;
    }

    /**
     * Like {@link #forward(MemorySegment, TensorSpec, MemorySegment)} on float32 channels-first
     * Java arrays, without copying them.
     *
     * @param x the input, at least {@code shape.elementCount()} floats
     * @param shape the shape of x and y; its channel count must equal {@code numFeatures}
     * @param y the output, at least {@code shape.elementCount()} floats; may be {@code x}
     */
    public void forward(float[] x, Shape shape, float[] y) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(y, "y");
        long stamp = lockForForward();
        try {
            ensureOpen();
            ops.forward(x, shape, y, training);
        } finally {
            lock.unlock(stamp);
            Reference.reachabilityFence(this);
        }
    }

    /**
     * {@code y = relu(bn(x))} in one pass over memory (PyTorch's {@code relu(bn(x))}); backward
     * with {@link #backwardRelu}.
     *
     * @param x the input
     * @param spec the shape, layout and element type of x and y
     * @param y the output; may be {@code x}
     */
    public void forwardRelu(MemorySegment x, TensorSpec spec, MemorySegment y) {
        forward(Epilogue.RELU, x, null, spec, y, null);
    }

    /**
     * {@code y = relu(bn(x) + z)} in one pass over memory, the end of a residual block (PyTorch's
     * {@code relu(bn(x) + identity)}); backward with {@link #backwardAddRelu}.
     *
     * @param x the input
     * @param z the residual, of x's spec
     * @param spec the shape, layout and element type of x, z and y
     * @param y the output; may be {@code x}, not {@code z}
     */
    public void forwardAddRelu(MemorySegment x, MemorySegment z, TensorSpec spec, MemorySegment y) {
        Objects.requireNonNull(z, "z");
        forward(Epilogue.ADD_RELU, x, z, spec, y, null);
    }

    /**
     * The per-channel statistics of {@code x}, a shard of a batch split across replicas, for
     * {@link ChannelStats#merge}. Changes nothing.
     *
     * @param x this replica's shard of the batch
     * @param spec the shape, layout and element type of x
     * @return the shard's count, mean and m2 per channel
     */
    public ChannelStats batchStats(MemorySegment x, TensorSpec spec) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(spec, "spec");
        ensureOpen();
        try {
            return ops.batchStats(x, spec);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Training forward of a shard with the statistics of the whole batch: normalises {@code x}
     * with {@code batch} (merged from every shard's {@link #batchStats}), moves the running
     * statistics once towards {@code batch} (the unbiased variance with {@code batch.count()}
     * values), adds one to the counter, and keeps the statistics for
     * {@link #backward(MemorySegment, MemorySegment, TensorSpec, MemorySegment, GradSums, GradSums, BackwardOption...)}.
     * With one shard this is {@link #forward(MemorySegment, TensorSpec, MemorySegment)}.
     *
     * @param x this replica's shard of the batch
     * @param spec the shape, layout and element type of x and y
     * @param y the output; may be {@code x}
     * @param batch the statistics of the whole batch, at least this shard's {@code N * S} values
     * @throws IllegalStateException in eval mode with running statistics
     */
    public void forward(MemorySegment x, TensorSpec spec, MemorySegment y, ChannelStats batch) {
        Objects.requireNonNull(batch, "batch");
        forward(Epilogue.NONE, x, null, spec, y, batch);
    }

    private void forward(Epilogue epilogue, MemorySegment x, MemorySegment z, TensorSpec spec, MemorySegment y,
                         ChannelStats batch) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(y, "y");
        long stamp = lockForForward();
        try {
            ensureOpen();
            ops.forward(epilogue, x, z, spec, y, training, batch);
        } finally {
            lock.unlock(stamp);
            Reference.reachabilityFence(this);
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
     * {@link #backward(MemorySegment, MemorySegment, TensorSpec, MemorySegment, BackwardOption...)}
     * without options (no varargs array per call).
     *
     * @param dy the gradient of the loss with respect to y
     * @param x the input of the forward pass
     * @param spec the spec of the forward pass
     * @param dx the output, writable; may be {@code dy} itself
     */
    public void backward(MemorySegment dy, MemorySegment x, TensorSpec spec, MemorySegment dx) {
        backward(Epilogue.NONE, dy, null, x, spec, dx, null, NO_OPTIONS, null, null);
    }

    /**
     * {@link #backward(float[], float[], Shape, float[], BackwardOption...)} without options.
     *
     * @param dy the gradient of the loss with respect to y
     * @param x the input of the forward pass
     * @param shape the shape of the forward pass
     * @param dx the output; may be {@code dy} itself, not {@code x}
     */
    public void backward(float[] dy, float[] x, Shape shape, float[] dx) {
        backward(dy, x, shape, dx, NO_OPTIONS);
    }

    private static final BackwardOption[] NO_OPTIONS = {};

    /**
     * Computes dx from dy for the last forward pass (same spec, same mode, a plain
     * {@code forward}) and adds the weight and bias gradients into {@link #weightGrad()} and
     * {@link #biasGrad()} when affine. Uses up that forward's statistics: the next backward needs
     * a new forward, unless {@link BackwardOption#RETAIN_STATISTICS} is given.
     *
     * @param dy the gradient of the loss with respect to y
     * @param x the input of the forward pass
     * @param spec the spec of the forward pass
     * @param dx the output, writable; may be {@code dy} itself
     * @param options {@link BackwardOption#RETAIN_STATISTICS} keeps the forward's statistics for
     *                another backward
     * @throws IllegalStateException without a matching forward, or after a backward of it
     */
    public void backward(MemorySegment dy, MemorySegment x, TensorSpec spec, MemorySegment dx,
                         BackwardOption... options) {
        backward(Epilogue.NONE, dy, null, x, spec, dx, null, options, null, null);
    }

    /**
     * Like {@link #backward(MemorySegment, MemorySegment, TensorSpec, MemorySegment, BackwardOption...)},
     * with dx allocated in {@code arena} first; the segment the arena returns is checked like a
     * caller's dx.
     *
     * @param dy the gradient of the loss with respect to y
     * @param x the input of the forward pass
     * @param spec the spec of the forward pass
     * @param arena where dx is allocated ({@code spec.byteSize()} bytes)
     * @param options {@link BackwardOption#RETAIN_STATISTICS} keeps the forward's statistics
     * @return dx
     */
    public MemorySegment backward(MemorySegment dy, MemorySegment x, TensorSpec spec, Arena arena,
                                  BackwardOption... options) {
        Objects.requireNonNull(dy, "dy");
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(arena, "arena");
        BackwardOption.retains(options);
        ops.checkChannels(spec);
        MemorySegment dx = Segments.allocateOutput("dx", arena, spec);
        backward(Epilogue.NONE, dy, null, x, spec, dx, null, options, null, null);
        return dx;
    }

    /**
     * Like {@link #backward(MemorySegment, MemorySegment, TensorSpec, MemorySegment, BackwardOption...)}
     * on float32 channels-first Java arrays, without copying them.
     *
     * @param dy the gradient of the loss with respect to y
     * @param x the input of the forward pass
     * @param shape the shape of the forward pass
     * @param dx the output; may be {@code dy} itself, not {@code x}
     * @param options {@link BackwardOption#RETAIN_STATISTICS} keeps the forward's statistics
     */
    public void backward(float[] dy, float[] x, Shape shape, float[] dx, BackwardOption... options) {
        Objects.requireNonNull(dy, "dy");
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(dx, "dx");
        boolean retain = BackwardOption.retains(options);
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            ops.backward(dy, x, shape, dx, training, retain);
        } finally {
            lock.unlockWrite(stamp);
            Reference.reachabilityFence(this);
        }
    }

    /**
     * The backward of {@link #forwardRelu}: dy is masked where the forward's output is not
     * positive (ReLU's gradient at 0 is 0), then as
     * {@link #backward(MemorySegment, MemorySegment, TensorSpec, MemorySegment, BackwardOption...)}.
     *
     * @param dy the gradient of the loss with respect to y
     * @param y the output of the forward pass
     * @param x the input of the forward pass
     * @param spec the spec of the forward pass
     * @param dx the output; may be {@code dy} itself
     * @param options {@link BackwardOption#RETAIN_STATISTICS} keeps the forward's statistics
     */
    public void backwardRelu(MemorySegment dy, MemorySegment y, MemorySegment x, TensorSpec spec, MemorySegment dx,
                             BackwardOption... options) {
        Objects.requireNonNull(y, "y");
        backward(Epilogue.RELU, dy, y, x, spec, dx, null, options, null, null);
    }

    /**
     * The backward of {@link #forwardAddRelu}: g, dy masked where the forward's output is not
     * positive, goes to the residual ({@code dz = g}) and through the normalisation to dx.
     *
     * @param dy the gradient of the loss with respect to y
     * @param y the output of the forward pass
     * @param x the input of the forward pass
     * @param spec the spec of the forward pass
     * @param dx the gradient with respect to x; may be {@code dy} itself
     * @param dz the gradient with respect to the residual z; may be {@code dy} itself (not both)
     * @param options {@link BackwardOption#RETAIN_STATISTICS} keeps the forward's statistics
     */
    public void backwardAddRelu(MemorySegment dy, MemorySegment y, MemorySegment x, TensorSpec spec,
                                MemorySegment dx, MemorySegment dz, BackwardOption... options) {
        Objects.requireNonNull(y, "y");
        Objects.requireNonNull(dz, "dz");
        backward(Epilogue.ADD_RELU, dy, y, x, spec, dx, dz, options, null, null);
    }

    /**
     * This shard's backward sums for the last forward pass (a plain {@code forward}, in training
     * mode or without running statistics), for {@link GradSums#sum}. Changes nothing.
     *
     * @param dy the gradient of the loss with respect to this shard's y
     * @param x this shard's input of the forward pass
     * @param spec the spec of the forward pass
     * @return the shard's sums, also its share of the weight and bias gradients
     */
    public GradSums backwardSums(MemorySegment dy, MemorySegment x, TensorSpec spec) {
        Objects.requireNonNull(dy, "dy");
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(spec, "spec");
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            return ops.backwardSums(dy, x, spec, training);
        } finally {
            lock.unlockWrite(stamp);
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Backward of a shard from the sums of the whole batch: dx of this shard with
     * {@code total.count()} values per channel, and this shard's share of the weight and bias
     * gradients ({@code shard}'s sums) added into {@link #weightGrad()} and {@link #biasGrad()},
     * so that the gradients summed over replicas are those of the whole batch.
     *
     * @param dy the gradient of the loss with respect to this shard's y
     * @param x this shard's input of the forward pass
     * @param spec the spec of the forward pass
     * @param dx the output; may be {@code dy} itself
     * @param shard this shard's sums, from {@link #backwardSums}
     * @param total the sums of every shard, from {@link GradSums#sum}; their count must be the
     *              count of the statistics the forward normalised with
     * @param options {@link BackwardOption#RETAIN_STATISTICS} keeps the forward's statistics
     */
    public void backward(MemorySegment dy, MemorySegment x, TensorSpec spec, MemorySegment dx, GradSums shard,
                         GradSums total, BackwardOption... options) {
        Objects.requireNonNull(shard, "shard");
        Objects.requireNonNull(total, "total");
        backward(Epilogue.NONE, dy, null, x, spec, dx, null, options, shard, total);
    }

    private void backward(Epilogue epilogue, MemorySegment dy, MemorySegment y, MemorySegment x, TensorSpec spec,
                          MemorySegment dx, MemorySegment dz, BackwardOption[] options, GradSums shard,
                          GradSums total) {
        Objects.requireNonNull(dy, "dy");
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(dx, "dx");
        boolean retain = BackwardOption.retains(options);
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            ops.backward(epilogue, dy, y, x, spec, dx, dz, training, retain, shard, total);
        } finally {
            lock.unlockWrite(stamp);
            Reference.reachabilityFence(this);
        }
    }

    // ---- state ----

    /**
     * Gamma, {@code numFeatures} floats, module-owned.
     *
     * @return a view of the module's weight
     * @throws IllegalStateException when not affine, or closed
     */
    public MemorySegment weight() {
        return affineBuffer(memory.weight, "weight");
    }

    /**
     * Beta, {@code numFeatures} floats, module-owned.
     *
     * @return a view of the module's bias
     * @throws IllegalStateException when not affine, or closed
     */
    public MemorySegment bias() {
        return affineBuffer(memory.bias, "bias");
    }

    /**
     * The accumulated gradient of gamma.
     *
     * @return a view of the module's weight gradient
     * @throws IllegalStateException when not affine, or closed
     */
    public MemorySegment weightGrad() {
        return affineBuffer(memory.weightGrad, "weightGrad");
    }

    /**
     * The accumulated gradient of beta.
     *
     * @return a view of the module's bias gradient
     * @throws IllegalStateException when not affine, or closed
     */
    public MemorySegment biasGrad() {
        return affineBuffer(memory.biasGrad, "biasGrad");
    }

    /**
     * The running mean, {@code numFeatures} floats.
     *
     * @return a view of the module's running mean
     * @throws IllegalStateException without trackRunningStats, or closed
     */
    public MemorySegment runningMean() {
        return trackedBuffer(memory.runningMean, "runningMean");
    }

    /**
     * The running variance: it moves towards the unbiased batch variance, as PyTorch's does, or
     * towards the biased one with {@link BatchNormOptions.RunningVariance#BIASED} (ONNX, DL4J,
     * oneDNN).
     *
     * @return a view of the module's running variance
     * @throws IllegalStateException without trackRunningStats, or closed
     */
    public MemorySegment runningVar() {
        return trackedBuffer(memory.runningVar, "runningVar");
    }

    /**
     * How many training batches have updated the running statistics.
     *
     * @return the counter
     * @throws IllegalStateException without trackRunningStats, or closed
     */
    public long numBatchesTracked() {
        trackedBuffer(memory.runningMean, "numBatchesTracked");
        long stamp = lock.readLock();
        try {
            return state.count();
        } finally {
            lock.unlockRead(stamp);
        }
    }

    /**
     * Sets the counter, e.g. when loading a saved state (it matters for the cumulative average).
     *
     * @param count the new counter, {@code 0 <= count < Long.MAX_VALUE} (the next training step
     *              adds one)
     * @throws IllegalArgumentException when {@code count} is out of range
     * @throws IllegalStateException without trackRunningStats, or closed
     */
    public void setNumBatchesTracked(long count) {
        if (count < 0 || count == Long.MAX_VALUE) {
            throw new IllegalArgumentException("numBatchesTracked must be >= 0 and < " + Long.MAX_VALUE
                    + " (the next training step adds 1), got " + count);
        }
        trackedBuffer(memory.runningMean, "numBatchesTracked");
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            state.setCount(count);
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    /**
     * Sets the weight and bias gradients to zero (PyTorch's {@code zero_grad()}, without setting
     * them to None).
     *
     * @throws IllegalStateException when closed
     */
    public void zeroGrad() {
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            if (affine) {
                memory.weightGrad.fill((byte) 0);
                memory.biasGrad.fill((byte) 0);
            }
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    /**
     * Running mean 0, running variance 1, {@code numBatchesTracked} 0 (PyTorch's
     * {@code reset_running_stats()}).
     *
     * @throws IllegalStateException when closed
     */
    public void resetRunningStats() {
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            memory.initRunningStats();
            state.setCount(0);
            state.forgetForward();
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    /**
     * {@link #resetRunningStats()}, then weight 1 and bias 0 (PyTorch's {@code reset_parameters()}).
     *
     * @throws IllegalStateException when closed
     */
    public void resetParameters() {
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            memory.initRunningStats();
            state.setCount(0);
            memory.initParameters();
            state.forgetForward();
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
                state.forgetForward();
                cleanable.clean();
            }
        } finally {
            lock.unlockWrite(stamp);
        }
    }

    /**
     * A description with the options and the mode, such as
     * {@code BatchNorm[numFeatures=64, eps=1.0E-5, momentum=0.1, affine=true, trackRunningStats=true, training]}.
     *
     * @return the description
     */
    @Override
    public String toString() {
        return "BatchNorm[numFeatures=" + channels + ", eps=" + eps
                + ", momentum=" + (cumulative ? "cumulative average" : Double.toString(momentum))
                + ", affine=" + affine + ", trackRunningStats=" + track
                + ", " + (training ? "training" : "eval") + (open ? "" : ", closed") + "]";
    }

    /** The batch means saved by the last forward that used batch statistics (C doubles). For tests. */
    MemorySegment savedMean() {
        ensureOpen();
        return memory.saveMean;
    }

    /** The batch 1/sqrt(var + eps) saved by the last forward that used batch statistics (C doubles). For tests. */
    MemorySegment savedInvstd() {
        ensureOpen();
        return memory.saveInvstd;
    }

    // ---- internals ----

    private BatchNorm setTraining(boolean mode) {
        long stamp = lock.writeLock();
        try {
            ensureOpen();
            if (training != mode) {
                training = mode;
                state.forgetForward();
            }
            return this;
        } finally {
            lock.unlockWrite(stamp);
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
}
