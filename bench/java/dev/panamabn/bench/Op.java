package dev.panamabn.bench;

/**
 * The operations the suite times, named as in its CSV rows. The fused ones are PyTorch's
 * compositions {@code relu(bn(x))} and {@code relu(bn(x) + z)}, and their backward from the fused
 * forward's output.
 */
enum Op {
    FORWARD_TRAIN("forward_train"),
    FORWARD_EVAL("forward_eval"),
    BACKWARD("backward"),
    FORWARD_TRAIN_RELU("forward_train_relu"),
    FORWARD_TRAIN_ADD_RELU("forward_train_add_relu"),
    BACKWARD_RELU("backward_relu"),
    BACKWARD_ADD_RELU("backward_add_relu");

    private final String label;

    Op(String label) {
        this.label = label;
    }

    String label() {
        return label;
    }

    /** Whether the op has a ReLU or Add+ReLU epilogue. */
    boolean fused() {
        return this != FORWARD_TRAIN && this != FORWARD_EVAL && this != BACKWARD;
    }

    boolean backward() {
        return this == BACKWARD || this == BACKWARD_RELU || this == BACKWARD_ADD_RELU;
    }

    static Op of(String label) {
        for (Op op : values()) {
            if (op.label.equals(label)) {
                return op;
            }
        }
        throw new IllegalArgumentException("op: expected one of forward_train, forward_eval, "
                + "backward, forward_train_relu, forward_train_add_relu, backward_relu, "
                + "backward_add_relu, got '" + label + "'");
    }
}
