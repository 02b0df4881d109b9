package dev.panamabn.sync;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.MpiCollective;
import dev.panamabn.Shape;

/**
 * Run in its own JVM by {@link MpiUnavailableTest}: prints whether MPI is available, what
 * {@link MpiCollective#world()} throws, and that a plain BatchNorm still works.
 */
public final class MpiProbe {

    private MpiProbe() {
    }

    public static void main(String[] args) {
        System.out.println("available " + MpiCollective.isAvailable());
        try (MpiCollective world = MpiCollective.world()) {
            System.out.println("world " + world.size());
        } catch (Throwable e) {
            System.out.println("error " + e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(2))) {
            float[] x = {1, 2, 3, 4, 5, 6, 7, 8};
            float[] y = new float[8];
            bn.forward(x, Shape.of(2, 2, 2), y);
            System.out.println("batchnorm " + bn.numBatchesTracked() + " " + y[0]);
        }
    }
}
