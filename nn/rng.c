// rng.c: xoshiro256** (Blackman and Vigna), seeded through splitmix64.
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_seed(Rng *rng, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ULL);
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

uint64_t rng_u64(Rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t rng_below(Rng *rng, uint64_t n) {
    // Lemire's multiply-shift with rejection: unbiased.
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t r = rng_u64(rng);
        __uint128_t m = (__uint128_t)r * n;
        if ((uint64_t)m >= threshold) return (uint64_t)(m >> 64);
    }
}

float rng_uniform(Rng *rng) { return (float)(rng_u64(rng) >> 40) * (1.0f / 16777216.0f); }

float rng_normal(Rng *rng) {
    double u1 = ((double)(rng_u64(rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void rng_shuffle(Rng *rng, int *idx, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(rng, (uint64_t)i + 1);
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
