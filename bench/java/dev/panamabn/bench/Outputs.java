package dev.panamabn.bench;

/**
 * What an implementation has written, widened to double so that it compares directly with the
 * double-precision reference: y, dx and dz (the residual's gradient of backward_add_relu) are
 * (N,C,S) in NCHW order whatever the implementation's layout, the others (C). An output an
 * implementation does not have is null.
 */
record Outputs(double[] y, double[] runningMean, double[] runningVar, double[] dx,
        double[] dweight, double[] dbias, double[] dz) {

    /** The outputs of an implementation without the fused ops (no dz). */
    static Outputs ofFloats(float[] y, float[] runningMean, float[] runningVar, float[] dx,
            float[] dweight, float[] dbias) {
        return ofFloats(y, runningMean, runningVar, dx, dweight, dbias, null);
    }

    static Outputs ofFloats(float[] y, float[] runningMean, float[] runningVar, float[] dx,
            float[] dweight, float[] dbias, float[] dz) {
        return new Outputs(widened(y), widened(runningMean), widened(runningVar), widened(dx),
                widened(dweight), widened(dbias), dz == null ? null : widened(dz));
    }

    static double[] widened(float[] values) {
        double[] wide = new double[values.length];
        for (int i = 0; i < values.length; i++) {
            wide[i] = values[i];
        }
        return wide;
    }
}
