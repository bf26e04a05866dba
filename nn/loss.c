// loss.c: softmax cross-entropy with label smoothing, mean over the batch.
#include <math.h>

#include "nn.h"

float softmax_xent(const float *logits, const int *labels, int N, int K, float smoothing, float *dlogits,
                   int *correct) {
    double total = 0.0;
    int hits = 0;
    const double off = smoothing / K, on = 1.0 - smoothing + off;  // target distribution
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K;
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (z[k] > z[arg]) arg = k;
        hits += arg == labels[n];
        double zmax = z[arg], sum = 0.0;
        for (int k = 0; k < K; k++) sum += exp((double)z[k] - zmax);
        double lse = zmax + log(sum);
        // loss = -sum_k t_k log p_k = lse - sum_k t_k z_k
        double tz = 0.0;
        for (int k = 0; k < K; k++) tz += (k == labels[n] ? on : off) * z[k];
        total += lse - tz;
        if (dlogits) {
            float *d = dlogits + (size_t)n * K;
            for (int k = 0; k < K; k++) d[k] = (float)((exp((double)z[k] - lse) - (k == labels[n] ? on : off)) / N);
        }
    }
    if (correct) *correct = hits;
    return (float)(total / N);
}

void softmax_xent_rop(const float *logits, const float *rlogits, int N, int K, float *rdlogits) {
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K, *rz = rlogits + (size_t)n * K;
        double zmax = z[0], sum = 0.0, prz = 0.0;
        for (int k = 1; k < K; k++)
            if (z[k] > zmax) zmax = z[k];
        for (int k = 0; k < K; k++) sum += exp((double)z[k] - zmax);
        for (int k = 0; k < K; k++) prz += exp((double)z[k] - zmax) / sum * rz[k];
        // (diag(p) - p p^T) R{z} / N
        for (int k = 0; k < K; k++) {
            double p = exp((double)z[k] - zmax) / sum;
            rdlogits[(size_t)n * K + k] = (float)(p * (rz[k] - prz) / N);
        }
    }
}
