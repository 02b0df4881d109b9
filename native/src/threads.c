#include <omp.h>
#include <stdatomic.h>

#include "batchnorm.h"
#include "bn.h"

/*
 * The largest thread count bn_set_num_threads accepts (documented in batchnorm.h). libgomp exits
 * the process or crashes when it cannot create the threads (or their bookkeeping) a team asks
 * for, so an absurd count must be refused before any region sees it.
 */
#define BN_MAX_THREADS 1024

/*
 * One setting for the whole library, read by every calling thread (omp_set_num_threads would be
 * per calling thread). 0 means "not chosen yet": the processor count.
 */
static atomic_int bn_num_threads;

int32_t bn_set_num_threads(int32_t num_threads) {
    if (num_threads < 1 || num_threads > BN_MAX_THREADS)
        return BN_ERR_BAD_THREADS;
    atomic_store_explicit(&bn_num_threads, num_threads, memory_order_relaxed);
    return BN_OK;
}

int32_t bn_get_num_threads(void) {
    int t = atomic_load_explicit(&bn_num_threads, memory_order_relaxed);
    if (t > 0)
        return t;
    t = omp_get_num_procs();
    t = t < 1 ? 1 : t > BN_MAX_THREADS ? BN_MAX_THREADS : t;
    /* cache the default unless a setting arrived meanwhile */
    int unset = 0;
    atomic_compare_exchange_strong_explicit(&bn_num_threads, &unset, t, memory_order_relaxed,
                                            memory_order_relaxed);
    return atomic_load_explicit(&bn_num_threads, memory_order_relaxed);
}

/*
 * The team slot: 1 while some call runs a parallel team. Each Java (or C) thread that enters an
 * OpenMP region leads a team of its own, so k callers at once would run k teams of T threads
 * on T cores. Instead, the one call that wins the slot gets the team and the others run on their
 * own thread, the serial schedule, which gives the same bits: k concurrent callers use at most
 * k + T - 1 threads.
 */
static atomic_int bn_team_busy;

int bn_team_begin(int64_t work) {
    if (work < BN_PARALLEL_MIN_ELEMENTS)
        return 1;
    int t = bn_get_num_threads();
    if (t == 1)
        return 1;
    int idle = 0;
    if (!atomic_compare_exchange_strong_explicit(&bn_team_busy, &idle, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        return 1;
    return t;
}

void bn_team_end(int threads) {
    if (threads > 1)
        atomic_store_explicit(&bn_team_busy, 0, memory_order_release);
}
