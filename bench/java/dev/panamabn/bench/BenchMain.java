package dev.panamabn.bench;

import dev.panamabn.Parallelism;
import java.io.IOException;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
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
 * CSV row {@code shape,layout,dtype,op,impl,threads,cache,median_ns} per case, like the suite's
 * other peers. First it checks every requested impl, op and thread count against the
 * double-precision reference ({@link KernelCheck}), printing a "# check" line each, and exits
 * with status 1 and an ERROR line, timing nothing, when any is wrong. A combination an
 * implementation lacks ({@link Kernel#supports}) gets a "# skipped:" line instead of a row, and
 * so does the cold mode when the cache-flush library is missing.
 * median_ns is the median over all measurement iterations (of all forks) of JMH's average time
 * per call in that iteration. JMH's own log goes to stderr; lines starting with '#' are comments.
 * With --gc, the B/op lines are JMH's gc.alloc.rate.norm: all bytes the fork allocated during
 * measurement divided by the calls, so JMH's own per-iteration garbage shows up as a few hundred
 * B/op on shapes that take milliseconds per call; the tiny shapes show what a call allocates.
 */
public final class BenchMain {

    private static final String USAGE = """
            usage: BenchMain [options]
              --shapes 32x64x56x56,1x8x4x4     shapes (NxCxHxW), default: the six of the suite
              --layouts nchw,nhwc --dtypes f32,bf16,f16 --caches warm,cold
              --ops forward_train,forward_eval,backward,forward_train_relu,
                    forward_train_add_relu,backward_relu,backward_add_relu
              --impls panama-batchnorm,panama-batchnorm-array,java-scalar,java-vector
              --threads 1,2                    native threads, or Java threads for java-vector
                                               (java-scalar always runs at 1)
              --warmup-iterations 3 --warmup-ms 1000 --iterations 5 --iteration-ms 1000
              --forks 1
              --gc                             add JMH's GC profiler, print B/op per case
              --out FILE                       write the rows to FILE instead of stdout
            Before timing, every impl, op and thread count is checked against the double-precision
            reference; when one is wrong, nothing is timed and the exit status is 1. Cold mode
            needs -Dbench.flush=<path of libbench_flush.so>.
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
        List<Op> ops = list(options, "ops", "forward_train,forward_eval,backward").stream()
                .map(Op::of).toList();
        List<TensorLayout> layouts = list(options, "layouts", "nchw").stream()
                .map(TensorLayout::of).toList();
        List<ElementType> types = list(options, "dtypes", "f32").stream()
                .map(ElementType::of).toList();
        List<String> caches = list(options, "caches", "warm");
        List<String> impls = list(options, "impls", String.join(",", Kernel.IMPLS));
        List<String> threads = list(options, "threads", "1,2");
        shapes.forEach(Dims::parse);
        threads.forEach(BenchMain::threadCount);
        for (String cache : caches) {
            if (!cache.equals("warm") && !cache.equals("cold")) {
                throw new IllegalArgumentException("--caches: expected warm or cold, got '"
                        + cache + "'");
            }
        }

        List<String> comments = new ArrayList<>();
        comments.add("# isa: " + libraryIsa());
        List<String> methods = new ArrayList<>();
        for (String cache : caches) {
            if (cache.equals("cold") && !CacheFlush.available()) {
                comments.add("# skipped: java cold: " + CacheFlush.unavailableReason());
            } else {
                methods.add(cache);
            }
        }
        // per impl, layout and type: the ops it has; per impl, one skipped line for what it lacks
        Map<String, List<Op>> plan = new LinkedHashMap<>();
        for (String impl : impls) {
            Set<String> lacks = new TreeSet<>();
            int missing = 0;
            for (TensorLayout layout : layouts) {
                for (ElementType type : types) {
                    List<Op> supported = new ArrayList<>();
                    for (Op op : ops) {
                        if (Kernel.supports(impl, op, layout, type)) {
                            supported.add(op);
                        } else {
                            lacks.addAll(Kernel.lacks(op, layout, type));
                            missing++;
                        }
                    }
                    if (!supported.isEmpty()) {
                        plan.put(String.join(",", impl, layout.label(), type.label()), supported);
                    }
                }
            }
            if (missing > 0) {
                comments.add(String.format("# skipped: %s: %s (%d of %d asked combinations)", impl,
                        Kernel.unsupportedReason(lacks), missing,
                        layouts.size() * types.size() * ops.size()));
            }
        }
        comments.forEach(System.err::println);
        if (!checkAll(plan, threads)) {
            System.exit(1);
        }

        ChainedOptionsBuilder common = new OptionsBuilder()
                .include(BatchNormBenchmark.class.getName() + ".(" + String.join("|", methods)
                        + ")$")
                .param("shape", shapes.toArray(String[]::new))
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
        rows.add("shape,layout,dtype,op,impl,threads,cache,median_ns");
        rows.addAll(comments);
        List<String> allocations = new ArrayList<>();
        int run = 0;
        for (Map.Entry<String, List<Op>> entry : plan.entrySet()) {
            String[] key = entry.getKey().split(",");
            String impl = key[0];
            System.err.printf("# java: %s %s %s (%d of %d)%n", impl, key[1], key[2], ++run,
                    plan.size());
            if (methods.isEmpty()) {
                break;
            }
            Collection<RunResult> results;
            try {
                Options perImpl = new OptionsBuilder().parent(base).param("impl", impl)
                        .param("layout", key[1]).param("dtype", key[2])
                        .param("op", entry.getValue().stream().map(Op::label)
                                .toArray(String[]::new))
                        .param("threads", threadsFor(impl, threads)).build();
                results = new Runner(perImpl,
                        OutputFormatFactory.createFormatInstance(System.err, VerboseMode.NORMAL))
                        .run();
            } catch (RunnerException e) {
                System.err.println("# java: JMH failed for " + impl + ": " + e.getMessage());
                System.exit(1);
                return;
            }
            for (RunResult result : results) {
                BenchmarkParams p = result.getParams();
                String method = p.getBenchmark().substring(p.getBenchmark().lastIndexOf('.') + 1);
                String row = String.join(",", p.getParam("shape"), p.getParam("layout"),
                        p.getParam("dtype"), p.getParam("op"), p.getParam("impl"),
                        p.getParam("threads"), method);
                rows.add(row + "," + Math.round(median(result)));
                Result<?> alloc = result.getSecondaryResults().get("gc.alloc.rate.norm");
                if (alloc != null) {
                    allocations.add(String.format("# alloc %s: %.3f B/op", row, alloc.getScore()));
                }
            }
        }
        rows.addAll(allocations);
        String out = options.get("out");
        if (out == null) {
            rows.forEach(System.out::println);
        } else {
            Files.write(Path.of(out), rows, StandardCharsets.UTF_8);
        }
    }

    /**
     * The kernel set libbatchnorm chose on this CPU, as this JVM loaded it (its bn_isa), or
     * "unknown" for a library without that function.
     */
    private static String libraryIsa() {
        Parallelism.threads(); // loads the library
        return SymbolLookup.loaderLookup().find("bn_isa").map(address -> {
            try {
                MemorySegment name = (MemorySegment) Linker.nativeLinker()
                        .downcallHandle(address, FunctionDescriptor.of(ValueLayout.ADDRESS))
                        .invokeExact();
                return name.reinterpret(64).getString(0);
            } catch (Throwable t) {
                return "unknown";
            }
        }).orElse("unknown");
    }

    /**
     * Runs {@link KernelCheck} on every impl, op and thread count that is to be timed, printing a
     * "# check" line for each; false, after an ERROR line naming the failures, when any failed.
     */
    private static boolean checkAll(Map<String, List<Op>> plan, List<String> threads) {
        System.err.printf("# java: checking %d impl/layout/type combinations against the "
                + "double-precision reference on %s (tolerance relative to each output's largest "
                + "magnitude: %.2e for float32, %.2e for bf16 tensors, %.2e for f16 tensors)%n",
                plan.size(), KernelCheck.SHAPES, KernelCheck.TOLERANCE,
                KernelCheck.tolerance(ElementType.BF16), KernelCheck.tolerance(ElementType.F16));
        long start = System.nanoTime();
        KernelCheck check = new KernelCheck();
        List<KernelCheck.Result> failed = new ArrayList<>();
        int count = 0;
        for (Map.Entry<String, List<Op>> entry : plan.entrySet()) {
            String[] key = entry.getKey().split(",");
            String impl = key[0];
            TensorLayout layout = TensorLayout.of(key[1]);
            ElementType type = ElementType.of(key[2]);
            for (String t : threadsFor(impl, threads)) {
                for (Op op : entry.getValue()) {
                    KernelCheck.Result result = check.check(impl, layout, type, op,
                            threadCount(t));
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
        List<String> known = List.of("shapes", "ops", "layouts", "dtypes", "caches", "impls",
                "threads", "warmup-iterations", "warmup-ms", "iterations", "iteration-ms",
                "forks", "out");
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
