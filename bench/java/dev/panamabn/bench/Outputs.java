package dev.panamabn.bench;

/**
 * What an implementation has written, widened to double so that it compares directly with the
 * double-precision reference: y and dx are (N,C,S), the others (C).
 */
record Outputs(double[] y, double[] runningMean, double[] runningVar, double[] dx,
        double[] dweight, double[] dbias) {

    static Outputs ofFloats(float[] y, float[] runningMean, float[] runningVar, float[] dx,
            float[] dweight, float[] dbias) {
        return new Outputs(widened(y), widened(runningMean), widened(runningVar), widened(dx),
                widened(dweight), widened(dbias));
    }

    static double[] widened(float[] values) {
        double[] wide = new double[values.length];
        for (int i = 0; i < values.length; i++) {
            wide[i] = values[i];
        }
        return wide;
    }
}
