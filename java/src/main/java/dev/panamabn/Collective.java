package dev.panamabn;

/**
 * A group of ranks that exchange values: the transport of {@link SyncBatchNorm}. Each rank of a
 * data-parallel job holds one member; rank {@code r} of {@code size()} is the r-th shard of every
 * batch.
 *
 * <p>Two implementations come with the library: {@link InProcessCollective} for replicas on the
 * threads of one JVM, and {@link MpiCollective} for processes under {@code mpirun}. Any other
 * transport (the allgather of a training framework, say) plugs in by implementing this interface.
 *
 * <p>The contract of {@link #allgather}: it is collective, so every rank calls it, the same number
 * of times and in the same order, with arrays of the same length; it returns every rank's values
 * in rank order, the same on every rank. An implementation must not reorder, combine or round
 * the values: {@link SyncBatchNorm} relies on every rank receiving the same bits.
 */
public interface Collective {

    /**
     * This member's rank.
     *
     * @return a rank in {@code 0 .. size() - 1}
     */
    int rank();

    /**
     * The number of ranks.
     *
     * @return {@code >= 1}
     */
    int size();

    /**
     * Every rank's values, in rank order. Blocks until every rank has called, or until the
     * implementation gives up waiting.
     *
     * @param values this rank's values (not changed, not kept)
     * @return {@code size()} arrays, element {@code r} a copy of rank {@code r}'s values (element
     *         {@code rank()} equal to {@code values}); new arrays that the caller may change
     * @throws NullPointerException when {@code values} is null
     * @throws CollectiveException when the ranks passed arrays of different lengths (on every
     *                             rank, with each rank's length), when not every rank called in
     *                             time, or when the transport failed; after a timeout or a
     *                             transport failure the member is broken and refuses later calls
     */
    double[][] allgather(double[] values);
}
