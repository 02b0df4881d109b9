package dev.panamabn.sync;

import dev.panamabn.MpiCollective;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * SyncBatchNorm across 4 processes under {@code mpirun} (Open MPI), each rank checked against a
 * one-process reference ({@link SyncMpiMain}), and a rank that dies or stalls ending the job
 * instead of hanging it. Skipped, with one line saying why, where mpirun or the MPI shim is
 * missing.
 */
@Timeout(400)
class SyncMpiTest {

    private static final int RANKS = 4;
    private static final long BOUND_SECONDS = 120;

    private static String mpirun;

    @BeforeAll
    static void needsMpi() {
        mpirun = onPath("mpirun");
        String why = mpirun == null ? "mpirun is not on the PATH (apt-get install openmpi-bin libopenmpi-dev)"
                : !MpiCollective.isAvailable() ? "libbatchnorm_mpi does not load (built without MPI, or Open MPI's runtime is missing)"
                : null;
        if (why != null) {
            System.out.println("SyncMpiTest SKIPPED: " + why);
            Assumptions.abort(why);
        }
    }

    @Test
    void fourRanksMatchTheOneProcessReference() throws Exception {
        JavaProcess job = JavaProcess.run(command("check"), BOUND_SECONDS);
        assertEquals(0, job.exitCode(), job.output());
        for (int r = 0; r < RANKS; r++) {
            assertTrue(job.output().contains("rank " + r + " ok: "), job.output());
        }
        job.output().lines().filter(l -> l.startsWith("rank 0 ok")).forEach(l -> System.out.println("SyncMpiTest " + l));
    }

    /** Open MPI's mpirun ends the job when a rank's process exits while the others wait. */
    @Test
    void aRankThatDiesEndsTheJob() throws Exception {
        JavaProcess job = JavaProcess.run(command("die"), BOUND_SECONDS);
        assertNotEquals(0, job.exitCode(), job.output());
        assertTrue(job.output().contains("rank 2 exits with status 3"), job.output());
        assertTrue(!job.output().contains("completed without rank 2"), job.output());
    }

    /** A rank that lives but does not exchange: the others give up at the timeout, and the job ends. */
    @Test
    void aRankThatStallsEndsTheJobAtTheTimeout() throws Exception {
        long start = System.nanoTime();
        JavaProcess job = JavaProcess.run(command("stall"), BOUND_SECONDS);
        double seconds = (System.nanoTime() - start) / 1e9;
        assertNotEquals(0, job.exitCode(), job.output());
        assertTrue(job.output().contains("gave up: rank 0 waited PT2S for the other ranks of 4"), job.output());
        assertTrue(seconds < 55, "the job took " + seconds + " s: it waited for the sleeping rank");
    }

    private static List<String> command(String mode) {
        List<String> command = new ArrayList<>(List.of(mpirun, "--allow-run-as-root", "--oversubscribe", "-np",
                Integer.toString(RANKS)));
        // Small JVMs: four of them share the machine's cores.
        command.addAll(JavaProcess.java(List.of("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"),
                JavaProcess.classPath(), SyncMpiMain.class, mode));
        return command;
    }

    private static String onPath(String program) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            Path candidate = Path.of(dir, program);
            if (Files.isExecutable(candidate)) {
                return candidate.toString();
            }
        }
        return null;
    }
}
