// conv.c: 2-D convolution (strided, padded, grouped, depthwise) by im2col and sgemm,
// parallel over the samples of the batch, each thread with its own scratch.
//
// Two unfoldings: the classic im2col into (C/groups * k * k, Ho * Wo), and for stride 1 with
// rows of 12 or more outputs a "wide" one into (C/groups * k * k, Ho * Wp), Wp = W + 2 pad: every
// output row is computed Wp wide and its last k - 1 values are discarded, which makes each
// unfolded row one contiguous run of the zero-padded input (a single copy instead of Ho short
// ones) and each fold one contiguous add. It costs Wp / Wo more multiply-adds (7% at 28x28).
//
// Stride-1 convolutions (groups 1, kernel > 1) skip the unfolding in the forward pass and for the
// input gradient: conv_direct.c computes them from a zero-padded copy of the input, and their
// weight gradient as a reduction over the wide positions of several samples at once. Stride-2
// convolutions (groups 1) skip it in the forward pass: conv_direct.c splits the padded input into
// its four phases, each a stride-1 plane; their backward pass unfolds.
//
// Per-thread scratch: [packed weights of the direct kernels (forward: w and, in the R-forward,
// V_w; input gradient: w and w2 transposed)] then either [unfolded columns][one padded plane + k
// slack][wide rows of dy, dy2] or the direct kernels' [padded inputs (one or two sources)][wide
// output tiles, then the output map of direct_map]. A backward pass by the direct weight gradient
// has its chunk of padded inputs and wide dy first, then the input gradient's area (direct or by
// unfolding) after it, so that each keeps the zero borders its first sample wrote. Each thread
// packs its own copy of the weights (a shared copy would save memory on wide layers; not done).
// conv2d_infer by Winograd uses the same scratch for its transformed weights and one sample's
// work area (nn/conv_winograd.h); conv2d_col_len covers the larger of the two layouts.
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include "conv_direct.h"
#include "conv_winograd.h"
#include "err.h"
#include "ops.h"

// Padded plane of one input channel: (H + 2 pad) x (W + 2 pad).
static size_t padded_len(const ConvGeom *g) { return (size_t)(g->H + 2 * g->pad) * (size_t)(g->W + 2 * g->pad); }

// True when the convolution reads its input as is (1x1, stride 1, no padding): no im2col needed.
static bool is_pointwise(const ConvGeom *g) { return g->k == 1 && g->stride == 1 && g->pad == 0; }

// True when the wide unfolding is used (see the top of the file).
static bool use_wide(const ConvGeom *g) { return g->stride == 1 && !is_pointwise(g) && g->Wo >= 12; }

// Columns of the unfolded matrix: Ho * Wo, or Ho * (W + 2 pad) in the wide layout.
static size_t col_width(const ConvGeom *g) {
    return (size_t)g->Ho * (size_t)(use_wide(g) ? g->W + 2 * g->pad : g->Wo);
}

// Floats of the unfolded matrix of one group.
static size_t unfolded_len(const ConvGeom *g) {
    return (size_t)(g->C / g->groups) * (size_t)g->k * (size_t)g->k * col_width(g);
}

// Floats of the padded plane with the slack the last taps of the wide layout read.
static size_t plane_len(const ConvGeom *g) { return padded_len(g) + (size_t)g->k; }

// Floats at the start of each thread's scratch for the direct kernels' packed weights.
static size_t packed_region(const ConvGeom *g) {
    size_t fwd = 0, dx = 0;
    if (direct_fwd_ok(g)) {
        DirectConv d = direct_fwd(g);
        fwd = 2 * direct_packed_len(&d);  // w and, for the R-forward, V_w
    }
    if (direct_bwd_ok(g)) {
        DirectConv d = direct_dx(g);
        dx = 2 * direct_packed_len(&d);
    }
    return fwd > dx ? fwd : dx;
}

enum { DIRECT_ALIGN_SLACK = 15 };  // floats a work area may move to reach a 64-byte boundary

// Floats of the direct weight gradient's chunk area: a chunk's padded inputs and wide dy.
static size_t dw_chunk_len(const ConvGeom *g) {
    DirectConv f = direct_fwd(g);
    return (size_t)direct_dw_chunk(&f) * (direct_padded_len(&f) + direct_wide_len(&f));
}

// Floats after the packed weights: the larger of the unfolding's and the direct forward's needs,
// or, for a backward by the direct weight gradient, its chunk area and after it the input
// gradient's (direct or by unfolding), apart so that both keep their zero borders.
static size_t work_region(const ConvGeom *g) {
    size_t wide_rows = use_wide(g) ? 2 * (size_t)(g->O / g->groups) * col_width(g) : 0;
    size_t unfold = unfolded_len(g) + plane_len(g) + wide_rows, need = unfold;
    if (direct_fwd_ok(g)) {
        DirectConv d = direct_fwd(g);
        size_t n = 2 * direct_padded_len(&d) + direct_wide_len(&d);
        if (n > need) need = n;
    }
    if (direct_dw_ok(g)) {
        size_t dx = unfold;
        if (direct_bwd_ok(g)) {
            DirectConv d = direct_dx(g);
            dx = 2 * direct_padded_len(&d) + direct_wide_len(&d);
        }
        if (dw_chunk_len(g) + dx > need) need = dw_chunk_len(g) + dx;
        need += DIRECT_ALIGN_SLACK;  // the backward pass starts its work on a 64-byte boundary
    }
    return need;
}

// p rounded up to a 64-byte boundary (at most DIRECT_ALIGN_SLACK floats on).
static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

size_t conv2d_col_len(const ConvGeom *g) {
    size_t n = packed_region(g) + work_region(g);
    if (wino_ok(g)) {  // conv2d_infer's transformed weights and work area
        Wino w = wino_make(g);
        size_t nw = wino_packed_len(&w) + wino_work_len(&w);
        if (nw > n) n = nw;
    }
    return n;
}

// Copies plane xc (H, W) into the middle of pad_buf (H + 2 pad, W + 2 pad), zeroing the border.
static void pad_plane(const ConvGeom *g, const float *xc, float *pad_buf) {
    const int H = g->H, W = g->W, p = g->pad, Wp = W + 2 * p;
    memset(pad_buf, 0, (size_t)p * Wp * sizeof(float));
    for (int h = 0; h < H; h++) {
        float *dst = pad_buf + (size_t)(h + p) * Wp;
        for (int j = 0; j < p; j++) dst[j] = dst[p + W + j] = 0.0f;
        const float *src = xc + (size_t)h * W;
#pragma omp simd
        for (int w = 0; w < W; w++) dst[p + w] = src[w];
    }
    memset(pad_buf + (size_t)(H + p) * Wp, 0, (size_t)p * Wp * sizeof(float));
}

// Unfolds channels [c0, c0 + Cg) of one sample x (C, H, W) into col (Cg*k*k, Ho*Wo), going
// through a zero-padded copy of each channel (pad_buf) so that every copy is branch-free.
static void im2col(const ConvGeom *g, const float *x, int c0, int Cg, float *col, float *pad_buf) {
    const int k = g->k, s = g->stride, Ho = g->Ho, Wo = g->Wo, Wp = g->W + 2 * g->pad;
    for (int c = 0; c < Cg; c++) {
        pad_plane(g, x + (size_t)(c0 + c) * g->H * g->W, pad_buf);
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                float *row = col + ((size_t)(c * k + ki) * k + kj) * Ho * Wo;
                for (int oh = 0; oh < Ho; oh++) {
                    const float *src = pad_buf + (size_t)(oh * s + ki) * Wp + kj;
                    float *dst = row + (size_t)oh * Wo;
                    if (s == 1) {
#pragma omp simd
                        for (int ow = 0; ow < Wo; ow++) dst[ow] = src[ow];
                    } else {
                        for (int ow = 0; ow < Wo; ow++) dst[ow] = src[ow * s];
                    }
                }
            }
        }
    }
}

void conv2d_im2col(const ConvGeom *g, const float *x, int c0, int Cg, float *col, float *plane) {
    im2col(g, x, c0, Cg, col, plane);
}

// Writes (acc: adds) `rows` rows of `width` floats, src's at a stride of src_stride, into dst
// (rows, width).
static void rows_out(const float *src, size_t src_stride, int rows, int width, float *dst, bool acc) {
    for (int r = 0; r < rows; r++) {
        const float *s = src + (size_t)r * src_stride;
        float *d = dst + (size_t)r * width;
        if (acc) {
#pragma omp simd
            for (int i = 0; i < width; i++) d[i] += s[i];
        } else {
            memcpy(d, s, (size_t)width * sizeof(float));
        }
    }
}

// Writes (acc: adds) the interior of a padded plane (H + 2 pad rows of W + 2 pad) to dxc (H, W).
static void interior_out(const ConvGeom *g, const float *plane, float *dxc, bool acc) {
    const size_t Wp = (size_t)(g->W + 2 * g->pad);
    rows_out(plane + (size_t)g->pad * Wp + (size_t)g->pad, Wp, g->H, g->W, dxc, acc);
}

// Folds col (Cg*k*k, Ho*Wo) back onto channels [c0, c0 + Cg) of dx (C, H, W) through a
// zero-padded plane (pad_buf) whose interior is then written (acc: added) to dx.
static void col2im(const ConvGeom *g, const float *col, int c0, int Cg, float *dx, float *pad_buf, bool acc) {
    const int k = g->k, s = g->stride, Ho = g->Ho, Wo = g->Wo, H = g->H, W = g->W, p = g->pad, Wp = W + 2 * p;
    for (int c = 0; c < Cg; c++) {
        memset(pad_buf, 0, padded_len(g) * sizeof(float));
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                const float *row = col + ((size_t)(c * k + ki) * k + kj) * Ho * Wo;
                for (int oh = 0; oh < Ho; oh++) {
                    float *dst = pad_buf + (size_t)(oh * s + ki) * Wp + kj;
                    const float *src = row + (size_t)oh * Wo;
                    if (s == 1) {
#pragma omp simd
                        for (int ow = 0; ow < Wo; ow++) dst[ow] += src[ow];
                    } else {
                        for (int ow = 0; ow < Wo; ow++) dst[ow * s] += src[ow];
                    }
                }
            }
        }
        interior_out(g, pad_buf, dx + (size_t)(c0 + c) * H * W, acc);
    }
}

// Wide unfolding of channels [c0, c0 + Cg) of one sample x (C, H, W) into col (Cg*k*k, Ho*Wp):
// row (c, ki, kj) is the padded plane of c from offset ki * Wp + kj on, Ho * Wp values long.
static void wide_unfold(const ConvGeom *g, const float *x, int c0, int Cg, float *col, float *plane) {
    const int k = g->k, Wp = g->W + 2 * g->pad;
    const size_t width = col_width(g);
    memset(plane + padded_len(g), 0, (size_t)k * sizeof(float));
    for (int c = 0; c < Cg; c++) {
        pad_plane(g, x + (size_t)(c0 + c) * g->H * g->W, plane);
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++)
                memcpy(col + ((size_t)(c * k + ki) * k + kj) * width, plane + (size_t)ki * Wp + kj,
                       width * sizeof(float));
    }
}

// Folds a wide col (Cg*k*k, Ho*Wp) back onto channels [c0, c0 + Cg) of dx (C, H, W), written
// (acc: added).
static void wide_fold(const ConvGeom *g, const float *col, int c0, int Cg, float *dx, float *plane, bool acc) {
    const int k = g->k, Wp = g->W + 2 * g->pad;
    const size_t width = col_width(g);
    for (int c = 0; c < Cg; c++) {
        memset(plane, 0, plane_len(g) * sizeof(float));
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const float *src = col + ((size_t)(c * k + ki) * k + kj) * width;
                float *dst = plane + (size_t)ki * Wp + kj;
#pragma omp simd
                for (size_t i = 0; i < width; i++) dst[i] += src[i];
            }
        interior_out(g, plane, dx + (size_t)(c0 + c) * g->H * g->W, acc);
    }
}

// Unfolds channels [c0, c0 + Cg) of sample x in the layout of g (classic or wide).
static void unfold(const ConvGeom *g, const float *x, int c0, int Cg, float *col, float *plane) {
    if (use_wide(g))
        wide_unfold(g, x, c0, Cg, col, plane);
    else
        im2col(g, x, c0, Cg, col, plane);
}

// Folds an unfolded gradient back onto dx in the layout of g, written (acc: added).
static void fold(const ConvGeom *g, const float *col, int c0, int Cg, float *dx, float *plane, bool acc) {
    if (use_wide(g))
        wide_fold(g, col, c0, Cg, dx, plane, acc);
    else
        col2im(g, col, c0, Cg, dx, plane, acc);
}

// Copies `rows` output channels (rows, Ho, Wo) into wide rows (rows, Ho * Wp), zeroing the tails.
static void widen(const ConvGeom *g, const float *src, int rows, float *dst) {
    const int Ho = g->Ho, Wo = g->Wo, Wp = g->W + 2 * g->pad;
    for (int r = 0; r < rows * Ho; r++) {
        memcpy(dst + (size_t)r * Wp, src + (size_t)r * Wo, (size_t)Wo * sizeof(float));
        memset(dst + (size_t)r * Wp + Wo, 0, (size_t)(Wp - Wo) * sizeof(float));
    }
}

// Writes (acc: adds) wide rows (rows, Ho * Wp) into output channels (rows, Ho, Wo).
static void narrow(const ConvGeom *g, const float *src, int rows, float *dst, bool acc) {
    rows_out(src, (size_t)(g->W + 2 * g->pad), rows * g->Ho, g->Wo, dst, acc);
}

// Threads a kernel may use: one per scratch slot.
static int slots(const ConvGeom *g) { return g->threads > 0 ? g->threads : omp_get_max_threads(); }

// Adds bias b (O) to every position of one sample's output yn (O, Ho, Wo), if b is not NULL,
// then resn (O, Ho, Wo) if not NULL, then clamps it at zero if relu: the epilogue of a forward
// pass, on a plane still in cache.
static void epilogue(const ConvGeom *g, const float *b, const float *resn, bool relu, float *yn) {
    const int P = g->Ho * g->Wo;
    if (!b && !resn && !relu) return;
    for (int o = 0; o < g->O; o++) {
        float *yo = yn + (size_t)o * P;
        const float bo = b ? b[o] : 0.0f;
        if (resn) {
            const float *ro = resn + (size_t)o * P;
#pragma omp simd
            for (int p = 0; p < P; p++) {
                float v = (b ? yo[p] + bo : yo[p]) + ro[p];
                yo[p] = !relu || v > 0.0f ? v : 0.0f;
            }
        } else if (relu) {
#pragma omp simd
            for (int p = 0; p < P; p++) {
                float v = yo[p] + bo;
                yo[p] = v > 0.0f ? v : 0.0f;  // not fmaxf: a libm call unless inlined
            }
        } else {
#pragma omp simd
            for (int p = 0; p < P; p++) yo[p] += bo;
        }
    }
}

// y = conv(x, w) [+ conv(x2, w2)] + b [+ res], or y += ... when acc, by the direct kernel
// (direct_fwd_ok(g)), the second term only when x2 is not NULL, res (N, O, Ho, Wo) only when not
// NULL; relu clamps the result at zero (res and relu only without acc). Both terms share each
// tile's accumulators.
static void conv2d_apply_direct(const ConvGeom *g, const float *x, const float *w, const float *x2, const float *w2,
                                const float *b, const float *res, bool relu, float *y, float *col, size_t col_stride,
                                bool acc) {
    const DirectConv d = direct_fwd(g);
    HP_ASSERT(d.Ho == g->Ho && d.Wo == g->Wo);
    const size_t in_len = (size_t)g->C * g->H * g->W, out_len = (size_t)g->O * g->Ho * g->Wo;
    const int n_src = x2 ? 2 : 1;
    const float *xs[2] = {x, x2}, *ws[2] = {w, w2};
#pragma omp parallel num_threads(slots(g))
    {
        float *packed[2], *padded[2];
        packed[0] = col + (size_t)omp_get_thread_num() * col_stride;
        packed[1] = packed[0] + direct_packed_len(&d);
        padded[0] = packed[0] + packed_region(g);
        padded[1] = padded[0] + direct_padded_len(&d);
        float *wide = padded[0] + (size_t)n_src * direct_padded_len(&d);
        for (int s = 0; s < n_src; s++) direct_pack(&d, ws[s], false, packed[s]);
        direct_map(&d, wide);
        bool first = true;  // after a thread's first sample, its padded buffers' borders are zero
#pragma omp for schedule(static)
        for (int n = 0; n < g->N; n++) {
            float *yn = y + (size_t)n * out_len;
            for (int s = 0; s < n_src; s++)
                (first ? direct_pad : direct_pad_inner)(&d, xs[s] + (size_t)n * in_len, padded[s]);
            first = false;
            direct_run(&d, n_src, (const float *const *)padded, (const float *const *)packed, wide, true, yn, acc, b,
                       res ? res + (size_t)n * out_len : NULL, relu);
        }
    }
}

// y = conv(x, w) + b [+ res (N, O, Ho, Wo) if not NULL], or y += conv(x, w) + b when acc; relu
// clamps the result at zero (res and relu only without acc).
static void conv2d_apply(const ConvGeom *g, const float *x, const float *w, const float *b, const float *res,
                         bool relu, float *y, float *col, size_t col_stride, bool acc) {
    HP_ASSERT(!(acc && (relu || res)));
    if (direct_fwd_ok(g)) {
        conv2d_apply_direct(g, x, w, NULL, NULL, b, res, relu, y, col, col_stride, acc);
        return;
    }
    const int G = g->groups, Cg = g->C / G, Og = g->O / G, Kg = Cg * g->k * g->k, P = g->Ho * g->Wo;
    const int width = (int)col_width(g);
    const size_t in_len = (size_t)g->C * g->H * g->W, out_len = (size_t)g->O * P;
#pragma omp parallel for schedule(static) num_threads(slots(g))
    for (int n = 0; n < g->N; n++) {
        float *my_col = col + (size_t)omp_get_thread_num() * col_stride;  // packed_region(g) is 0 here
        float *my_plane = my_col + unfolded_len(g), *my_wide = my_plane + plane_len(g);
        const float *xn = x + (size_t)n * in_len;
        float *yn = y + (size_t)n * out_len;
        for (int gi = 0; gi < G; gi++) {
            const float *src = xn + (size_t)gi * Cg * g->H * g->W, *wg = w + (size_t)gi * Og * Kg;
            float *yg = yn + (size_t)gi * Og * P;
            if (!is_pointwise(g)) {
                unfold(g, xn, gi * Cg, Cg, my_col, my_plane);
                src = my_col;
            }
            // y_g (Og, width) = w_g (Og, Kg) @ col (Kg, width); wide rows are narrowed into y
            if (use_wide(g)) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Og, width, Kg, 1.0f, wg, Kg, src, width, 0.0f,
                            my_wide, width);
                narrow(g, my_wide, Og, yg, acc);
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Og, P, Kg, 1.0f, wg, Kg, src, P,
                            acc ? 1.0f : 0.0f, yg, P);
            }
        }
        epilogue(g, b, res ? res + (size_t)n * out_len : NULL, relu, yn);
    }
}

void conv2d_forward(const ConvGeom *g, const float *x, const float *w, const float *b, float *y, float *col,
                    size_t col_stride) {
    conv2d_apply(g, x, w, b, NULL, false, y, col, col_stride, false);
}

void conv2d_forward_relu(const ConvGeom *g, const float *x, const float *w, const float *b, float *y, float *col,
                         size_t col_stride) {
    conv2d_apply(g, x, w, b, NULL, true, y, col, col_stride, false);
}

void conv2d_forward_res(const ConvGeom *g, const float *x, const float *w, const float *b, const float *res, bool relu,
                        float *y, float *col, size_t col_stride) {
    conv2d_apply(g, x, w, b, res, relu, y, col, col_stride, false);
}

// conv2d_infer by Winograd (wino_ok(g)): each thread transforms the weights into its scratch,
// then runs its share of the samples.
static void conv2d_apply_wino(const ConvGeom *g, const float *x, const float *w, const float *b, const float *res,
                              bool relu, float *y, float *col, size_t col_stride) {
    const Wino wg = wino_make(g);
    const size_t in_len = (size_t)g->C * g->H * g->W, out_len = (size_t)g->O * g->Ho * g->Wo;
#pragma omp parallel num_threads(slots(g))
    {
        float *packed = col + (size_t)omp_get_thread_num() * col_stride, *work = packed + wino_packed_len(&wg);
        wino_pack(&wg, w, packed);
#pragma omp for schedule(static)
        for (int n = 0; n < g->N; n++)
            wino_run(&wg, x + (size_t)n * in_len, packed, work, y + (size_t)n * out_len, b,
                     res ? res + (size_t)n * out_len : NULL, relu);
    }
}

void conv2d_infer(const ConvGeom *g, const float *x, const float *w, const float *b, const float *res, bool relu,
                  float *y, float *col, size_t col_stride) {
    if (wino_ok(g))
        conv2d_apply_wino(g, x, w, b, res, relu, y, col, col_stride);
    else
        conv2d_apply(g, x, w, b, res, relu, y, col, col_stride, false);
}

// db_part (O) += the sums over positions of one sample's output gradient dyn (O, Ho, Wo).
static void add_bias_grad(const ConvGeom *g, const float *dyn, float *db_part) {
    const int P = g->Ho * g->Wo;
    for (int o = 0; o < g->O; o++) {
        const float *dyo = dyn + (size_t)o * P;
        float s = 0.0f;
        for (int p = 0; p < P; p++) s += dyo[p];
        db_part[o] += s;
    }
}

// dw (O, C/groups, k, k) += and db (O) += the per-thread partial sums in wscratch (thread t's at
// t * ws_stride: dw's then db's), summed in a fixed order (deterministic for a thread count).
static void reduce_partials(const ConvGeom *g, const float *wscratch, size_t ws_stride, int n_threads, float *dw,
                            float *db) {
    const size_t w_len = (size_t)g->O * (size_t)(g->C / g->groups) * (size_t)(g->k * g->k);
#pragma omp parallel for schedule(static) if (dw != NULL)
    for (size_t j = 0; j < (dw ? w_len : 0); j++) {
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

// dx_n (C, H, W) = (acc: +=) w^T dy_n [+ w2^T dy2_n] by the unfolding, for a g without a direct
// input gradient (groups 1, not pointwise, not the wide layout: the stride-2 convolutions):
// dcol (C k k, Ho Wo) by one or two GEMMs, folded back into the input's positions. col and plane
// are scratch of unfolded_len(g) and plane_len(g) floats.
static void dx_by_unfolding(const ConvGeom *g, const float *w, const float *dyn, const float *w2, const float *dy2n,
                            float *dxn, bool acc, float *col, float *plane) {
    const int K = g->C * g->k * g->k, P = g->Ho * g->Wo;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, g->O, 1.0f, w, K, dyn, P, 0.0f, col, P);
    if (dy2n) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, g->O, 1.0f, w2, K, dy2n, P, 1.0f, col, P);
    fold(g, col, 0, g->C, dxn, plane, acc);
}

// conv2d_backward2 by the direct kernels (direct_dw_ok(g)): the weight gradient from padded
// inputs and widened output gradients, a chunk of samples at a time, then each sample's input
// gradient as a transposed convolution of its padded output gradient(s) (direct_bwd_ok(g)), or
// by the unfolding (the stride-2 convolutions).
static void conv2d_backward2_direct(const ConvGeom *g, const float *x, const float *w, const float *dy,
                                    const float *x2, const float *w2, const float *dy2, float *dx, bool acc,
                                    float *dw, float *db, float *col, size_t col_stride, float *wscratch,
                                    size_t ws_stride) {
    const bool dx_direct = direct_bwd_ok(g);
    const DirectConv df = direct_fwd(g), dd = dx_direct ? direct_dx(g) : df;
    const size_t in_len = (size_t)g->C * g->H * g->W, out_len = (size_t)g->O * g->Ho * g->Wo;
    const size_t w_len = (size_t)g->O * g->C * g->k * g->k;
    int n_threads = 1;
#pragma omp parallel num_threads(slots(g))
    {
        int t = omp_get_thread_num();
#pragma omp single
        n_threads = omp_get_num_threads();
        // the padded inputs and wide rows (multiples of 16 floats each) on 64-byte boundaries, so
        // that direct_dw's dy loads do not straddle cache lines
        float *packed[2], *work = align64(col + (size_t)t * col_stride + packed_region(g));
        packed[0] = col + (size_t)t * col_stride;
        packed[1] = packed[0] + direct_packed_len(&dd);
        float *my_dw = wscratch + (size_t)t * ws_stride, *my_db = my_dw + w_len;  // (O, C, k, k) then (O)
        memset(my_dw, 0, (w_len + (size_t)g->O) * sizeof(float));
        // after the weight gradient's chunk area: the input gradient's padded dy and wide rows, or
        // the unfolding's scratch for an input gradient not by the direct kernel
        float *dx_work = work + dw_chunk_len(g);
        float *my_col = dx_work, *my_plane = my_col + unfolded_len(g);
        if (dx && dx_direct) {
            direct_pack(&dd, w, true, packed[0]);
            if (dy2) direct_pack(&dd, w2, true, packed[1]);
        }
        float *padded[2] = {dx_work, dx_work + direct_padded_len(&dd)}, *wide = dx_work + 2 * direct_padded_len(&dd);
        // after a thread's first chunk (sample), the borders of its padded buffers are zero
        bool dw_first = true, dx_first = true;
        // the weight gradient reduces chunks of S samples: their padded inputs, then their wide dy
        // (at most an equal share of the batch per thread, so that every thread has work)
        const int share = (g->N + omp_get_num_threads() - 1) / omp_get_num_threads();
        const int S = direct_dw_chunk(&df) < share ? direct_dw_chunk(&df) : share, n_chunks = (g->N + S - 1) / S;
        float *chunk_dy = work + (size_t)S * direct_padded_len(&df);
#pragma omp for schedule(static)
        for (int ch = 0; ch < n_chunks; ch++) {
            const int n0 = ch * S, ns = g->N - n0 < S ? g->N - n0 : S;
            // dw += sum over the chunk of dy_n (x) x_n [+ dy2_n (x) x2_n]
            for (int term = 0; term < 2 && dw; term++) {
                const float *xs = term ? x2 : x, *dys = term ? dy2 : dy;
                if (!xs || !dys) continue;
                for (int s = 0; s < ns; s++) {
                    (dw_first ? direct_pad : direct_pad_inner)(&df, xs + (size_t)(n0 + s) * in_len,
                                                               work + (size_t)s * direct_padded_len(&df));
                    direct_widen(&df, dys + (size_t)(n0 + s) * out_len, chunk_dy + (size_t)s * direct_wide_len(&df));
                }
                direct_dw(&df, ns, work, chunk_dy, my_dw);
            }
            dw_first = dw_first && ns < S;  // a short chunk leaves slots whose borders were never written
            for (int n = n0; n < n0 + ns; n++) {
                const float *dyn = dy + (size_t)n * out_len, *dy2n = dy2 ? dy2 + (size_t)n * out_len : NULL;
                // dx_n = (acc: +=) w^T dy_n [+ w2^T dy2_n]
                if (dx && !dx_direct) {
                    dx_by_unfolding(g, w, dyn, w2, dy2n, dx + (size_t)n * in_len, acc, my_col, my_plane);
                } else if (dx) {
                    (dx_first ? direct_pad : direct_pad_inner)(&dd, dyn, padded[0]);
                    if (dy2n) (dx_first ? direct_pad : direct_pad_inner)(&dd, dy2n, padded[1]);
                    dx_first = false;
                    direct_run(&dd, dy2n ? 2 : 1, (const float *const *)padded, (const float *const *)packed, wide,
                               false, dx + (size_t)n * in_len, acc, NULL, NULL, false);
                }
                if (db) add_bias_grad(g, dyn, my_db);
            }
        }
    }
    reduce_partials(g, wscratch, ws_stride, n_threads, dw, db);
}

// Backward of one or two convolutions sharing geometry and outputs' shapes, in one pass over
// the samples: dw += dy (x) x [+ dy2 (x) x2], dx = (acc: +=) w^T * dy [+ w2^T * dy2], db += sum dy. The
// second term is skipped when dy2 is NULL; its dw part also when x2 is NULL. (The R-backward of a
// convolution is such a pair; summing before folding saves a col2im.)
static void conv2d_backward2(const ConvGeom *g, const float *x, const float *w, const float *dy, const float *x2,
                             const float *w2, const float *dy2, float *dx, bool acc, float *dw, float *db, float *col,
                             size_t col_stride, float *wscratch, size_t ws_stride) {
    if (direct_dw_ok(g)) {
        conv2d_backward2_direct(g, x, w, dy, x2, w2, dy2, dx, acc, dw, db, col, col_stride, wscratch, ws_stride);
        return;
    }
    const int G = g->groups, Cg = g->C / G, Og = g->O / G, Kg = Cg * g->k * g->k, P = g->Ho * g->Wo;
    const int width = (int)col_width(g);
    const size_t in_len = (size_t)g->C * g->H * g->W, out_len = (size_t)g->O * P;
    const size_t w_len = (size_t)g->O * Kg;
    int n_threads = 1;
#pragma omp parallel num_threads(slots(g))
    {
        int t = omp_get_thread_num();
#pragma omp single
        n_threads = omp_get_num_threads();
        // after the forward direct kernel's packed weights when only the backward unfolds
        float *my_col = col + (size_t)t * col_stride + packed_region(g);
        float *my_plane = my_col + unfolded_len(g), *my_wide = my_plane + plane_len(g);
        float *my_dw = wscratch + (size_t)t * ws_stride;  // (O, Kg) then db (O)
        float *my_db = my_dw + w_len;
        memset(my_dw, 0, (w_len + (size_t)g->O) * sizeof(float));
#pragma omp for schedule(static)
        for (int n = 0; n < g->N; n++) {
            const float *dyn = dy + (size_t)n * out_len, *dy2n = dy2 ? dy2 + (size_t)n * out_len : NULL;
            for (int gi = 0; gi < G; gi++) {
                const size_t g_in = (size_t)gi * Cg * g->H * g->W, g_out = (size_t)gi * Og * P, g_w = (size_t)gi * Og * Kg;
                // the output gradients of this group as (Og, width) matrices (widened in the wide layout)
                const float *dyg[2] = {dyn + g_out, dy2n ? dy2n + g_out : NULL};
                for (int term = 0; term < 2 && use_wide(g); term++) {
                    if (!dyg[term]) continue;
                    float *wide_rows = my_wide + (size_t)term * Og * width;
                    widen(g, dyg[term], Og, wide_rows);
                    dyg[term] = wide_rows;
                }
                if (dw) {
                    // dw_g (Og, Kg) += dy_g (Og, width) @ col(x)^T (width, Kg), and the same for the second term
                    for (int term = 0; term < 2; term++) {
                        const float *xs = term ? x2 : x;
                        if (!xs || !dyg[term]) continue;
                        const float *src = xs + (size_t)n * in_len + g_in;
                        if (!is_pointwise(g)) {
                            unfold(g, xs + (size_t)n * in_len, gi * Cg, Cg, my_col, my_plane);
                            src = my_col;
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Og, Kg, width, 1.0f, dyg[term], width, src,
                                    width, 1.0f, my_dw + g_w, Kg);
                    }
                }
                if (!dx) continue;
                // dcol (Kg, width) = w_g^T @ dy_g [+ w2_g^T @ dy2_g], straight into dx when pointwise
                float *dxn = dx + (size_t)n * in_len;
                float *dst = is_pointwise(g) ? dxn + g_in : my_col;
                float beta = is_pointwise(g) && acc ? 1.0f : 0.0f;
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Kg, width, Og, 1.0f, w + g_w, Kg, dyg[0], width,
                            beta, dst, width);
                if (dyg[1])
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Kg, width, Og, 1.0f, w2 + g_w, Kg, dyg[1],
                                width, 1.0f, dst, width);
                if (!is_pointwise(g)) fold(g, my_col, gi * Cg, Cg, dxn, my_plane, acc);
            }
            if (db) add_bias_grad(g, dyn, my_db);
        }
    }
    reduce_partials(g, wscratch, ws_stride, n_threads, dw, db);
}

void conv2d_backward(const ConvGeom *g, const float *x, const float *w, const float *dy, float *dx, bool acc,
                     float *dw, float *db, float *col, size_t col_stride, float *wscratch, size_t ws_stride) {
    conv2d_backward2(g, x, w, dy, NULL, NULL, NULL, dx, acc, dw, db, col, col_stride, wscratch, ws_stride);
}

// ---- R-operator (Pearlmutter): directional derivatives along parameter direction V ----

void conv2d_rforward(const ConvGeom *g, const float *x, const float *w, const float *rx, const float *vw,
                     const float *vb, float *ry, float *col, size_t col_stride) {
    // R{y} = conv(R{x}, w) + conv(x, V_w) + V_b
    if (rx && direct_fwd_ok(g)) {
        conv2d_apply_direct(g, rx, w, x, vw, vb, NULL, false, ry, col, col_stride, false);
    } else if (rx) {
        conv2d_apply(g, rx, w, vb, NULL, false, ry, col, col_stride, false);
        conv2d_apply(g, x, vw, NULL, NULL, false, ry, col, col_stride, true);
    } else {
        conv2d_apply(g, x, vw, vb, NULL, false, ry, col, col_stride, false);
    }
}

void conv2d_rbackward(const ConvGeom *g, const float *x, const float *w, const float *rx, const float *vw,
                      const float *dy, const float *rdy, float *rdx, bool acc, float *rdw, float *rdb, float *col,
                      size_t col_stride, float *wscratch, size_t ws_stride) {
    // R{dx} = w^T * R{dy} + V_w^T * dy;  R{dw} = R{dy} (x) x + dy (x) R{x};  R{db} = sum R{dy}
    conv2d_backward2(g, x, w, rdy, rx, vw, dy, rdx, acc, rdw, rdb, col, col_stride, wscratch, ws_stride);
}
