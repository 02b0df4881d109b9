package dev.panamabn;

/**
 * How the dimensions of a tensor {@code (N, C, spatial...)} lie in memory. The {@link Shape} is
 * always given in PyTorch's logical order {@code (N, C, ...)}, whatever the layout, as PyTorch
 * reports {@code x.shape} for a {@code channels_last} tensor.
 */
public enum Layout {
    /** {@code (N, C, S)} contiguous: NCHW, NCL, NCDHW; PyTorch's default. */
    CHANNELS_FIRST(0),
    /**
     * {@code (N, S, C)} contiguous: NHWC, NLC, NDHWC; PyTorch's {@code channels_last} and
     * {@code channels_last_3d}, TensorFlow's default.
     */
    CHANNELS_LAST(1);

    private final int code;

    Layout(int code) {
        this.code = code;
    }

    /** The native {@code BN_LAYOUT_*} value. */
    int code() {
        return code;
    }
}
