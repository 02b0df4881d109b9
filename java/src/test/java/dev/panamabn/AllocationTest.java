package dev.panamabn;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Steady-state calls allocate nothing on the Java heap, on both paths: module buffers are reused,
 * and the array wrappers of the float[] path are removed by escape analysis once the JIT has
 * compiled the caller. Measured in a fresh JVM running a plain training-style loop
 * ({@link AllocationProbe}): inside this test JVM, the other tests' mix of segment types skews
 * the JIT's profiles, which says nothing about an application's steady state.
 *
 * <p>Whether escape analysis removes the float[] wrappers depends on one JIT decision per JVM:
 * C2 must judge the JDK's {@code SegmentFactories.fromArray} call hot enough to inline. On the
 * development machine about one fresh JVM in ten (3 of 50) never did, and kept 96-216 bytes
 * per float[] call for its whole life. So the probe gets up to {@value #JVMS} fresh JVMs, each
 * reported; one that reaches zero on every path shows the wrappers can be removed, and a change
 * that makes them escape fails all of them.
 */
class AllocationTest {

    private static final int JVMS = 3;

    @Test
    void forwardAndBackwardAllocateNothingOnceCompiled() throws Exception {
        List<String> command = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElse("java"),
                NativeLibrary.nativeAccessFlag()));
        String library = System.getProperty(NativeLibrary.PATH_PROPERTY);
        if (library != null) {
            command.add("-D" + NativeLibrary.PATH_PROPERTY + "=" + library);
        }
        command.addAll(List.of("-cp", System.getProperty("java.class.path"), AllocationProbe.class.getName()));
        StringBuilder outputs = new StringBuilder();
        int exit = -1;
        for (int jvm = 1; jvm <= JVMS && exit != 0; jvm++) {
            Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
            String output = new String(p.getInputStream().readAllBytes());
            assertTrue(p.waitFor(2, TimeUnit.MINUTES), "the probe did not finish");
            exit = p.exitValue();
            outputs.append("JVM ").append(jvm).append(": ").append(output);
        }
        System.out.print("AllocationTest: " + outputs);
        assertEquals(0, exit, outputs.toString());
    }
}
