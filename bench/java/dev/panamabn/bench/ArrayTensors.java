package dev.panamabn.bench;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;

/** The float arrays a pure-Java BatchNorm works on, filled from the test data. */
final class ArrayTensors {

    final int n;
    final int c;
    final int s;
    final float[] x;
    final float[] y;
    final float[] dy;
    final float[] dx;
    final float[] weight;
    final float[] bias;
    final float[] dweight;
    final float[] dbias;
    final float[] runningMean;
    final float[] runningVar;
    final double[] saveMean;
    final double[] saveInvstd;

    ArrayTensors(TestData data) {
        Dims dims = data.dims();
        n = dims.n();
        c = dims.c();
        s = dims.s();
        x = data.x();
        dy = data.dy();
        y = new float[x.length];
        dx = new float[x.length];
        weight = data.weight();
        bias = data.bias();
        dweight = new float[c];
        dbias = new float[c];
        runningMean = data.runningMean();
        runningVar = data.runningVar();
        saveMean = new double[c];
        saveInvstd = new double[c];
    }

    /** The arrays an op reads and writes (cold mode flushes them before each call). */
    List<MemorySegment> touched(Op op) {
        float[][] arrays = op.backward()
                ? new float[][] {dy, x, dx, weight, dweight, dbias}
                : new float[][] {x, y, weight, bias, runningMean, runningVar};
        return Arrays.stream(arrays).map(MemorySegment::ofArray).toList();
    }

    Outputs outputs() {
        return Outputs.ofFloats(y, runningMean, runningVar, dx, dweight, dbias);
    }
}
