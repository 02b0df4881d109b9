package dev.panamabn;

import dev.panamabn.internal.mpi.BatchNormMpi;

import java.io.IOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Loads {@code libbatchnorm_mpi}, the MPI shim behind {@link MpiCollective}, once per class
 * loader, before any binding in {@code dev.panamabn.internal.mpi} resolves a symbol. It is
 * separate from {@code libbatchnorm} because it needs MPI's runtime, which nothing else does.
 *
 * <p>Places tried, in order:
 * <ol>
 *   <li>the file named by the system property {@value #PATH_PROPERTY} (then nothing else);</li>
 *   <li>{@code libbatchnorm_mpi.so} in the folder of the file named by {@code panamabn.library.path},
 *       when that is set: the two libraries of one build stay together;</li>
 *   <li>the class path resource {@value #RESOURCE}, beside the main library's (in place in a
 *       build tree, copied to a temporary file from a jar);</li>
 *   <li>{@code System.loadLibrary("batchnorm_mpi")} ({@code java.library.path}).</li>
 * </ol>
 */
final class MpiLibrary {

    static final String PATH_PROPERTY = "panamabn.mpi.library.path";
    static final String RESOURCE = "/native/linux-x86_64/libbatchnorm_mpi.so";
    static final String FILE_NAME = "libbatchnorm_mpi.so";
    static final String INSTALL_ADVICE = "install Open MPI (Debian, Ubuntu: apt-get install openmpi-bin libopenmpi-dev)";

    private static final Object LOCK = new Object();
    private static volatile String location;
    private static String failure;

    private MpiLibrary() {
    }

    /**
     * Loads the shim unless it is loaded already.
     *
     * @throws UnsatisfiedLinkError naming the places tried and what to install
     */
    static void ensureLoaded() {
        if (location != null) {
            return;
        }
        synchronized (LOCK) {
            if (location != null) {
                return;
            }
            if (failure != null) {
                throw new UnsatisfiedLinkError(failure);
            }
            try {
                String loaded = load(System.getProperty(PATH_PROPERTY), System.getProperty(NativeLibrary.PATH_PROPERTY),
                        RESOURCE);
                checkSymbols(loaded);
                location = loaded;
            } catch (UnsatisfiedLinkError e) {
                failure = e.getMessage();
                throw e;
            }
        }
    }

    /** Whether the shim loads (loading it if needed); never throws for a missing library. */
    static boolean isAvailable() {
        try {
            ensureLoaded();
            return true;
        } catch (UnsatisfiedLinkError | IllegalCallerException e) {
            return false;
        }
    }

    /** Where the shim was loaded from; loads it first if needed. */
    static String location() {
        ensureLoaded();
        return location;
    }

    /**
     * Tries the places in order; package-private so that tests can drive it with places that fail.
     *
     * @throws UnsatisfiedLinkError naming every place tried, why each failed, and what to install
     */
    static String load(String overridePath, String mainLibraryPath, String resource) {
        if (overridePath != null) {
            Path path = Path.of(overridePath).toAbsolutePath();
            String place = "system property " + PATH_PROPERTY + "=" + overridePath;
            if (!Files.isRegularFile(path)) {
                throw notLoaded(List.of(place + ": no such file"));
            }
            try {
                NativeLibrary.systemLoad(path);
            } catch (UnsatisfiedLinkError e) {
                throw notLoaded(List.of(place + ": " + e.getMessage()));
            }
            return path + " (from " + PATH_PROPERTY + ")";
        }
        List<String> tried = new ArrayList<>();
        tried.add("system property " + PATH_PROPERTY + ": not set");

        if (mainLibraryPath != null) {
            Path parent = Path.of(mainLibraryPath).toAbsolutePath().getParent();
            Path sibling = parent == null ? Path.of(FILE_NAME) : parent.resolve(FILE_NAME);
            String place = "beside " + NativeLibrary.PATH_PROPERTY + "=" + mainLibraryPath + " (" + sibling + ")";
            if (!Files.isRegularFile(sibling)) {
                tried.add(place + ": no such file");
            } else {
                try {
                    NativeLibrary.systemLoad(sibling);
                    return sibling + " (beside " + NativeLibrary.PATH_PROPERTY + ")";
                } catch (UnsatisfiedLinkError e) {
                    throw notLoaded(List.of(place + ": " + e.getMessage()));
                }
            }
        }

        URL url = MpiLibrary.class.getResource(resource);
        String resourcePlace = "class path resource " + resource;
        if (url == null) {
            tried.add(resourcePlace + ": not found (this build of panama-batchnorm was made without MPI)");
        } else {
            try {
                Path path = "file".equals(url.getProtocol()) ? Path.of(url.toURI())
                        : NativeLibrary.extract(url, "libbatchnorm_mpi-");
                NativeLibrary.systemLoad(path);
                return path + " (from " + resourcePlace + ")";
            } catch (UnsatisfiedLinkError e) {
                // Found but not loadable: MPI's runtime is missing. Another place cannot help.
                throw notLoaded(List.of(resourcePlace + " (" + url + "): " + e.getMessage()));
            } catch (IOException | URISyntaxException e) {
                tried.add(resourcePlace + " (" + url + "): " + e.getMessage());
            }
        }

        try {
            NativeLibrary.loadLibrary("batchnorm_mpi");
            return FILE_NAME + " (from java.library.path)";
        } catch (UnsatisfiedLinkError e) {
            tried.add("System.loadLibrary(\"batchnorm_mpi\") with java.library.path="
                    + System.getProperty("java.library.path") + ": " + e.getMessage());
        }
        throw notLoaded(tried);
    }

    /** Every C function the bindings link. */
    static List<String> boundSymbols() {
        return NativeLibrary.boundSymbols(BatchNormMpi.class);
    }

    /** Refuses a file without every bound symbol before a binding's class initialiser fails on it. */
    private static void checkSymbols(String loaded) {
        NativeLibrary.checkSymbols(loaded, boundSymbols(), "libbatchnorm_mpi");
    }

    private static UnsatisfiedLinkError notLoaded(List<String> tried) {
        boolean runtimeMissing = tried.stream().anyMatch(t -> t.contains("libmpi"));
        StringBuilder message = new StringBuilder(runtimeMissing
                ? "MPI is not available: libbatchnorm_mpi needs Open MPI's runtime (libmpi), which is missing: "
                        + INSTALL_ADVICE
                : "MPI is not available: libbatchnorm_mpi could not be loaded; panama-batchnorm builds it only "
                        + "where CMake finds MPI: " + INSTALL_ADVICE + " and rebuild (mvn verify), or name the file with -D"
                        + PATH_PROPERTY);
        message.append(". Tried:");
        for (int i = 0; i < tried.size(); i++) {
            message.append("\n  ").append(i + 1).append(". ").append(tried.get(i));
        }
        return new UnsatisfiedLinkError(message.toString());
    }
}
