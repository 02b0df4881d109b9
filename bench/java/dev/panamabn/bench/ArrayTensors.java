package dev.panamabn.bench;

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

    Outputs outputs() {
        return Outputs.ofFloats(y, runningMean, runningVar, dx, dweight, dbias);
    }
}
