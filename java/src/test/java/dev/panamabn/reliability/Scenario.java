package dev.panamabn.reliability;

import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.OptionalDouble;

/**
 * A generated use of one module: its options, a seed for its initial state, and a list of steps.
 * Every generated scenario is valid: steps that need batch statistics never have exactly one value
 * per channel.
 */
record Scenario(BatchNormOptions options, long stateSeed, List<Step> steps) {

    /** How a step passes its tensors. */
    enum Api {
        /** Caller's native segments, 64-byte aligned. */
        SEGMENT,
        /** Caller's native segments one float past a 64-byte boundary. */
        SEGMENT_UNALIGNED,
        /** Output allocated by the module in the caller's arena. */
        ARENA,
        /** float[] through critical downcalls. */
        ARRAY
    }

    /** One forward (and maybe its backward) in a mode. */
    record Step(boolean training, long[] dims, Data.Kind kind, long dataSeed, Api api, boolean inPlace,
                boolean backward, boolean zeroGradFirst) {

        Shape shape() {
            return Shape.of(dims);
        }

        @Override
        public String toString() {
            return (training ? "train" : "eval") + Arrays.toString(dims) + " " + kind + " seed=" + dataSeed + " "
                    + api + (inPlace ? " in-place" : "") + (backward ? " +backward" : "")
                    + (zeroGradFirst ? " zeroGrad" : "");
        }
    }

    static Scenario random(Gen g, int maxSteps) {
        BatchNormOptions options = randomOptions(g);
        int count = g.between(1, maxSteps);
        List<Step> steps = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            steps.add(randomStep(g, options));
        }
        return new Scenario(options, g.nextLong(), List.copyOf(steps));
    }

    /** PyTorch's defaults half the time, else edge values of every option. */
    static BatchNormOptions randomOptions(Gen g) {
        int channels = g.between(1, 6);
        double eps = g.pickDouble(1e-5, 1e-5, 1e-3, 0.5, 1e-8, 0.0);
        OptionalDouble momentum = g.pick(OptionalDouble.of(0.1), OptionalDouble.of(0.1), OptionalDouble.empty(),
                OptionalDouble.of(0.0), OptionalDouble.of(1.0), OptionalDouble.of(0.37));
        return new BatchNormOptions(channels, eps, momentum, !g.oneIn(3), !g.oneIn(3));
    }

    static Step randomStep(Gen g, BatchNormOptions options) {
        boolean training = !g.oneIn(3);
        // Mostly small shapes (fast, every rank, empty ones); one in 25 past the library's parallel
        // threshold, so that the OpenMP paths meet the reference too.
        long[] dims = g.oneIn(25) ? largeDims(g, options.numFeatures()) : smallDims(g, options.numFeatures());
        boolean batchStatistics = training || !options.trackRunningStats();
        if (batchStatistics && valuesPerChannel(dims) == 1) {
            dims[0] = 2; // PyTorch refuses one value per channel when it needs batch statistics
        }
        return new Step(training, dims, g.pick(Data.Kind.class), g.nextLong(), g.pick(Api.class), g.coin(),
                g.coin(), g.oneIn(5));
    }

    /** (N, C, spatial...) with rank 2..5, N in 0..5 and spatial dims in 0..4 (empty tensors included). */
    static long[] smallDims(Gen g, int channels) {
        long[] d = new long[g.between(2, 5)];
        d[0] = g.between(0, 5);
        d[1] = channels;
        for (int i = 2; i < d.length; i++) {
            d[i] = g.oneIn(12) ? 0 : g.between(1, 4);
        }
        return d;
    }

    /** About 70k to 200k elements per channel group, rank 3 or 4. */
    private static long[] largeDims(Gen g, int channels) {
        int n = g.between(2, 4);
        int side = g.between(90, 130);
        return g.coin() ? new long[] {n, channels, side, side + 3} : new long[] {n, channels, (long) side * (side + 3)};
    }

    static long valuesPerChannel(long[] dims) {
        long m = dims[0];
        for (int i = 2; i < dims.length; i++) {
            m *= dims[i];
        }
        return m;
    }
}
