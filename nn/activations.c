// activations.c: ReLU, dropout with a saved mask, and the residual add: elementwise ops.
#include "ops.h"

void relu_forward(size_t n, const float *x, float *y) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_backward(size_t n, const float *x, const float *dy, float *dx) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
}

void relu_rforward(size_t n, const float *x, const float *rx, float *ry) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) ry[i] = x[i] > 0.0f ? rx[i] : 0.0f;
}

void add_forward(size_t n, const float *a, const float *b, float *y) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void add_backward(size_t n, const float *dy, float *da, float *db) {
    axpy_acc(n, dy, da);
    axpy_acc(n, dy, db);
}

void dropout_forward(size_t n, const float *x, const float *mask, float *y) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = x[i] * mask[i];
}

void dropout_backward(size_t n, const float *dy, const float *mask, float *dx) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] += dy[i] * mask[i];
}

void axpy_acc(size_t n, const float *src, float *dst) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}
