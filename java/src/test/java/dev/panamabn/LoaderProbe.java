package dev.panamabn;

/**
 * Main class for {@link NativeLibraryTest}'s child JVMs. No argument: loads the library and makes
 * one call. {@code create}: tries twice to create a module and use it, printing each failure.
 */
final class LoaderProbe {

    private LoaderProbe() {
    }

    public static void main(String[] args) {
        if (args.length == 0) {
            System.out.println("threads " + Parallelism.threads());
            return;
        }
        for (int i = 0; i < 2; i++) {
            try (BatchNorm bn = BatchNorm.create(2)) {
                float[] y = new float[4];
                try {
                    bn.forward(new float[] {1, 2, 3, 4}, Shape.of(2, 2), y);
                    System.out.println("forward ran, counter " + bn.numBatchesTracked());
                } catch (Throwable t) {
                    System.out.println("forward failed: " + t + ", counter " + bn.numBatchesTracked());
                }
            } catch (Throwable t) {
                System.out.println("create failed: " + t.toString().replace('\n', ' '));
            }
        }
    }
}
