// conv_direct.c: the direct stride-1 convolution of conv_direct.h. Built with contracted
// multiply-adds (-ffp-contract=fast in the Makefile); GCC vector types map onto AVX-512 (or
// pairs of AVX2 registers) with -march=native.
#include "conv_direct.h"

#include <string.h>

#include "err.h"

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

enum { DC_VL = 16, DC_NV = 6 };  // floats per vector; vectors of positions per tile (at most)

// Unaligned load of 16 floats.
static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

// Rounds n up to a multiple of m.
static int round_up(int n, int m) { return (n + m - 1) / m * m; }

enum { DC_MIN_Q = 32 };  // wide positions below which the 16-lane tiles waste most of their work

bool direct_fwd_ok(const ConvGeom *g) {
    return g->groups == 1 && g->stride == 1 && g->k > 1 && (size_t)g->Ho * (size_t)(g->W + 2 * g->pad) >= DC_MIN_Q;
}

bool direct_bwd_ok(const ConvGeom *g) { return direct_fwd_ok(g) && g->pad <= g->k - 1 && g->k <= 7; }

// Fills in the derived sizes of d from its inputs.
static DirectConv direct_make(int Ci, int Hi, int Wi, int pad, int k, int Oo) {
    DirectConv d = {.Ci = Ci, .Hi = Hi, .Wi = Wi, .pad = pad, .k = k, .Oo = Oo};
    d.Ho = Hi + 2 * pad - k + 1;
    d.Wo = Wi + 2 * pad - k + 1;
    d.Wp = Wi + 2 * pad;
    d.Q = d.Ho * d.Wp;
    d.Qr = round_up(d.Q, DC_VL);
    d.Or = round_up(Oo, DC_OB);
    size_t rows = (size_t)(Hi + 2 * pad) * (size_t)d.Wp;
    size_t reach = (size_t)d.Qr + (size_t)(k - 1) * (size_t)(d.Wp + 1);  // last float a tile reads, plus one
    size_t need = rows > reach ? rows : reach;
    d.plane = (need + DC_VL - 1) / DC_VL * DC_VL;
    return d;
}

DirectConv direct_fwd(const ConvGeom *g) { return direct_make(g->C, g->H, g->W, g->pad, g->k, g->O); }

DirectConv direct_dx(const ConvGeom *g) { return direct_make(g->O, g->Ho, g->Wo, g->k - 1 - g->pad, g->k, g->C); }

size_t direct_packed_len(const DirectConv *d) { return (size_t)d->Or * (size_t)d->Ci * (size_t)(d->k * d->k); }

size_t direct_padded_len(const DirectConv *d) { return (size_t)d->Ci * d->plane; }

size_t direct_wide_len(const DirectConv *d) { return (size_t)d->Or * (size_t)d->Qr; }

void direct_pack(const DirectConv *d, const float *w, bool transposed, float *packed) {
    const int kk = d->k * d->k;
    for (int ob = 0; ob < d->Or; ob += DC_OB)
        for (int c = 0; c < d->Ci; c++)
            for (int t = 0; t < kk; t++)
                for (int j = 0; j < DC_OB; j++) {
                    int o = ob + j;
                    float v = 0.0f;
                    if (o < d->Oo)
                        v = transposed ? w[((size_t)c * d->Oo + o) * kk + (kk - 1 - t)] : w[((size_t)o * d->Ci + c) * kk + t];
                    *packed++ = v;
                }
}

void direct_pad(const DirectConv *d, const float *x, float *padded) {
    const int p = d->pad, Wi = d->Wi, Wp = d->Wp;
    for (int c = 0; c < d->Ci; c++) {
        float *dst = padded + (size_t)c * d->plane;
        const float *src = x + (size_t)c * d->Hi * Wi;
        memset(dst, 0, (size_t)p * Wp * sizeof(float));
        for (int h = 0; h < d->Hi; h++) {
            float *row = dst + (size_t)(h + p) * Wp;
            for (int j = 0; j < p; j++) row[j] = row[p + Wi + j] = 0.0f;
            memcpy(row + p, src + (size_t)h * Wi, (size_t)Wi * sizeof(float));
        }
        size_t used = (size_t)(d->Hi + p) * Wp;
        memset(dst + used, 0, (d->plane - used) * sizeof(float));
    }
}

// One tile: wide[o][q0 + 16 v] for DC_OB channels from ob and nv vectors of positions from q0,
// summed over the sources. Inlined with a constant nv so the accumulators stay in registers.
static inline __attribute__((always_inline)) void tile(const DirectConv *d, int n_src, const float *const *padded,
                                                       const float *const *packed, int ob, int q0, int nv,
                                                       float *wide) {
    const int k = d->k, Wp = d->Wp;
    const size_t w_tile = (size_t)d->Ci * (size_t)(k * k) * DC_OB;  // packed floats per channel tile
    v16 acc[DC_OB][DC_NV];
    for (int o = 0; o < DC_OB; o++)
        for (int v = 0; v < nv; v++) acc[o][v] = (v16){0};
    for (int s = 0; s < n_src; s++) {
        const float *wt = packed[s] + (size_t)(ob / DC_OB) * w_tile;
        for (int c = 0; c < d->Ci; c++) {
            const float *plane = padded[s] + (size_t)c * d->plane + q0;
            for (int ki = 0; ki < k; ki++)
                for (int kj = 0; kj < k; kj++, wt += DC_OB) {
                    const float *x = plane + ki * Wp + kj;
                    v16 xv[DC_NV];
                    for (int v = 0; v < nv; v++) xv[v] = load16(x + DC_VL * v);
#pragma GCC unroll 4
                    for (int o = 0; o < DC_OB; o++) {
                        v16 wb = (v16){0} + wt[o];
#pragma GCC unroll 6
                        for (int v = 0; v < nv; v++) acc[o][v] += xv[v] * wb;
                    }
                }
        }
    }
    for (int o = 0; o < DC_OB; o++)
        for (int v = 0; v < nv; v++) memcpy(wide + (size_t)(ob + o) * d->Qr + q0 + DC_VL * v, &acc[o][v], sizeof(v16));
}

// Tiles of 1 to 6 vectors of positions, each with its own registers.
#define DC_TILE(nv)                                                                                                  \
    static void tile_##nv(const DirectConv *d, int n_src, const float *const *padded, const float *const *packed,    \
                          int ob, int q0, float *wide) {                                                             \
        tile(d, n_src, padded, packed, ob, q0, nv, wide);                                                            \
    }
DC_TILE(1)
DC_TILE(2)
DC_TILE(3)
DC_TILE(4)
DC_TILE(5)
DC_TILE(6)

typedef void (*TileFn)(const DirectConv *, int, const float *const *, const float *const *, int, int, float *);

// Writes (acc: adds) the valid positions of the wide rows (Or, Qr) into out (Oo, Ho, Wo).
static void narrow_out(const DirectConv *d, const float *wide, float *out, bool acc) {
    for (int o = 0; o < d->Oo; o++)
        for (int h = 0; h < d->Ho; h++) {
            const float *src = wide + (size_t)o * d->Qr + (size_t)h * d->Wp;
            float *dst = out + ((size_t)o * d->Ho + h) * d->Wo;
            if (acc) {
#pragma omp simd
                for (int w = 0; w < d->Wo; w++) dst[w] += src[w];
            } else {
                memcpy(dst, src, (size_t)d->Wo * sizeof(float));
            }
        }
}

void direct_run(const DirectConv *d, int n_src, const float *const *padded, const float *const *packed, float *wide,
                float *out, bool acc) {
    static const TileFn tiles[DC_NV + 1] = {NULL, tile_1, tile_2, tile_3, tile_4, tile_5, tile_6};
    const int full = DC_NV * DC_VL;
    for (int q0 = 0; q0 < d->Qr; q0 += full) {
        int nv = (d->Qr - q0) / DC_VL;
        if (nv > DC_NV) nv = DC_NV;
        for (int ob = 0; ob < d->Or; ob += DC_OB) tiles[nv](d, n_src, padded, packed, ob, q0, wide);
    }
    narrow_out(d, wide, out, acc);
}

void direct_widen(const DirectConv *d, const float *dy, float *dy_wide) {
    memset(dy_wide, 0, direct_wide_len(d) * sizeof(float));
    for (int o = 0; o < d->Oo; o++)
        for (int h = 0; h < d->Ho; h++)
            memcpy(dy_wide + (size_t)o * d->Qr + (size_t)h * d->Wp, dy + ((size_t)o * d->Ho + h) * d->Wo,
                   (size_t)d->Wo * sizeof(float));
}

// Sum of the 16 lanes by halving (a fixed order).
static inline float lane_sum(v16 v) {
    v8 lo8, hi8;
    memcpy(&lo8, &v, sizeof lo8);
    memcpy(&hi8, (const char *)&v + sizeof lo8, sizeof hi8);
    v8 s8 = lo8 + hi8;
    v4 lo4, hi4;
    memcpy(&lo4, &s8, sizeof lo4);
    memcpy(&hi4, (const char *)&s8 + sizeof lo4, sizeof hi4);
    v4 s4 = lo4 + hi4;
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

// The weight gradient of output channels [ob, ob + DC_OB) (those < Oo), input channel c and
// kernel row ki, all kj < nk, over n samples: a reduction over samples and wide positions, kept
// in registers with a constant nk.
static inline __attribute__((always_inline)) void dw_row(const DirectConv *d, int n, const float *padded,
                                                         const float *dy_wide, int ob, int c, int ki, int nk,
                                                         float *dw) {
    v16 acc[DC_OB][7];
    for (int o = 0; o < DC_OB; o++)
        for (int j = 0; j < nk; j++) acc[o][j] = (v16){0};
    for (int s = 0; s < n; s++) {
        const float *x = padded + (size_t)s * direct_padded_len(d) + (size_t)c * d->plane + (size_t)ki * d->Wp;
        const float *g = dy_wide + (size_t)s * direct_wide_len(d) + (size_t)ob * d->Qr;
        for (int q = 0; q < d->Qr; q += DC_VL) {
            v16 gv[DC_OB];
            for (int o = 0; o < DC_OB; o++) gv[o] = load16(g + (size_t)o * d->Qr + q);
#pragma GCC unroll 7
            for (int j = 0; j < nk; j++) {
                v16 xv = load16(x + q + j);
#pragma GCC unroll 4
                for (int o = 0; o < DC_OB; o++) acc[o][j] += gv[o] * xv;
            }
        }
    }
    const int kk = d->k * d->k;
    for (int o = 0; o < DC_OB && ob + o < d->Oo; o++)
        for (int j = 0; j < nk; j++) dw[((size_t)(ob + o) * d->Ci + c) * kk + ki * d->k + j] += lane_sum(acc[o][j]);
}

// Kernel rows of 1 to 7 taps, each with its own registers.
#define DC_DW_ROW(nk)                                                                                             \
    static void dw_row_##nk(const DirectConv *d, int n, const float *padded, const float *dy_wide, int ob, int c, \
                            int ki, float *dw) {                                                                  \
        dw_row(d, n, padded, dy_wide, ob, c, ki, nk, dw);                                                         \
    }
DC_DW_ROW(1)
DC_DW_ROW(2)
DC_DW_ROW(3)
DC_DW_ROW(4)
DC_DW_ROW(5)
DC_DW_ROW(6)
DC_DW_ROW(7)

typedef void (*DwRowFn)(const DirectConv *, int, const float *, const float *, int, int, int, float *);

enum { DC_DW_POSITIONS = 512, DC_DW_MAX_CHUNK = 16 };  // wide positions per reduction; samples at most

int direct_dw_chunk(const DirectConv *d) {
    int n = (DC_DW_POSITIONS + d->Qr - 1) / d->Qr;
    return n < DC_DW_MAX_CHUNK ? n : DC_DW_MAX_CHUNK;
}

void direct_dw(const DirectConv *d, int n, const float *padded, const float *dy_wide, float *dw) {
    static const DwRowFn rows[8] = {NULL, dw_row_1, dw_row_2, dw_row_3, dw_row_4, dw_row_5, dw_row_6, dw_row_7};
    HP_ASSERT(d->k >= 1 && d->k <= 7);
    for (int ob = 0; ob < d->Or; ob += DC_OB)
        for (int c = 0; c < d->Ci; c++)
            for (int ki = 0; ki < d->k; ki++) rows[d->k](d, n, padded, dy_wide, ob, c, ki, dw);
}
