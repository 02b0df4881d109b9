package dev.panamabn;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.WeakHashMap;
import java.util.concurrent.locks.ReentrantLock;

/**
 * BatchNorm with the statistics of the whole batch when the batch is split over ranks
 * (data-parallel training): PyTorch's {@code SyncBatchNorm}, on the CPU, over any
 * {@link Collective} — {@link InProcessCollective} for replicas on threads,
 * {@link MpiCollective} for processes. Each rank holds one replica (a {@link BatchNorm}) and
 * passes its shard of every batch; every rank normalises with the same statistics, computes the
 * same running statistics, and its dx is the whole batch's gradient restricted to its shard.
 *
 * {@snippet :
 * // on every rank, with its own shard x of (N_r, C, H, W)
 * try (SyncBatchNorm bn = SyncBatchNorm.create(BatchNormOptions.of(64), collective)) {
 *     bn.forward(x, spec, y);          // one exchange: every rank's (count, mean, m2)
 *     bn.backward(dy, x, spec, dx);    // one exchange: every rank's (count, Σdy, Σdy·x̂)
 * }
 * }
 *
 * <p><b>Protocol.</b> Training forward (and eval forward without running statistics): the shard's
 * statistics ({@link BatchNorm#batchStats}), <em>one</em> {@link Collective#allgather} of a
 * message of {@code 13 + 2C} doubles, a check that every rank's header agrees, a merge in rank
 * order ({@link ChannelStats#merge}, Chan's formula in the native library), and the shard's
 * forward with the merged statistics, which also moves the running statistics once with the
 * whole batch's count (PyTorch's unbiased rule). Backward: the shard's sums
 * ({@link BatchNorm#backwardSums}), one allgather of {@code 13 + 2C} doubles, their sum in rank
 * order ({@link GradSums#sum}), and the shard's dx from the total. Eval forward with running
 * statistics exchanges nothing, nor does the backward of such a forward: ranks may evaluate
 * alone.
 *
 * <p><b>Message sizes</b> (exactly, per pass and rank): {@code 8 * (13 + 2C)} bytes sent and
 * {@code 8 * k * (13 + 2C)} bytes received for k ranks; C = 64: 1,128 bytes sent. The header's
 * 13 doubles are the protocol tag, the pass, the layer number, the exchange number, channels,
 * layout, element type, mode, eps, momentum, the options' flags, a status and the count.
 * {@link MpiCollective} adds one gather of each rank's length (8 bytes) before the values.
 *
 * <p><b>Determinism.</b> Every rank receives the same bits from every rank, merges them in the
 * same (rank) order with the same code: statistics, running statistics and outputs are
 * bit-identical across ranks and across runs, whatever the timing or the transport's reduction
 * order. Against one {@link BatchNorm} call on the whole batch they differ only by the rounding of
 * a different summation order (see the tests for the measured bound).
 *
 * <p><b>Disagreement and failure.</b> Every rank checks every header: ranks that differ in
 * channels, layout, element type, mode, eps, momentum or options, that are in different passes,
 * layers or exchanges, or whose message lengths differ, all throw an
 * {@link IllegalStateException} naming the field and each rank's value, and nothing changes. A
 * rank whose input is refused (bad shape, size, buffer) still joins the exchange, marked as
 * refused: it throws its own exception, the others an {@link IllegalStateException} naming it;
 * nothing changes anywhere, and the ranks stay in step. A failure of the collective itself
 * (timeout, transport) is rethrown as the {@link CollectiveException} and leaves this module
 * refusing further passes, since the ranks may be out of step.
 *
 * <p><b>Gradients.</b> {@code module().weightGrad()} and {@code biasGrad()} accumulate this
 * shard's share, as in PyTorch: their sum over ranks is the whole batch's gradient (a
 * data-parallel optimiser all-reduces them, as it does every other parameter's gradient).
 *
 * <p>Layers are numbered in the order they are made on a collective: make and call them in the
 * same order on every rank. One thread at a time per rank; the module's other calls
 * ({@code weight()}, {@code runningMean()}, ...) are on {@link #module()}.
 */
public final class SyncBatchNorm implements AutoCloseable {

    // Layer numbers per collective: the n-th SyncBatchNorm made on a collective is layer n on
    // every rank whose program makes them in the same order.
    private static final Map<Collective, Integer> LAYERS = new WeakHashMap<>();

    private final BatchNorm module;
    private final Collective collective;
    private final boolean ownsModule;
    private final int layer;
    private final ReentrantLock lock = new ReentrantLock();
    private long exchanges;
    private boolean pendingExchanged;
    private String broken;

    private SyncBatchNorm(BatchNorm module, Collective collective, boolean ownsModule) {
        this.module = module;
        this.collective = collective;
        this.ownsModule = ownsModule;
        synchronized (LAYERS) {
            this.layer = LAYERS.merge(collective, 1, Integer::sum) - 1;
        }
    }

    /**
     * A synchronised module with a new replica, which it owns and closes.
     *
     * @param options the replica's options, the same on every rank
     * @param collective this rank's member of the collective
     * @return the module, in training mode
     */
    public static SyncBatchNorm create(BatchNormOptions options, Collective collective) {
        Objects.requireNonNull(options, "options");
        Objects.requireNonNull(collective, "collective");
        return new SyncBatchNorm(BatchNorm.create(options), collective, true);
    }

    /**
     * Synchronises an existing module (PyTorch's {@code convert_sync_batchnorm}), which stays the
     * caller's to close: {@link #close()} leaves it open. Its state must be the same on every rank
     * (load the same weights and running statistics everywhere).
     *
     * @param module this rank's replica
     * @param collective this rank's member of the collective
     * @return the synchronised module
     */
    public static SyncBatchNorm wrap(BatchNorm module, Collective collective) {
        Objects.requireNonNull(module, "module");
        Objects.requireNonNull(collective, "collective");
        return new SyncBatchNorm(module, collective, false);
    }

    /**
     * This rank's replica: weights, gradients, running statistics, mode.
     *
     * @return the replica
     */
    public BatchNorm module() {
        return module;
    }

    /**
     * The collective this module exchanges over.
     *
     * @return the collective
     */
    public Collective collective() {
        return collective;
    }

    /**
     * Training mode on this rank's replica; set the same mode on every rank.
     *
     * @return this
     */
    public SyncBatchNorm train() {
        module.train();
        return this;
    }

    /**
     * Eval mode on this rank's replica.
     *
     * @return this
     */
    public SyncBatchNorm eval() {
        module.eval();
        return this;
    }

    /**
     * Forward of this rank's shard. In training mode (and in eval mode without running
     * statistics) every rank must call it: it normalises with the whole batch's statistics and,
     * in training, moves the running statistics once with them. In eval mode with running
     * statistics it is the replica's own forward and exchanges nothing.
     *
     * @param x this rank's shard of the input (may be empty: N = 0)
     * @param spec the shard's shape, layout and type (C, layout and type the same on every rank)
     * @param y this rank's output, of x's spec
     * @throws IllegalStateException when the ranks disagree, or another rank refused its input
     *                               (on every rank but the one that refused)
     * @throws CollectiveException when the exchange failed
     */
    public void forward(MemorySegment x, TensorSpec spec, MemorySegment y) {
        lock.lock();
        try {
            checkUsable();
            if (!module.isTraining() && module.options().trackRunningStats()) {
                pendingExchanged = false;
                module.forward(x, spec, y);
                return;
            }
            int mode = module.isTraining() ? SyncMessage.TRAINING : SyncMessage.EVAL_BATCH_STATS;
            ChannelStats shard = null;
            RuntimeException refusal = null;
            try {
                shard = module.batchStats(x, spec);
                // y too, before the exchange: a rank must not fail alone after the others went on.
                checkOutput("y", y, "x", x, spec);
            } catch (RuntimeException e) {
                refusal = e;
            }
            double[] message = SyncMessage.pack(SyncMessage.FORWARD, layer, exchanges, module.options(),
                    refusal == null ? spec : null, mode, refusal != null,
                    shard == null ? 0 : shard.count(), shard == null ? null : shard.mean(),
                    shard == null ? null : shard.m2());
            double[][] all = exchange(message, "forward", refusal);
            int c = module.options().numFeatures();
            List<ChannelStats> shards = new ArrayList<>(all.length);
            for (int r = 0; r < all.length; r++) {
                try {
                    shards.add(ChannelStats.of(SyncMessage.count(all[r]), SyncMessage.first(all[r], c),
                            SyncMessage.second(all[r], c)));
                } catch (IllegalArgumentException e) {
                    // A collective that delivered other values than were sent; every rank sees them.
                    throw new IllegalStateException("rank " + r + "'s statistics arrived unusable: " + e.getMessage(),
                            e);
                }
            }
            ChannelStats merged = ChannelStats.merge(shards);
            // Every rank now expects a synchronised backward; if this rank's forward still fails,
            // its backward joins the exchange as refused, so that no rank waits for it.
            pendingExchanged = true;
            module.forward(x, spec, y, merged);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Backward of this rank's shard, for the last forward. After a synchronised forward every
     * rank must call it: it computes dx with the whole batch's sums and adds this shard's share to
     * the replica's weight and bias gradients. After an eval forward with running statistics it
     * is the replica's own backward.
     *
     * @param dy the gradient of this rank's output
     * @param x this rank's input of the forward
     * @param spec its spec
     * @param dx this rank's input gradient, of x's spec
     * @param options backward options ({@link BackwardOption#RETAIN_STATISTICS} keeps the
     *                forward's statistics for another backward)
     * @throws IllegalStateException when there is no forward to go back through, when the ranks
     *                               disagree, or another rank refused its input
     * @throws CollectiveException when the exchange failed
     */
    public void backward(MemorySegment dy, MemorySegment x, TensorSpec spec, MemorySegment dx,
                         BackwardOption... options) {
        lock.lock();
        try {
            checkUsable();
            if (!pendingExchanged) {
                module.backward(dy, x, spec, dx, options);
                return;
            }
            int mode = module.isTraining() ? SyncMessage.TRAINING : SyncMessage.EVAL_BATCH_STATS;
            GradSums shard = null;
            RuntimeException refusal = null;
            try {
                shard = module.backwardSums(dy, x, spec);
                checkOutput("dx", dx, "dy", dy, spec);
            } catch (RuntimeException e) {
                refusal = e;
            }
            double[] message = SyncMessage.pack(SyncMessage.BACKWARD, layer, exchanges, module.options(),
                    refusal == null ? spec : null, mode, refusal != null,
                    shard == null ? 0 : shard.count(), shard == null ? null : shard.sumDy(),
                    shard == null ? null : shard.sumDyXhat());
            double[][] all = exchange(message, "backward", refusal);
            int c = module.options().numFeatures();
            List<GradSums> shards = new ArrayList<>(all.length);
            for (double[] m : all) {
                shards.add(GradSums.of(SyncMessage.count(m), SyncMessage.first(m, c), SyncMessage.second(m, c)));
            }
            GradSums total = GradSums.sum(shards);
            pendingExchanged = retains(options);
            module.backward(dy, x, spec, dx, shard, total, options);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Closes the replica when this module made it ({@link #create}); the collective stays open
     * (other layers share it). Closing again does nothing.
     */
    @Override
    public void close() {
        if (ownsModule) {
            module.close();
        }
    }

    /** Like {@code SyncBatchNorm[layer 0, rank 1 of 4, BatchNorm[...]]}. */
    @Override
    public String toString() {
        return "SyncBatchNorm[layer " + layer + ", rank " + collective.rank() + " of " + collective.size() + ", "
                + module + "]";
    }

    /**
     * One allgather and the check of every header. Rethrows this rank's refusal after the
     * exchange (so that the others are not left waiting), the ranks' disagreement on every rank.
     */
    private double[][] exchange(double[] message, String pass, RuntimeException refusal) {
        double[][] all;
        try {
            all = collective.allgather(message);
        } catch (CollectiveException e) {
            if (!e.isLengthMismatch()) {
                broken = e.getMessage();
                throw e;
            }
            exchanges++;
            IllegalStateException mismatch = new IllegalStateException("the ranks disagree in the " + pass
                    + " exchange: channels differ: " + channelsOfEach(e.lengths()) + " (a message is "
                    + SyncMessage.HEADER + " + 2C doubles)", e);
            if (refusal != null) {
                refusal.addSuppressed(mismatch);
                throw refusal;
            }
            throw mismatch;
        }
        exchanges++;
        checkShape(all, message.length);
        if (refusal != null) {
            throw refusal;
        }
        String disagreement = SyncMessage.disagreement(all, pass);
        if (disagreement != null) {
            throw new IllegalStateException(disagreement + " (seen by rank " + collective.rank() + ")");
        }
        return all;
    }

    /** A collective that breaks its contract (wrong count or lengths) is a transport failure. */
    private void checkShape(double[][] all, int length) {
        String problem = null;
        if (all == null || all.length != collective.size()) {
            problem = "returned " + (all == null ? "null" : all.length + " arrays") + " for " + collective.size()
                    + " ranks";
        } else {
            for (int r = 0; r < all.length && problem == null; r++) {
                if (all[r] == null || all[r].length != length) {
                    problem = "returned " + (all[r] == null ? "null" : all[r].length + " values") + " for rank " + r
                            + " where every rank sent " + length;
                }
            }
        }
        if (problem != null) {
            broken = "the collective " + problem;
            throw new CollectiveException(broken);
        }
    }

    /** An output's checks (the module repeats them; these run before the exchange). */
    private static void checkOutput(String name, MemorySegment out, String inName, MemorySegment in, TensorSpec spec) {
        Objects.requireNonNull(out, name);
        Segments.checkOutput(name, out, spec);
        Segments.checkInPlaceOrDisjoint(name, out, inName, in, spec.byteSize());
    }

    private static String channelsOfEach(long[] lengths) {
        StringBuilder text = new StringBuilder();
        for (int r = 0; r < lengths.length; r++) {
            long c = SyncMessage.channelsOf(lengths[r]);
            text.append(r == 0 ? "" : ", ").append("rank ").append(r).append(": ")
                    .append(c < 0 ? lengths[r] + " doubles (no SyncBatchNorm message)" : Long.toString(c));
        }
        return text.toString();
    }

    private void checkUsable() {
        if (broken != null) {
            throw new IllegalStateException("an earlier exchange of this SyncBatchNorm failed (" + broken
                    + "): the ranks may be out of step, so it refuses further passes");
        }
    }

    private static boolean retains(BackwardOption... options) {
        if (options != null) {
            for (BackwardOption o : options) {
                if (o == BackwardOption.RETAIN_STATISTICS) {
                    return true;
                }
            }
        }
        return false;
    }
}
