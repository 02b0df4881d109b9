package dev.panamabn;

/** Main class for {@link NativeLibraryTest}'s child JVMs: loads the library and makes one call. */
final class LoaderProbe {

    private LoaderProbe() {
    }

    public static void main(String[] args) {
        System.out.println("threads " + Parallelism.threads());
    }
}
