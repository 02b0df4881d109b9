package dev.panamabn.sync;

import dev.panamabn.MpiCollective;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Without MPI, MpiCollective says what to install and the rest of the library works: each case
 * in a fresh JVM (a failed load is remembered for the JVM's life).
 */
@Timeout(120)
class MpiUnavailableTest {

    private static final String ADVICE = "apt-get install openmpi-bin libopenmpi-dev";

    @Test
    void aNamedShimThatDoesNotExist() throws Exception {
        String out = probe(List.of("-Dpanamabn.mpi.library.path=/nonexistent/libbatchnorm_mpi.so"), JavaProcess.classPath());
        assertTrue(out.contains("available false"), out);
        assertTrue(out.contains("error UnsatisfiedLinkError: MPI is not available"), out);
        assertTrue(out.contains(ADVICE), out);
        assertTrue(out.contains("panamabn.mpi.library.path=/nonexistent/libbatchnorm_mpi.so: no such file"), out);
        assertTrue(out.contains("batchnorm 1 "), out);
    }

    /** A build made where CMake found no MPI: no shim anywhere. */
    @Test
    void aBuildWithoutTheShim() throws Exception {
        Path classes = Path.of(MpiCollective.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        Path copy = Files.createTempDirectory("panamabn-no-mpi-");
        try {
            copyTree(classes, copy);
            Files.deleteIfExists(copy.resolve("native/linux-x86_64/libbatchnorm_mpi.so"));
            String classPath = JavaProcess.classPath().replace(classes.toString(), copy.toString());
            assertTrue(classPath.contains(copy.toString()), classPath);
            String out = probe(List.of("-Djava.library.path=/nonexistent"), classPath);
            assertTrue(out.contains("available false"), out);
            assertTrue(out.contains("builds it only where CMake finds MPI"), out);
            assertTrue(out.contains(ADVICE), out);
            assertTrue(out.contains("class path resource /native/linux-x86_64/libbatchnorm_mpi.so: not found"), out);
            assertTrue(out.contains("batchnorm 1 "), out);
        } finally {
            deleteTree(copy);
        }
    }

    /**
     * The shim is there but Open MPI's runtime is not: the shim's copy names a libmpi that no
     * machine has (same length, so the ELF stays valid), which is what a loader sees on a machine
     * without Open MPI.
     */
    @Test
    void aShimWithoutOpenMpisRuntime() throws Exception {
        URL shim = MpiCollective.class.getResource("/native/linux-x86_64/libbatchnorm_mpi.so");
        if (shim == null) {
            System.out.println("MpiUnavailableTest.aShimWithoutOpenMpisRuntime SKIPPED: this build has no libbatchnorm_mpi.so (no MPI at build time)");
            Assumptions.abort("no libbatchnorm_mpi.so in this build");
        }
        byte[] bytes = Files.readAllBytes(Path.of(shim.toURI()));
        int patched = replaceAll(bytes, "libmpi.so.40", "libmpi.so.99");
        assertTrue(patched > 0, "the shim names no libmpi.so.40");
        Path copy = Files.createTempFile("libbatchnorm_mpi-", ".so");
        try {
            Files.write(copy, bytes);
            String out = probe(List.of("-Dpanamabn.mpi.library.path=" + copy), JavaProcess.classPath());
            assertTrue(out.contains("available false"), out);
            assertTrue(out.contains("needs Open MPI's runtime (libmpi), which is missing"), out);
            assertTrue(out.contains(ADVICE), out);
            assertTrue(out.contains("libmpi.so.99"), out);
            assertTrue(out.contains("batchnorm 1 "), out);
        } finally {
            Files.deleteIfExists(copy);
        }
    }

    private static String probe(List<String> options, String classPath) throws IOException, InterruptedException {
        JavaProcess p = JavaProcess.run(JavaProcess.java(options, classPath, MpiProbe.class), 60);
        assertEquals(0, p.exitCode(), p.output());
        return p.output();
    }

    private static int replaceAll(byte[] bytes, String from, String to) {
        byte[] a = from.getBytes(StandardCharsets.US_ASCII);
        byte[] b = to.getBytes(StandardCharsets.US_ASCII);
        int count = 0;
        outer:
        for (int i = 0; i + a.length <= bytes.length; i++) {
            for (int j = 0; j < a.length; j++) {
                if (bytes[i + j] != a[j]) {
                    continue outer;
                }
            }
            System.arraycopy(b, 0, bytes, i, b.length);
            count++;
        }
        return count;
    }

    private static void copyTree(Path from, Path to) throws IOException {
        try (Stream<Path> files = Files.walk(from)) {
            for (Path p : (Iterable<Path>) files::iterator) {
                Path target = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(target);
                } else {
                    Files.copy(p, target);
                }
            }
        }
    }

    private static void deleteTree(Path root) throws IOException {
        try (Stream<Path> files = Files.walk(root)) {
            for (Path p : (Iterable<Path>) files.sorted(Comparator.reverseOrder())::iterator) {
                Files.delete(p);
            }
        }
    }
}
