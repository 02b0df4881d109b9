package dev.panamabn.bench;

import dev.panamabn.DataType;

/** The element type of the tensors x, y, z, dy, dx, dz, named as in the suite's CSV rows. */
enum ElementType {
    F32("f32", DataType.FLOAT32),
    BF16("bf16", DataType.BFLOAT16),
    F16("f16", DataType.FLOAT16);

    private final String label;
    private final DataType dataType;

    ElementType(String label, DataType dataType) {
        this.label = label;
        this.dataType = dataType;
    }

    String label() {
        return label;
    }

    /** The public API's name for this type. */
    DataType dataType() {
        return dataType;
    }

    static ElementType of(String label) {
        for (ElementType type : values()) {
            if (type.label.equals(label)) {
                return type;
            }
        }
        throw new IllegalArgumentException("dtype: expected f32, bf16 or f16, got '" + label + "'");
    }
}
