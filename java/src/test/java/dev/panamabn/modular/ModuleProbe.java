package dev.panamabn.modular;

import dev.panamabn.BatchNorm;
import dev.panamabn.Shape;

import java.lang.module.ModuleDescriptor;

/**
 * Main class of {@link ModuleDescriptorTest}'s child JVM, which has the library on its module
 * path and this class on the class path: prints what a modular user sees, then runs a call.
 */
public final class ModuleProbe {

    private ModuleProbe() {
    }

    public static void main(String[] args) {
        Module module = BatchNorm.class.getModule();
        ModuleDescriptor descriptor = module.getDescriptor();
        System.out.println("module " + module.getName());
        descriptor.exports().stream().map(e -> "exports " + e).sorted().forEach(System.out::println);
        System.out.println("packages " + descriptor.packages().stream().sorted().toList());
        System.out.println("native access " + module.isNativeAccessEnabled());
        try (BatchNorm bn = BatchNorm.create(2)) {
            float[] y = new float[4];
            bn.forward(new float[] {1, 2, 3, 5}, Shape.of(2, 2), y);
            System.out.println("forward ran, counter " + bn.numBatchesTracked());
        }
        try {
            Class<?> bindings = Class.forName("dev.panamabn.internal.BatchNormNative");
            bindings.getMethod("bn_get_num_threads").invoke(null);
            System.out.println("internal reachable");
        } catch (ReflectiveOperationException | RuntimeException e) {
            System.out.println("internal refused: " + e.getClass().getSimpleName());
        }
    }
}
