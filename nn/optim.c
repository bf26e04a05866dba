// optim.c: training defaults, the learning-rate schedule and the SGD update.
#include <math.h>
#include <string.h>

#include "train.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

// Learning rate at the first step of warm-up, as a fraction of the base rate.
#define WARMUP_START_FACTOR 0.1

void train_config_default(TrainConfig *c) {
    memset(c, 0, sizeof *c);
    c->epochs = 10;
    c->batch_size = 128;
    c->lr = 0.1f;
    c->momentum = 0.9f;
    c->nesterov = false;
    c->weight_decay = 5e-4f;
    c->schedule = SCHED_COSINE;
    c->n_milestones = 0;
    c->gamma = 0.1f;
    c->warmup_epochs = 0;
    c->label_smoothing = 0.0f;
    c->augment.crop_pad = 0;
    c->augment.hflip = false;
    c->val_split = 0.0f;
    c->seed = 1;
    c->threads = 0;
}

// Warm-up factor at fractional epoch t: rises linearly from WARMUP_START_FACTOR at t = 0 to
// 1 at t = warmup_epochs, then stays 1 (always 1 when warmup_epochs is 0).
static double warmup_factor(const TrainConfig *c, double t) {
    int w = c->warmup_epochs;
    if (w <= 0 || t >= w) return 1.0;
    if (t < 0) t = 0;
    return WARMUP_START_FACTOR + (1.0 - WARMUP_START_FACTOR) * t / w;
}

// Step-schedule factor: gamma to the number of milestones m with m <= floor(t).
static double step_factor(const TrainConfig *c, double t) {
    double e = floor(t), f = 1.0;
    for (int i = 0; i < c->n_milestones; i++)
        if ((double)c->milestones[i] <= e) f *= c->gamma;
    return f;
}

// Cosine factor: 1 until warm-up ends, then 0.5 (1 + cos(pi p)) with p the fraction of the
// post-warm-up epochs elapsed (clamped to [0, 1]); 1 if no epochs follow the warm-up.
static double cosine_factor(const TrainConfig *c, double t) {
    double span = (double)c->epochs - c->warmup_epochs;
    if (span <= 0) return 1.0;
    double p = (t - c->warmup_epochs) / span;
    if (p <= 0) return 1.0;
    if (p >= 1) return 0.0;
    return 0.5 * (1.0 + cos(M_PI * p));
}

// lr_at = lr * warm-up factor * schedule factor (constant: 1; step: gamma^k; cosine: above).
// Milestones count absolute epochs (warm-up included), as PyTorch's MultiStepLR does.
float lr_at(const TrainConfig *c, double t) {
    double f;
    switch (c->schedule) {
    case SCHED_STEP: f = step_factor(c, t); break;
    case SCHED_COSINE: f = cosine_factor(c, t); break;
    case SCHED_CONSTANT:
    default: f = 1.0; break;
    }
    return (float)((double)c->lr * warmup_factor(c, t) * f);
}

// Plain SGD (no momentum): w -= lr * (g + wd * w). buf is not touched.
static void sgd_plain(float *restrict w, const float *restrict g, size_t n, float lr, float wd) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        w[i] -= lr * d;
    }
}

// SGD with heavy-ball momentum (dampening 0): buf = m * buf + d; w -= lr * buf.
static void sgd_heavy(float *restrict w, const float *restrict g, float *restrict buf, size_t n, float lr,
                      float m, float wd) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        float b = m * buf[i] + d;
        buf[i] = b;
        w[i] -= lr * b;
    }
}

// SGD with Nesterov momentum: buf = m * buf + d; w -= lr * (d + m * buf).
static void sgd_nesterov(float *restrict w, const float *restrict g, float *restrict buf, size_t n,
                         float lr, float m, float wd) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        float b = m * buf[i] + d;
        buf[i] = b;
        w[i] -= lr * (d + m * b);
    }
}

// A zeroed buf gives PyTorch's first step exactly (its buffer starts as a copy of d, which
// equals m * 0 + d). With momentum 0, buf is unused and may be NULL.
void sgd_step(float *w, const float *g, float *buf, size_t n, float lr, float momentum, float wd, bool nesterov) {
    if (momentum == 0.0f) {
        sgd_plain(w, g, n, lr, wd);
        return;
    }
    HP_ASSERT(buf != NULL);
    if (nesterov)
        sgd_nesterov(w, g, buf, n, lr, momentum, wd);
    else
        sgd_heavy(w, g, buf, n, lr, momentum, wd);
}
