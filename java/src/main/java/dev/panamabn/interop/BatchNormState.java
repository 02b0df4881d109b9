package dev.panamabn.interop;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A {@link BatchNorm}'s state under PyTorch's names, {@code state_dict()} and
 * {@code load_state_dict()}: {@code weight}, {@code bias} (when affine), {@code running_mean},
 * {@code running_var} (float32, shape {@code (C)}) and {@code num_batches_tracked} (int64, shape
 * {@code ()}) (when tracking running statistics), each under a key prefix such as
 * {@code "layer1.0.bn1."}. Files hold many modules' states: read them once with {@link Npz} or
 * {@link SafeTensors} and load each module from the map with its prefix.
 *
 * <pre>{@code
 * try (var arena = Arena.ofConfined()) {
 *     Map<String, Tensor> state = SafeTensors.read(Path.of("resnet18.safetensors"), arena);
 *     BatchNormState.load(bn1, state, "layer1.0.bn1.");
 * }
 * }</pre>
 *
 * Loading follows PyTorch's strict {@code load_state_dict}: every key the module has must be
 * present (except {@code num_batches_tracked}, which defaults to 0 as in PyTorch when it is
 * absent) with the module's shape; a key under the prefix that the module does not have is an
 * error (keys with a further dot belong to sub-modules and are left alone). Floating-point
 * parameters of any precision are rounded to float32 as PyTorch's {@code copy_} does; the counter
 * must be an integer, shape {@code ()} (or {@code (1)}, as PyTorch accepts). Every error names the
 * key, and the module is changed only when every key is valid.
 */
public final class BatchNormState {

    /** The key of gamma, float32 {@code (C)}, present when the module is affine. */
    public static final String WEIGHT = "weight";
    /** The key of beta, float32 {@code (C)}, present when the module is affine. */
    public static final String BIAS = "bias";
    /** The key of the running mean, float32 {@code (C)}, present when tracking running statistics. */
    public static final String RUNNING_MEAN = "running_mean";
    /** The key of the running variance, float32 {@code (C)}, present when tracking running statistics. */
    public static final String RUNNING_VAR = "running_var";
    /**
     * The key of the count of training batches seen, int64 of shape {@code ()}, present when
     * tracking running statistics.
     */
    public static final String NUM_BATCHES_TRACKED = "num_batches_tracked";

    private BatchNormState() {
    }

    /**
     * Copies the module's state into {@code arena}, under PyTorch's keys and in PyTorch's order.
     *
     * @param module the module whose state is copied
     * @param prefix the prefix of every key: empty or ending with {@code '.'}
     * @param arena the arena that allocates the copies
     * @return an unmodifiable map from prefixed keys to tensors
     * @throws IllegalArgumentException when {@code prefix} is neither empty nor ends with {@code '.'}
     * @throws IllegalStateException when the module is closed
     */
    public static Map<String, Tensor> stateDict(BatchNorm module, String prefix, Arena arena) {
        Objects.requireNonNull(module, "module");
        Objects.requireNonNull(arena, "arena");
        checkPrefix(prefix);
        BatchNormOptions options = module.options();
        long c = options.numFeatures();
        Map<String, Tensor> state = new LinkedHashMap<>();
        if (options.affine()) {
            state.put(prefix + WEIGHT, copyOf(module.weight(), c, arena));
            state.put(prefix + BIAS, copyOf(module.bias(), c, arena));
        }
        if (options.trackRunningStats()) {
            state.put(prefix + RUNNING_MEAN, copyOf(module.runningMean(), c, arena));
            state.put(prefix + RUNNING_VAR, copyOf(module.runningVar(), c, arena));
            Tensor count = Tensor.allocate(ElementType.INT64, arena);
            count.data().set(ValueLayout.JAVA_LONG, 0, module.numBatchesTracked());
            state.put(prefix + NUM_BATCHES_TRACKED, count);
        }
        return Collections.unmodifiableMap(state);
    }

    /**
     * Loads the module's state from {@code state} (see the class comment): the module's weight,
     * bias, running statistics and counter are overwritten.
     *
     * @param module the module to load
     * @param state tensors by key, e.g. a whole file read by {@link Npz#read} or
     *              {@link SafeTensors#read(java.nio.file.Path, Arena)}; keys outside
     *              {@code prefix} are ignored
     * @param prefix the prefix of the module's keys: empty or ending with {@code '.'}
     * @throws IllegalArgumentException for a bad prefix, a missing or unexpected key, a wrong shape
     *                                  or dtype, or a counter outside [0, Long.MAX_VALUE); the
     *                                  message names the key and nothing is changed
     * @throws IllegalStateException when the module is closed
     */
    public static void load(BatchNorm module, Map<String, Tensor> state, String prefix) {
        Objects.requireNonNull(module, "module");
        Objects.requireNonNull(state, "state");
        checkPrefix(prefix);
        BatchNormOptions options = module.options();
        int c = options.numFeatures();
        List<String> expected = new ArrayList<>();
        if (options.affine()) {
            expected.addAll(List.of(WEIGHT, BIAS));
        }
        if (options.trackRunningStats()) {
            expected.addAll(List.of(RUNNING_MEAN, RUNNING_VAR, NUM_BATCHES_TRACKED));
        }
        checkUnexpected(state, prefix, expected, options);

        // Everything is read and checked before the module changes.
        float[] weight = options.affine() ? channelValues(state, prefix + WEIGHT, c) : null;
        float[] bias = options.affine() ? channelValues(state, prefix + BIAS, c) : null;
        float[] mean = options.trackRunningStats() ? channelValues(state, prefix + RUNNING_MEAN, c) : null;
        float[] var = options.trackRunningStats() ? channelValues(state, prefix + RUNNING_VAR, c) : null;
        long count = options.trackRunningStats() ? counter(state, prefix + NUM_BATCHES_TRACKED) : 0;

        if (options.affine()) {
            MemorySegment.copy(weight, 0, module.weight(), ValueLayout.JAVA_FLOAT, 0, c);
            MemorySegment.copy(bias, 0, module.bias(), ValueLayout.JAVA_FLOAT, 0, c);
        }
        if (options.trackRunningStats()) {
            MemorySegment.copy(mean, 0, module.runningMean(), ValueLayout.JAVA_FLOAT, 0, c);
            MemorySegment.copy(var, 0, module.runningVar(), ValueLayout.JAVA_FLOAT, 0, c);
            module.setNumBatchesTracked(count);
        }
    }

    // ---- internals ----

    private static void checkPrefix(String prefix) {
        Objects.requireNonNull(prefix, "prefix");
        if (!prefix.isEmpty() && !prefix.endsWith(".")) {
            throw new IllegalArgumentException("a key prefix is empty or ends with '.', got '" + prefix
                    + "' (did you mean '" + prefix + ".'?)");
        }
    }

    /** PyTorch's rule: a key under the prefix without a further dot must be one of the module's. */
    private static void checkUnexpected(Map<String, Tensor> state, String prefix, List<String> expected,
                                        BatchNormOptions options) {
        List<String> unexpected = new ArrayList<>();
        for (String key : state.keySet()) {
            if (key.startsWith(prefix)) {
                String name = key.substring(prefix.length());
                if (!name.contains(".") && !expected.contains(name)) {
                    unexpected.add(key);
                }
            }
        }
        if (!unexpected.isEmpty()) {
            Collections.sort(unexpected);
            throw new IllegalArgumentException("unexpected key" + (unexpected.size() > 1 ? "s " : " ")
                    + String.join(", ", unexpected) + " for a BatchNorm with affine=" + options.affine()
                    + ", trackRunningStats=" + options.trackRunningStats());
        }
    }

    private static float[] channelValues(Map<String, Tensor> state, String key, int channels) {
        Tensor t = state.get(key);
        if (t == null) {
            throw new IllegalArgumentException("missing key " + key);
        }
        if (!t.type().isFloatingPoint()) {
            throw new IllegalArgumentException(key + ": dtype " + t.type() + ", expected a floating-point type");
        }
        if (t.rank() != 1 || t.dim(0) != channels) {
            throw new IllegalArgumentException(key + ": shape " + Arrays.toString(t.shape())
                    + " does not match the module's [" + channels + "]");
        }
        return t.toFloatArray();
    }

    private static long counter(Map<String, Tensor> state, String key) {
        Tensor t = state.get(key);
        if (t == null) {
            return 0;
        }
        if (!t.type().isInteger() || t.type() == ElementType.BOOL) {
            throw new IllegalArgumentException(key + ": dtype " + t.type() + ", expected an integer type");
        }
        if (!(t.rank() == 0 || (t.rank() == 1 && t.dim(0) == 1))) {
            throw new IllegalArgumentException(key + ": shape " + Arrays.toString(t.shape())
                    + " does not match the module's [] (a scalar)");
        }
        long count;
        try {
            count = t.toLongArray()[0];
        } catch (IllegalStateException e) {
            throw new IllegalArgumentException(key + ": " + e.getMessage(), e);
        }
        if (count < 0) {
            throw new IllegalArgumentException(key + ": must be >= 0, got " + count);
        }
        if (count == Long.MAX_VALUE) { // the module's own limit: the next training step adds 1
            throw new IllegalArgumentException(key + ": must be < " + Long.MAX_VALUE + ", got " + count);
        }
        return count;
    }

    private static Tensor copyOf(MemorySegment floats, long channels, Arena arena) {
        Tensor t = Tensor.allocate(ElementType.FLOAT32, arena, channels);
        MemorySegment.copy(floats, 0, t.data(), 0, channels * Float.BYTES);
        return t;
    }
}
