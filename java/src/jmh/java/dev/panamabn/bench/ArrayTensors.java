package dev.panamabn.bench;

/** The float arrays a pure-Java BatchNorm works on, filled with the suite's test data. */
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

    ArrayTensors(Dims dims) {
        n = dims.n();
        c = dims.c();
        s = dims.s();
        int count = dims.count();
        x = TestData.uniform(count, 1);
        dy = TestData.uniform(count, 2);
        y = new float[count];
        dx = new float[count];
        weight = TestData.filled(c, TestData.WEIGHT);
        bias = TestData.filled(c, TestData.BIAS);
        dweight = new float[c];
        dbias = new float[c];
        runningMean = new float[c];
        runningVar = TestData.filled(c, 1);
        saveMean = new double[c];
        saveInvstd = new double[c];
    }
}
