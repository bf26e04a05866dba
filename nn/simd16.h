// simd16.h: the vectors of the convolution kernels (GCC vector types): v16, 16 floats, the unit
// of the layouts; vn, the machine's own register (16 floats with AVX-512, 8 with AVX2 under
// -march=native), the unit of the register tiles, whose shape follows the register count.
// Internal to nn/.
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

// f in all 16 lanes. Not (v16){0} + f: adding +0.0 is not an identity (-0.0 + 0.0 = +0.0), so
// the compiler would keep a scalar add and a register broadcast, both on the FMA ports, instead
// of one broadcast load.
static inline v16 splat16(float f) { return (v16){f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f}; }

// The machine's own vector: 16 floats (one register) with AVX-512, else 8 (one AVX2 register).
// The layouts keep 16-float granularity (V16_LANES); the register tiles count native vectors,
// VN_PER_16 to each 16 positions. (With 16-float vectors on AVX2, each a pair of registers, GCC
// kept the tiles' accumulators on the stack: ResNet-20 trained at 49 images/s, against 345 to 419
// with these tiles, docs/performance.md.)
#ifdef __AVX512F__
typedef v16 vn;
#define VN_LANES 16
#else
typedef float vn __attribute__((vector_size(32)));
#define VN_LANES 8
#endif
enum { VN_PER_16 = V16_LANES / VN_LANES };

// Unaligned load of VN_LANES floats.
static inline vn loadn(const float *p) {
    vn v;
    memcpy(&v, p, sizeof v);
    return v;
}

// Unaligned store of VN_LANES floats.
static inline void storen(float *p, vn v) { memcpy(p, &v, sizeof v); }

// f in every lane (see splat16).
static inline vn splatn(float f) {
#ifdef __AVX512F__
    return splat16(f);
#else
    return (vn){f, f, f, f, f, f, f, f};
#endif
}

// v, held in a register: the compiler may no longer fold its load into each multiply-add that
// uses it (one load per use: 24 instead of 6 per tap of a 4 x 6 tile, which costs little where
// a core loads two 512-bit vectors a cycle, and bounds the tile where it loads one).
// (Without AVX a native vector fits no register, and v is left alone.)
static inline __attribute__((always_inline)) vn in_register(vn v) {
#ifdef __AVX__
    __asm__("" : "+v"(v));
#endif
    return v;
}

// The register tile of the convolution kernels: up to TILE_OB output channels by TILE_NV vectors
// of 16 positions, TILE_NN native vectors. AVX-512 (32 registers): 4 x 6, 24 accumulators.
// AVX2 (16 registers): 4 x 1, 8 accumulators, 4 broadcast weights, 1 input vector live (2 loads a tap).
#ifdef __AVX512F__
#define TILE_NV 6
#else
#define TILE_NV 1
#endif
enum { TILE_OB = 4, TILE_NN = TILE_NV * VN_PER_16 };

// acc[o][v] += w[o] * x[VN_LANES v] for o < no and v < nn: one tap of a broadcast-and-multiply-add
// tile. The no weights are broadcast first, then each input vector is loaded, held in a
// register and used at once (at most TILE_OB * TILE_NN + TILE_OB + 1 live vectors: 29 of 32
// with AVX-512, 13 of 16 on AVX2, so the accumulators stay in registers). Inline with constant
// no and nn so that the loops unroll.
static inline __attribute__((always_inline)) void tile_step(vn acc[][TILE_NN], const float *w, const float *x, int no,
                                                            int nn) {
    vn wb[TILE_OB];
#pragma GCC unroll 4
    for (int o = 0; o < no; o++) wb[o] = splatn(w[o]);
#pragma GCC unroll 6
    for (int v = 0; v < nn; v++) {
        vn xv = in_register(loadn(x + VN_LANES * v));
#pragma GCC unroll 4
        for (int o = 0; o < no; o++) acc[o][v] += xv * wb[o];
    }
}

#endif
