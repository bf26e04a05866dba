// pooling.c: max pooling (argmax routing), average pooling (padding counted) and global
// average pooling. Parallel over the N*C planes.
#include <float.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "ops.h"

// The kernel offsets [*lo, *hi) of the window at output index o that fall inside an axis of n
// inputs (offset t reads input o * stride - pad + t): padding positions are never visited, so
// a window far larger than its input costs only what it covers.
static inline void window_span(int o, int stride, int pad, int k, int n, int *lo, int *hi) {
    const long start = (long)o * stride - pad;
    *lo = start < 0 ? (int)-start : 0;
    *hi = start + k > n ? (int)(n - start) : k;
}

// Max pooling of one plane with padding: only the window's positions inside the input count.
static void maxpool_plane_padded(const PoolGeom *g, const float *xp, float *yp, int *ap) {
    for (int oh = 0; oh < g->Ho; oh++) {
        int ki0, ki1;
        window_span(oh, g->stride, g->pad, g->k, g->H, &ki0, &ki1);
        for (int ow = 0; ow < g->Wo; ow++) {
            float best = -FLT_MAX;
            int best_i = -1, kj0, kj1;
            window_span(ow, g->stride, g->pad, g->k, g->W, &kj0, &kj1);
            for (int ki = ki0; ki < ki1; ki++) {
                const int ih = oh * g->stride - g->pad + ki;
                for (int kj = kj0; kj < kj1; kj++) {
                    const int i = ih * g->W + ow * g->stride - g->pad + kj;
                    if (best_i < 0 || xp[i] > best) best = xp[i], best_i = i;
                }
            }
            yp[oh * g->Wo + ow] = best;
            ap[oh * g->Wo + ow] = best_i;
        }
    }
}

#ifdef __AVX512F__
// Max pooling of one plane by 2x2 windows at stride 2 without padding, 16 outputs at a time:
// lane permutations split the window rows' even and odd columns, and the four candidates are
// taken in the scalar loop's order (the first wins a tie; a NaN first stays), so the outputs
// and argmax are the scalar loop's to the bit.
static void maxpool2_plane(const PoolGeom *g, const float *xp, float *yp, int *ap) {
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512i lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int oh = 0; oh < g->Ho; oh++) {
        const float *r0 = xp + (size_t)(2 * oh) * g->W, *r1 = r0 + g->W;
        for (int ow = 0; ow < g->Wo; ow += 16) {
            const int n = g->Wo - ow < 16 ? g->Wo - ow : 16, cols = 2 * n;  // outputs, inputs per row
            const __mmask16 out = (__mmask16)((1u << n) - 1u);
            const __mmask16 lo = (__mmask16)(cols >= 16 ? 0xffffu : (1u << cols) - 1u);
            const __mmask16 hi = (__mmask16)(cols > 16 ? (1u << (cols - 16)) - 1u : 0u);
            const __m512 a0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * ow), a1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * ow + 16);
            const __m512 b0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * ow), b1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * ow + 16);
            const __m512 cand[4] = {_mm512_permutex2var_ps(a0, evens, a1), _mm512_permutex2var_ps(a0, odds, a1),
                                    _mm512_permutex2var_ps(b0, evens, b1), _mm512_permutex2var_ps(b0, odds, b1)};
            const __m512i i00 = _mm512_add_epi32(_mm512_set1_epi32(2 * oh * g->W + 2 * ow), lane2);
            const int step[4] = {0, 1, g->W, g->W + 1};  // the candidates' offsets in the plane
            __m512 best = cand[0];
            __m512i at = i00;
            for (int c = 1; c < 4; c++) {
                const __mmask16 gt = _mm512_cmp_ps_mask(cand[c], best, _CMP_GT_OQ);
                best = _mm512_mask_mov_ps(best, gt, cand[c]);
                at = _mm512_mask_mov_epi32(at, gt, _mm512_add_epi32(i00, _mm512_set1_epi32(step[c])));
            }
            _mm512_mask_storeu_ps(yp + (size_t)oh * g->Wo + ow, out, best);
            _mm512_mask_storeu_epi32(ap + (size_t)oh * g->Wo + ow, out, at);
        }
    }
}
#endif

void maxpool_forward(const PoolGeom *g, const float *x, float *y, int *argmax) {
    const size_t in_plane = (size_t)g->H * g->W, out_plane = (size_t)g->Ho * g->Wo;
    if (g->pad > 0) {
#pragma omp parallel for schedule(static)
        for (int pl = 0; pl < g->NC; pl++)
            maxpool_plane_padded(g, x + (size_t)pl * in_plane, y + (size_t)pl * out_plane,
                                 argmax + (size_t)pl * out_plane);
        return;
    }
#ifdef __AVX512F__
    if (g->k == 2 && g->stride == 2) {  // LeNet-5's
#pragma omp parallel for schedule(static)
        for (int pl = 0; pl < g->NC; pl++)
            maxpool2_plane(g, x + (size_t)pl * in_plane, y + (size_t)pl * out_plane, argmax + (size_t)pl * out_plane);
        return;
    }
#endif
    // other windows without padding (and no AVX-512): the loop of every window position; on
    // LeNet-5's windows a form of it without the bounds tests and a scalar k = 2 case were slower
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < g->NC; pl++) {
        const float *xp = x + (size_t)pl * in_plane;
        for (int oh = 0; oh < g->Ho; oh++) {
            for (int ow = 0; ow < g->Wo; ow++) {
                float best = -FLT_MAX;
                int best_i = -1;
                for (int ki = 0; ki < g->k; ki++) {
                    int ih = oh * g->stride - g->pad + ki;
                    if (ih < 0 || ih >= g->H) continue;
                    for (int kj = 0; kj < g->k; kj++) {
                        int iw = ow * g->stride - g->pad + kj;
                        if (iw < 0 || iw >= g->W) continue;
                        float v = xp[ih * g->W + iw];
                        if (best_i < 0 || v > best) {
                            best = v;
                            best_i = ih * g->W + iw;
                        }
                    }
                }
                size_t o = (size_t)pl * out_plane + (size_t)oh * g->Wo + ow;
                y[o] = best;
                argmax[o] = best_i;
            }
        }
    }
}

void maxpool_backward(const PoolGeom *g, const float *dy, const int *argmax, float *dx, bool acc) {
    const size_t in_plane = (size_t)g->H * g->W, out_plane = (size_t)g->Ho * g->Wo;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < g->NC; pl++) {
        float *dxp = dx + (size_t)pl * in_plane;
        if (!acc)
            for (size_t i = 0; i < in_plane; i++) dxp[i] = 0.0f;
        for (size_t o = 0; o < out_plane; o++) {
            size_t i = (size_t)pl * out_plane + o;
            dxp[argmax[i]] += dy[i];
        }
    }
}

void maxpool_rforward(const PoolGeom *g, const float *rx, const int *argmax, float *ry) {
    const size_t in_plane = (size_t)g->H * g->W, out_plane = (size_t)g->Ho * g->Wo;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < g->NC; pl++) {
        const float *rxp = rx + (size_t)pl * in_plane;
        for (size_t o = 0; o < out_plane; o++) {
            size_t i = (size_t)pl * out_plane + o;
            ry[i] = rxp[argmax[i]];
        }
    }
}

void avgpool_forward(const PoolGeom *g, const float *x, float *y) {
    const size_t in_plane = (size_t)g->H * g->W, out_plane = (size_t)g->Ho * g->Wo;
    const float inv = 1.0f / ((float)g->k * (float)g->k);  // padding counted
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < g->NC; pl++) {
        const float *xp = x + (size_t)pl * in_plane;
        for (int oh = 0; oh < g->Ho; oh++) {
            for (int ow = 0; ow < g->Wo; ow++) {
                float s = 0.0f;
                int ki0, ki1, kj0, kj1;
                window_span(oh, g->stride, g->pad, g->k, g->H, &ki0, &ki1);
                window_span(ow, g->stride, g->pad, g->k, g->W, &kj0, &kj1);
                for (int ki = ki0; ki < ki1; ki++) {
                    int ih = oh * g->stride - g->pad + ki;
                    for (int kj = kj0; kj < kj1; kj++) s += xp[ih * g->W + ow * g->stride - g->pad + kj];
                }
                y[(size_t)pl * out_plane + (size_t)oh * g->Wo + ow] = s * inv;
            }
        }
    }
}

void avgpool_backward(const PoolGeom *g, const float *dy, float *dx, bool acc) {
    const size_t in_plane = (size_t)g->H * g->W, out_plane = (size_t)g->Ho * g->Wo;
    const float inv = 1.0f / ((float)g->k * (float)g->k);  // padding counted
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < g->NC; pl++) {
        float *dxp = dx + (size_t)pl * in_plane;
        if (!acc)
            for (size_t i = 0; i < in_plane; i++) dxp[i] = 0.0f;
        for (int oh = 0; oh < g->Ho; oh++) {
            for (int ow = 0; ow < g->Wo; ow++) {
                float d = dy[(size_t)pl * out_plane + (size_t)oh * g->Wo + ow] * inv;
                int ki0, ki1, kj0, kj1;
                window_span(oh, g->stride, g->pad, g->k, g->H, &ki0, &ki1);
                window_span(ow, g->stride, g->pad, g->k, g->W, &kj0, &kj1);
                for (int ki = ki0; ki < ki1; ki++) {
                    int ih = oh * g->stride - g->pad + ki;
                    for (int kj = kj0; kj < kj1; kj++) dxp[ih * g->W + ow * g->stride - g->pad + kj] += d;
                }
            }
        }
    }
}

void gap_forward(int NC, int HW, const float *x, float *y) {
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < NC; pl++) {
        const float *xp = x + (size_t)pl * HW;
        float s = 0.0f;
        for (int p = 0; p < HW; p++) s += xp[p];
        y[pl] = s / (float)HW;
    }
}

void gap_backward(int NC, int HW, const float *dy, float *dx, bool acc) {
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < NC; pl++) {
        float d = dy[pl] / (float)HW;
        float *dxp = dx + (size_t)pl * HW;
        for (int p = 0; p < HW; p++) dxp[p] = (acc ? dxp[p] : 0.0f) + d;
    }
}
