// batchnorm.c: BatchNorm2d with batch statistics (train mode, samples coupled) and with
// running statistics (eval mode, samples independent). Parallel over channels; each plane's
// sums are taken in float by vector lanes and added up across planes in double.
#include <math.h>

#include "ops.h"

// Sum of p[0..n).
static inline float plane_sum(const float *p, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += p[i];
    return s;
}

// Sum of (p[i] - mu)^2 over [0, n).
static inline float plane_sqdev(const float *p, int n, float mu) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += (p[i] - mu) * (p[i] - mu);
    return s;
}

// Sum of a[i] * b[i] over [0, n).
static inline float plane_dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// Writes xhat = (x - mu) * is and y = gamma * xhat + beta over one plane of n values.
static inline void plane_normalise(const float *x, int n, float mu, float is, float gamma, float beta, float *xhat,
                                   float *y) {
#pragma omp simd
    for (int i = 0; i < n; i++) {
        float h = (x[i] - mu) * is;
        xhat[i] = h;
        y[i] = gamma * h + beta;
    }
}

void batchnorm_forward_train(int N, int C, int HW, const float *x, const float *gamma, const float *beta, float eps,
                             float momentum, bool update, float *running_mean, float *running_var, float *y,
                             float *xhat, float *mean, float *invstd) {
    const double M = (double)N * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sum = 0.0, sq = 0.0;
        for (int n = 0; n < N; n++) sum += plane_sum(x + ((size_t)n * C + c) * HW, HW);
        float mu = (float)(sum / M);
        for (int n = 0; n < N; n++) sq += plane_sqdev(x + ((size_t)n * C + c) * HW, HW, mu);
        double var = sq / M;  // biased: what normalisation uses
        float is = (float)(1.0 / sqrt(var + eps));
        mean[c] = mu;
        invstd[c] = is;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            plane_normalise(x + off, HW, mu, is, gamma[c], beta[c], xhat + off, y + off);
        }
        if (update) {
            double unbiased = M > 1 ? sq / (M - 1) : var;
            running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mu;
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
            plane_normalise(x + off, HW, running_mean[c], invstd[c], gamma[c], beta[c], xhat + off, y + off);
        }
    }
}

void batchnorm_backward(int N, int C, int HW, bool batch_stats, const float *dy, const float *xhat,
                        const float *gamma, const float *invstd, float *dx, bool acc, float *dgamma, float *dbeta) {
    const double M = (double)N * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            sdy += plane_sum(dy + off, HW);
            sdyx += plane_dot(dy + off, xhat + off, HW);
        }
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        if (!dx) continue;
        float scale = gamma[c] * invstd[c];
        // train mode: dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat)); eval: gamma invstd dy
        float mdy = batch_stats ? (float)(sdy / M) : 0.0f;
        float mdyx = batch_stats ? (float)(sdyx / M) : 0.0f;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            const float *dyp = dy + off, *hp = xhat + off;
            float *dxp = dx + off;
            if (acc) {
#pragma omp simd
                for (int p = 0; p < HW; p++) dxp[p] += scale * (dyp[p] - mdy - hp[p] * mdyx);
            } else {
#pragma omp simd
                for (int p = 0; p < HW; p++) dxp[p] = scale * (dyp[p] - mdy - hp[p] * mdyx);
            }
        }
    }
}

// ---- R-operator (Pearlmutter) ----

void batchnorm_rforward(int N, int C, int HW, bool batch_stats, const float *xhat, const float *invstd,
                        const float *gamma, const float *rx, const float *vgamma, const float *vbeta, float *ry,
                        float *rxhat, float *rc) {
    const double M = (double)N * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float s = invstd[c], mrx = 0.0f, cc = 0.0f;
        if (batch_stats) {
            // R{xhat} = s (R{x} - mean(R{x}) - xhat mean(xhat R{x}))
            double srx = 0.0, sxr = 0.0;
            for (int n = 0; n < N; n++) {
                size_t off = ((size_t)n * C + c) * HW;
                srx += plane_sum(rx + off, HW);
                sxr += plane_dot(xhat + off, rx + off, HW);
            }
            mrx = (float)(srx / M);
            cc = (float)(sxr / M);
        }
        rc[c] = cc;
        float g = gamma[c], vg = vgamma[c], vb = vbeta[c];
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            const float *r = rx + off, *h = xhat + off;
            float *rh = rxhat + off, *out = ry + off;
#pragma omp simd
            for (int p = 0; p < HW; p++) {
                float v = s * (r[p] - mrx - h[p] * cc);
                rh[p] = v;
                out[p] = g * v + vg * h[p] + vb;
            }
        }
    }
}

void batchnorm_rbackward(int N, int C, int HW, bool batch_stats, const float *dy, const float *rdy,
                         const float *xhat, const float *rxhat, const float *gamma, const float *invstd,
                         const float *rc, const float *vgamma, float *rdx, bool acc, float *rdgamma, float *rdbeta) {
    const double M = (double)N * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sdy = 0.0, sdyx = 0.0, srdy = 0.0, sr = 0.0;  // sums of dy, dy xhat, R{dy}, R{dy xhat}
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            sdy += plane_sum(dy + off, HW);
            sdyx += plane_dot(dy + off, xhat + off, HW);
            srdy += plane_sum(rdy + off, HW);
            sr += plane_dot(rdy + off, xhat + off, HW) + plane_dot(dy + off, rxhat + off, HW);
        }
        rdgamma[c] += (float)sr;
        rdbeta[c] += (float)srdy;
        if (!rdx) continue;
        float s = invstd[c], g = gamma[c] * s;
        float a = 0.0f, b = 0.0f, ra = 0.0f, rb = 0.0f;
        float rg = vgamma[c] * s;  // R{gamma s}; train mode adds gamma R{s} = -gamma s^2 c
        if (batch_stats) {
            a = (float)(sdy / M);
            b = (float)(sdyx / M);
            ra = (float)(srdy / M);
            rb = (float)(sr / M);
            rg -= gamma[c] * s * s * rc[c];
        }
        // R{dx} = R{g} (dy - a - xhat b) + g (R{dy} - R{a} - R{xhat} b - xhat R{b})
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            const float *d = dy + off, *rd = rdy + off, *h = xhat + off, *rh = rxhat + off;
            float *out = rdx + off;
            if (acc) {
#pragma omp simd
                for (int p = 0; p < HW; p++)
                    out[p] += rg * (d[p] - a - h[p] * b) + g * (rd[p] - ra - rh[p] * b - h[p] * rb);
            } else {
#pragma omp simd
                for (int p = 0; p < HW; p++)
                    out[p] = rg * (d[p] - a - h[p] * b) + g * (rd[p] - ra - rh[p] * b - h[p] * rb);
            }
        }
    }
}
