package dev.panamabn;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalDouble;

/**
 * One golden case, as written by {@code scripts/gen_golden.py} in the format of
 * {@code testdata/golden/FORMAT.md}: an initial module state and steps, each with its input,
 * upstream gradient and PyTorch's (float64) results.
 */
record GoldenCase(String name, Shape shape, double eps, OptionalDouble momentum, boolean affine,
                  boolean trackRunningStats, double[] weight, double[] bias, double[] runningMean,
                  double[] runningVar, long numBatchesTracked, List<Step> steps) {

    /** One forward + backward step; the per-channel arrays are null where the format leaves them out. */
    record Step(boolean training, double[] x, double[] dy, double[] y, double[] saveMean, double[] saveInvstd,
                double[] runningMean, double[] runningVar, long numBatchesTracked, double[] dx,
                double[] dweight, double[] dbias) {
    }

    BatchNormOptions options() {
        BatchNormOptions o = BatchNormOptions.of((int) shape.channels()).withEps(eps)
                .withAffine(affine).withTrackRunningStats(trackRunningStats);
        return momentum.isPresent() ? o.withMomentum(momentum.getAsDouble()) : o.withCumulativeAverage();
    }

    static GoldenCase read(Path file) throws IOException {
        String name = file.getFileName().toString().replaceFirst("\\.txt$", "");
        List<String[]> records = new ArrayList<>();
        for (String line : Files.readAllLines(file)) {
            String trimmed = line.strip();
            if (!trimmed.isEmpty() && !trimmed.startsWith("#")) {
                records.add(trimmed.split("\\s+"));
            }
        }
        Map<String, double[]> header = new HashMap<>();
        List<Step> steps = new ArrayList<>();
        Map<String, double[]> step = null;
        boolean sawEof = false;
        for (String[] r : records) {
            String key = r[0];
            int count = r.length > 1 ? Integer.parseInt(r[1]) : 0;
            if (r.length != count + 2 && !(r.length == 1 && count == 0)) {
                throw new IOException(name + ": record " + key + " says " + count + " values but has " + (r.length - 2));
            }
            double[] values = new double[count];
            for (int i = 0; i < count; i++) {
                values[i] = parse(r[i + 2]);
            }
            switch (key) {
                case "case" -> { }
                case "step" -> step = new HashMap<>(Map.of("step", values));
                case "end" -> {
                    if (step == null) {
                        throw new IOException(name + ": 'end' without 'step'");
                    }
                    steps.add(toStep(name, step));
                    step = null;
                }
                case "eof" -> sawEof = true;
                default -> (step == null ? header : step).put(key, values);
            }
        }
        if (!sawEof) {
            throw new IOException(name + ": no 'eof' record (truncated file?)");
        }
        long[] dims = toLongs(require(name, header, "dims"));
        double[] momentum = require(name, header, "momentum");
        boolean affine = require(name, header, "affine")[0] != 0;
        boolean track = require(name, header, "track_running_stats")[0] != 0;
        return new GoldenCase(name, Shape.of(dims), require(name, header, "eps")[0],
                momentum.length == 0 ? OptionalDouble.empty() : OptionalDouble.of(momentum[0]),
                affine, track,
                affine ? require(name, header, "weight") : null,
                affine ? require(name, header, "bias") : null,
                track ? require(name, header, "running_mean") : null,
                track ? require(name, header, "running_var") : null,
                track ? (long) require(name, header, "num_batches_tracked")[0] : 0,
                List.copyOf(steps));
    }

    private static Step toStep(String name, Map<String, double[]> r) throws IOException {
        double[] counter = r.get("num_batches_tracked");
        return new Step(r.get("step")[0] != 0, require(name, r, "x"), require(name, r, "dy"), require(name, r, "y"),
                r.get("save_mean"), r.get("save_invstd"), r.get("running_mean"), r.get("running_var"),
                counter == null ? -1 : (long) counter[0], require(name, r, "dx"), r.get("dweight"), r.get("dbias"));
    }

    private static double[] require(String name, Map<String, double[]> records, String key) throws IOException {
        double[] v = records.get(key);
        if (v == null) {
            throw new IOException(name + ": missing record '" + key + "'");
        }
        return v;
    }

    private static long[] toLongs(double[] values) {
        long[] out = new long[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = (long) values[i];
        }
        return out;
    }

    /** Decimal numbers plus C's spellings nan, inf, -inf (which Double.parseDouble does not take). */
    private static double parse(String token) {
        return switch (token.toLowerCase()) {
            case "nan", "-nan", "+nan" -> Double.NaN;
            case "inf", "+inf", "infinity" -> Double.POSITIVE_INFINITY;
            case "-inf", "-infinity" -> Double.NEGATIVE_INFINITY;
            default -> Double.parseDouble(token);
        };
    }
}
