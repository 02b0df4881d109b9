/*
 * libbatchnorm_mpi: the few MPI calls that synchronised BatchNorm needs across processes, behind a
 * stable C ABI that Java binds through java.lang.foreign. Communicators cross this ABI as Fortran
 * handles (MPI_Fint, an int32_t: MPI_Comm_c2f / MPI_Comm_f2c), so the caller never sees an MPI
 * implementation's handle types or symbols, and a program that already uses MPI can pass its own
 * communicator.
 *
 * Built only where CMake finds MPI; libbatchnorm never depends on it.
 *
 * Conventions (as batchnorm.h):
 *  - Outputs first, then inputs, then sizes and scalars.
 *  - Every function returns a status: BN_MPI_OK (0) or a positive BN_MPI_ERR_* code;
 *    bn_mpi_status_message turns it into text. When it is BN_MPI_ERR_MPI, *mpi_error holds the
 *    MPI error code (bn_mpi_error_string turns that into MPI's text).
 *  - Every communicator the shim hands out is a duplicate with MPI_ERRORS_RETURN set, so an MPI
 *    failure comes back as a status instead of killing the process inside MPI.
 *  - Calls must not overlap: the shim asks for MPI_THREAD_SERIALIZED, so any thread may call, one
 *    at a time.
 */
#ifndef BN_MPI_H
#define BN_MPI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define BN_MPI_API __attribute__((visibility("default")))
#else
#define BN_MPI_API
#endif

/* Status codes. */
#define BN_MPI_OK 0
#define BN_MPI_ERR_MPI 1             /* MPI returned an error: *mpi_error holds its code */
#define BN_MPI_ERR_NOT_INITIALIZED 2 /* MPI is not initialised: call bn_mpi_init first */
#define BN_MPI_ERR_FINALIZED 3       /* MPI was finalised; it cannot start again in this process */
#define BN_MPI_ERR_BAD_ARGUMENT 4    /* a NULL pointer, a negative or too large count, a bad handle */
#define BN_MPI_ERR_LENGTH_MISMATCH 5 /* the ranks passed different counts (lengths has each one) */
#define BN_MPI_ERR_TIMEOUT 6         /* not every rank joined the collective within the timeout */

BN_MPI_API const char *bn_mpi_status_message(int32_t status);

/*
 * MPI's text for an MPI error code, truncated to capacity - 1 bytes and NUL-terminated. Works
 * before MPI is initialised.
 */
BN_MPI_API int32_t bn_mpi_error_string(char *text, int64_t capacity, int32_t mpi_error);

/* The MPI library's version text (MPI_Get_library_version), like bn_mpi_error_string. */
BN_MPI_API int32_t bn_mpi_library_version(char *text, int64_t capacity);

/*
 * Initialises MPI with MPI_THREAD_SERIALIZED unless it is initialised already (by the program or
 * by an earlier call). *initialized_here = 1 when this call initialised it (the caller then owns
 * bn_mpi_finalize), else 0; *thread_level is the level MPI provides (MPI_THREAD_SINGLE = 0,
 * FUNNELED = 1, SERIALIZED = 2, MULTIPLE = 3). When this call initialises MPI, MPI_COMM_WORLD
 * gets MPI_ERRORS_RETURN too. BN_MPI_ERR_FINALIZED after MPI_Finalize.
 */
BN_MPI_API int32_t bn_mpi_init(int32_t *initialized_here, int32_t *thread_level, int32_t *mpi_error);

/* MPI_Finalize; BN_MPI_OK when MPI is already finalised, BN_MPI_ERR_NOT_INITIALIZED before init. */
BN_MPI_API int32_t bn_mpi_finalize(int32_t *mpi_error);

/*
 * MPI_Abort on the communicator (a Fortran handle; MPI_COMM_WORLD when the handle is not valid):
 * ends every process of the job with error_code. Returns only when MPI is not initialised or
 * already finalised (BN_MPI_ERR_NOT_INITIALIZED), or when MPI_Abort itself fails.
 */
BN_MPI_API int32_t bn_mpi_abort(int32_t comm, int32_t error_code, int32_t *mpi_error);

/* The Fortran handle of MPI_COMM_WORLD. */
BN_MPI_API int32_t bn_mpi_comm_world(int32_t *comm);

/*
 * A duplicate of the communicator (collective over its ranks), with MPI_ERRORS_RETURN set: the
 * synchronisation's messages then never mix with the program's own traffic on the original.
 * comm and *dup are Fortran handles.
 */
BN_MPI_API int32_t bn_mpi_comm_dup(int32_t *dup, int32_t comm, int32_t *mpi_error);

/* Frees a communicator from bn_mpi_comm_dup (collective over its ranks). */
BN_MPI_API int32_t bn_mpi_comm_free(int32_t comm, int32_t *mpi_error);

/* This process's rank in the communicator and the communicator's size. */
BN_MPI_API int32_t bn_mpi_comm_rank_size(int32_t *rank, int32_t *size, int32_t comm, int32_t *mpi_error);

/*
 * Every rank's `count` doubles, in rank order: gathered is (size, count) row-major, rank r's
 * values at row r. lengths is (size): every rank's count, written first (by a gather of the
 * counts), so that ranks passing different counts all get BN_MPI_ERR_LENGTH_MISMATCH, and
 * nothing in gathered, instead of the undefined behaviour of a mismatched MPI_Allgather.
 * count must be in 0..INT_MAX.
 *
 * timeout_seconds > 0 bounds the wait for the slowest rank (nonblocking collectives polled with
 * a back-off: spin, then yield, and after 100 ms sleep up to 1 ms). After BN_MPI_ERR_TIMEOUT the collective
 * is still pending inside MPI and the communicator must not be used again: the process should
 * end (mpirun then ends the job). timeout_seconds <= 0 (or NaN) waits without a bound.
 */
BN_MPI_API int32_t bn_mpi_allgather(double *gathered, int64_t *lengths, const double *values, int64_t count,
                                    int32_t comm, double timeout_seconds, int32_t *mpi_error);

#ifdef __cplusplus
}
#endif

#endif /* BN_MPI_H */
