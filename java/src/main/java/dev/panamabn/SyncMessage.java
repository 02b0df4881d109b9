package dev.panamabn;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.StringJoiner;

/**
 * The message one rank of a {@link SyncBatchNorm} sends in an exchange, and the check of every
 * rank's message before anything is merged. {@code HEADER} doubles that every rank must agree
 * on, then the shard's count and two per-channel arrays:
 *
 * <pre>
 *   [0] protocol tag and version   [4] channels      [8]  eps
 *   [1] phase (forward, backward)  [5] layout        [9]  momentum (-1: cumulative average)
 *   [2] layer (creation order)     [6] element type  [10] affine | trackRunningStats | biased var
 *   [3] exchange number            [7] mode          [11] status (0 ok, 1 input refused)
 *   [12] count   [13 .. 13+C) mean or sumDy   [13+C .. 13+2C) m2 or sumDyXhat
 * </pre>
 *
 * Every field is an integer below 2^53 or a value copied bit for bit, so doubles carry it exactly.
 */
final class SyncMessage {

    /** "BNS" and version 1: a message of another protocol (or version) is named as such. */
    static final double PROTOCOL = 0x424E5301;
    static final int FORWARD = 1;
    static final int BACKWARD = 2;
    static final int TRAINING = 1;
    static final int EVAL_BATCH_STATS = 2;

    static final int TAG = 0;
    static final int PHASE = 1;
    static final int LAYER = 2;
    static final int EXCHANGE = 3;
    static final int CHANNELS = 4;
    static final int LAYOUT = 5;
    static final int DTYPE = 6;
    static final int MODE = 7;
    static final int EPS = 8;
    static final int MOMENTUM = 9;
    static final int FLAGS = 10;
    static final int STATUS = 11;
    static final int COUNT = 12;
    /** Doubles before the per-channel arrays. */
    static final int HEADER = 13;

    // The fields every rank must agree on once the message is known to be in step, with their names.
    private static final int[] SETTINGS = {CHANNELS, LAYOUT, DTYPE, MODE, EPS, MOMENTUM, FLAGS};
    private static final String[] SETTING_NAMES = {"channels", "layout", "element type", "mode", "eps",
        "momentum", "options (affine, trackRunningStats, runningVariance)"};

    private SyncMessage() {
    }

    /** The doubles of one message for C channels. */
    static int length(int channels) {
        return HEADER + 2 * channels;
    }

    /** The channel count a message length stands for, or -1 when no count gives it. */
    static long channelsOf(long length) {
        long rest = length - HEADER;
        return rest >= 2 && rest % 2 == 0 ? rest / 2 : -1;
    }

    /**
     * A message. spec may be null (a refused call): its fields are then -1. a and b are the
     * per-channel arrays (C each), or null for a refused call (zeros).
     */
    static double[] pack(int phase, int layer, long exchange, BatchNormOptions options, TensorSpec spec, int mode,
                         boolean refused, long count, double[] a, double[] b) {
        int c = options.numFeatures();
        double[] m = new double[length(c)];
        m[TAG] = PROTOCOL;
        m[PHASE] = phase;
        m[LAYER] = layer;
        m[EXCHANGE] = exchange;
        m[CHANNELS] = c;
        m[LAYOUT] = spec == null || spec.layout() == null ? -1 : spec.layout().ordinal();
        m[DTYPE] = spec == null || spec.dataType() == null ? -1 : spec.dataType().ordinal();
        m[MODE] = mode;
        m[EPS] = options.eps();
        m[MOMENTUM] = options.momentum().orElse(-1);
        m[FLAGS] = (options.affine() ? 1 : 0) | (options.trackRunningStats() ? 2 : 0)
                | (options.runningVariance() == BatchNormOptions.RunningVariance.BIASED ? 4 : 0);
        m[STATUS] = refused ? 1 : 0;
        m[COUNT] = refused ? 0 : count;
        if (!refused) {
            System.arraycopy(a, 0, m, HEADER, c);
            System.arraycopy(b, 0, m, HEADER + c, c);
        }
        return m;
    }

    /**
     * Checks every rank's message (all of the same length, from the collective); returns null
     * when they agree, else the reason, the same text on every rank since every rank checks the
     * same messages.
     */
    static String disagreement(double[][] all, String pass) {
        List<Integer> foreign = new ArrayList<>();
        for (int r = 0; r < all.length; r++) {
            if (Double.doubleToLongBits(all[r][TAG]) != Double.doubleToLongBits(PROTOCOL)) {
                foreign.add(r);
            }
        }
        if (!foreign.isEmpty()) {
            return "rank(s) " + foreign + " sent no SyncBatchNorm message of this version in the " + pass
                    + " exchange: the ranks call different collectives (or library versions) in different orders";
        }
        if (!same(all, PHASE)) {
            return "the ranks are in different passes: " + each(all, PHASE, v -> v == FORWARD ? "forward" : "backward")
                    + "; every rank must run forward then backward of each layer in step";
        }
        if (!same(all, LAYER)) {
            return "the ranks exchange for different layers: " + each(all, LAYER, v -> "layer " + (long) v)
                    + " (layers are numbered in the order they are made on a collective: make them in the same order,"
                    + " and call them in the same order, on every rank)";
        }
        if (!same(all, EXCHANGE)) {
            return "the ranks are out of step: " + each(all, EXCHANGE, v -> "exchange " + (long) v)
                    + " of this layer (a rank skipped or repeated a pass, or ran it in eval mode)";
        }
        List<Integer> refused = new ArrayList<>();
        for (int r = 0; r < all.length; r++) {
            if (all[r][STATUS] != 0) {
                refused.add(r);
            }
        }
        if (!refused.isEmpty()) {
            return "rank(s) " + refused + " refused their input in this " + pass
                    + " (their own exception says why); no rank changed anything";
        }
        StringJoiner differences = new StringJoiner("; ");
        for (int i = 0; i < SETTINGS.length; i++) {
            int field = SETTINGS[i];
            if (!same(all, field)) {
                differences.add(SETTING_NAMES[i] + " differ: " + each(all, field, v -> describe(field, v)));
            }
        }
        return differences.length() == 0 ? null
                : "the ranks disagree in the " + pass + " exchange: " + differences;
    }

    /** The count of rank r's message. */
    static long count(double[] message) {
        return (long) message[COUNT];
    }

    /** The first per-channel array of a message. */
    static double[] first(double[] message, int channels) {
        return Arrays.copyOfRange(message, HEADER, HEADER + channels);
    }

    /** The second per-channel array of a message. */
    static double[] second(double[] message, int channels) {
        return Arrays.copyOfRange(message, HEADER + channels, HEADER + 2 * channels);
    }

    private static boolean same(double[][] all, int field) {
        long first = Double.doubleToLongBits(all[0][field]);
        for (double[] m : all) {
            if (Double.doubleToLongBits(m[field]) != first) {
                return false;
            }
        }
        return true;
    }

    private static String each(double[][] all, int field, java.util.function.DoubleFunction<String> text) {
        StringJoiner j = new StringJoiner(", ");
        for (int r = 0; r < all.length; r++) {
            j.add("rank " + r + ": " + text.apply(all[r][field]));
        }
        return j.toString();
    }

    private static String describe(int field, double v) {
        return switch (field) {
            case CHANNELS -> Long.toString((long) v);
            case LAYOUT -> v < 0 ? "none" : Layout.values()[(int) v].name();
            case DTYPE -> v < 0 ? "none" : DataType.values()[(int) v].name();
            case MODE -> v == TRAINING ? "training" : "eval with batch statistics";
            case MOMENTUM -> v < 0 ? "cumulative average" : Double.toString(v);
            case FLAGS -> {
                long bits = (long) v;
                yield ((bits & 1) != 0 ? "affine" : "not affine") + "/"
                        + ((bits & 2) != 0 ? "running stats" : "no running stats") + "/"
                        + ((bits & 4) != 0 ? "biased" : "unbiased") + " running variance";
            }
            default -> Double.toString(v);
        };
    }
}
