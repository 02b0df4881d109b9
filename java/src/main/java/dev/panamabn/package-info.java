/**
 * BatchNorm for float32 tensors in native code, with PyTorch's semantics.
 *
 * <ul>
 *   <li>{@link dev.panamabn.BatchNorm}: the module (state in native memory, forward, backward).</li>
 *   <li>{@link dev.panamabn.BatchNormOptions}, {@link dev.panamabn.Shape}: its configuration and
 *       the tensors' shapes; {@link dev.panamabn.BackwardOption}: options of a backward call.</li>
 *   <li>{@link dev.panamabn.Parallelism}: the native thread count.</li>
 *   <li>{@link dev.panamabn.BatchNormException}: a native status that validation did not catch.</li>
 * </ul>
 *
 * The native library is loaded on first use from the file named by the system property
 * {@code panamabn.library.path}, else from the jar ({@code /native/linux-x86_64/libbatchnorm.so}),
 * else from {@code java.library.path}; it needs gcc's OpenMP runtime, {@code libgomp.so.1}. Start
 * java with {@code --enable-native-access=dev.panamabn} when the library is on the module path,
 * {@code --enable-native-access=ALL-UNNAMED} when it is on the class path.
 */
package dev.panamabn;
