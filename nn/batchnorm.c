// batchnorm.c: BatchNorm2d with batch statistics (train mode, samples coupled) and with
// running statistics (eval mode, samples independent). Parallel over channels; each plane's
// sums are taken in float by vector lanes and added up across planes in double. Only the mean
// and invstd of each channel are saved: backward recomputes xhat from the input.
#include <math.h>

#include "err.h"
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

// Sum of a[i] * (x[i] - mu) over [0, n): a dotted with the centred x.
static inline float plane_dot_centred(const float *a, const float *x, float mu, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * (x[i] - mu);
    return s;
}

// Writes y = gamma (x - mu) is + beta over one plane of n values.
static inline void plane_normalise(const float *x, int n, float mu, float is, float gamma, float beta, float *y) {
    const float scale = gamma * is;  // centred first: scale x + (beta - scale mu) cancels when |mu| >> sigma
#pragma omp simd
    for (int i = 0; i < n; i++) y[i] = scale * (x[i] - mu) + beta;
}

// Mean and sum of squared deviations of channel c of x (N, C, HW) in one pass over memory:
// each plane's mean and squared deviations about it (the plane is in L1 for the second look),
// merged across planes in double by the pairwise update of Chan et al.
static void channel_moments(int N, int C, int HW, const float *x, int c, double *mean, double *m2) {
    double mu = 0.0, ss = 0.0, count = 0.0;
    for (int n = 0; n < N; n++) {
        const float *p = x + ((size_t)n * C + c) * HW;
        float mp = plane_sum(p, HW) / (float)HW;
        double m2p = plane_sqdev(p, HW, mp), delta = (double)mp - mu, merged = count + HW;
        mu += delta * HW / merged;
        ss += m2p + delta * delta * count * HW / merged;
        count = merged;
    }
    *mean = mu;
    *m2 = ss;
}

void batchnorm_forward_train(int N, int C, int HW, const float *x, const float *gamma, const float *beta, float eps,
                             float momentum, bool update, float *running_mean, float *running_var, float *y,
                             float *mean, float *invstd) {
    const double M = (double)N * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double mu_d, sq;
        channel_moments(N, C, HW, x, c, &mu_d, &sq);
        float mu = (float)mu_d;
        double var = sq / M;  // biased: what normalisation uses
        float is = (float)(1.0 / sqrt(var + eps));
        mean[c] = mu;
        invstd[c] = is;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            plane_normalise(x + off, HW, mu, is, gamma[c], beta[c], y + off);
        }
        if (update) {
            double unbiased = M > 1 ? sq / (M - 1) : var;
            running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mu;
            running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
        }
    }
}

void batchnorm_forward_eval(int N, int C, int HW, const float *x, const float *gamma, const float *beta, float eps,
                            const float *running_mean, const float *running_var, float *y, float *mean,
                            float *invstd) {
    for (int c = 0; c < C; c++) {
        mean[c] = running_mean[c];
        invstd[c] = 1.0f / sqrtf(running_var[c] + eps);
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            size_t off = ((size_t)n * C + c) * HW;
            plane_normalise(x + off, HW, mean[c], invstd[c], gamma[c], beta[c], y + off);
        }
    }
}

// True where a gradient passes back through the ReLU that alone consumes a batchnorm's output
// yp (yp > 0), and everywhere without one (relu false). Callers pass relu as a constant, so that
// an inlined loop has no branch on it.
static inline bool relu_on(const float *yp, bool relu, int p) { return !relu || yp[p] > 0.0f; }

// v where on, else 0. Loops choose between loaded values with it, decided once per element:
// a choice between computed values would keep the loop scalar under -ftrapping-math.
static inline float keep(bool on, float v) { return on ? v : 0.0f; }

// Adds to *sdy and *sdyx the sums over one plane of dy and of dy (x - mu), dy kept where relu_on
// (yp, relu). Always inlined, so that each call site's copy has its relu constant.
static inline __attribute__((always_inline)) void plane_grad_sums(int HW, const float *dy, const float *yp,
                                                                  bool relu, const float *x, float mu, double *sdy,
                                                                  double *sdyx) {
    float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
    for (int p = 0; p < HW; p++) {
        float d = keep(relu_on(yp, relu, p), dy[p]);
        a += d;
        b += d * (x[p] - mu);
    }
    *sdy += a;
    *sdyx += b;
}

// Writes (acc: adds) dx = scale (dy - mdy - (x - mu) s mdyx) over one plane, dy kept where
// relu_on (yp, relu); with batch_stats false, dx = scale dy (x unread). Always inlined, as
// above.
static inline __attribute__((always_inline)) void plane_grad_dx(int HW, const float *dy, const float *yp, bool relu,
                                                                const float *x, bool batch_stats, float mu, float s,
                                                                float scale, float mdy, float mdyx, float *dx,
                                                                bool acc) {
    if (!batch_stats && acc) {
#pragma omp simd
        for (int p = 0; p < HW; p++) dx[p] += scale * keep(relu_on(yp, relu, p), dy[p]);
    } else if (!batch_stats) {
#pragma omp simd
        for (int p = 0; p < HW; p++) dx[p] = scale * keep(relu_on(yp, relu, p), dy[p]);
    } else if (acc) {
#pragma omp simd
        for (int p = 0; p < HW; p++)
            dx[p] += scale * (keep(relu_on(yp, relu, p), dy[p]) - mdy - (x[p] - mu) * s * mdyx);
    } else {
#pragma omp simd
        for (int p = 0; p < HW; p++)
            dx[p] = scale * (keep(relu_on(yp, relu, p), dy[p]) - mdy - (x[p] - mu) * s * mdyx);
    }
}

// Backward of channel c: the sums for dgamma and dbeta over every plane, then dx. In eval mode
// dx = gamma invstd dy does not wait for the sums: each plane's is written while it is in L1.
static void channel_backward(int N, int C, int HW, int c, bool batch_stats, const float *dy, const float *relu_y,
                             const float *x, float mu, float s, float gamma, float *dx, bool acc, float *dgamma,
                             float *dbeta) {
    const float scale = gamma * s;
    const bool early = dx && !batch_stats;  // dx written in the first pass
    double sdy = 0.0, sdyx = 0.0;           // sums of dy and of dy (x - mu)
    for (int n = 0; n < N; n++) {
        size_t off = ((size_t)n * C + c) * HW;
        if (relu_y) {
            plane_grad_sums(HW, dy + off, relu_y + off, true, x + off, mu, &sdy, &sdyx);
            if (early)
                plane_grad_dx(HW, dy + off, relu_y + off, true, x + off, false, mu, s, scale, 0, 0, dx + off, acc);
        } else {
            plane_grad_sums(HW, dy + off, NULL, false, x + off, mu, &sdy, &sdyx);
            if (early) plane_grad_dx(HW, dy + off, NULL, false, x + off, false, mu, s, scale, 0, 0, dx + off, acc);
        }
    }
    sdyx *= s;  // now the sum of dy xhat
    if (dgamma) dgamma[c] += (float)sdyx;
    if (dbeta) dbeta[c] += (float)sdy;
    if (!dx || early) return;
    // train mode: dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat))
    const double M = (double)N * HW;
    const float mdy = (float)(sdy / M), mdyx = (float)(sdyx / M);
    for (int n = 0; n < N; n++) {
        size_t off = ((size_t)n * C + c) * HW;
        if (relu_y)
            plane_grad_dx(HW, dy + off, relu_y + off, true, x + off, true, mu, s, scale, mdy, mdyx, dx + off, acc);
        else
            plane_grad_dx(HW, dy + off, NULL, false, x + off, true, mu, s, scale, mdy, mdyx, dx + off, acc);
    }
}

void batchnorm_backward(int N, int C, int HW, bool batch_stats, const float *dy, const float *relu_y, const float *x,
                        const float *mean, const float *invstd, const float *gamma, float *dx, bool acc,
                        float *dgamma, float *dbeta) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
        channel_backward(N, C, HW, c, batch_stats, dy, relu_y, x, mean[c], invstd[c], gamma[c], dx, acc, dgamma,
                         dbeta);
}

// ---- R-operator (Pearlmutter) ----
// xhat = (x - mean) invstd and R{xhat} = invstd (R{x} - mean(R{x}) - xhat mean(xhat R{x})) are
// recomputed where needed from x, R{x} and two numbers per channel, never stored.

void batchnorm_rforward(int N, int C, int HW, bool batch_stats, const float *x, const float *mean,
                        const float *invstd, const float *gamma, const float *rx, const float *vgamma,
                        const float *vbeta, const float *relu_y, float *ry, float *rstat) {
    const double M = (double)N * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float mu = mean[c], s = invstd[c];
        float mrx = 0.0f, cc = 0.0f;
        if (batch_stats) {
            double srx = 0.0, sxr = 0.0;
            for (int n = 0; n < N; n++) {
                size_t off = ((size_t)n * C + c) * HW;
                srx += plane_sum(rx + off, HW);
                sxr += plane_dot_centred(rx + off, x + off, mu, HW);
            }
            mrx = (float)(srx / M);
            cc = (float)(sxr * s / M);
        }
        rstat[c] = mrx;
        rstat[C + c] = cc;
        const float g = gamma[c], vg = vgamma[c], vb = vbeta[c];
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            const float *r = rx + off, *xp = x + off;
            float *out = ry + off;
#pragma omp simd
            for (int p = 0; p < HW; p++) {
                float h = (xp[p] - mu) * s;
                out[p] = g * (s * (r[p] - mrx - h * cc)) + vg * h + vb;
            }
            if (!relu_y) continue;
            const float *yp = relu_y + off;  // R{relu(y)} = R{y} where y > 0, the plane still in L1
#pragma omp simd
            for (int p = 0; p < HW; p++) out[p] = yp[p] > 0.0f ? out[p] : 0.0f;
        }
    }
}

// Eval-mode R-backward of one plane: adds its sums of R{dy} and R{dy xhat} to *srdy and *sr and
// writes (acc: adds) R{dx} = rg dy + g R{dy} if out, dy and R{dy} kept where relu_on (yp, relu).
// Always inlined, so that each call site's copy has its relu constant.
static inline __attribute__((always_inline)) void plane_rbackward_eval(int HW, const float *d, const float *rd,
                                                                       const float *yp, bool relu, const float *xp,
                                                                       float mu, float s, const float *r, float g,
                                                                       float rg, float *out, bool acc, double *srdy,
                                                                       double *sr) {
    float a_rdy = 0.0f, a_r = 0.0f;
#pragma omp simd reduction(+ : a_rdy, a_r)
    for (int p = 0; p < HW; p++) {
        float h = (xp[p] - mu) * s, rh = s * r[p];  // R{xhat} = invstd R{x}
        bool on = relu_on(yp, relu, p);
        float dp = keep(on, d[p]), rdp = keep(on, rd[p]);
        a_rdy += rdp;
        a_r += rdp * h + dp * rh;
    }
    *srdy += a_rdy;
    *sr += a_r;
    if (!out) return;
    if (acc) {
#pragma omp simd
        for (int p = 0; p < HW; p++) {
            bool on = relu_on(yp, relu, p);
            out[p] += rg * keep(on, d[p]) + g * keep(on, rd[p]);
        }
    } else {
#pragma omp simd
        for (int p = 0; p < HW; p++) out[p] = rg * d[p] + g * rd[p];
        if (!relu) return;
#pragma omp simd  // then through the ReLU: a choice between loaded values (see keep)
        for (int p = 0; p < HW; p++) out[p] = keep(relu_on(yp, relu, p), out[p]);
    }
}

// Eval-mode R-backward of channel c in one pass: R{dx} = R{gamma} invstd dy + gamma invstd R{dy}
// needs no sums, so it is written while the sums for R{dgamma} and R{dbeta} are taken. relu_y
// as in batchnorm_rbackward.
static void channel_rbackward_eval(int N, int C, int HW, int c, const float *dy, const float *rdy, const float *relu_y,
                                   const float *x, float mu, float s, const float *rx, float gamma, float vgamma,
                                   float *rdx, bool acc, float *rdgamma, float *rdbeta) {
    const float g = gamma * s, rg = vgamma * s;
    double srdy = 0.0, sr = 0.0;  // sums of R{dy} and of R{dy xhat}
    for (int n = 0; n < N; n++) {
        size_t off = ((size_t)n * C + c) * HW;
        float *out = rdx ? rdx + off : NULL;
        if (relu_y)
            plane_rbackward_eval(HW, dy + off, rdy + off, relu_y + off, true, x + off, mu, s, rx + off, g, rg, out,
                                 acc, &srdy, &sr);
        else
            plane_rbackward_eval(HW, dy + off, rdy + off, NULL, false, x + off, mu, s, rx + off, g, rg, out, acc,
                                 &srdy, &sr);
    }
    rdgamma[c] += (float)sr;
    rdbeta[c] += (float)srdy;
}

void batchnorm_rbackward(int N, int C, int HW, bool batch_stats, const float *dy, const float *rdy, const float *x,
                         const float *mean, const float *invstd, const float *rx, const float *rstat,
                         const float *gamma, const float *vgamma, const float *relu_y, float *rdx, bool acc,
                         float *rdgamma, float *rdbeta) {
    const double M = (double)N * HW;
    HP_ASSERT(!(relu_y && batch_stats));
    if (!batch_stats) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++)
            channel_rbackward_eval(N, C, HW, c, dy, rdy, relu_y, x, mean[c], invstd[c], rx, gamma[c], vgamma[c], rdx,
                                   acc, rdgamma, rdbeta);
        return;
    }
#pragma omp parallel for schedule(static)  // train mode: the statistics depend on x
    for (int c = 0; c < C; c++) {
        const float mu = mean[c], s = invstd[c], mrx = rstat[c], cc = rstat[C + c];
        double sdy = 0.0, sdyx = 0.0, srdy = 0.0, sr = 0.0;  // sums of dy, dy xhat, R{dy}, R{dy xhat}
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            const float *d = dy + off, *rd = rdy + off, *xp = x + off, *r = rx + off;
            float a_dyx = 0.0f, a_rdy = 0.0f, a_r = 0.0f;
#pragma omp simd reduction(+ : a_dyx, a_rdy, a_r)
            for (int p = 0; p < HW; p++) {
                float h = (xp[p] - mu) * s, rh = s * (r[p] - mrx - h * cc);
                a_dyx += d[p] * h;
                a_rdy += rd[p];
                a_r += rd[p] * h + d[p] * rh;
            }
            sdy += plane_sum(d, HW);
            sdyx += a_dyx;
            srdy += a_rdy;
            sr += a_r;
        }
        rdgamma[c] += (float)sr;
        rdbeta[c] += (float)srdy;
        if (!rdx) continue;
        const float g = gamma[c] * s;
        const float a = (float)(sdy / M), b = (float)(sdyx / M), ra = (float)(srdy / M), rb = (float)(sr / M);
        const float rg = vgamma[c] * s - gamma[c] * s * s * cc;  // R{gamma s} = vgamma s + gamma R{s}, R{s} = -s^2 c
        // R{dx} = R{g} (dy - a - xhat b) + g (R{dy} - R{a} - R{xhat} b - xhat R{b})
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            const float *d = dy + off, *rd = rdy + off, *xp = x + off, *r = rx + off;
            float *out = rdx + off;
#pragma omp simd
            for (int p = 0; p < HW; p++) {
                float h = (xp[p] - mu) * s, rh = s * (r[p] - mrx - h * cc);
                float v = rg * (d[p] - a - h * b) + g * (rd[p] - ra - rh * b - h * rb);
                out[p] = acc ? out[p] + v : v;
            }
        }
    }
}
