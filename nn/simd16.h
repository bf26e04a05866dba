// simd16.h: 16-float vectors for the convolution kernels (GCC vector types: one AVX-512
// register with -march=native on such a CPU, else pairs of narrower ones). Internal to nn/.
#ifndef HP_SIMD16_H
#define HP_SIMD16_H

#include <string.h>

typedef float v16 __attribute__((vector_size(64)));

enum { V16_LANES = 16 };

// Unaligned load of 16 floats.
static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

// Unaligned store of 16 floats.
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

// v, held in a register: the compiler may no longer fold its load into each multiply-add that
// uses it (one load per use: 24 instead of 6 per tap of a 4 x 6 tile, which costs little where
// a core loads two 512-bit vectors a cycle, and bounds the tile where it loads one).
// Only under AVX-512: without it a 16-float vector fits no register, and the loads are not folded.
static inline __attribute__((always_inline)) v16 in_register(v16 v) {
#ifdef __AVX512F__
    __asm__("" : "+v"(v));
#endif
    return v;
}

// f in all 16 lanes. Not (v16){0} + f: adding +0.0 is not an identity (-0.0 + 0.0 = +0.0), so
// the compiler would keep a scalar add and a register broadcast, both on the FMA ports, instead
// of one broadcast load.
static inline v16 splat16(float f) { return (v16){f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f}; }

// The register tile of the convolution kernels: up to 4 output channels by 6 vectors of 16
// positions, 24 accumulators.
enum { TILE_OB = 4, TILE_NV = 6 };

// acc[o][v] += w[o] * x[16 v] for o < no and v < nv: one tap of a broadcast-and-multiply-add
// tile. The no weights are broadcast first, then each input vector is loaded, held in a
// register and used at once (at most 24 + 4 + 1 live vectors: the accumulators stay in
// registers). Inline with constant no and nv so that the loops unroll.
static inline __attribute__((always_inline)) void tile_step(v16 acc[][TILE_NV], const float *w, const float *x, int no,
                                                            int nv) {
    v16 wb[TILE_OB];
#pragma GCC unroll 4
    for (int o = 0; o < no; o++) wb[o] = splat16(w[o]);
#pragma GCC unroll 6
    for (int v = 0; v < nv; v++) {
        v16 xv = in_register(load16(x + V16_LANES * v));
#pragma GCC unroll 4
        for (int o = 0; o < no; o++) acc[o][v] += xv * wb[o];
    }
}

#endif
