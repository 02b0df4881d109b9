package dev.panamabn.bench;

import dev.panamabn.Shape;
import dev.panamabn.TensorSpec;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A tensor's dims, layout and element type, and the conversions between the suite's float32 NCHW
 * values ({@link TestData}, {@link Outputs}, the reference) and a tensor of that format: float32
 * tensors hold floats, 16-bit ones the bits of each value rounded to nearest-even (as
 * {@link dev.panamabn.DataType#fromFloat}); NHWC tensors hold (N, S, C) in that order.
 */
record TensorFormat(Dims dims, TensorLayout layout, ElementType type) {

    /** The public API's spec of such a tensor. */
    TensorSpec spec() {
        return TensorSpec.of(Shape.of(dims.dims()), layout.layout(), type.dataType());
    }

    /**
     * A new Java array holding {@code nchw}'s values in this format, as a heap segment: a
     * float[] for float32, a short[] for the 16-bit types.
     */
    MemorySegment onHeap(float[] nchw) {
        float[] ordered = layout == TensorLayout.NCHW ? nchw.clone() : toNhwc(nchw);
        return type == ElementType.F32
                ? MemorySegment.ofArray(ordered)
                : MemorySegment.ofArray(type.dataType().encode(ordered));
    }

    /** The values of a tensor in this format (native or heap), in NCHW order. */
    float[] read(MemorySegment tensor) {
        float[] ordered = type == ElementType.F32
                ? tensor.toArray(ValueLayout.JAVA_FLOAT)
                : type.dataType().decode(tensor.toArray(ValueLayout.JAVA_SHORT));
        return layout == TensorLayout.NCHW ? ordered : toNchw(ordered);
    }

    /** {@code nchw}'s values as a tensor of this format holds them: rounded to the type. */
    float[] rounded(float[] nchw) {
        return read(onHeap(nchw));
    }

    // nchw is (N,C,S), the result (N,S,C)
    private float[] toNhwc(float[] nchw) {
        int n = dims.n();
        int c = dims.c();
        int s = dims.s();
        float[] nhwc = new float[nchw.length];
        for (int b = 0; b < n; b++) {
            for (int ch = 0; ch < c; ch++) {
                for (int j = 0; j < s; j++) {
                    nhwc[(b * s + j) * c + ch] = nchw[(b * c + ch) * s + j];
                }
            }
        }
        return nhwc;
    }

    // nhwc is (N,S,C), the result (N,C,S)
    private float[] toNchw(float[] nhwc) {
        int n = dims.n();
        int c = dims.c();
        int s = dims.s();
        float[] nchw = new float[nhwc.length];
        for (int b = 0; b < n; b++) {
            for (int ch = 0; ch < c; ch++) {
                for (int j = 0; j < s; j++) {
                    nchw[(b * c + ch) * s + j] = nhwc[(b * s + j) * c + ch];
                }
            }
        }
        return nchw;
    }
}
