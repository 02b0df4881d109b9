/**
 * BatchNorm for float32 tensors in native code, with PyTorch's semantics: see
 * {@link dev.panamabn.BatchNorm}. The generated bindings ({@code dev.panamabn.internal}) are not
 * exported. Callers on the module path start java with {@code --enable-native-access=dev.panamabn}.
 */
module dev.panamabn {
    exports dev.panamabn;
    exports dev.panamabn.interop;

    requires tools.jackson.core;
}
