// batchnorm.c: BatchNorm2d with batch statistics (train mode, samples coupled) and with
// running statistics (eval mode, samples independent). Parallel over channels.
#include <math.h>

#include "ops.h"

void batchnorm_forward_train(int N, int C, int HW, const float *x, const float *gamma, const float *beta, float eps,
                             float momentum, bool update, float *running_mean, float *running_var, float *y,
                             float *xhat, float *mean, float *invstd) {
    const double M = (double)N * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sum = 0.0, sq = 0.0;
        for (int n = 0; n < N; n++) {
            const float *xc = x + ((size_t)n * C + c) * HW;
            for (int p = 0; p < HW; p++) sum += xc[p];
        }
        double mu = sum / M;
        for (int n = 0; n < N; n++) {
            const float *xc = x + ((size_t)n * C + c) * HW;
            for (int p = 0; p < HW; p++) {
                double d = xc[p] - mu;
                sq += d * d;
            }
        }
        double var = sq / M;  // biased: what normalisation uses
        float is = (float)(1.0 / sqrt(var + eps));
        mean[c] = (float)mu;
        invstd[c] = is;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            for (int p = 0; p < HW; p++) {
                float h = (x[off + p] - (float)mu) * is;
                xhat[off + p] = h;
                y[off + p] = gamma[c] * h + beta[c];
            }
        }
        if (update) {
            double unbiased = M > 1 ? sq / (M - 1) : var;
            running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (float)mu;
            running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
        }
    }
}

void batchnorm_forward_eval(int N, int C, int HW, const float *x, const float *gamma, const float *beta, float eps,
                            const float *running_mean, const float *running_var, float *y, float *xhat,
                            float *invstd) {
    for (int c = 0; c < C; c++) invstd[c] = 1.0f / sqrtf(running_var[c] + eps);
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            size_t off = ((size_t)n * C + c) * HW;
            float mu = running_mean[c], is = invstd[c], g = gamma[c], b = beta[c];
            for (int p = 0; p < HW; p++) {
                float h = (x[off + p] - mu) * is;
                xhat[off + p] = h;
                y[off + p] = g * h + b;
            }
        }
    }
}

void batchnorm_backward(int N, int C, int HW, bool batch_stats, const float *dy, const float *xhat,
                        const float *gamma, const float *invstd, float *dx, float *dgamma, float *dbeta) {
    const double M = (double)N * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            for (int p = 0; p < HW; p++) {
                sdy += dy[off + p];
                sdyx += (double)dy[off + p] * xhat[off + p];
            }
        }
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
        if (!dx) continue;
        float scale = gamma[c] * invstd[c];
        // train mode: dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat)); eval: gamma invstd dy
        float mdy = batch_stats ? (float)(sdy / M) : 0.0f;
        float mdyx = batch_stats ? (float)(sdyx / M) : 0.0f;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            for (int p = 0; p < HW; p++) dx[off + p] += scale * (dy[off + p] - mdy - xhat[off + p] * mdyx);
        }
    }
}
