// activations.c: ReLU, dropout with a saved mask, the residual add and gradient copies:
// elementwise ops.
#include "ops.h"

void relu_forward(size_t n, const float *x, float *y) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_backward(size_t n, const float *x, const float *dy, float *dx, bool acc) {
    if (acc) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
    } else {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
    }
}

void relu_rforward(size_t n, const float *x, const float *rx, float *ry) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) ry[i] = x[i] > 0.0f ? rx[i] : 0.0f;
}

void add_forward(size_t n, const float *a, const float *b, float *y) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void add_relu_forward(size_t n, const float *a, const float *b, float *y) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

void dropout_forward(size_t n, const float *x, const float *mask, float *y) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = x[i] * mask[i];
}

void dropout_backward(size_t n, const float *dy, const float *mask, float *dx, bool acc) {
    if (acc) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) dx[i] += dy[i] * mask[i];
    } else {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) dx[i] = dy[i] * mask[i];
    }
}

void pass_grad(size_t n, const float *src, float *dst, bool acc) {
    if (acc) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) dst[i] += src[i];
    } else {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) dst[i] = src[i];
    }
}

void zero_fill(size_t n, float *dst) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = 0.0f;
}
