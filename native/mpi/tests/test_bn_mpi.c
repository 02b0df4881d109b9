/*
 * libbatchnorm_mpi under mpirun (3 or more ranks): the gathered values in rank order, a length
 * mismatch seen by every rank, a timeout when one rank is late, and the argument checks. Exits 1
 * on the first failed check, naming it and the rank.
 */
#define _POSIX_C_SOURCE 200809L
#include "bn_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int rank_ = -1;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s\n", rank_, __FILE__, __LINE__,      \
                    #cond);                                                                        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CALL(expr) CHECK((expr) == BN_MPI_OK)

static void sleep_seconds(double s) {
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

// values of rank r: r*1000 + i + 0.25, exact in double
static void gathers_in_rank_order(int32_t comm, int rank, int size) {
    enum { COUNT = 5 };
    double mine[COUNT], all[64 * COUNT];
    int64_t lengths[64];
    for (int i = 0; i < COUNT; i++) {
        mine[i] = rank * 1000 + i + 0.25;
    }
    int32_t err = 0;
    CALL(bn_mpi_allgather(all, lengths, mine, COUNT, comm, 10.0, &err));
    for (int r = 0; r < size; r++) {
        CHECK(lengths[r] == COUNT);
        for (int i = 0; i < COUNT; i++) {
            CHECK(all[r * COUNT + i] == r * 1000 + i + 0.25);
        }
    }
    // Without a bound too, and with nothing to send.
    CALL(bn_mpi_allgather(all, lengths, mine, COUNT, comm, 0.0, &err));
    CHECK(all[(size - 1) * COUNT] == (size - 1) * 1000 + 0.25);
    CALL(bn_mpi_allgather(all, lengths, NULL, 0, comm, 10.0, &err));
}

// Rank 1 sends one value more: every rank gets the mismatch and every rank's length.
static void mismatch_on_every_rank(int32_t comm, int rank, int size) {
    double mine[4] = {1, 2, 3, 4}, all[64 * 4];
    int64_t lengths[64];
    const int64_t count = rank == 1 ? 4 : 3;
    int32_t err = 0;
    CHECK(bn_mpi_allgather(all, lengths, mine, count, comm, 10.0, &err) == BN_MPI_ERR_LENGTH_MISMATCH);
    for (int r = 0; r < size; r++) {
        CHECK(lengths[r] == (r == 1 ? 4 : 3));
    }
    // A count no MPI call can take: this rank is refused, the others see the mismatch.
    const int64_t huge = (int64_t)1 << 40;
    int32_t status = bn_mpi_allgather(all, lengths, mine, rank == 0 ? huge : 3, comm, 10.0, &err);
    CHECK(status == (rank == 0 ? BN_MPI_ERR_BAD_ARGUMENT : BN_MPI_ERR_LENGTH_MISMATCH));
    CHECK(lengths[0] == huge);
}

// The last rank joins late: the others time out, and so does the late one, which waits for the
// second stage (the values) that the others abandoned. The communicator is dead afterwards.
static void timeout_when_a_rank_is_late(int32_t world, int rank, int size) {
    int32_t comm = -1, err = 0;
    CALL(bn_mpi_comm_dup(&comm, world, &err));
    double mine = rank, all[64];
    int64_t lengths[64];
    if (rank == size - 1) {
        sleep_seconds(0.6);
    }
    CHECK(bn_mpi_allgather(all, lengths, &mine, 1, comm, 0.3, &err) == BN_MPI_ERR_TIMEOUT);
    // The world still works; the dup is left alone.
    CALL(bn_mpi_allgather(all, lengths, &mine, 1, world, 10.0, &err));
    CHECK(all[size - 1] == size - 1);
}

static void refuses_bad_arguments(int32_t comm) {
    double v = 0, all[64];
    int64_t lengths[64];
    int32_t err = 0, rank = 0, size = 0;
    CHECK(bn_mpi_allgather(NULL, lengths, &v, 1, comm, 1.0, &err) == BN_MPI_ERR_BAD_ARGUMENT);
    CHECK(bn_mpi_allgather(all, NULL, &v, 1, comm, 1.0, &err) == BN_MPI_ERR_BAD_ARGUMENT);
    CHECK(bn_mpi_comm_rank_size(&rank, &size, 123456, &err) == BN_MPI_ERR_BAD_ARGUMENT);
    CHECK(bn_mpi_comm_free(comm, &err) == BN_MPI_ERR_BAD_ARGUMENT); // the world is not ours to free
    char text[16];
    CALL(bn_mpi_error_string(text, sizeof text, 1));
    CHECK(strlen(text) > 0 && strlen(text) < sizeof text);
    CHECK(strcmp(bn_mpi_status_message(BN_MPI_ERR_TIMEOUT), "unknown status code") != 0);
    CHECK(strcmp(bn_mpi_status_message(99), "unknown status code") == 0);
}

int main(void) {
    int32_t here = 0, level = -1, err = 0, world = -1, rank = -1, size = 0;
    int32_t status = bn_mpi_allgather((double[1]){0}, (int64_t[1]){0}, NULL, 0, 0, 1.0, &err);
    CHECK(status == BN_MPI_ERR_NOT_INITIALIZED);
    CALL(bn_mpi_init(&here, &level, &err));
    CHECK(here == 1 && level >= 0 && level <= 3);
    CALL(bn_mpi_init(&here, &level, &err));
    CHECK(here == 0);
    CALL(bn_mpi_comm_world(&world));
    CALL(bn_mpi_comm_rank_size(&rank, &size, world, &err));
    rank_ = rank;
    CHECK(size >= 3 && size <= 64);

    int32_t comm = -1;
    CALL(bn_mpi_comm_dup(&comm, world, &err));
    gathers_in_rank_order(comm, rank, size);
    mismatch_on_every_rank(comm, rank, size);
    refuses_bad_arguments(world);
    CALL(bn_mpi_comm_free(comm, &err));
    timeout_when_a_rank_is_late(world, rank, size);

    char version[256];
    CALL(bn_mpi_library_version(version, sizeof version));
    CALL(bn_mpi_finalize(&err));
    CALL(bn_mpi_finalize(&err));
    CHECK(bn_mpi_init(&here, &level, &err) == BN_MPI_ERR_FINALIZED);
    if (rank == 0) {
        printf("test_bn_mpi: %d ranks ok (%s)\n", size, version);
    }
    return 0;
}
