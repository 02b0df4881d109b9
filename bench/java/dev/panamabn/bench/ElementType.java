package dev.panamabn.bench;

/** The element type of the tensors x, y, z, dy, dx, dz, named as in the suite's CSV rows. */
enum ElementType {
    F32("f32"),
    BF16("bf16"),
    F16("f16");

    private final String label;

    ElementType(String label) {
        this.label = label;
    }

    String label() {
        return label;
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
