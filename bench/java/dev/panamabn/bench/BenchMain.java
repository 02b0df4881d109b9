package dev.panamabn.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.openjdk.jmh.infra.BenchmarkParams;
import org.openjdk.jmh.profile.GCProfiler;
import org.openjdk.jmh.results.BenchmarkResult;
import org.openjdk.jmh.results.IterationResult;
import org.openjdk.jmh.results.Result;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.format.OutputFormatFactory;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;
import org.openjdk.jmh.runner.options.VerboseMode;

/**
 * The Java side of scripts/bench.sh: runs {@link BatchNormBenchmark} through JMH and prints one
 * CSV row {@code shape,layout,op,impl,threads,median_ns} per case, like the suite's other peers.
 * First it checks every requested impl, op and thread count against the double-precision
 * reference ({@link KernelCheck}), printing a "# check" line each, and exits with status 1 and an
 * ERROR line, timing nothing, when any is wrong.
 * median_ns is the median over all measurement iterations (of all forks) of JMH's average time
 * per call in that iteration. JMH's own log goes to stderr; lines starting with '#' are comments.
 * With --gc, the B/op lines are JMH's gc.alloc.rate.norm: all bytes the fork allocated during
 * measurement divided by the calls, so JMH's own per-iteration garbage shows up as a few hundred
 * B/op on shapes that take milliseconds per call; the tiny shapes show what a call allocates.
 * Last, when panama-batchnorm and both forward ops are timed, it times training against eval in
 * the same rounds of this JVM ({@link SameRounds}) and adds a '#' line per shape and thread count.
 */
public final class BenchMain {

    private static final String USAGE = """
            usage: BenchMain [options]
              --shapes 32x64x56x56,1x8x4x4     shapes (NxCxHxW), default: the six of the suite
              --ops forward_train,forward_eval,backward
              --impls panama-batchnorm,panama-batchnorm-array,java-scalar,java-vector
              --threads 1,2                    native threads, or Java threads for java-vector
                                               (java-scalar always runs at 1)
              --warmup-iterations 3 --warmup-ms 1000 --iterations 5 --iteration-ms 1000
              --forks 1
              --same-rounds 11 --same-round-ms 20
                                               panama-batchnorm's forward_train against its
                                               forward_eval in the same rounds of this JVM, as
                                               a '#' line per shape and thread count (0: none)
              --gc                             add JMH's GC profiler, print B/op per case
              --out FILE                       write the rows to FILE instead of stdout
            Before timing, every impl, op and thread count is checked against the double-precision
            reference; when one is wrong, nothing is timed and the exit status is 1.
            """;

    private BenchMain() {}

    public static void main(String[] args) throws IOException {
        Map<String, String> options = parse(args);
        if (options == null) {
            System.err.print(USAGE);
            System.exit(2);
        }
        List<String> shapes = list(options, "shapes",
                "32x64x56x56,256x512x7x7,64x256x14x14,8x32x112x112,128x16x32x32,1x8x4x4");
        List<String> ops = list(options, "ops", "forward_train,forward_eval,backward");
        List<String> impls = list(options, "impls",
                "panama-batchnorm,panama-batchnorm-array,java-scalar,java-vector");
        List<String> threads = list(options, "threads", "1,2");
        shapes.forEach(Dims::parse);
        ops.forEach(Op::of);
        threads.forEach(BenchMain::threadCount);
        if (!checkAll(impls, ops, threads)) {
            System.exit(1);
        }

        ChainedOptionsBuilder common = new OptionsBuilder()
                .include(BatchNormBenchmark.class.getName() + ".run$")
                .param("shape", shapes.toArray(String[]::new))
                .param("op", ops.toArray(String[]::new))
                .warmupIterations(integer(options, "warmup-iterations", 3))
                .warmupTime(TimeValue.milliseconds(integer(options, "warmup-ms", 1000)))
                .measurementIterations(integer(options, "iterations", 5))
                .measurementTime(TimeValue.milliseconds(integer(options, "iteration-ms", 1000)))
                .forks(integer(options, "forks", 1));
        if (options.containsKey("gc")) {
            common.addProfiler(GCProfiler.class);
        }
        Options base = common.build();

        List<String> rows = new ArrayList<>();
        rows.add("shape,layout,op,impl,threads,median_ns");
        List<String> allocations = new ArrayList<>();
        for (int i = 0; i < impls.size(); i++) {
            String impl = impls.get(i);
            System.err.printf("# java: %s (%d of %d)%n", impl, i + 1, impls.size());
            if (impl.equals("java-scalar")) {
                System.err.println(
                        "# java: java-scalar is single-threaded, timed at threads=1 only");
            }
            Collection<RunResult> results;
            try {
                Options run = new OptionsBuilder().parent(base).param("impl", impl)
                        .param("threads", threadsFor(impl, threads)).build();
                results = new Runner(run,
                        OutputFormatFactory.createFormatInstance(System.err, VerboseMode.NORMAL))
                        .run();
            } catch (RunnerException e) {
                System.err.println("# java: JMH failed for " + impl + ": " + e.getMessage());
                System.exit(1);
                return;
            }
            for (RunResult result : results) {
                BenchmarkParams p = result.getParams();
                String key = String.join(",", p.getParam("shape"), "nchw", p.getParam("op"),
                        p.getParam("impl"), p.getParam("threads"));
                rows.add(key + "," + Math.round(median(result)));
                Result<?> alloc = result.getSecondaryResults().get("gc.alloc.rate.norm");
                if (alloc != null) {
                    allocations.add(String.format("# alloc %s: %.3f B/op", key, alloc.getScore()));
                }
            }
        }
        rows.addAll(allocations);
        int sameRounds = integer(options, "same-rounds", 11);
        if (sameRounds > 0 && impls.contains("panama-batchnorm")
                && ops.contains("forward_train") && ops.contains("forward_eval")) {
            long roundNs = integer(options, "same-round-ms", 20) * 1_000_000L;
            for (String shape : shapes) {
                for (String t : threads) {
                    SameRounds.Result result = SameRounds.measure(Dims.parse(shape),
                            threadCount(t), Math.max(2, sameRounds / 4), sameRounds, roundNs);
                    System.err.println("# java: " + result.line().substring(2));
                    rows.add(result.line());
                }
            }
        }
        String out = options.get("out");
        if (out == null) {
            rows.forEach(System.out::println);
        } else {
            Files.write(Path.of(out), rows, StandardCharsets.UTF_8);
        }
    }

    /**
     * Runs {@link KernelCheck} on every impl, op and thread count that is to be timed, printing a
     * "# check" line for each; false, after an ERROR line naming the failures, when any failed.
     */
    private static boolean checkAll(List<String> impls, List<String> ops, List<String> threads) {
        System.err.printf("# java: checking %d impls x %d ops against the double-precision "
                + "reference on %s (tolerance %.0e of each output's largest magnitude)%n",
                impls.size(), ops.size(), KernelCheck.SHAPES, KernelCheck.TOLERANCE);
        long start = System.nanoTime();
        KernelCheck check = new KernelCheck(ops.stream().map(Op::of).toList());
        List<KernelCheck.Result> failed = new ArrayList<>();
        int count = 0;
        for (String impl : impls) {
            for (String t : threadsFor(impl, threads)) {
                for (String op : ops) {
                    KernelCheck.Result result = check.check(impl, Op.of(op), threadCount(t));
                    System.err.println(result.line());
                    count++;
                    if (!result.passed()) {
                        failed.add(result);
                    }
                }
            }
        }
        if (failed.isEmpty()) {
            System.err.printf("# java: all %d checks passed (%.1f s)%n", count,
                    (System.nanoTime() - start) * 1e-9);
            return true;
        }
        System.err.printf("ERROR: BenchMain: %d of %d checks failed, so nothing is timed: %s%n",
                failed.size(), count,
                String.join("; ", failed.stream().map(KernelCheck.Result::problem).toList()));
        return false;
    }

    /** java-scalar works on whole tensors on the calling thread: it runs at 1 thread only. */
    private static String[] threadsFor(String impl, List<String> threads) {
        return impl.equals("java-scalar") ? new String[] {"1"} : threads.toArray(String[]::new);
    }

    private static int threadCount(String text) {
        try {
            int t = Integer.parseInt(text);
            if (t < 1) {
                throw new NumberFormatException();
            }
            return t;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(
                    "--threads: expected positive integers, got '" + text + "'", e);
        }
    }

    private static double median(RunResult result) {
        List<Double> scores = new ArrayList<>();
        for (BenchmarkResult fork : result.getBenchmarkResults()) {
            for (IterationResult iteration : fork.getIterationResults()) {
                scores.add(iteration.getPrimaryResult().getScore());
            }
        }
        double[] sorted = scores.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        int mid = sorted.length / 2;
        return sorted.length % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
    }

    /** "--key value" pairs and the flag "--gc"; null when the arguments are malformed. */
    private static Map<String, String> parse(String[] args) {
        Map<String, String> options = new LinkedHashMap<>();
        List<String> known = List.of("shapes", "ops", "impls", "threads", "warmup-iterations",
                "warmup-ms", "iterations", "iteration-ms", "forks", "same-rounds", "same-round-ms",
                "out");
        for (int i = 0; i < args.length; i++) {
            String key = args[i].startsWith("--") ? args[i].substring(2) : "";
            if (key.equals("gc")) {
                options.put(key, "");
            } else if (known.contains(key) && i + 1 < args.length) {
                options.put(key, args[++i]);
            } else {
                System.err.println("BenchMain: unknown or incomplete argument '" + args[i] + "'");
                return null;
            }
        }
        return options;
    }

    private static List<String> list(Map<String, String> options, String key, String fallback) {
        return Arrays.stream(options.getOrDefault(key, fallback).split(","))
                .filter(v -> !v.isEmpty()).toList();
    }

    private static int integer(Map<String, String> options, String key, int fallback) {
        String value = options.get(key);
        try {
            int v = value == null ? fallback : Integer.parseInt(value);
            if (v < 0) {
                throw new NumberFormatException();
            }
            return v;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(
                    "--" + key + ": expected a non-negative integer, got '" + value + "'", e);
        }
    }
}
