/**
 * BatchNorm in native code with PyTorch's semantics, on float32, bfloat16 and float16 tensors in
 * channels-first or channels-last layout, called without copies.
 *
 * <ul>
 *   <li>{@link dev.panamabn.BatchNorm}: the module (state in native memory; forward, fused
 *       forward with ReLU or Add+ReLU, backward; and the statistics as separate phases).</li>
 *   <li>{@link dev.panamabn.BatchNormOptions}: its configuration (momentum convention,
 *       running-variance rule); {@link dev.panamabn.BackwardOption}: options of a backward call.</li>
 *   <li>{@link dev.panamabn.TensorSpec}, {@link dev.panamabn.Shape}, {@link dev.panamabn.Layout},
 *       {@link dev.panamabn.DataType}: a tensor's shape, memory layout and element type (with
 *       float &harr; bfloat16/float16 conversions).</li>
 *   <li>{@link dev.panamabn.ChannelStats}, {@link dev.panamabn.GradSums}: the per-channel
 *       statistics and gradient sums that the phases produce, merge and consume.</li>
 *   <li>{@link dev.panamabn.SyncBatchNorm} with a {@link dev.panamabn.Collective}
 *       ({@link dev.panamabn.InProcessCollective} for threads, {@link dev.panamabn.MpiCollective}
 *       for processes; {@link dev.panamabn.CollectiveException} when an exchange fails): BatchNorm
 *       over the statistics of the global batch.</li>
 *   <li>{@link dev.panamabn.Parallelism}: the native thread count.</li>
 *   <li>{@link dev.panamabn.BatchNormException}: a native status that validation did not catch.</li>
 * </ul>
 *
 * Tensors from NumPy, PyTorch state and ONNX's node are in {@link dev.panamabn.interop}.
 *
 * The native library is loaded on first use from the file named by the system property
 * {@code panamabn.library.path}, else from the jar ({@code /native/linux-x86_64/libbatchnorm.so}),
 * else from {@code java.library.path}; it needs gcc's OpenMP runtime, {@code libgomp.so.1}. Start
 * java with {@code --enable-native-access=dev.panamabn} when the library is on the module path,
 * {@code --enable-native-access=ALL-UNNAMED} when it is on the class path.
 */
package dev.panamabn;
