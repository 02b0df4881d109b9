package dev.panamabn.bench;

import java.util.Arrays;
import java.util.stream.Collectors;

/** A tensor shape as the suite writes it ("32x64x56x56"), viewed as (N, C, S). */
record Dims(long[] dims) {

    Dims {
        dims = dims.clone();
        if (dims.length < 2 || dims.length > 5 || Arrays.stream(dims).anyMatch(d -> d < 1)) {
            throw new IllegalArgumentException(
                    "shape: expected 2 to 5 positive dims, got " + Arrays.toString(dims));
        }
    }

    static Dims parse(String text) {
        try {
            return new Dims(Arrays.stream(text.split("x")).mapToLong(Long::parseLong).toArray());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("shape: expected NxCxHxW, got '" + text + "'", e);
        }
    }

    @Override
    public long[] dims() {
        return dims.clone();
    }

    /** As the suite writes it: "32x64x56x56". */
    @Override
    public String toString() {
        return Arrays.stream(dims).mapToObj(Long::toString)
                .collect(Collectors.joining("x"));
    }

    int n() {
        return Math.toIntExact(dims[0]);
    }

    int c() {
        return Math.toIntExact(dims[1]);
    }

    /** The product of the spatial dims (1 for a rank-2 shape). */
    int s() {
        long s = 1;
        for (int i = 2; i < dims.length; i++) {
            s *= dims[i];
        }
        return Math.toIntExact(s);
    }

    /** Elements in the tensor; the pure-Java implementations hold it in one float[]. */
    int count() {
        return Math.toIntExact(Math.multiplyExact(Math.multiplyExact((long) n(), c()), (long) s()));
    }
}
