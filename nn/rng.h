// rng.h: the one seeded random number generator (xoshiro256**, seeded by splitmix64).
#ifndef HP_RNG_H
#define HP_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} Rng;

// Seeds rng from a 64-bit seed and a stream id (so that independent uses get distinct streams).
void rng_seed(Rng *rng, uint64_t seed, uint64_t stream);
// Returns 64 uniformly random bits.
uint64_t rng_u64(Rng *rng);
// Returns a uniform integer in [0, n); n > 0.
uint64_t rng_below(Rng *rng, uint64_t n);
// Returns a uniform float in [0, 1).
float rng_uniform(Rng *rng);
// Returns a standard normal sample (Box-Muller).
float rng_normal(Rng *rng);
// Shuffles idx[0..n) in place (Fisher-Yates).
void rng_shuffle(Rng *rng, int *idx, int n);

#endif
