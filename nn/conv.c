// conv.c: 2-D convolution (strided, padded, grouped, depthwise) by im2col and sgemm,
// parallel over the samples of the batch, each thread with its own im2col scratch.
#include <omp.h>
#include <string.h>

#include <cblas.h>

#include "ops.h"

size_t conv2d_col_len(const ConvGeom *g) {
    return (size_t)(g->C / g->groups) * (size_t)g->k * (size_t)g->k * (size_t)g->Ho * (size_t)g->Wo;
}

// True when the convolution reads its input as is (1x1, stride 1, no padding): no im2col needed.
static bool is_pointwise(const ConvGeom *g) { return g->k == 1 && g->stride == 1 && g->pad == 0; }

// Range [lo, hi) of output positions o whose input position o*s - pad + kk lies in [0, n).
static void valid_range(int n_out, int n_in, int s, int pad, int kk, int *lo, int *hi) {
    int first = pad - kk;  // o*s >= pad - kk
    int l = first <= 0 ? 0 : (first + s - 1) / s;
    int last = n_in - 1 + pad - kk;  // o*s <= n_in - 1 + pad - kk
    int h = last < 0 ? 0 : last / s + 1;
    *lo = l < n_out ? l : n_out;
    *hi = h < n_out ? h : n_out;
    if (*hi < *lo) *hi = *lo;
}

// Unfolds channels [c0, c0 + Cg) of one sample x (C, H, W) into col (Cg*k*k, Ho*Wo).
static void im2col(const ConvGeom *g, const float *x, int c0, int Cg, float *col) {
    const int k = g->k, s = g->stride, pad = g->pad, H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo;
    for (int c = 0; c < Cg; c++) {
        const float *xc = x + (size_t)(c0 + c) * H * W;
        for (int ki = 0; ki < k; ki++) {
            int oh_lo, oh_hi;
            valid_range(Ho, H, s, pad, ki, &oh_lo, &oh_hi);
            for (int kj = 0; kj < k; kj++) {
                float *row = col + ((size_t)(c * k + ki) * k + kj) * Ho * Wo;
                int ow_lo, ow_hi;
                valid_range(Wo, W, s, pad, kj, &ow_lo, &ow_hi);
                memset(row, 0, (size_t)oh_lo * Wo * sizeof(float));
                for (int oh = oh_lo; oh < oh_hi; oh++) {
                    float *dst = row + (size_t)oh * Wo;
                    const float *src = xc + (size_t)(oh * s - pad + ki) * W + (kj - pad);
                    for (int ow = 0; ow < ow_lo; ow++) dst[ow] = 0.0f;
                    if (s == 1) {
#pragma omp simd
                        for (int ow = ow_lo; ow < ow_hi; ow++) dst[ow] = src[ow];
                    } else {
                        for (int ow = ow_lo; ow < ow_hi; ow++) dst[ow] = src[ow * s];
                    }
                    for (int ow = ow_hi; ow < Wo; ow++) dst[ow] = 0.0f;
                }
                memset(row + (size_t)oh_hi * Wo, 0, (size_t)(Ho - oh_hi) * Wo * sizeof(float));
            }
        }
    }
}

// Folds col (Cg*k*k, Ho*Wo) back onto channels [c0, c0 + Cg) of dx (C, H, W), accumulating.
static void col2im_acc(const ConvGeom *g, const float *col, int c0, int Cg, float *dx) {
    const int k = g->k, s = g->stride, pad = g->pad, H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo;
    for (int c = 0; c < Cg; c++) {
        float *dxc = dx + (size_t)(c0 + c) * H * W;
        for (int ki = 0; ki < k; ki++) {
            int oh_lo, oh_hi;
            valid_range(Ho, H, s, pad, ki, &oh_lo, &oh_hi);
            for (int kj = 0; kj < k; kj++) {
                const float *row = col + ((size_t)(c * k + ki) * k + kj) * Ho * Wo;
                int ow_lo, ow_hi;
                valid_range(Wo, W, s, pad, kj, &ow_lo, &ow_hi);
                for (int oh = oh_lo; oh < oh_hi; oh++) {
                    const float *src = row + (size_t)oh * Wo;
                    float *dst = dxc + (size_t)(oh * s - pad + ki) * W + (kj - pad);
                    if (s == 1) {
#pragma omp simd
                        for (int ow = ow_lo; ow < ow_hi; ow++) dst[ow] += src[ow];
                    } else {
                        for (int ow = ow_lo; ow < ow_hi; ow++) dst[ow * s] += src[ow];
                    }
                }
            }
        }
    }
}

// Threads a kernel may use: one per scratch slot.
static int slots(const ConvGeom *g) { return g->threads > 0 ? g->threads : omp_get_max_threads(); }

void conv2d_forward(const ConvGeom *g, const float *x, const float *w, const float *b, float *y, float *col,
                    size_t col_stride) {
    const int G = g->groups, Cg = g->C / G, Og = g->O / G, Kg = Cg * g->k * g->k, P = g->Ho * g->Wo;
    const size_t in_len = (size_t)g->C * g->H * g->W, out_len = (size_t)g->O * P;
#pragma omp parallel for schedule(static) num_threads(slots(g))
    for (int n = 0; n < g->N; n++) {
        float *my_col = col + (size_t)omp_get_thread_num() * col_stride;
        const float *xn = x + (size_t)n * in_len;
        float *yn = y + (size_t)n * out_len;
        for (int gi = 0; gi < G; gi++) {
            const float *src = xn + (size_t)gi * Cg * g->H * g->W;
            if (!is_pointwise(g)) {
                im2col(g, xn, gi * Cg, Cg, my_col);
                src = my_col;
            }
            // y_g (Og, P) = w_g (Og, Kg) @ col (Kg, P)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Og, P, Kg, 1.0f, w + (size_t)gi * Og * Kg, Kg,
                        src, P, 0.0f, yn + (size_t)gi * Og * P, P);
        }
        if (b) {
            for (int o = 0; o < g->O; o++) {
                float *yo = yn + (size_t)o * P;
                for (int p = 0; p < P; p++) yo[p] += b[o];
            }
        }
    }
}

void conv2d_backward(const ConvGeom *g, const float *x, const float *w, const float *dy, float *dx, float *dw,
                     float *db, float *col, size_t col_stride, float *wscratch, size_t ws_stride) {
    const int G = g->groups, Cg = g->C / G, Og = g->O / G, Kg = Cg * g->k * g->k, P = g->Ho * g->Wo;
    const size_t in_len = (size_t)g->C * g->H * g->W, out_len = (size_t)g->O * P;
    const size_t w_len = (size_t)g->O * Kg;
    int n_threads = 1;
#pragma omp parallel num_threads(slots(g))
    {
        int t = omp_get_thread_num();
#pragma omp single
        n_threads = omp_get_num_threads();
        float *my_col = col + (size_t)t * col_stride;
        float *my_dw = wscratch + (size_t)t * ws_stride;  // (O, Kg) then db (O)
        float *my_db = my_dw + w_len;
        memset(my_dw, 0, (w_len + (size_t)g->O) * sizeof(float));
#pragma omp for schedule(static)
        for (int n = 0; n < g->N; n++) {
            const float *xn = x + (size_t)n * in_len;
            const float *dyn = dy + (size_t)n * out_len;
            for (int gi = 0; gi < G; gi++) {
                const float *dyg = dyn + (size_t)gi * Og * P;
                const float *wg = w + (size_t)gi * Og * Kg;
                const float *src = xn + (size_t)gi * Cg * g->H * g->W;
                if (!is_pointwise(g)) {
                    im2col(g, xn, gi * Cg, Cg, my_col);
                    src = my_col;
                }
                // dw_g (Og, Kg) += dy_g (Og, P) @ col^T (P, Kg)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Og, Kg, P, 1.0f, dyg, P, src, P, 1.0f,
                            my_dw + (size_t)gi * Og * Kg, Kg);
                if (!dx) continue;
                float *dxn = dx + (size_t)n * in_len;
                if (is_pointwise(g)) {
                    // dx_g (Cg, P) += w_g^T (Kg = Cg, Og) @ dy_g (Og, P)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Kg, P, Og, 1.0f, wg, Kg, dyg, P, 1.0f,
                                dxn + (size_t)gi * Cg * P, P);
                } else {
                    // dcol (Kg, P) = w_g^T @ dy_g, folded back onto dx
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Kg, P, Og, 1.0f, wg, Kg, dyg, P, 0.0f,
                                my_col, P);
                    col2im_acc(g, my_col, gi * Cg, Cg, dxn);
                }
            }
            if (db) {
                for (int o = 0; o < g->O; o++) {
                    const float *dyo = dyn + (size_t)o * P;
                    float s = 0.0f;
                    for (int p = 0; p < P; p++) s += dyo[p];
                    my_db[o] += s;
                }
            }
        }
    }
    // Reduce the per-thread partial sums in a fixed order (deterministic for a thread count).
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < w_len; j++) {
        float s = 0.0f;
        for (int t = 0; t < n_threads; t++) s += wscratch[(size_t)t * ws_stride + j];
        dw[j] += s;
    }
    if (db) {
        for (int o = 0; o < g->O; o++) {
            float s = 0.0f;
            for (int t = 0; t < n_threads; t++) s += wscratch[(size_t)t * ws_stride + w_len + (size_t)o];
            db[o] += s;
        }
    }
}
