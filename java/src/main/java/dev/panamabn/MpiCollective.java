package dev.panamabn;

import dev.panamabn.internal.mpi.BatchNormMpi;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A {@link Collective} over MPI processes, one rank per process, for data-parallel training on
 * one or many machines: start the program with {@code mpirun -np K java ...}. Reaches MPI through
 * {@code libbatchnorm_mpi}, a thin C shim (bindings in the same layout as the main library's),
 * so Java never binds an MPI implementation's handle types. The library and the jar work without
 * MPI; this class needs it at run time, and says what to install when it is missing.
 *
 * {@snippet :
 * try (MpiCollective world = MpiCollective.world();              // MPI_Init if needed
 *      SyncBatchNorm bn = SyncBatchNorm.create(BatchNormOptions.of(64), world)) {
 *     // rank world.rank() trains on its shard of every batch
 * }
 * }
 *
 * <p><b>Communicators.</b> {@link #world()} works on a duplicate of {@code MPI_COMM_WORLD};
 * {@link #of(int, Duration)} on a duplicate of the caller's communicator, passed as its Fortran
 * handle ({@code MPI_Comm_c2f}, an {@code int} in every MPI), for a program that uses MPI itself.
 * The duplicate keeps these messages apart from the program's own, and has
 * {@code MPI_ERRORS_RETURN} set, so an MPI failure becomes an exception here instead of killing
 * the process inside MPI.
 *
 * <p><b>Exchanges.</b> {@link #allgather} first gathers every rank's length, then the values
 * (two {@code MPI_Iallgather} calls): ranks that pass different lengths all get a
 * {@link CollectiveException} naming every rank's length, instead of MPI's undefined behaviour.
 * The values travel as raw doubles: every rank receives the same bits.
 *
 * <p><b>Failures.</b> When a rank's process ends (an exception that reaches {@code main}, a
 * crash, a kill), Open MPI's {@code mpirun} ends the whole job with an error, also when the
 * process exits with status 0 without finalising MPI. What MPI cannot tell is a rank that lives
 * but does not call, a rank that took another path: every exchange therefore waits at most
 * {@link #timeout()} ({@linkplain #DEFAULT_TIMEOUT 30 minutes} unless chosen), polling with a
 * back-off, then throws. After a timeout or an MPI error the collective is broken: it refuses
 * every later call, and MPI is never finalised in this process, so the process should end and let
 * {@code mpirun} end the job. A rank that fails outside an exchange can end the job at once with
 * {@link #abort(int)}.
 *
 * <p><b>Threads and lifetime.</b> MPI is initialised with {@code MPI_THREAD_SERIALIZED} (when
 * this class initialises it): any thread may call, and calls of all collectives of the process
 * run one at a time. If the program initialised MPI itself with a lower thread level, call from
 * the thread that initialised it. When this class initialised MPI, closing the last open
 * collective finalises MPI (it cannot start again in the process): keep one open for the whole
 * job. {@code close()} is collective too: every rank closes, in the same order.
 */
public final class MpiCollective implements Collective, AutoCloseable {

    /** The default time an exchange waits for the slowest rank: PyTorch's default for its process groups. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofMinutes(30);

    private static final int ERROR_TEXT = 512;

    // The status codes of bn_mpi.h (jextract is asked for functions only; MpiBindingsTest checks these).
    static final int BN_MPI_OK = 0;
    static final int BN_MPI_ERR_MPI = 1;
    static final int BN_MPI_ERR_FINALIZED = 3;
    static final int BN_MPI_ERR_BAD_ARGUMENT = 4;
    static final int BN_MPI_ERR_LENGTH_MISMATCH = 5;
    static final int BN_MPI_ERR_TIMEOUT = 6;

    // MPI_THREAD_SERIALIZED: one MPI call at a time in the whole process, whichever collective.
    private static final ReentrantLock MPI = new ReentrantLock();
    private static boolean initializedHere;
    private static int open;
    private static boolean anyBroken;
    private static boolean finalized;

    private final int communicator;
    private final int rank;
    private final int size;
    private final Duration timeout;
    private final double timeoutSeconds;
    private final Arena arena = Arena.ofAuto();
    private MemorySegment send;
    private MemorySegment gathered;
    private long capacity = -1;
    private final MemorySegment lengths;
    private final MemorySegment mpiError;
    private String broken;
    private boolean closed;

    private MpiCollective(int communicator, int rank, int size, Duration timeout) {
        this.communicator = communicator;
        this.rank = rank;
        this.size = size;
        this.timeout = timeout;
        this.timeoutSeconds = timeout.getSeconds() + timeout.getNano() * 1e-9;
        this.lengths = arena.allocate(ValueLayout.JAVA_LONG, size);
        this.mpiError = arena.allocate(ValueLayout.JAVA_INT);
    }

    /**
     * A collective over every process of the job ({@code MPI_COMM_WORLD}), with the
     * {@linkplain #DEFAULT_TIMEOUT default timeout}. Initialises MPI unless it is; collective: every
     * rank calls it.
     *
     * @return this process's member
     * @throws UnsatisfiedLinkError when MPI or the shim is missing (the message says what to install)
     * @throws IllegalStateException when MPI was finalised in this process
     * @throws CollectiveException when MPI fails
     */
    public static MpiCollective world() {
        return world(DEFAULT_TIMEOUT);
    }

    /**
     * A collective over {@code MPI_COMM_WORLD} with a chosen timeout; as {@link #world()}.
     *
     * @param timeout how long an exchange waits for the slowest rank, positive
     * @return this process's member
     */
    public static MpiCollective world(Duration timeout) {
        checkTimeout(timeout);
        MpiLibrary.ensureLoaded();
        MPI.lock();
        try (Arena call = Arena.ofConfined()) {
            initialize(call);
            MemorySegment world = call.allocate(ValueLayout.JAVA_INT);
            BatchNormMpi.bn_mpi_comm_world(world);
            return duplicate(world.get(ValueLayout.JAVA_INT, 0), timeout, call);
        } finally {
            MPI.unlock();
        }
    }

    /**
     * A collective over the caller's communicator, given as its Fortran handle
     * ({@code MPI_Comm_c2f(comm)}); collective over that communicator's ranks. Initialises MPI
     * unless the program did (a program that made the communicator did).
     *
     * @param communicator the Fortran handle of an MPI communicator
     * @param timeout how long an exchange waits for the slowest rank, positive
     * @return this process's member
     * @throws IllegalArgumentException when the handle names no communicator
     * @throws UnsatisfiedLinkError when MPI or the shim is missing
     */
    public static MpiCollective of(int communicator, Duration timeout) {
        checkTimeout(timeout);
        MpiLibrary.ensureLoaded();
        MPI.lock();
        try (Arena call = Arena.ofConfined()) {
            initialize(call);
            return duplicate(communicator, timeout, call);
        } finally {
            MPI.unlock();
        }
    }

    /**
     * Whether MPI can be used here: the shim is built and loads, with MPI's runtime.
     *
     * @return true when {@link #world()} can work
     */
    public static boolean isAvailable() {
        return MpiLibrary.isAvailable();
    }

    /**
     * The MPI library's own description of itself, like
     * {@code Open MPI v4.1.4, package: Debian OpenMPI, ...}.
     *
     * @return the version text
     * @throws UnsatisfiedLinkError when MPI or the shim is missing
     */
    public static String libraryVersion() {
        MpiLibrary.ensureLoaded();
        try (Arena call = Arena.ofConfined()) {
            MemorySegment text = call.allocate(ERROR_TEXT);
            BatchNormMpi.bn_mpi_library_version(text, ERROR_TEXT);
            return text.getString(0);
        }
    }

    /**
     * Ends every process of the job at once ({@code MPI_Abort} on {@code MPI_COMM_WORLD}): for a
     * rank that failed and will not reach the next exchange, so that the others do not wait for
     * the timeout. Does not return while MPI is running.
     *
     * @param errorCode the job's exit status, as {@code mpirun} reports it
     * @throws IllegalStateException when MPI is not running (not initialised, or finalised)
     */
    public static void abort(int errorCode) {
        MpiLibrary.ensureLoaded();
        // Without the lock: another thread may be waiting inside an exchange.
        try (Arena call = Arena.ofConfined()) {
            MemorySegment world = call.allocate(ValueLayout.JAVA_INT);
            MemorySegment error = call.allocate(ValueLayout.JAVA_INT);
            BatchNormMpi.bn_mpi_comm_world(world);
            int status = BatchNormMpi.bn_mpi_abort(world.get(ValueLayout.JAVA_INT, 0), errorCode, error);
            throw new IllegalStateException("MPI_Abort did not end the job: " + describe(status, error));
        }
    }

    @Override
    public int rank() {
        return rank;
    }

    @Override
    public int size() {
        return size;
    }

    /**
     * How long an exchange waits for the slowest rank.
     *
     * @return the timeout
     */
    public Duration timeout() {
        return timeout;
    }

    /**
     * {@inheritDoc}
     *
     * @throws IllegalStateException when this collective is closed
     */
    @Override
    public double[][] allgather(double[] values) {
        Objects.requireNonNull(values, "values");
        int count = values.length;
        MPI.lock();
        try {
            if (closed) {
                throw new IllegalStateException("this MpiCollective is closed");
            }
            if (broken != null) {
                throw new CollectiveException("this MpiCollective is broken (" + broken
                        + "); end the process: mpirun then ends the job");
            }
            reserve(count);
            MemorySegment.copy(values, 0, send, ValueLayout.JAVA_DOUBLE, 0, count);
            int status = BatchNormMpi.bn_mpi_allgather(gathered, lengths, send, count, communicator, timeoutSeconds,
                    mpiError);
            if (status == BN_MPI_OK) {
                double[][] all = new double[size][];
                for (int r = 0; r < size; r++) {
                    all[r] = gathered.asSlice((long) r * count * Double.BYTES, (long) count * Double.BYTES)
                            .toArray(ValueLayout.JAVA_DOUBLE);
                }
                return all;
            }
            if (status == BN_MPI_ERR_LENGTH_MISMATCH) {
                long[] each = lengths.toArray(ValueLayout.JAVA_LONG);
                throw new CollectiveException("the ranks passed arrays of different lengths: "
                        + CollectiveException.describe(each), each);
            }
            String what = status == BN_MPI_ERR_TIMEOUT
                    ? "rank " + rank + " waited " + timeout + " for the other ranks of " + size
                            + " to join an exchange: a rank lives but took another path, or is too slow (raise the timeout)"
                    : "rank " + rank + ": the exchange failed: " + describe(status, mpiError);
            breakThis(what);
            throw new CollectiveException(what + "; this collective is now broken: end the process, mpirun then ends the job");
        } finally {
            MPI.unlock();
        }
    }

    /**
     * Frees the duplicated communicator (collective: every rank closes), and finalises MPI when
     * this was the last open collective and this class initialised MPI. A broken collective frees
     * nothing and never finalises: the other ranks are not in step, MPI would wait for them.
     * Closing again does nothing.
     *
     * @throws CollectiveException when MPI fails to free or to finalise
     */
    @Override
    public void close() {
        MPI.lock();
        try (Arena call = Arena.ofConfined()) {
            if (closed) {
                return;
            }
            closed = true;
            open--;
            if (broken != null) {
                return;
            }
            MemorySegment error = call.allocate(ValueLayout.JAVA_INT);
            check(BatchNormMpi.bn_mpi_comm_free(communicator, error), error, "MPI_Comm_free");
            if (open == 0 && initializedHere && !anyBroken) {
                finalized = true;
                check(BatchNormMpi.bn_mpi_finalize(error), error, "MPI_Finalize");
            }
        } finally {
            MPI.unlock();
        }
    }

    /** Like {@code MpiCollective[rank 1 of 4, timeout PT30M]}. */
    @Override
    public String toString() {
        return "MpiCollective[rank " + rank + " of " + size + ", timeout " + timeout
                + (broken != null ? ", broken" : closed ? ", closed" : "") + "]";
    }

    // Called with the lock held.
    private static void initialize(Arena call) {
        if (finalized) {
            throw new IllegalStateException("MPI was finalised in this process when the last MpiCollective closed,"
                    + " and MPI cannot start again: keep one MpiCollective open for the whole job");
        }
        MemorySegment here = call.allocate(ValueLayout.JAVA_INT);
        MemorySegment level = call.allocate(ValueLayout.JAVA_INT);
        MemorySegment error = call.allocate(ValueLayout.JAVA_INT);
        int status = BatchNormMpi.bn_mpi_init(here, level, error);
        if (status == BN_MPI_ERR_FINALIZED) {
            throw new IllegalStateException("MPI was finalised in this process (by the program) and cannot start again");
        }
        check(status, error, "MPI_Init_thread");
        initializedHere |= here.get(ValueLayout.JAVA_INT, 0) == 1;
    }

    // Called with the lock held.
    private static MpiCollective duplicate(int communicator, Duration timeout, Arena call) {
        MemorySegment dup = call.allocate(ValueLayout.JAVA_INT);
        MemorySegment rank = call.allocate(ValueLayout.JAVA_INT);
        MemorySegment size = call.allocate(ValueLayout.JAVA_INT);
        MemorySegment error = call.allocate(ValueLayout.JAVA_INT);
        int status = BatchNormMpi.bn_mpi_comm_dup(dup, communicator, error);
        if (status == BN_MPI_ERR_BAD_ARGUMENT) {
            throw new IllegalArgumentException("the Fortran handle " + communicator + " names no MPI communicator");
        }
        check(status, error, "MPI_Comm_dup");
        int handle = dup.get(ValueLayout.JAVA_INT, 0);
        status = BatchNormMpi.bn_mpi_comm_rank_size(rank, size, handle, error);
        if (status != BN_MPI_OK) {
            BatchNormMpi.bn_mpi_comm_free(handle, error);
            check(status, error, "MPI_Comm_rank");
        }
        open++;
        return new MpiCollective(handle, rank.get(ValueLayout.JAVA_INT, 0), size.get(ValueLayout.JAVA_INT, 0), timeout);
    }

    // The native buffers grow to the largest exchange and are reused: one allocation per size.
    private void reserve(int count) {
        if (count > capacity) {
            capacity = Math.max(count, 1);
            send = arena.allocate(ValueLayout.JAVA_DOUBLE, capacity);
            gathered = arena.allocate(ValueLayout.JAVA_DOUBLE, capacity * size);
        }
    }

    private void breakThis(String what) {
        broken = what;
        anyBroken = true;
    }

    private static void checkTimeout(Duration timeout) {
        Objects.requireNonNull(timeout, "timeout");
        if (timeout.isNegative() || timeout.isZero()) {
            throw new IllegalArgumentException("timeout must be positive, got " + timeout);
        }
    }

    private static void check(int status, MemorySegment error, String call) {
        if (status != BN_MPI_OK) {
            throw new CollectiveException(call + " failed: " + describe(status, error));
        }
    }

    /** The shim's text for a status, and MPI's for its error code when MPI failed. */
    private static String describe(int status, MemorySegment error) {
        String text = BatchNormMpi.bn_mpi_status_message(status).reinterpret(Long.MAX_VALUE).getString(0);
        if (status != BN_MPI_ERR_MPI) {
            return text;
        }
        int code = error.get(ValueLayout.JAVA_INT, 0);
        try (Arena call = Arena.ofConfined()) {
            MemorySegment mpiText = call.allocate(ERROR_TEXT);
            BatchNormMpi.bn_mpi_error_string(mpiText, ERROR_TEXT, code);
            return text + ": " + mpiText.getString(0) + " (MPI error " + code + ")";
        }
    }
}
