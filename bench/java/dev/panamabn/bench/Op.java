package dev.panamabn.bench;

/** The operations the suite times, named as in its CSV rows. */
enum Op {
    FORWARD_TRAIN("forward_train"),
    FORWARD_EVAL("forward_eval"),
    BACKWARD("backward");

    private final String label;

    Op(String label) {
        this.label = label;
    }

    String label() {
        return label;
    }

    static Op of(String label) {
        for (Op op : values()) {
            if (op.label.equals(label)) {
                return op;
            }
        }
        throw new IllegalArgumentException(
                "op: expected forward_train, forward_eval or backward, got '" + label + "'");
    }
}
