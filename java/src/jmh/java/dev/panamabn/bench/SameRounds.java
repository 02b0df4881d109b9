package dev.panamabn.bench;

import dev.panamabn.BatchNorm;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * panama-batchnorm's training forward against its own eval, both timed in the same rounds of one
 * JVM. Issue 3's train/eval target is a ratio, and JMH times the two ops in forks of their own, at
 * different moments, where the machine's load moves them apart: two quick suite runs of the same
 * code gave 1.24x and 2.12x. Here two modules, one in training and one in eval mode, take turns
 * on the same x and y, each round one op's calls then the other's, alternating which goes first;
 * the result is the median over rounds of each op's mean time per call, and their ratio, as
 * native_bench reports it for the C kernel.
 */
final class SameRounds {

    /** The two ops' medians, in nanoseconds per call. */
    record Result(Dims dims, int threads, double trainNs, double evalNs) {

        double ratio() {
            return trainNs / evalNs;
        }

        /**
         * The comment line scripts/bench_report.py reads; native_bench prints the same without
         * the two medians.
         */
        String line() {
            return String.format("# %s threads %d: forward_train / forward_eval %.2fx, both in the"
                    + " same rounds (panama-batchnorm): %.0f ns / %.0f ns", dims, threads, ratio(),
                    trainNs, evalNs);
        }
    }

    private SameRounds() {}

    /** Times the two ops on dims at the given native thread count. */
    static Result measure(Dims dims, int threads, int warmup, int rounds, long roundNs) {
        TestData data = TestData.timed(dims);
        Shape shape = Shape.of(dims.dims());
        Parallelism.setThreads(threads);
        try (Arena arena = Arena.ofConfined();
                BatchNorm train = PanamaKernel.createModule(data);
                BatchNorm eval = PanamaKernel.createModule(data)) {
            MemorySegment x = arena.allocateFrom(ValueLayout.JAVA_FLOAT, data.x());
            MemorySegment y = arena.allocate(ValueLayout.JAVA_FLOAT, dims.count());
            train.train();
            eval.train();
            eval.forward(x, shape, y);
            eval.eval();
            Runnable[] calls = {() -> train.forward(x, shape, y), () -> eval.forward(x, shape, y)};
            long[] reps = {calibrate(calls[0], roundNs), calibrate(calls[1], roundNs)};
            double[][] perCall = new double[2][rounds];
            for (int r = -warmup; r < rounds; r++) {
                for (int k = 0; k < 2; k++) {
                    int op = (r & 1) == 0 ? k : 1 - k;
                    double ns = time(calls[op], reps[op]);
                    if (r >= 0) {
                        perCall[op][r] = ns;
                    }
                }
            }
            return new Result(dims, threads, median(perCall[0]), median(perCall[1]));
        }
    }

    /** Calls per round, so that one op's calls in a round last at least roundNs. */
    private static long calibrate(Runnable call, long roundNs) {
        call.run();
        long reps = 1;
        while (true) {
            long start = System.nanoTime();
            for (long i = 0; i < reps; i++) {
                call.run();
            }
            long elapsed = System.nanoTime() - start;
            if (elapsed >= roundNs / 4) {
                return Math.max(1, (long) Math.ceil((double) reps * roundNs / elapsed));
            }
            reps *= 4;
        }
    }

    /** Mean nanoseconds per call over reps calls. */
    private static double time(Runnable call, long reps) {
        long start = System.nanoTime();
        for (long i = 0; i < reps; i++) {
            call.run();
        }
        return (double) (System.nanoTime() - start) / reps;
    }

    private static double median(double[] values) {
        double[] sorted = values.clone();
        Arrays.sort(sorted);
        int mid = sorted.length / 2;
        return sorted.length % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
    }
}
