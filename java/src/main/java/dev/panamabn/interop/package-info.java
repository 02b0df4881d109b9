/**
 * Tensors and parameters from elsewhere: NumPy's {@code .npy} and {@code .npz} files
 * ({@link dev.panamabn.interop.Npy}, {@link dev.panamabn.interop.Npz}) and safetensors
 * ({@link dev.panamabn.interop.SafeTensors}) read into and written from {@code MemorySegment}s;
 * a {@link dev.panamabn.BatchNorm}'s state under PyTorch's names
 * ({@link dev.panamabn.interop.BatchNormState}); eval mode folded into the preceding layer
 * ({@link dev.panamabn.interop.InferenceFolding}); and ONNX's {@code BatchNormalization} operator
 * with ONNX's semantics ({@link dev.panamabn.interop.OnnxBatchNormalization}).
 *
 * <p>Unless otherwise noted, passing null to a method of a class in this package throws a
 * {@code NullPointerException}. Conventions that differ between frameworks are listed in
 * {@code docs/INTEROP.md}.
 */
package dev.panamabn.interop;
