// linop.h: a symmetric linear operator on flat parameter-space vectors, the one thing every
// curvature estimator needs. hvp.c makes Hessian and Gauss-Newton operators of a model;
// tests make operators of explicit matrices with known spectra.
#ifndef HP_LINOP_H
#define HP_LINOP_H

#include <stddef.h>
#include <stdint.h>

#include "../nn/err.h"
#include "../nn/rng.h"

// out = A v for vectors of n floats (out and v distinct). Returns 0, or -1 with err set.
typedef struct {
    size_t n;
    int (*apply)(void *ctx, const float *v, float *out, HpErr *err);
    void *ctx;
    long products;  // how many times apply has been called (estimators add to it)
} LinOp;

// Applies op (counting the product).
static inline int linop_apply(LinOp *op, const float *v, float *out, HpErr *err) {
    op->products++;
    return op->apply(op->ctx, v, out, err);
}

// Progress hook for long computations: called as work finishes with the count done, the total
// planned (0 if unknown) and what is counted (unit: "products", "gradients", ...; a string that
// outlives the call). A computation in phases of different work reports one series per phase,
// each counted from 1 in its own unit. May be NULL.
typedef void (*ProgressFn)(long done, long total, const char *unit, void *user);

#endif
