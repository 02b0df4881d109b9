package dev.panamabn;

/** What follows the normalisation in a fused call: the native {@code BN_ACT_*} values. */
enum Epilogue {
    NONE(0, "forward"),
    RELU(1, "forwardRelu"),
    ADD_RELU(2, "forwardAddRelu");

    final int code;
    /** The forward method that runs it, for messages. */
    final String forwardName;

    Epilogue(int code, String forwardName) {
        this.code = code;
        this.forwardName = forwardName;
    }
}
