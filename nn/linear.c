// linear.c: fully connected layers, y = x w^T + b, by row-parallel sgemm.
#include <omp.h>

#include <cblas.h>

#include "ops.h"

void gemm_par(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc) {
#pragma omp parallel
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int m0 = (int)((long)M * t / T), m1 = (int)((long)M * (t + 1) / T);
        if (m1 > m0) {
            // row m of op(A) starts at A + m*lda (no transpose) or at column m of A (transpose)
            const float *a = trans_a ? A + m0 : A + (size_t)m0 * lda;
            cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                        m1 - m0, N, K, alpha, a, lda, B, ldb, beta, C + (size_t)m0 * ldc, ldc);
        }
    }
}

void linear_forward(int N, int Fin, int Fout, const float *x, const float *w, const float *b, float *y) {
    // y (N, Fout) = x (N, Fin) @ w^T (Fin, Fout)
    gemm_par(false, true, N, Fout, Fin, 1.0f, x, Fin, w, Fin, 0.0f, y, Fout);
    if (!b) return;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < Fout; o++) y[(size_t)n * Fout + o] += b[o];
}

void linear_backward(int N, int Fin, int Fout, const float *x, const float *w, const float *dy, float *dx, bool acc,
                     float *dw, float *db) {
    // dw (Fout, Fin) += dy^T (Fout, N) @ x (N, Fin)
    if (dw) gemm_par(true, false, Fout, Fin, N, 1.0f, dy, Fout, x, Fin, 1.0f, dw, Fin);
    if (db)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < Fout; o++) db[o] += dy[(size_t)n * Fout + o];
    // dx (N, Fin) = (acc: +=) dy (N, Fout) @ w (Fout, Fin)
    if (dx) gemm_par(false, false, N, Fin, Fout, 1.0f, dy, Fout, w, Fin, acc ? 1.0f : 0.0f, dx, Fin);
}

void linear_rforward(int N, int Fin, int Fout, const float *x, const float *w, const float *rx, const float *vw,
                     const float *vb, float *ry) {
    // R{y} = x vw^T + vb (+ R{x} w^T)
    linear_forward(N, Fin, Fout, x, vw, vb, ry);
    if (rx) gemm_par(false, true, N, Fout, Fin, 1.0f, rx, Fin, w, Fin, 1.0f, ry, Fout);
}

void linear_rbackward(int N, int Fin, int Fout, const float *x, const float *w, const float *rx, const float *vw,
                      const float *dy, const float *rdy, float *rdx, bool acc, float *rdw, float *rdb) {
    linear_backward(N, Fin, Fout, x, w, rdy, rdx, acc, rdw, rdb);
    linear_backward(N, Fin, Fout, rx ? rx : x, vw, dy, rdx, true, rx ? rdw : NULL, NULL);
}
