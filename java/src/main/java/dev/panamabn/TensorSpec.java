package dev.panamabn;

import java.util.Objects;

/**
 * What a call needs to know of its tensors besides their memory: the logical shape
 * {@code (N, C, spatial...)}, the {@link Layout} and the {@link DataType}. Every tensor of one
 * call (x, y, the residual z, the gradients) has the same spec.
 *
 * <p>A {@link Shape} is itself the spec of a float32 channels-first tensor, so
 * {@code bn.forward(x, Shape.of(32, 64, 56, 56), y)} reads as before; other tensors are
 * described with {@link #of(Shape, Layout, DataType)} or the shape's helpers:
 *
 * {@snippet :
 * TensorSpec nhwc = Shape.of(32, 64, 56, 56).channelsLast();                       // float32 NHWC
 * TensorSpec bf16 = TensorSpec.of(Shape.of(32, 64, 56, 56), Layout.CHANNELS_LAST, DataType.BFLOAT16);
 * }
 *
 * <p>Two specs are equal when shape, layout and type are equal, whichever implementation holds
 * them ({@link #equalTo}); a shape and {@code TensorSpec.of(shape, CHANNELS_FIRST, FLOAT32)}
 * describe the same tensor.
 */
public sealed interface TensorSpec permits Shape, TensorSpec.Of {

    /**
     * The logical shape {@code (N, C, spatial...)}.
     *
     * @return the shape
     */
    Shape shape();

    /**
     * The memory layout.
     *
     * @return the layout
     */
    Layout layout();

    /**
     * The element type.
     *
     * @return the element type
     */
    DataType dataType();

    /**
     * The bytes a tensor of this spec occupies.
     *
     * @return {@code N * C * S * dataType().byteSize()}
     */
    default long byteSize() {
        return shape().elementCount() * dataType().byteSize();
    }

    /**
     * Whether {@code other} describes the same tensors: same shape, layout and type.
     *
     * @param other another spec
     * @return true when shape, layout and type are equal
     */
    default boolean equalTo(TensorSpec other) {
        return shape().equals(other.shape()) && layout() == other.layout() && dataType() == other.dataType();
    }

    /**
     * A spec from its parts.
     *
     * @param shape the logical shape {@code (N, C, spatial...)}
     * @param layout the memory layout
     * @param dataType the element type
     * @return the spec
     * @throws NullPointerException when an argument is null
     */
    static TensorSpec of(Shape shape, Layout layout, DataType dataType) {
        return new Of(shape, layout, dataType);
    }

    /**
     * The spec of the same shape with another layout.
     *
     * @param layout the memory layout
     * @return the spec
     */
    default TensorSpec with(Layout layout) {
        return of(shape(), layout, dataType());
    }

    /**
     * The spec of the same shape with another element type.
     *
     * @param dataType the element type
     * @return the spec
     */
    default TensorSpec with(DataType dataType) {
        return of(shape(), layout(), dataType);
    }

    /**
     * The spec of a shape, layout and type.
     *
     * @param shape the logical shape
     * @param layout the memory layout
     * @param dataType the element type
     */
    record Of(Shape shape, Layout layout, DataType dataType) implements TensorSpec {

        /**
         * Checks that no part is null.
         *
         * @throws NullPointerException when a part is null
         */
        public Of {
            Objects.requireNonNull(shape, "shape");
            Objects.requireNonNull(layout, "layout");
            Objects.requireNonNull(dataType, "dataType");
        }

        /** Like {@code [32, 64, 56, 56] CHANNELS_LAST BFLOAT16}. */
        @Override
        public String toString() {
            return shape + " " + layout + " " + dataType;
        }
    }
}
