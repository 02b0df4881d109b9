package dev.panamabn;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * A module's native memory: the per-channel buffers, the arena that owns them, and the views the
 * kernels get. Built whole or not at all ({@link #allocate} closes the arena when any allocation
 * fails), and freed by {@link #release()}, which is also what the module's {@code Cleaner} runs,
 * so it holds no reference to the module.
 */
final class ModuleMemory {

    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT;
    private static final long ALIGNMENT = Segments.CACHE_LINE;
    /** Below this much state, {@link #checkFits} does not look at the machine's memory at all. */
    private static final long CHECK_ABOVE = 64L << 20;

    final Arena arena;
    // MemorySegment.NULL when absent (affine or trackRunningStats false): passed to C as NULL.
    final MemorySegment weight;
    final MemorySegment bias;
    final MemorySegment weightGrad;
    final MemorySegment biasGrad;
    /** The gradients of one backward, which the module then adds to weightGrad and biasGrad. */
    final MemorySegment stepWeightGrad;
    final MemorySegment stepBiasGrad;
    final MemorySegment runningMean;
    final MemorySegment runningVar;
    /** The batch statistics of the last forward that used them, as C doubles. */
    final MemorySegment saveMean;
    final MemorySegment saveInvstd;
    /** The same buffers as the downcalls get them (see {@link KernelBuffers}). */
    final KernelBuffers kernel;

    private ModuleMemory(Arena arena, BatchNormOptions options) {
        this.arena = arena;
        long floats = (long) options.numFeatures() * Float.BYTES;
        long doubles = (long) options.numFeatures() * Double.BYTES;
        boolean affine = options.affine();
        boolean track = options.trackRunningStats();
        weight = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        bias = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        weightGrad = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        biasGrad = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        stepWeightGrad = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        stepBiasGrad = affine ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        runningMean = track ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        runningVar = track ? arena.allocate(floats, ALIGNMENT) : MemorySegment.NULL;
        saveMean = arena.allocate(doubles, ALIGNMENT);
        saveInvstd = arena.allocate(doubles, ALIGNMENT);
        kernel = new KernelBuffers(weight, bias, runningMean, runningVar, saveMean, saveInvstd, stepWeightGrad,
                stepBiasGrad);
    }

    /**
     * Allocates every buffer in {@code arena} (zero-filled). When anything fails, closes the arena
     * and rethrows: a module that was never built holds no memory.
     */
    static ModuleMemory allocate(Arena arena, BatchNormOptions options) {
        try {
            return new ModuleMemory(arena, options);
        } catch (Throwable t) {
            try {
                arena.close();
            } catch (Throwable closing) {
                t.addSuppressed(closing);
            }
            throw t;
        }
    }

    /** Bytes of native memory a module with these options holds, alignment included. */
    static long bytes(BatchNormOptions options) {
        long c = options.numFeatures();
        int floatBuffers = (options.affine() ? 6 : 0) + (options.trackRunningStats() ? 2 : 0);
        long buffers = floatBuffers * (c * Float.BYTES + ALIGNMENT) + 2 * (c * Double.BYTES + ALIGNMENT);
        return buffers;
    }

    /**
     * Refuses, before any memory is touched, a module whose state is larger than the memory this
     * process can ever have: the machine's (or its control group's limit). Allocating it would
     * zero-fill pages until the kernel killed the process instead of a Java error.
     *
     * @throws OutOfMemoryError naming the channel count, the bytes needed and the limit
     */
    static void checkFits(BatchNormOptions options) {
        long needed = bytes(options);
        if (needed <= CHECK_ABOVE) {
            return;
        }
        long limit = MemoryLimit.BYTES;
        if (needed > limit) {
            throw new OutOfMemoryError("a BatchNorm of " + options.numFeatures() + " channels needs " + needed
                    + " bytes of native memory, more than the " + limit + " bytes this machine has"
                    + " (physical memory, or the control group's limit)");
        }
    }

    /** Weight 1, bias 0. */
    void initParameters() {
        if (weight.byteSize() > 0) {
            for (long i = 0; i < weight.byteSize() / Float.BYTES; i++) {
                weight.setAtIndex(FLOAT, i, 1f);
            }
            bias.fill((byte) 0);
        }
    }

    /** Running mean 0, running variance 1. */
    void initRunningStats() {
        if (runningMean.byteSize() > 0) {
            runningMean.fill((byte) 0);
            for (long i = 0; i < runningVar.byteSize() / Float.BYTES; i++) {
                runningVar.setAtIndex(FLOAT, i, 1f);
            }
        }
    }

    /** weightGrad += stepWeightGrad, biasGrad += stepBiasGrad (after a backward returned OK). */
    void accumulateGradients() {
        for (long i = 0; i < weightGrad.byteSize() / Float.BYTES; i++) {
            weightGrad.setAtIndex(FLOAT, i, weightGrad.getAtIndex(FLOAT, i) + stepWeightGrad.getAtIndex(FLOAT, i));
            biasGrad.setAtIndex(FLOAT, i, biasGrad.getAtIndex(FLOAT, i) + stepBiasGrad.getAtIndex(FLOAT, i));
        }
    }

    /** Adds a shard's share of the gradients, each rounded to float as the kernel rounds its own. */
    void accumulateGradients(double[] shardWeightGrad, double[] shardBiasGrad) {
        for (int i = 0; i < shardWeightGrad.length; i++) {
            weightGrad.setAtIndex(FLOAT, i, weightGrad.getAtIndex(FLOAT, i) + (float) shardWeightGrad[i]);
            biasGrad.setAtIndex(FLOAT, i, biasGrad.getAtIndex(FLOAT, i) + (float) shardBiasGrad[i]);
        }
    }

    /** An output must not overlap any buffer the caller can see or the module keeps between calls. */
    void checkDisjoint(String name, MemorySegment out, long bytes) {
        Segments.checkDisjoint(name, out, bytes, weight, "the module's weight");
        Segments.checkDisjoint(name, out, bytes, bias, "the module's bias");
        Segments.checkDisjoint(name, out, bytes, weightGrad, "the module's weight gradient");
        Segments.checkDisjoint(name, out, bytes, biasGrad, "the module's bias gradient");
        Segments.checkDisjoint(name, out, bytes, runningMean, "the module's running mean");
        Segments.checkDisjoint(name, out, bytes, runningVar, "the module's running variance");
    }

    /** What the module's Cleaner runs when the module became unreachable without close(). */
    Runnable releaser() {
        Arena owned = arena;
        return owned::close;
    }

    /**
     * The module's native buffers as the kernels get them: views of the same memory that belong to
     * no arena. A downcall acquires and releases the arena of every segment it passes, an atomic
     * update each for the module's shared arena, which made up a good part of a small call's cost.
     * Passing these views is safe because the arena closes only in {@code close()}, under the
     * module's write lock, or from the Cleaner once the module is unreachable; every call passes
     * them while holding the lock, after checking that the module is open, and keeps the module
     * reachable until the downcall has returned. {@code MemorySegment.NULL} stays NULL.
     */
    record KernelBuffers(MemorySegment weight, MemorySegment bias, MemorySegment runningMean,
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

    /**
     * The most memory this process can have: physical memory ({@code MemTotal}), or the cgroup's
     * limit when smaller. Read once; {@code Long.MAX_VALUE} when neither can be read.
     */
    private static final class MemoryLimit {
        static final long BYTES = read();

        private static long read() {
            long limit = Long.MAX_VALUE;
            try {
                for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                    if (line.startsWith("MemTotal:")) {
                        limit = Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                    }
                }
            } catch (IOException | RuntimeException unreadable) {
                // Not Linux, or no /proc: no limit known.
            }
            for (String file : List.of("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")) {
                try {
                    String value = Files.readString(Path.of(file)).strip();
                    if (value.matches("[0-9]+")) {
                        limit = Math.min(limit, Long.parseLong(value));
                    }
                } catch (IOException | RuntimeException unreadable) {
                    // No such control group file.
                }
            }
            return limit;
        }
    }
}
