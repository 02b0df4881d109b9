#define _POSIX_C_SOURCE 200809L
#include "bn_mpi.h"

#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <sched.h>
#include <string.h>
#include <time.h>

const char *bn_mpi_status_message(int32_t status) {
    switch (status) {
    case BN_MPI_OK:
        return "ok";
    case BN_MPI_ERR_MPI:
        return "MPI returned an error";
    case BN_MPI_ERR_NOT_INITIALIZED:
        return "MPI is not initialised";
    case BN_MPI_ERR_FINALIZED:
        return "MPI was finalised and cannot start again in this process";
    case BN_MPI_ERR_BAD_ARGUMENT:
        return "bad argument: a NULL pointer, a count outside 0..INT_MAX or an invalid communicator";
    case BN_MPI_ERR_LENGTH_MISMATCH:
        return "the ranks passed arrays of different lengths";
    case BN_MPI_ERR_TIMEOUT:
        return "not every rank joined the collective within the timeout";
    default:
        return "unknown status code";
    }
}

// text is (capacity) bytes; copies src truncated, always NUL-terminated.
static void copy_text(char *text, int64_t capacity, const char *src, int len) {
    size_t n = (size_t)len < (size_t)(capacity - 1) ? (size_t)len : (size_t)(capacity - 1);
    memcpy(text, src, n);
    text[n] = '\0';
}

int32_t bn_mpi_error_string(char *text, int64_t capacity, int32_t mpi_error) {
    if (text == NULL || capacity < 1) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    char buffer[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(mpi_error, buffer, &len) != MPI_SUCCESS) {
        static const char unknown[] = "unknown MPI error code";
        copy_text(text, capacity, unknown, (int)sizeof unknown - 1);
        return BN_MPI_OK;
    }
    copy_text(text, capacity, buffer, len);
    return BN_MPI_OK;
}

int32_t bn_mpi_library_version(char *text, int64_t capacity) {
    if (text == NULL || capacity < 1) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    char buffer[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(buffer, &len);
    // Open MPI ends its text with a newline; callers print it inside a sentence.
    while (len > 0 && (buffer[len - 1] == '\n' || buffer[len - 1] == ' ')) {
        len--;
    }
    copy_text(text, capacity, buffer, len);
    return BN_MPI_OK;
}

// The status of an MPI return code; the code itself goes to *mpi_error.
static int32_t from_mpi(int rc, int32_t *mpi_error) {
    if (rc == MPI_SUCCESS) {
        return BN_MPI_OK;
    }
    *mpi_error = rc;
    return BN_MPI_ERR_MPI;
}

// BN_MPI_OK while MPI can be called: initialised and not finalised.
static int32_t usable(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized) {
        return BN_MPI_ERR_FINALIZED;
    }
    return initialized ? BN_MPI_OK : BN_MPI_ERR_NOT_INITIALIZED;
}

// The C handle of a Fortran handle; MPI_COMM_NULL when it names no communicator.
static MPI_Comm comm_of(int32_t handle) {
    MPI_Comm c = MPI_Comm_f2c((MPI_Fint)handle);
#ifdef OPEN_MPI
    // Open MPI answers an index outside its table with a NULL pointer, not MPI_COMM_NULL.
    if (c == NULL) {
        return MPI_COMM_NULL;
    }
#endif
    return c;
}

/*
 * The common start of a call on a communicator: *mpi_error cleared, MPI usable, the handle
 * naming a communicator (*c). The caller has checked its other pointers and mpi_error.
 */
static int32_t enter(MPI_Comm *c, int32_t comm, int32_t *mpi_error) {
    *mpi_error = MPI_SUCCESS;
    int32_t status = usable();
    if (status != BN_MPI_OK) {
        return status;
    }
    *c = comm_of(comm);
    return *c == MPI_COMM_NULL ? BN_MPI_ERR_BAD_ARGUMENT : BN_MPI_OK;
}

int32_t bn_mpi_init(int32_t *initialized_here, int32_t *thread_level, int32_t *mpi_error) {
    if (initialized_here == NULL || thread_level == NULL || mpi_error == NULL) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    *mpi_error = MPI_SUCCESS;
    int32_t status = usable();
    if (status == BN_MPI_ERR_FINALIZED) {
        return status;
    }
    int provided = MPI_THREAD_SINGLE;
    if (status == BN_MPI_OK) {
        // The program initialised MPI itself: keep its choices, report its thread level.
        MPI_Query_thread(&provided);
        *initialized_here = 0;
        *thread_level = provided;
        return BN_MPI_OK;
    }
    // SERIALIZED, not FUNNELED: a JVM calls from whichever thread runs the training step.
    status = from_mpi(MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided), mpi_error);
    if (status != BN_MPI_OK) {
        return status;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    *initialized_here = 1;
    *thread_level = provided;
    return BN_MPI_OK;
}

int32_t bn_mpi_finalize(int32_t *mpi_error) {
    if (mpi_error == NULL) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    *mpi_error = MPI_SUCCESS;
    int32_t status = usable();
    if (status == BN_MPI_ERR_FINALIZED) {
        return BN_MPI_OK;
    }
    if (status != BN_MPI_OK) {
        return status;
    }
    return from_mpi(MPI_Finalize(), mpi_error);
}

int32_t bn_mpi_abort(int32_t comm, int32_t error_code, int32_t *mpi_error) {
    if (mpi_error == NULL) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    *mpi_error = MPI_SUCCESS;
    int32_t status = usable();
    if (status != BN_MPI_OK) {
        return BN_MPI_ERR_NOT_INITIALIZED;
    }
    MPI_Comm c = comm_of(comm);
    return from_mpi(MPI_Abort(c == MPI_COMM_NULL ? MPI_COMM_WORLD : c, error_code), mpi_error);
}

int32_t bn_mpi_comm_world(int32_t *comm) {
    if (comm == NULL) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    *comm = (int32_t)MPI_Comm_c2f(MPI_COMM_WORLD);
    return BN_MPI_OK;
}

int32_t bn_mpi_comm_dup(int32_t *dup, int32_t comm, int32_t *mpi_error) {
    if (dup == NULL || mpi_error == NULL) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    MPI_Comm c = MPI_COMM_NULL;
    int32_t status = enter(&c, comm, mpi_error);
    if (status != BN_MPI_OK) {
        return status;
    }
    MPI_Comm copy = MPI_COMM_NULL;
    status = from_mpi(MPI_Comm_dup(c, &copy), mpi_error);
    if (status != BN_MPI_OK) {
        return status;
    }
    status = from_mpi(MPI_Comm_set_errhandler(copy, MPI_ERRORS_RETURN), mpi_error);
    if (status != BN_MPI_OK) {
        MPI_Comm_free(&copy);
        return status;
    }
    *dup = (int32_t)MPI_Comm_c2f(copy);
    return BN_MPI_OK;
}

int32_t bn_mpi_comm_free(int32_t comm, int32_t *mpi_error) {
    if (mpi_error == NULL) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    MPI_Comm c = MPI_COMM_NULL;
    int32_t status = enter(&c, comm, mpi_error);
    if (status != BN_MPI_OK) {
        return status;
    }
    if (c == MPI_COMM_WORLD || c == MPI_COMM_SELF) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    return from_mpi(MPI_Comm_free(&c), mpi_error);
}

int32_t bn_mpi_comm_rank_size(int32_t *rank, int32_t *size, int32_t comm, int32_t *mpi_error) {
    if (rank == NULL || size == NULL || mpi_error == NULL) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    MPI_Comm c = MPI_COMM_NULL;
    int32_t status = enter(&c, comm, mpi_error);
    if (status != BN_MPI_OK) {
        return status;
    }
    int r = 0, k = 0;
    status = from_mpi(MPI_Comm_rank(c, &r), mpi_error);
    if (status == BN_MPI_OK) {
        status = from_mpi(MPI_Comm_size(c, &k), mpi_error);
    }
    if (status == BN_MPI_OK) {
        *rank = r;
        *size = k;
    }
    return status;
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/*
 * Waits for a nonblocking collective until `deadline` (seconds_now() time; +inf: no bound).
 * Spins first (an exchange between ranks in step completes in microseconds), then yields, which
 * keeps answering at once while leaving an oversubscribed core to the ranks still computing:
 * ranks drift apart by a few milliseconds between exchanges, and a rank asleep when the last one
 * arrives would hold up the exchange's second round (the values follow the lengths) until it
 * woke. Only a wait past 100 ms, a rank that is not in step at all, sleeps, with a back-off up
 * to 1 ms.
 */
static int32_t wait_until(MPI_Request *request, double deadline, int32_t *mpi_error) {
    if (isinf(deadline)) {
        return from_mpi(MPI_Wait(request, MPI_STATUS_IGNORE), mpi_error);
    }
    const double start = seconds_now();
    long sleep_ns = 1000;
    for (;;) {
        int done = 0;
        int32_t status = from_mpi(MPI_Test(request, &done, MPI_STATUS_IGNORE), mpi_error);
        if (status != BN_MPI_OK || done) {
            return status;
        }
        double now = seconds_now();
        if (now >= deadline) {
            return BN_MPI_ERR_TIMEOUT;
        }
        double waited = now - start;
        if (waited < 50e-6) {
            continue;
        }
        if (waited < 0.1) {
            sched_yield();
            continue;
        }
        struct timespec pause = {0, sleep_ns};
        nanosleep(&pause, NULL);
        sleep_ns = sleep_ns < 1000000 ? sleep_ns * 2 : 1000000;
    }
}

int32_t bn_mpi_allgather(double *gathered, int64_t *lengths, const double *values, int64_t count,
                         int32_t comm, double timeout_seconds, int32_t *mpi_error) {
    if (gathered == NULL || lengths == NULL || mpi_error == NULL || (values == NULL && count > 0)) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    MPI_Comm c = MPI_COMM_NULL;
    int32_t status = enter(&c, comm, mpi_error);
    if (status != BN_MPI_OK) {
        return status;
    }
    int size = 0;
    status = from_mpi(MPI_Comm_size(c, &size), mpi_error);
    if (status != BN_MPI_OK) {
        return status;
    }
    const double deadline = timeout_seconds > 0 ? seconds_now() + timeout_seconds : INFINITY;

    // First the counts (any count, even a bad one): a mismatched MPI_Allgather is undefined
    // behaviour (truncation, garbage or a hang), a mismatch seen by every rank is a clear error
    // on every rank.
    MPI_Request request;
    int64_t mine = count;
    status = from_mpi(MPI_Iallgather(&mine, 1, MPI_INT64_T, lengths, 1, MPI_INT64_T, c, &request), mpi_error);
    if (status == BN_MPI_OK) {
        status = wait_until(&request, deadline, mpi_error);
    }
    if (status != BN_MPI_OK) {
        return status;
    }
    // Checked after the exchange of counts, so that the other ranks see a mismatch instead of
    // waiting for this one.
    if (count < 0 || count > INT_MAX) {
        return BN_MPI_ERR_BAD_ARGUMENT;
    }
    for (int r = 0; r < size; r++) {
        if (lengths[r] != count) {
            return BN_MPI_ERR_LENGTH_MISMATCH;
        }
    }
    if (count == 0) {
        return BN_MPI_OK;
    }
    status = from_mpi(MPI_Iallgather(values, (int)count, MPI_DOUBLE, gathered, (int)count, MPI_DOUBLE, c,
                                     &request),
                      mpi_error);
    if (status == BN_MPI_OK) {
        status = wait_until(&request, deadline, mpi_error);
    }
    return status;
}
