package dev.panamabn.bench;

import dev.panamabn.Layout;

/** How a tensor's (N, C, spatial) dims lie in memory, named as in the suite's CSV rows. */
enum TensorLayout {
    /** Channels first, (N, C, H, W) contiguous: PyTorch's default. */
    NCHW("nchw", Layout.CHANNELS_FIRST),
    /** Channels last, (N, H, W, C) contiguous: PyTorch's channels_last. */
    NHWC("nhwc", Layout.CHANNELS_LAST);

    private final String label;
    private final Layout layout;

    TensorLayout(String label, Layout layout) {
        this.label = label;
        this.layout = layout;
    }

    String label() {
        return label;
    }

    /** The public API's name for this layout. */
    Layout layout() {
        return layout;
    }

    static TensorLayout of(String label) {
        for (TensorLayout layout : values()) {
            if (layout.label.equals(label)) {
                return layout;
            }
        }
        throw new IllegalArgumentException("layout: expected nchw or nhwc, got '" + label + "'");
    }
}
