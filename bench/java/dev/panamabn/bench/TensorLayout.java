package dev.panamabn.bench;

/** How a tensor's (N, C, spatial) dims lie in memory, named as in the suite's CSV rows. */
enum TensorLayout {
    /** Channels first, (N, C, H, W) contiguous: PyTorch's default. */
    NCHW("nchw"),
    /** Channels last, (N, H, W, C) contiguous: PyTorch's channels_last. */
    NHWC("nhwc");

    private final String label;

    TensorLayout(String label) {
        this.label = label;
    }

    String label() {
        return label;
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
