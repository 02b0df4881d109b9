package dev.panamabn;

import dev.panamabn.internal.BatchNormNative;

import java.io.IOException;
import java.lang.foreign.SymbolLookup;
import java.lang.reflect.Method;
import java.io.InputStream;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;

/**
 * Loads {@code libbatchnorm} once per class loader, and checks that it has every symbol the
 * bindings use, before any binding in
 * {@code dev.panamabn.internal} resolves a symbol (the bindings look symbols up through
 * {@link java.lang.foreign.SymbolLookup#loaderLookup()}, which sees libraries loaded by
 * {@link System#load} from this class loader).
 *
 * <p>Places tried, in order:
 * <ol>
 *   <li>the file named by the system property {@value #PATH_PROPERTY}, when it is set (then
 *       nothing else is tried: an explicit choice that fails is an error, not a reason to pick
 *       another library);</li>
 *   <li>the class path resource {@value #RESOURCE}: used in place when it is a file (a build
 *       tree), copied to a temporary file first when it is inside a jar;</li>
 *   <li>{@code System.loadLibrary("batchnorm")}, which searches {@code java.library.path}.</li>
 * </ol>
 */
final class NativeLibrary {

    static final String PATH_PROPERTY = "panamabn.library.path";
    static final String RESOURCE = "/native/linux-x86_64/libbatchnorm.so";
    static final String LIBRARY_NAME = "batchnorm";

    static final String NATIVE_ACCESS_ADVICE = "native access is not enabled for panama-batchnorm: start java with ";
    private static final String ADDRESS_SUFFIX = "$address";

    private static final Object LOCK = new Object();
    private static volatile String location;
    private static String failure;

    private NativeLibrary() {
    }

    /** Loads the library unless it is loaded already; safe to call from any thread, any number of times. */
    static void ensureLoaded() {
        if (location != null) {
            return;
        }
        synchronized (LOCK) {
            if (location != null) {
                return;
            }
            // A failed load is not retried: the places are the same, and so would be the answer.
            if (failure != null) {
                throw new UnsatisfiedLinkError(failure);
            }
            try {
                // Asked before the load: after a load it allowed, the JDK marks the module enabled.
                boolean nativeAccess = NativeLibrary.class.getModule().isNativeAccessEnabled();
                String loaded = load(System.getProperty(PATH_PROPERTY), RESOURCE, LIBRARY_NAME);
                checkSymbols(loaded, boundSymbols());
                if (!nativeAccess) {
                    warnNativeAccessDisabled();
                }
                location = loaded;
            } catch (UnsatisfiedLinkError e) {
                failure = e.getMessage();
                throw e;
            }
        }
    }

    /** Where the library was loaded from (a path, or a description of the place); loads it first if needed. */
    static String location() {
        ensureLoaded();
        return location;
    }

    /**
     * Tries the places in order and loads the first that works; returns a description of where
     * the library came from. Package-private so that tests can drive it with places that fail.
     *
     * @throws UnsatisfiedLinkError naming every place tried and why each failed
     */
    static String load(String overridePath, String resource, String libraryName) {
        if (overridePath != null) {
            Path path = Path.of(overridePath).toAbsolutePath();
            String place = "system property " + PATH_PROPERTY + "=" + overridePath;
            if (!Files.isRegularFile(path)) {
                throw notLoaded(List.of(place + ": no such file"));
            }
            try {
                systemLoad(path);
            } catch (UnsatisfiedLinkError e) {
                throw notLoaded(List.of(place + ": " + e.getMessage()));
            }
            return path + " (from " + PATH_PROPERTY + ")";
        }

        List<String> tried = new ArrayList<>();
        tried.add("system property " + PATH_PROPERTY + ": not set");

        URL url = NativeLibrary.class.getResource(resource);
        String resourcePlace = "class path resource " + resource;
        if (url == null) {
            tried.add(resourcePlace + ": not found" + platformNote());
        } else {
            try {
                Path path = "file".equals(url.getProtocol()) ? Path.of(url.toURI()) : extract(url, "libbatchnorm-");
                systemLoad(path);
                return path + " (from " + resourcePlace + ")";
            } catch (IOException | URISyntaxException | UnsatisfiedLinkError e) {
                tried.add(resourcePlace + " (" + url + "): " + e.getMessage());
            }
        }

        try {
            loadLibrary(libraryName);
            return "lib" + libraryName + ".so (from java.library.path)";
        } catch (UnsatisfiedLinkError e) {
            tried.add("System.loadLibrary(\"" + libraryName + "\") with java.library.path="
                    + System.getProperty("java.library.path") + ": " + e.getMessage());
        }
        throw notLoaded(tried);
    }

    /**
     * Every C function the generated bindings link, read from the bindings themselves (jextract
     * writes a {@code name$address()} method for each): no second list to keep in step.
     */
    static List<String> boundSymbols() {
        return boundSymbols(BatchNormNative.class);
    }

    /** Every C function a bindings class links, from its {@code name$address()} methods. */
    static List<String> boundSymbols(Class<?> bindings) {
        List<String> symbols = new ArrayList<>();
        for (Method method : bindings.getMethods()) {
            String name = method.getName();
            if (name.endsWith(ADDRESS_SUFFIX) && method.getParameterCount() == 0) {
                symbols.add(name.substring(0, name.length() - ADDRESS_SUFFIX.length()));
            }
        }
        symbols.sort(null);
        return symbols;
    }

    /**
     * Refuses a library that loaded but lacks a symbol the bindings use (another file, or another
     * version), before any module exists: otherwise the first call would fail inside a binding's
     * class initialiser and leave that class dead for the JVM's life.
     *
     * @throws UnsatisfiedLinkError naming the library and the first missing symbol
     */
    static void checkSymbols(String loaded, List<String> symbols) {
        checkSymbols(loaded, symbols, "libbatchnorm");
    }

    /** As {@link #checkSymbols(String, List)}, for the library called {@code name}. */
    static void checkSymbols(String loaded, List<String> symbols, String name) {
        SymbolLookup lookup = SymbolLookup.loaderLookup();
        for (String symbol : symbols) {
            if (lookup.find(symbol).isEmpty()) {
                throw new UnsatisfiedLinkError("the library " + loaded + " lacks the symbol " + symbol
                        + " that the bindings use: it is not the " + name + " of this version of panama-batchnorm");
            }
        }
    }

    /** The command-line flag that grants this code native access, for messages. */
    static String nativeAccessFlag() {
        Module module = NativeLibrary.class.getModule();
        return "--enable-native-access=" + (module.isNamed() ? module.getName() : "ALL-UNNAMED");
    }

    @SuppressWarnings("restricted") // loading a library is this class's purpose
    static void systemLoad(Path path) {
        try {
            System.load(path.toString());
        } catch (IllegalCallerException e) {
            // Thrown under --illegal-native-access=deny when the flag is missing.
            throw new IllegalCallerException(NATIVE_ACCESS_ADVICE + nativeAccessFlag(), e);
        }
    }

    @SuppressWarnings("restricted") // loading a library is this class's purpose
    static void loadLibrary(String name) {
        System.loadLibrary(name);
    }

    /** Copies a library out of a jar into a temporary file (deleted at exit) that System.load can read. */
    static Path extract(URL url, String prefix) throws IOException {
        Path file = Files.createTempFile(prefix, ".so");
        file.toFile().deleteOnExit();
        try (InputStream in = url.openStream()) {
            Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
        }
        return file;
    }

    /**
     * The library's one line about native access, after a load the JDK allowed without it (under
     * {@code --illegal-native-access=warn}, the default, the JDK prints its own warning too; under
     * {@code deny} the load fails instead, with the same advice in the exception's message).
     */
    private static void warnNativeAccessDisabled() {
        System.getLogger(NativeLibrary.class.getName()).log(System.Logger.Level.WARNING, NATIVE_ACCESS_ADVICE
                + nativeAccessFlag());
    }

    private static String platformNote() {
        String os = System.getProperty("os.name");
        String arch = System.getProperty("os.arch");
        boolean supported = "Linux".equals(os) && ("amd64".equals(arch) || "x86_64".equals(arch));
        return supported ? "" : " (the jar carries a library for Linux x86-64 only; this is " + os + " " + arch + ")";
    }

    private static UnsatisfiedLinkError notLoaded(List<String> tried) {
        StringBuilder message = new StringBuilder("libbatchnorm could not be loaded; tried:");
        for (int i = 0; i < tried.size(); i++) {
            message.append("\n  ").append(i + 1).append(". ").append(tried.get(i));
        }
        return new UnsatisfiedLinkError(message.toString());
    }
}
