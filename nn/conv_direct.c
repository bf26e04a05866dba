// conv_direct.c: the direct stride-1 and stride-2 convolution of conv_direct.h. Built with contracted
// multiply-adds (-ffp-contract=fast in the Makefile); the tiles' GCC vector type vn is one AVX-512
// or one AVX2 register with -march=native (simd16.h).
#include "conv_direct.h"

#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "err.h"
#include "simd16.h"

enum { DC_VL = V16_LANES, DC_NV = TILE_NV };  // floats per vector; vectors of positions per tile (at most)
_Static_assert(DC_OB == TILE_OB, "the direct tiles are tile_step's");

// Rounds n up to a multiple of m.
static int round_up(int n, int m) { return (n + m - 1) / m * m; }

enum { DC_MIN_Q = 32 };  // wide positions below which the 16-lane tiles waste most of their work

// Fills in the derived sizes of d from its inputs (stride 1 or 2).
static DirectConv direct_make(int Ci, int Hi, int Wi, int pad, int k, int stride, int Oo) {
    DirectConv d = {.Ci = Ci, .Hi = Hi, .Wi = Wi, .pad = pad, .k = k, .stride = stride, .Oo = Oo};
    const int Hpad = Hi + 2 * pad, Wpad = Wi + 2 * pad;
    d.Ho = (Hpad - k) / stride + 1;
    d.Wo = (Wpad - k) / stride + 1;
    d.Wp = stride == 1 ? Wpad : (Wpad + 1) / 2;
    d.nph = stride == 2 && k > 1 ? 2 : 1;
    d.Q = d.Ho * d.Wp;
    d.Qr = round_up(d.Q, DC_VL);
    d.Or = round_up(Oo, DC_OB);
    size_t rows = (size_t)(stride == 1 ? Hpad : (Hpad + 1) / 2) * (size_t)d.Wp;
    // the last float a tile reads, plus one: taps reach (k - 1) / stride rows and columns on
    size_t reach = (size_t)d.Qr + (size_t)((k - 1) / stride) * (size_t)(d.Wp + 1);
    size_t need = rows > reach ? rows : reach;
    d.phase = (need + DC_VL - 1) / DC_VL * DC_VL;
    d.plane = (size_t)(d.nph * d.nph) * d.phase;
    return d;
}

bool direct_fwd_ok(const ConvGeom *g) {
    if (g->groups != 1 || g->pad >= 16 || !((g->stride == 1 && g->k > 1) || g->stride == 2)) return false;
    return direct_fwd(g).Q >= DC_MIN_Q;
}

bool direct_bwd_ok(const ConvGeom *g) {
    return g->stride == 1 && direct_fwd_ok(g) && g->pad <= g->k - 1 && g->k <= 7;
}

bool direct_dw_ok(const ConvGeom *g) { return g->stride == 1 ? direct_bwd_ok(g) : direct_fwd_ok(g) && g->k <= 7; }

DirectConv direct_fwd(const ConvGeom *g) {
    return direct_make(g->C, g->H, g->W, g->pad, g->k, g->stride, g->O);
}

DirectConv direct_dx(const ConvGeom *g) { return direct_make(g->O, g->Ho, g->Wo, g->k - 1 - g->pad, g->k, 1, g->C); }

size_t direct_packed_len(const DirectConv *d) { return (size_t)d->Or * (size_t)d->Ci * (size_t)(d->k * d->k); }

size_t direct_padded_len(const DirectConv *d) { return (size_t)d->Ci * d->plane; }

// Floats of the output map (direct_map): two 32-bit words per vector of wide positions, rounded
// up to 16 floats.
static size_t map_len(const DirectConv *d) { return (size_t)round_up(2 * (d->Qr / DC_VL), DC_VL); }

size_t direct_wide_len(const DirectConv *d) { return (size_t)d->Or * (size_t)d->Qr + map_len(d); }

void direct_map(const DirectConv *d, float *wide) {
    uint32_t *map = (uint32_t *)(wide + (size_t)d->Or * (size_t)d->Qr);
    int h = 0, w = 0;  // the row and column of wide position q
    for (int vi = 0; vi < d->Qr / DC_VL; vi++) {
        uint32_t mask = 0, at = (uint32_t)(h * d->Wo + (w < d->Wo ? w : d->Wo));
        for (int l = 0; l < DC_VL; l++) {
            if (h < d->Ho && w < d->Wo) mask |= 1u << l;
            if (++w == d->Wp) w = 0, h++;
        }
        map[2 * vi] = at;
        map[2 * vi + 1] = mask;
    }
}

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

#ifdef __AVX512F__
// Columns [s, s + 16) of the row src[0..Wi) padded by p zeros on the left (p < 16) and zeros
// on the right: a vector starting in the left border is expanded from src into lanes p - s and
// up, a later one is a masked load (nothing past the row, and no address before src).
static inline __m512 padded_vec(const float *src, int s, int Wi, int p) {
    const int lo = s < p ? p - s : 0, hi = Wi + p - s < 16 ? Wi + p - s : 16;
    if (hi <= lo) return _mm512_setzero_ps();
    const __mmask16 load = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    return s < p ? _mm512_maskz_expandloadu_ps(load, src) : _mm512_maskz_loadu_ps(load, src + (s - p));
}

// row[0..Wp) = p zeros, src[0..Wi), zeros (Wp = Wi + 2 p, p < 16), 16 lanes at a time.
static inline void pad_row(const float *src, float *row, int Wi, int p, int Wp) {
    for (int w = 0; w < Wp; w += 16) {
        const int n = Wp - w < 16 ? Wp - w : 16;
        _mm512_mask_storeu_ps(row + w, (__mmask16)((1u << n) - 1u), padded_vec(src, w, Wi, p));
    }
}

// even[j] = column 2 j and, if odd is not NULL, odd[j] = column 2 j + 1 of the row src[0..Wi)
// padded by p zeros (p < 16) and zeros after it, for j < Wh: 32 columns at a time, split by two
// lane permutations.
static inline void split_row(const float *src, float *even, float *odd, int Wi, int p, int Wh) {
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int j = 0; j < Wh; j += 16) {
        const int n = Wh - j < 16 ? Wh - j : 16;
        const __mmask16 store = (__mmask16)((1u << n) - 1u);
        const __m512 lo = padded_vec(src, 2 * j, Wi, p), hi = padded_vec(src, 2 * j + 16, Wi, p);
        _mm512_mask_storeu_ps(even + j, store, _mm512_permutex2var_ps(lo, evens, hi));
        if (odd) _mm512_mask_storeu_ps(odd + j, store, _mm512_permutex2var_ps(lo, odds, hi));
    }
}
#else
// row[0..Wp) = p zeros, src[0..Wi), zeros (Wp = Wi + 2 p).
static inline void pad_row(const float *src, float *row, int Wi, int p, int Wp) {
    (void)Wp;
    for (int j = 0; j < p; j++) row[j] = row[p + Wi + j] = 0.0f;
    memcpy(row + p, src, (size_t)Wi * sizeof(float));
}

// split_row's even[j] and odd[j] for j in [j0, j1), each column tested against the row's ends.
static inline void split_tested(const float *src, float *even, float *odd, int Wi, int p, int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        const int ce = 2 * j - p, co = ce + 1;
        even[j] = ce >= 0 && ce < Wi ? src[ce] : 0.0f;
        if (odd) odd[j] = co >= 0 && co < Wi ? src[co] : 0.0f;
    }
}

// even[j] = column 2 j and, if odd is not NULL, odd[j] = column 2 j + 1 of the row src[0..Wi)
// padded by p zeros and zeros after it, for j < Wh. The columns inside the row go in a loop
// without tests, which GCC vectorises (with the tests in it, padding the stride-2 inputs was a
// tenth of ResNet-20's inference on AVX2).
static inline void split_row(const float *src, float *even, float *odd, int Wi, int p, int Wh) {
    int lo = (p + 1) / 2, hi = (Wi + p) / 2;  // j in [lo, hi): both 2 j - p and 2 j - p + 1 in the row
    if (hi > Wh) hi = Wh;
    if (hi < lo) hi = lo;
    split_tested(src, even, odd, Wi, p, 0, lo < Wh ? lo : Wh);
    if (odd) {
        for (int j = lo; j < hi; j++) {
            even[j] = src[2 * j - p];
            odd[j] = src[2 * j - p + 1];
        }
    } else {
        for (int j = lo; j < hi; j++) even[j] = src[2 * j - p];
    }
    split_tested(src, even, odd, Wi, p, hi, Wh);
}
#endif

// dst[0..n) = src[0..n) in vectors, without a library call for rows of 7 to 32 floats (where
// the call cost about as much as the copy). With AVX-512 the last vector is masked; on AVX2,
// whose masked store is slow (half of the copies' time on an AMD EPYC), it is a whole vector
// ending at n, over floats already copied, and rows under 8 floats go by 4, 2 and 1.
static inline void copy_floats(const float *src, float *dst, int n) {
#if defined(__AVX512F__)
    for (int w = 0; w < n; w += 16) {
        const __mmask16 m = n - w >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - w)) - 1u);
        _mm512_mask_storeu_ps(dst + w, m, _mm512_maskz_loadu_ps(m, src + w));
    }
#elif defined(__AVX2__)
    int w = 0;
    if (n >= 8) {
        for (; w + 8 <= n; w += 8) storen(dst + w, loadn(src + w));
        if (w < n) storen(dst + n - 8, loadn(src + n - 8));
        return;
    }
    if (n & 4) _mm_storeu_ps(dst, _mm_loadu_ps(src)), w = 4;
    if (n & 2) memcpy(dst + w, src + w, 2 * sizeof(float)), w += 2;
    if (n & 1) dst[w] = src[w];
#else
    memcpy(dst, src, (size_t)n * sizeof(float));
#endif
}

// direct_pad at stride 1: each plane the rows of x between pad zero rows, each row between pad
// zeros, then zero slack.
static void pad_stride1(const DirectConv *d, const float *x, float *padded) {
    const int p = d->pad, Wi = d->Wi, Wp = d->Wp;
    HP_ASSERT(p < 16);
    for (int c = 0; c < d->Ci; c++) {
        float *dst = padded + (size_t)c * d->plane;
        const float *src = x + (size_t)c * d->Hi * Wi;
        memset(dst, 0, (size_t)p * Wp * sizeof(float));
        for (int h = 0; h < d->Hi; h++) pad_row(src + (size_t)h * Wi, dst + (size_t)(h + p) * Wp, Wi, p, Wp);
        size_t used = (size_t)(d->Hi + p) * Wp;
        memset(dst + used, 0, (d->plane - used) * sizeof(float));
    }
}

// direct_pad at stride 2: row i of phase planes (a, 0) and (a, 1) are the even and odd columns of
// padded row 2 i + a (zero when that row is padding), then zero slack.
static void pad_stride2(const DirectConv *d, const float *x, float *padded) {
    const int p = d->pad, Wi = d->Wi, Wh = d->Wp, nph = d->nph, Hh = (d->Hi + 2 * p + 1) / 2;
    HP_ASSERT(p < 16);
    const size_t used = (size_t)Hh * (size_t)Wh;
    for (int c = 0; c < d->Ci; c++)
        for (int a = 0; a < nph; a++) {
            float *even = padded + (size_t)c * d->plane + (size_t)(a * nph) * d->phase;
            float *odd = nph == 2 ? even + d->phase : NULL;
            for (int i = 0; i < Hh; i++) {
                const int h = 2 * i + a - p;
                float *ev = even + (size_t)i * Wh, *od = odd ? odd + (size_t)i * Wh : NULL;
                if (h >= 0 && h < d->Hi) {
                    split_row(x + ((size_t)c * d->Hi + h) * Wi, ev, od, Wi, p, Wh);
                } else {
                    memset(ev, 0, (size_t)Wh * sizeof(float));
                    if (od) memset(od, 0, (size_t)Wh * sizeof(float));
                }
            }
            memset(even + used, 0, (d->phase - used) * sizeof(float));
            if (odd) memset(odd + used, 0, (d->phase - used) * sizeof(float));
        }
}

void direct_pad(const DirectConv *d, const float *x, float *padded) {
    if (d->stride == 1)
        pad_stride1(d, x, padded);
    else
        pad_stride2(d, x, padded);
}

void direct_pad_inner(const DirectConv *d, const float *x, float *padded) {
    const int p = d->pad, Wi = d->Wi, Wp = d->Wp;
    for (int c = 0; c < d->Ci; c++) {
        const float *src = x + (size_t)c * d->Hi * Wi;
        if (d->stride == 1) {
            float *dst = padded + (size_t)c * d->plane + (size_t)p * Wp + p;
            for (int h = 0; h < d->Hi; h++) copy_floats(src + (size_t)h * Wi, dst + (size_t)h * Wp, Wi);
            continue;
        }
        const int nph = d->nph, Hh = (d->Hi + 2 * p + 1) / 2;
        for (int a = 0; a < nph; a++) {
            float *even = padded + (size_t)c * d->plane + (size_t)(a * nph) * d->phase;
            float *odd = nph == 2 ? even + d->phase : NULL;
            for (int i = 0; i < Hh; i++) {
                const int h = 2 * i + a - p;
                if (h >= 0 && h < d->Hi)
                    split_row(src + (size_t)h * Wi, even + (size_t)i * Wp, odd ? odd + (size_t)i * Wp : NULL, Wi, p,
                              Wp);
            }
        }
    }
}

// Where a tile's results go: to the wide rows, or (AVX-512, no acc) straight into the output
// with the epilogue applied, through the map of direct_map.
typedef struct {
    float *wide;             // (Or, Qr) wide rows, when map is NULL
    const uint32_t *map;     // per vector of positions: output index of its first valid lane, lane mask
    float *out;              // (Oo, Ho, Wo)
    const float *bias, *res; // (Oo) and (Oo, Ho, Wo), or NULL
    bool relu;
} TileDst;

#ifdef __AVX512F__
// Writes the valid lanes of acc (positions from vector vi of channel o) into the output: bias
// added, then res, then the clamp (the order of narrow_row), compressed into consecutive floats.
static inline __attribute__((always_inline)) void tile_store(const DirectConv *d, const TileDst *t, int o, int vi,
                                                             v16 acc) {
    const __mmask16 m = (__mmask16)t->map[2 * vi + 1];
    if (!m) return;
    const size_t at = (size_t)o * (size_t)(d->Ho * d->Wo) + t->map[2 * vi];
    __m512 v = (__m512)acc;
    if (t->bias) v = _mm512_add_ps(v, _mm512_set1_ps(t->bias[o]));
    if (t->res) v = _mm512_add_ps(v, _mm512_maskz_expandloadu_ps(m, t->res + at));
    if (t->relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
    const __mmask16 n = (__mmask16)((1u << __builtin_popcount(m)) - 1u);
    _mm512_mask_storeu_ps(t->out + at, n, _mm512_maskz_compress_ps(m, v));
}
#endif

// One tile: wide[o][q0 + 16 v] for the no (1 to DC_OB) channels from ob and nv vectors of
// positions from q0, summed over the sources, written as dst says. Inlined with constant no and
// nv so the accumulators stay in registers, with a constant kernel size kc (0: d->k) so that the
// taps unroll, and a constant stride sc (1 or 2: the taps read the phase planes). A last tile of
// fewer than DC_OB channels (pruned layers) does only their work. Per tap the weights are
// broadcast first, then each input vector is loaded and used at once (tile_step: at most 29 live
// vectors with AVX-512, 13 on AVX2), so GCC keeps every accumulator in a register (loading all nv
// input vectors first made it spill some; 4 to 13% slower in a single-process A/B on 16 and 32
// channels, AVX-512).
static inline __attribute__((always_inline)) void tile(const DirectConv *d, int n_src, const float *const *padded,
                                                       const float *const *packed, int ob, int q0, int no, int nv,
                                                       int sc, int kc, const TileDst *dst) {
    const int k = kc ? kc : d->k, Wp = d->Wp, nph = sc == 2 && k > 1 ? 2 : 1;
    const size_t phase = d->phase;
    const size_t w_tile = (size_t)d->Ci * (size_t)(k * k) * DC_OB;  // packed floats per channel tile
    const int nn = nv * VN_PER_16;  // native vectors of positions
    vn acc[DC_OB][TILE_NN];
    for (int o = 0; o < no; o++)
        for (int v = 0; v < nn; v++) acc[o][v] = (vn){0};
    for (int s = 0; s < n_src; s++) {
        const float *wt = packed[s] + (size_t)(ob / DC_OB) * w_tile;
        for (int c = 0; c < d->Ci; c++) {
            const float *plane = padded[s] + (size_t)c * d->plane + q0;
            for (int ki = 0; ki < k; ki++)
                for (int kj = 0; kj < k; kj++, wt += DC_OB) {
                    const float *x = sc == 1 ? plane + ki * Wp + kj
                                             : plane + (size_t)((ki & 1) * nph + (kj & 1)) * phase +
                                                   (size_t)((ki >> 1) * Wp + (kj >> 1));
                    tile_step(acc, wt, x, no, nn);
                }
        }
    }
#ifdef __AVX512F__
    if (dst->map) {
        for (int o = 0; o < no; o++)
            for (int v = 0; v < nv; v++) tile_store(d, dst, ob + o, q0 / DC_VL + v, acc[o][v]);
        return;
    }
#endif
    for (int o = 0; o < no; o++)
        for (int v = 0; v < nn; v++)
            memcpy(dst->wide + (size_t)(ob + o) * d->Qr + q0 + VN_LANES * v, &acc[o][v], sizeof(vn));
}

typedef void (*TileFn)(const DirectConv *, int, const float *const *, const float *const *, int, int,
                       const TileDst *);

// Tiles of no channels by nv vectors of positions, each with its own registers, in 5 variants:
// any kernel at stride 1, 3x3 at stride 1 (the common case, taps unrolled), any kernel at stride 2,
// 3x3 at stride 2 and 1x1 at stride 2 (projection shortcuts).
enum { DC_S1, DC_S1_K3, DC_S2, DC_S2_K3, DC_S2_K1, DC_VARIANTS };
#define DC_TILE_VARIANT(no, nv, sfx, sc, kc)                                                                         \
    static void tile_##no##_##nv##sfx(const DirectConv *d, int n_src, const float *const *padded,                    \
                                      const float *const *packed, int ob, int q0, const TileDst *dst) {              \
        tile(d, n_src, padded, packed, ob, q0, no, nv, sc, kc, dst);                                                 \
    }
#define DC_TILE(no, nv)                                                                                              \
    DC_TILE_VARIANT(no, nv, , 1, 0)                                                                                  \
    DC_TILE_VARIANT(no, nv, _k3, 1, 3)                                                                               \
    DC_TILE_VARIANT(no, nv, _s2, 2, 0) DC_TILE_VARIANT(no, nv, _s2k3, 2, 3) DC_TILE_VARIANT(no, nv, _s2k1, 2, 1)
#if TILE_NV == 6
#define DC_TILES(no) DC_TILE(no, 1) DC_TILE(no, 2) DC_TILE(no, 3) DC_TILE(no, 4) DC_TILE(no, 5) DC_TILE(no, 6)
#define DC_ROW(no, sfx) {NULL, tile_##no##_1##sfx, tile_##no##_2##sfx, tile_##no##_3##sfx, tile_##no##_4##sfx, \
                         tile_##no##_5##sfx, tile_##no##_6##sfx}
#elif TILE_NV == 1
#define DC_TILES(no) DC_TILE(no, 1)
#define DC_ROW(no, sfx) {NULL, tile_##no##_1##sfx}
#else
#error "the tiles are instantiated for TILE_NV 6 or 1"
#endif
DC_TILES(1)
DC_TILES(2)
DC_TILES(3)
DC_TILES(4)
#define DC_VARIANT(sfx) {{NULL}, DC_ROW(1, sfx), DC_ROW(2, sfx), DC_ROW(3, sfx), DC_ROW(4, sfx)}

// DC_TILE_FNS[variant][no][nv]: the tile of one variant for no channels and nv vectors.
static const TileFn DC_TILE_FNS[DC_VARIANTS][DC_OB + 1][DC_NV + 1] = {
    [DC_S1] = DC_VARIANT(),         [DC_S1_K3] = DC_VARIANT(_k3),   [DC_S2] = DC_VARIANT(_s2),
    [DC_S2_K3] = DC_VARIANT(_s2k3), [DC_S2_K1] = DC_VARIANT(_s2k1),
};

// The tile variant of d.
static int tile_variant(const DirectConv *d) {
    if (d->stride == 1) return d->k == 3 ? DC_S1_K3 : DC_S1;
    return d->k == 3 ? DC_S2_K3 : d->k == 1 ? DC_S2_K1 : DC_S2;
}

#ifdef __AVX512F__
// dst[0..n) = src[0..n) (+ bo if bias) (+ res[0..n) if res), clamped at zero if relu, or
// dst += src + bo if acc: 16 lanes at a time, the last vector masked (no scalar tail: pruned
// widths such as 7 or 14 are mostly tail). max(v, +0) returns +0 for v = -0 or NaN, as
// v > 0 ? v : 0 does.
static inline void narrow_row(const float *src, float *dst, int n, float bo, bool acc, bool bias, const float *res,
                              bool relu) {
    const __m512 b = _mm512_set1_ps(bo), zero = _mm512_setzero_ps();
    for (int w = 0; w < n; w += 16) {
        const __mmask16 m = n - w >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - w)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(m, src + w);
        if (acc) {
            v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + w), _mm512_add_ps(v, b));
        } else {
            if (bias) v = _mm512_add_ps(v, b);
            if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res + w));
            if (relu) v = _mm512_max_ps(v, zero);
        }
        _mm512_mask_storeu_ps(dst + w, m, v);
    }
}
#else
// dst[0..n) = src[0..n) (+ bo if bias) (+ res[0..n) if res), clamped at zero if relu, or
// dst += src + bo if acc.
static inline void narrow_row(const float *src, float *dst, int n, float bo, bool acc, bool bias, const float *res,
                              bool relu) {
    if (acc) {
#pragma omp simd
        for (int w = 0; w < n; w++) dst[w] += src[w] + bo;
    } else if (relu || res) {
#pragma omp simd
        for (int w = 0; w < n; w++) {
            float v = bias ? src[w] + bo : src[w];
            if (res) v += res[w];
            dst[w] = !relu || v > 0.0f ? v : 0.0f;
        }
    } else if (bias) {
#pragma omp simd
        for (int w = 0; w < n; w++) dst[w] = src[w] + bo;
    } else {
        copy_floats(src, dst, n);
    }
}
#endif

// Writes (acc: adds) the valid positions of the wide rows (Or, Qr) into out (Oo, Ho, Wo), plus
// bias[o] if bias is not NULL, plus res (Oo, Ho, Wo) if not NULL, clamped at zero if relu
// (neither res nor relu with acc).
static void narrow_out(const DirectConv *d, const float *wide, float *out, bool acc, const float *bias,
                       const float *res, bool relu) {
    for (int o = 0; o < d->Oo; o++) {
        const float bo = bias ? bias[o] : 0.0f;
        for (int h = 0; h < d->Ho; h++) {
            const size_t at = ((size_t)o * d->Ho + h) * d->Wo;
            narrow_row(wide + (size_t)o * d->Qr + (size_t)h * d->Wp, out + at, d->Wo, bo, acc, bias != NULL,
                       res ? res + at : NULL, relu);
        }
    }
}

void direct_run(const DirectConv *d, int n_src, const float *const *padded, const float *const *packed, float *wide,
                bool mapped, float *out, bool acc, const float *bias, const float *res, bool relu) {
    HP_ASSERT(!(acc && (relu || res)));
    const int full = DC_NV * DC_VL, variant = tile_variant(d);
    TileDst dst = {.wide = wide, .out = out, .bias = bias, .res = res, .relu = relu};
#ifdef __AVX512F__
    if (mapped && !acc) dst.map = (const uint32_t *)(wide + (size_t)d->Or * (size_t)d->Qr);
#else
    (void)mapped;
#endif
    for (int q0 = 0; q0 < d->Qr; q0 += full) {
        int nv = (d->Qr - q0) / DC_VL;
        if (nv > DC_NV) nv = DC_NV;
        for (int ob = 0; ob < d->Oo; ob += DC_OB) {
            int no = d->Oo - ob < DC_OB ? d->Oo - ob : DC_OB;
            DC_TILE_FNS[variant][no][nv](d, n_src, padded, packed, ob, q0, &dst);
        }
    }
    if (!dst.map) narrow_out(d, wide, out, acc, bias, res, relu);
}

void direct_widen(const DirectConv *d, const float *dy, float *dy_wide) {
    // (one memset and row copies measured faster here than masked row stores)
    memset(dy_wide, 0, direct_wide_len(d) * sizeof(float));
    for (int o = 0; o < d->Oo; o++)
        for (int h = 0; h < d->Ho; h++)
            memcpy(dy_wide + (size_t)o * d->Qr + (size_t)h * d->Wp, dy + ((size_t)o * d->Ho + h) * d->Wo,
                   (size_t)d->Wo * sizeof(float));
}

#ifdef __AVX512F__
typedef int v16i __attribute__((vector_size(64)));

// Halves the lane groups of x and y: lanes 0-7 = x's lanes i + (i + 8), lanes 8-15 = y's.
static inline v16 fold16(v16 x, v16 y) {
    return __builtin_shuffle(x, y, (v16i){0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}) +
           __builtin_shuffle(x, y, (v16i){8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31});
}

// Halves groups of 8 lanes: x's groups [a | b] and y's [c | d] become [a' b' c' d'], 4 lanes each.
static inline v16 fold8(v16 x, v16 y) {
    return __builtin_shuffle(x, y, (v16i){0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27}) +
           __builtin_shuffle(x, y, (v16i){4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31});
}

// Halves groups of 4 lanes (x's 4 groups, then y's), 2 lanes each.
static inline v16 fold4(v16 x, v16 y) {
    return __builtin_shuffle(x, y, (v16i){0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29}) +
           __builtin_shuffle(x, y, (v16i){2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31});
}

// Halves pairs of lanes (x's 8 pairs, then y's).
static inline v16 fold2(v16 x, v16 y) {
    return __builtin_shuffle(x, y, (v16i){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}) +
           __builtin_shuffle(x, y, (v16i){1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31});
}

// Lane i of the result = the sum of a[i]'s 16 lanes, for a[0..15]: a transpose-and-add tree of
// 15 folds (45 shuffles and adds for 16 sums), each sum by halving: lanes i + (i + 8), then
// + 4, + 2, + 1 (a fixed order).
static inline __attribute__((always_inline)) v16 lane_sums16(const v16 *a) {
    v16 b[8], c[4], e[2];
    for (int i = 0; i < 8; i++) b[i] = fold16(a[2 * i], a[2 * i + 1]);
    for (int i = 0; i < 4; i++) c[i] = fold8(b[2 * i], b[2 * i + 1]);
    for (int i = 0; i < 2; i++) e[i] = fold4(c[2 * i], c[2 * i + 1]);
    return fold2(e[0], e[1]);
}

#endif

// The weight-gradient tile: DC_DW_OB output channels times DC_DW_TAPS taps; per native vector of
// positions it loads the channels' dy vectors (at multiples of VN_LANES floats into their rows)
// and the taps' input vectors (at any offset). AVX-512: 4 x 6, 24 accumulators, 24 multiply-adds
// per 10 loads, as the forward tiles. AVX2 (16 registers): 4 x 2, 8 accumulators, 4 dy and 1
// input register.
enum { DC_DW_OB = 4 };
#ifdef __AVX512F__
enum { DC_DW_TAPS = 6, DC_DW_ACC = 32 };  // DC_DW_ACC: DC_DW_OB * DC_DW_TAPS rounded up to 16
#else
enum { DC_DW_TAPS = 2, DC_DW_ACC = 8 };  // DC_DW_ACC: DC_DW_OB * DC_DW_TAPS, summed lane by lane
#endif
enum { DC_DW_NQ = 6 };  // vectors of 16 positions per sample up to which full tiles unroll that loop

// acc[o * DC_DW_TAPS + j] += the dy vector g[o * Qr + q] times the input vector x[off[j] + q], for
// o < no (VN_LANES positions from q).
static inline __attribute__((always_inline)) void dw_step(const float *x, const float *g, size_t Qr, const size_t *off,
                                                          size_t q, int no, vn *acc) {
    vn gv[DC_DW_OB];
#ifdef __AVX512F__
#pragma GCC unroll 4
    for (int o = 0; o < no; o++) gv[o] = loadn(g + (size_t)o * Qr + q);
#else
    // held in registers: else GCC loads each again as the memory operand of its 2 multiply-adds
    // (10 loads per 8 of them instead of 6; ResNet-20 training 8% slower on AVX2)
#pragma GCC unroll 4
    for (int o = 0; o < no; o++) gv[o] = in_register(loadn(g + (size_t)o * Qr + q));
#endif
#pragma GCC unroll 6
    for (int j = 0; j < DC_DW_TAPS; j++) {
        vn xv = in_register(loadn(x + off[j] + q));
#pragma GCC unroll 4
        for (int o = 0; o < no; o++) acc[o * DC_DW_TAPS + j] += gv[o] * xv;
    }
}

// sums[i] = the sum of acc[i]'s lanes for i < n: by lane_sums16, 16 at a time, with AVX-512
// (n rounded up to 16 within acc), else lane by lane in order.
static inline __attribute__((always_inline)) void dw_lane_sums(const vn *acc, int n, float *sums) {
#ifdef __AVX512F__
    for (int b = 0; b < n; b += 16) {
        v16 v = lane_sums16(acc + b);
        memcpy(sums + b, &v, sizeof v);
    }
#else
    for (int i = 0; i < n; i++) {
        float t = 0.0f;
        for (int l = 0; l < VN_LANES; l++) t += acc[i][l];
        sums[i] = t;
    }
#endif
}

// The weight gradient of output channels [ob, ob + no) and DC_DW_TAPS taps over n samples: tap j
// reads the padded input at off[j] (c * plane + ki * Wp + kj). dwt[o * Ci k k + j] += the sum over
// samples s and wide positions q of dy_wide_s[ob + o][q] * padded_s[off[j] + q], for j < valid
// (the rest are dummies past the last tap). Inlined with a constant no, and a constant nq = Qr / 16
// (or 0: Qr read from d) for small planes: accumulators in registers, no loop over so few positions.
static inline __attribute__((always_inline)) void dw_tile(const DirectConv *d, int n, const float *padded,
                                                          const float *dy_wide, int ob, int no, int nq,
                                                          const size_t *off, int valid, float *dwt) {
    const size_t taps = (size_t)d->Ci * (size_t)(d->k * d->k), Qr = nq ? (size_t)nq * DC_VL : (size_t)d->Qr;
    const size_t plen = direct_padded_len(d), wlen = direct_wide_len(d);
    vn acc[DC_DW_ACC];  // acc[o * DC_DW_TAPS + j]
    for (int i = 0; i < DC_DW_ACC; i++) acc[i] = (vn){0};
    for (int s = 0; s < n; s++) {
        const float *x = padded + (size_t)s * plen, *g = dy_wide + (size_t)s * wlen + (size_t)ob * Qr;
        if (nq) {
#pragma GCC unroll 12
            for (int v = 0; v < nq * VN_PER_16; v++) dw_step(x, g, Qr, off, (size_t)v * VN_LANES, no, acc);
        } else {
            for (size_t q = 0; q < Qr; q += VN_LANES) dw_step(x, g, Qr, off, q, no, acc);
        }
    }
    float sums[DC_DW_ACC] = {0};
    dw_lane_sums(acc, no * DC_DW_TAPS, sums);
    for (int o = 0; o < no; o++)
        for (int j = 0; j < valid; j++) dwt[(size_t)o * taps + (size_t)j] += sums[o * DC_DW_TAPS + j];
}

// Tiles of no = 1 to DC_DW_OB output channels, each with its own registers, and full tiles for
// nq = 2 to DC_DW_NQ vectors of positions per sample.
#define DC_DW_TILE(no, nq)                                                                                      \
    static void dw_tile_##no##_##nq(const DirectConv *d, int n, const float *padded, const float *dy_wide,     \
                                    int ob, const size_t *off, int valid, float *dwt) {                        \
        dw_tile(d, n, padded, dy_wide, ob, no, nq, off, valid, dwt);                                           \
    }
DC_DW_TILE(1, 0)
DC_DW_TILE(2, 0)
DC_DW_TILE(3, 0)
DC_DW_TILE(4, 0)
DC_DW_TILE(4, 2)
DC_DW_TILE(4, 3)
DC_DW_TILE(4, 4)
DC_DW_TILE(4, 5)
DC_DW_TILE(4, 6)

typedef void (*DwTileFn)(const DirectConv *, int, const float *, const float *, int, const size_t *, int, float *);

// Wide positions per reduction (at most, unless one sample has more); samples per reduction at most.
enum { DC_DW_POSITIONS = 1024, DC_DW_MAX_CHUNK = 16 };

int direct_dw_chunk(const DirectConv *d) {
    int n = DC_DW_POSITIONS / d->Qr;
    return n < 1 ? 1 : n < DC_DW_MAX_CHUNK ? n : DC_DW_MAX_CHUNK;
}

// Offset of tap (c, ki, kj) in a padded input: the run of wide positions it multiplies (at
// stride 2 in its phase plane, as the forward tiles read it).
static size_t tap_offset(const DirectConv *d, int c, int ki, int kj) {
    size_t at = (size_t)c * d->plane;
    if (d->stride == 1) return at + (size_t)ki * (size_t)d->Wp + (size_t)kj;
    return at + (size_t)((ki & 1) * d->nph + (kj & 1)) * d->phase + (size_t)(ki >> 1) * (size_t)d->Wp +
           (size_t)(kj >> 1);
}

// The weight gradient of output channels [ob, ob + DC_DW_OB) (those below Oo) for taps
// [t0, t0 + DC_DW_TAPS) (those below the count), by the tile that fits them.
static void dw_block(const DirectConv *d, int n, const float *padded, const float *dy_wide, int ob, int t0,
                     float *dw) {
    static const DwTileFn part[DC_DW_OB] = {NULL, dw_tile_1_0, dw_tile_2_0, dw_tile_3_0};
    static const DwTileFn full[DC_DW_NQ + 1] = {dw_tile_4_0, dw_tile_4_0, dw_tile_4_2, dw_tile_4_3,
                                                dw_tile_4_4, dw_tile_4_5, dw_tile_4_6};
    const int k = d->k, taps = d->Ci * k * k, nq = d->Qr / DC_VL;
    const int no = d->Oo - ob < DC_DW_OB ? d->Oo - ob : DC_DW_OB;
    const int valid = taps - t0 < DC_DW_TAPS ? taps - t0 : DC_DW_TAPS;
    size_t off[DC_DW_TAPS];
    for (int j = 0; j < DC_DW_TAPS; j++) {
        const int t = t0 + j;  // tap (c, ki, kj) in dw's order
        off[j] = j < valid ? tap_offset(d, t / (k * k), t / k % k, t % k) : 0;
    }
    const DwTileFn tile = no < DC_DW_OB ? part[no] : full[nq <= DC_DW_NQ ? nq : 0];
    tile(d, n, padded, dy_wide, ob, off, valid, dw + (size_t)ob * taps + (size_t)t0);
}

void direct_dw(const DirectConv *d, int n, const float *padded, const float *dy_wide, float *dw) {
    HP_ASSERT(d->stride == 1 || d->stride == 2);
    const int taps = d->Ci * d->k * d->k;
#ifdef __AVX512F__
    // taps outer: a tile of taps' input rows (of the whole chunk) is reused by all output channels
    for (int t0 = 0; t0 < taps; t0 += DC_DW_TAPS)
        for (int ob = 0; ob < d->Oo; ob += DC_DW_OB) dw_block(d, n, padded, dy_wide, ob, t0, dw);
#else
    // output channels outer: a tile's dy rows (4 channels of the chunk) stay in the L1 cache over
    // all the taps, and an input channel's rows over its k * k taps. (Taps outer, the 2-tap tiles
    // read every channel's dy rows from L2 once per 2 taps: ResNet-20 training 3% slower.)
    for (int ob = 0; ob < d->Oo; ob += DC_DW_OB)
        for (int t0 = 0; t0 < taps; t0 += DC_DW_TAPS) dw_block(d, n, padded, dy_wide, ob, t0, dw);
#endif
}
