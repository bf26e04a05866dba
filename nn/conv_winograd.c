// conv_winograd.c: the F(2x2, 3x3) Winograd convolution of conv_winograd.h. Built with contracted
// multiply-adds (-ffp-contract=fast in the Makefile), as conv_direct.c.
//
// The transforms (Lavin and Gray 2016, for the correlation y_i = sum_r g_r d_(i+r)):
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]    (input patch d, 4x4)
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]  (kernel g, 3x3)
//   A^T = [1 1 1 0; 0 1 -1 -1]                       (output tile, 2x2)
#include "conv_winograd.h"

#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "err.h"
#include "simd16.h"

enum {
    WG_XI = 16,       // transform points: the 4x4 entries of a transformed patch
    WG_OB = TILE_OB,  // output channels per tile
    WG_NV = TILE_NV,  // vectors of 16 tiles per tile (at most)
    WG_NN = TILE_NN,  // native vectors per tile (at most)
};

// Rounds n up to a multiple of m.
static int round_up(int n, int m) { return (n + m - 1) / m * m; }

Wino wino_make(const ConvGeom *g) {
    ConvGeom s2 = *g;  // the same input read as by a 3x3 stride-2 pad-1 convolution: its phases
    s2.stride = 2;
    Wino w = {.C = g->C, .H = g->H, .W = g->W, .K = g->O, .Th = (g->H + 1) / 2, .Tw = (g->W + 1) / 2,
              .Kr = round_up(g->O, WG_OB), .phases = direct_fwd(&s2)};
    HP_ASSERT(w.phases.Ho == w.Th && w.phases.Wo == w.Tw);
    return w;
}

bool wino_fits(const ConvGeom *g) {
    return g->k == 3 && g->stride == 1 && g->pad == 1 && g->groups == 1 && direct_fwd_ok(g);
}

bool wino_ok(const ConvGeom *g) {
    if (!wino_fits(g)) return false;
#ifdef __AVX512F__
    const Wino w = wino_make(g);
    // vector multiply-adds per input and output channel: 16 per vector of tiles, times the cost
    // of the transforms and the layout changes (measured on ResNet-20's 16-channel 28x28 and
    // 32-channel 14x14 layers: 1.7 to 1.8), against 9 per vector of the direct kernel's positions
    const double winograd = 1.75 * WG_XI * (double)w.phases.Qr, direct = 9.0 * (double)direct_fwd(g).Qr;
    return winograd < direct;
#else
    // Without AVX-512 the tiles of M = U V (4 channels x 16 tiles, 8 accumulators, restarted for
    // each of the 16 transform points) ran at about half the direct tiles' rate: per layer,
    // Winograd took 0.84 to 1.37 times the direct kernel's time on ResNet-20's shapes, pruned
    // widths included, and the whole network's inference was 12% faster without it
    // (docs/performance.md, "Without AVX-512").
    return false;
#endif
}

size_t wino_packed_len(const Wino *w) { return (size_t)WG_XI * (size_t)w->Kr * (size_t)w->C; }

// Floats of V: 16 transformed planes of every input channel.
static size_t v_len(const Wino *w) { return (size_t)WG_XI * (size_t)w->C * (size_t)w->phases.Qr; }

// Floats of Yw: 4 output phases of every computed channel, and one vector of slack that the
// output pass reads past the last tile row.
static size_t yw_len(const Wino *w) { return (size_t)w->Kr * 4 * (size_t)w->phases.Qr + V16_LANES; }

// Floats of a tile's M: 16 points x 4 channels x WG_NV vectors of 16 tiles.
static size_t m_len(void) { return (size_t)WG_XI * WG_OB * WG_NV * V16_LANES; }

size_t wino_work_len(const Wino *w) { return direct_padded_len(&w->phases) + v_len(w) + yw_len(w) + m_len(); }

// u (4x4) = G g G^T for one 3x3 kernel g, in double.
static void kernel_transform(const float *g, double u[4][4]) {
    double a[4][3];  // G g
    for (int s = 0; s < 3; s++) {
        a[0][s] = g[s];
        a[1][s] = 0.5 * ((double)g[s] + g[3 + s] + g[6 + s]);
        a[2][s] = 0.5 * ((double)g[s] - g[3 + s] + g[6 + s]);
        a[3][s] = g[6 + s];
    }
    for (int r = 0; r < 4; r++) {
        u[r][0] = a[r][0];
        u[r][1] = 0.5 * (a[r][0] + a[r][1] + a[r][2]);
        u[r][2] = 0.5 * (a[r][0] - a[r][1] + a[r][2]);
        u[r][3] = a[r][2];
    }
}

void wino_pack(const Wino *w, const float *g, float *packed) {
    const int C = w->C, KB = w->Kr / WG_OB;
    memset(packed, 0, wino_packed_len(w) * sizeof(float));
    for (int k = 0; k < w->K; k++)
        for (int c = 0; c < C; c++) {
            double u[4][4];
            kernel_transform(g + ((size_t)k * C + c) * 9, u);
            for (int xi = 0; xi < WG_XI; xi++)
                packed[(((size_t)xi * KB + k / WG_OB) * C + c) * WG_OB + k % WG_OB] = (float)u[xi / 4][xi % 4];
        }
}

// V[xi][c][t] = (B^T d B)[xi] for every channel c and every vector of 16 tiles t, d the 4x4
// patches read from the phase planes.
static void input_transform(const Wino *w, const float *padded, float *V) {
    const DirectConv *p = &w->phases;
    const int Wp = p->Wp, Qr = p->Qr;
    for (int c = 0; c < w->C; c++) {
        const float *plane = padded + (size_t)c * p->plane;
        for (int t0 = 0; t0 < Qr; t0 += VN_LANES) {
            vn u[4][4];  // B^T d
            for (int s = 0; s < 4; s++) {
                vn d[4];
                for (int r = 0; r < 4; r++)
                    d[r] = loadn(plane + (size_t)((r & 1) * 2 + (s & 1)) * p->phase + (r >> 1) * Wp + (s >> 1) + t0);
                u[0][s] = d[0] - d[2];
                u[1][s] = d[1] + d[2];
                u[2][s] = d[2] - d[1];
                u[3][s] = d[1] - d[3];
            }
            for (int r = 0; r < 4; r++) {
                const vn v[4] = {u[r][0] - u[r][2], u[r][1] + u[r][2], u[r][2] - u[r][1], u[r][1] - u[r][3]};
                for (int s = 0; s < 4; s++) storen(V + ((size_t)(r * 4 + s) * w->C + c) * Qr + t0, v[s]);
            }
        }
    }
}

// Yw[k][ab][t] for ab = 2 a + b: (A^T M A)[a][b] of the 16 points m[xi] of one vector of tiles.
static inline __attribute__((always_inline)) void output_transform(const vn m[WG_XI], float *yw, size_t qr) {
    vn p[2][4];  // A^T M
    for (int s = 0; s < 4; s++) {
        p[0][s] = m[s] + m[4 + s] + m[8 + s];
        p[1][s] = m[4 + s] - m[8 + s] - m[12 + s];
    }
    for (int a = 0; a < 2; a++) {
        storen(yw + (size_t)(2 * a) * qr, p[a][0] + p[a][1] + p[a][2]);
        storen(yw + (size_t)(2 * a + 1) * qr, p[a][1] - p[a][2] - p[a][3]);
    }
}

// One tile: the outputs Yw of channels [4 kb, 4 kb + 4) (those below K) for nv vectors of tiles
// from t0. For each point xi, the 4 x nn accumulators (nn native vectors) of M = U V stay in
// registers over the input channels (as the direct kernel's taps), then go to mbuf; the output
// transform reads them back. Inlined with constant nv so that the accumulators stay in registers.
static inline __attribute__((always_inline)) void tile(const Wino *w, const float *V, const float *U, int kb, int t0,
                                                       int nv, float *mbuf, float *Yw) {
    const int C = w->C, Qr = w->phases.Qr, nn = nv * VN_PER_16;  // nn native vectors
    for (int xi = 0; xi < WG_XI; xi++) {
        vn acc[WG_OB][TILE_NN];
        for (int o = 0; o < WG_OB; o++)
            for (int v = 0; v < nn; v++) acc[o][v] = (vn){0};
        const float *u = U + ((size_t)xi * (w->Kr / WG_OB) + kb) * (size_t)C * WG_OB;
        const float *x = V + (size_t)xi * C * Qr + t0;
        for (int c = 0; c < C; c++, u += WG_OB, x += Qr) tile_step(acc, u, x, WG_OB, nn);
        for (int o = 0; o < WG_OB; o++)
            for (int v = 0; v < nn; v++) storen(mbuf + ((size_t)(xi * WG_OB + o) * WG_NN + v) * VN_LANES, acc[o][v]);
    }
    for (int o = 0; o < WG_OB && kb * WG_OB + o < w->K; o++)
        for (int v = 0; v < nn; v++) {
            vn m[WG_XI];
            for (int xi = 0; xi < WG_XI; xi++) m[xi] = loadn(mbuf + ((size_t)(xi * WG_OB + o) * WG_NN + v) * VN_LANES);
            output_transform(m, Yw + (size_t)(kb * WG_OB + o) * 4 * Qr + t0 + VN_LANES * v, (size_t)Qr);
        }
}

typedef void (*TileFn)(const Wino *, const float *, const float *, int, int, float *, float *);

#define WG_TILE(nv)                                                                                          \
    static void tile_##nv(const Wino *w, const float *V, const float *U, int kb, int t0, float *mbuf, float *Yw) { \
        tile(w, V, U, kb, t0, nv, mbuf, Yw);                                                                 \
    }
// TILE_FNS[nv]: the tile of nv vectors of 16 tiles.
#if TILE_NV == 6
WG_TILE(1)
WG_TILE(2)
WG_TILE(3)
WG_TILE(4)
WG_TILE(5)
WG_TILE(6)
static const TileFn TILE_FNS[WG_NV + 1] = {NULL, tile_1, tile_2, tile_3, tile_4, tile_5, tile_6};
#elif TILE_NV == 1
WG_TILE(1)
static const TileFn TILE_FNS[WG_NV + 1] = {NULL, tile_1};
#else
#error "the tiles are instantiated for TILE_NV 6 or 1"
#endif
#undef WG_TILE

// row[0..W) = the even columns E and odd columns O of one output row interleaved (E[0], O[0],
// E[1], ...), plus bo, plus res[0..W) if not NULL, clamped at zero if relu.
static void interleave_row(const float *E, const float *O, float *row, int W, float bo, const float *res, bool relu) {
#ifdef __AVX512F__
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for (int j0 = 0; 2 * j0 < W; j0 += V16_LANES) {  // E and O hold a vector of slack past the row
        const __m512 e = _mm512_loadu_ps(E + j0), o = _mm512_loadu_ps(O + j0);
        const __m512 halves[2] = {_mm512_permutex2var_ps(e, lo, o), _mm512_permutex2var_ps(e, hi, o)};
        for (int h = 0; h < 2; h++) {
            const int col = 2 * j0 + V16_LANES * h, n = W - col;
            if (n <= 0) break;
            const __mmask16 m = n >= V16_LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
            __m512 v = _mm512_add_ps(halves[h], _mm512_set1_ps(bo));
            if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res + col));
            if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
            _mm512_mask_storeu_ps(row + col, m, v);
        }
    }
#else
    // pairs of columns in a loop GCC vectorises (per column, with the test of its parity, this
    // was a tenth of ResNet-20's inference on AVX2), then the last column of an odd width
    const int pairs = W / 2;
    for (int j = 0; j < pairs; j++) {
        float e = E[j] + bo, o = O[j] + bo;
        if (res) e += res[2 * j], o += res[2 * j + 1];
        if (relu) e = e > 0 ? e : 0.0f, o = o > 0 ? o : 0.0f;
        row[2 * j] = e;
        row[2 * j + 1] = o;
    }
    if (W & 1) {
        float v = E[pairs] + bo;
        if (res) v += res[W - 1];
        row[W - 1] = relu ? (v > 0 ? v : 0.0f) : v;
    }
#endif
}

void wino_run(const Wino *w, const float *x, const float *packed, float *work, float *out, const float *bias,
              const float *res, bool relu) {
    const DirectConv *p = &w->phases;
    const int Qr = p->Qr, nvec = Qr / V16_LANES;
    float *padded = work, *V = padded + direct_padded_len(p), *Yw = V + v_len(w), *mbuf = Yw + yw_len(w);
    direct_pad(p, x, padded);
    input_transform(w, padded, V);
    const int chunks = (nvec + WG_NV - 1) / WG_NV;  // as even as possible: with AVX-512, 14 vectors are 5 + 5 + 4
    for (int kb = 0; kb < w->Kr / WG_OB; kb++)
        for (int ch = 0, v0 = 0; ch < chunks; ch++) {
            const int nv = (nvec - v0 + (chunks - ch) - 1) / (chunks - ch);
            TILE_FNS[nv](w, V, packed, kb, v0 * V16_LANES, mbuf, Yw);
            v0 += nv;
        }
    memset(Yw + yw_len(w) - V16_LANES, 0, V16_LANES * sizeof(float));  // the slack the output pass reads
    const size_t plane = (size_t)w->H * w->W;
    for (int k = 0; k < w->K; k++)
        for (int h = 0; h < w->H; h++) {
            const float *E = Yw + ((size_t)k * 4 + 2 * (h & 1)) * Qr + (size_t)(h >> 1) * p->Wp;
            const size_t at = (size_t)k * plane + (size_t)h * w->W;
            interleave_row(E, E + Qr, out + at, w->W, bias ? bias[k] : 0.0f, res ? res + at : NULL, relu);
        }
}
