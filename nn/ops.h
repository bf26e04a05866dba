// ops.h: the kernels of each op family. Every backward ACCUMULATES (+=) into parameter
// gradients. Into dx it writes (=) or, when its `acc` argument is true, adds (+=): the first
// consumer of a node to run backward writes its gradient, later ones (a residual branch) add, so
// no gradient buffer needs zeroing first.
// Each op file keeps forward and backward side by side; rforward/rbackward (the R-operator
// for Hessian-vector products) join them there.
#ifndef HP_OPS_H
#define HP_OPS_H

#include <stdbool.h>
#include <stddef.h>

// Geometry of a 2-D convolution over a batch.
typedef struct {
    int N, C, H, W;   // input (N, C, H, W)
    int O, k, stride, pad, groups;
    int Ho, Wo;       // output (N, O, Ho, Wo)
    int threads;      // scratch slots: the kernels use at most this many threads (0: all OpenMP threads)
} ConvGeom;

// Scratch floats one thread needs: the unfolding of one sample (C/groups * k * k rows, a padded
// plane, wide rows) or, for the direct stride-1 kernels, their packed weights, padded inputs of
// a chunk of samples and wide output tiles, or conv2d_infer's Winograd weights and work area,
// whichever is largest (nn/conv.c says which).
size_t conv2d_col_len(const ConvGeom *g);

// The classic unfolding of one sample, in a fixed layout whatever the forward pass uses: input
// channels [c0, c0 + Cg) of x (C, H, W) into col (Cg*k*k, Ho*Wo), row (c - c0)*k*k + ki*k + kj
// (the weight's column order), zero padding included. plane: scratch of (H + 2 pad) * (W + 2 pad)
// floats. For a groups-1 conv, col^T w^T is the output: the rows of X in layer-wise OBS.
void conv2d_im2col(const ConvGeom *g, const float *x, int c0, int Cg, float *col, float *plane);

// x is (N, C, H, W), w is (O, C/groups, k, k), b is (O) or NULL, y is (N, O, Ho, Wo).
// col: per-thread scratch, thread t uses col + t * col_stride.
void conv2d_forward(const ConvGeom *g, const float *x, const float *w, const float *b, float *y, float *col,
                    size_t col_stride);
// As conv2d_forward, then y = max(y, 0): a convolution with the ReLU after it folded in.
void conv2d_forward_relu(const ConvGeom *g, const float *x, const float *w, const float *b, float *y, float *col,
                         size_t col_stride);
// As conv2d_forward, then y += res (N, O, Ho, Wo), then y = max(y, 0) if relu: a convolution with
// the residual add (and the ReLU) after it folded in. res must not overlap y.
void conv2d_forward_res(const ConvGeom *g, const float *x, const float *w, const float *b, const float *res, bool relu,
                        float *y, float *col, size_t col_stride);
// Inference: as conv2d_forward_res (res may be NULL), by Winograd's F(2x2, 3x3) where its cost
// model says that is faster (3x3, stride 1, pad 1; wino_ok in nn/conv_winograd.h: with AVX-512
// ResNet-20's 28x28 and 14x14 layers, not the 7x7 ones; without AVX-512 none), which rounds
// differently: equal to conv2d_forward_res up to a few units in the last place of the output's
// scale, not bit for bit. The training and curvature passes do not use it.
void conv2d_infer(const ConvGeom *g, const float *x, const float *w, const float *b, const float *res, bool relu,
                  float *y, float *col, size_t col_stride);
// dy is (N, O, Ho, Wo). dw (O, C/groups, k, k) += ... (if not NULL), db (O) += ... (if not NULL),
// dx (N, C, H, W) = (acc: +=) ... (if not NULL). wscratch: per-thread partial sums, thread t uses
// wscratch + t * ws_stride (ws_stride >= w_len + O).
void conv2d_backward(const ConvGeom *g, const float *x, const float *w, const float *dy, float *dx, bool acc,
                     float *dw, float *db, float *col, size_t col_stride, float *wscratch, size_t ws_stride);

// R-operator along the parameter direction (vw, vb): R{y} (N, O, Ho, Wo) = conv(R{x}, w) +
// conv(x, vw) + vb, where rx = R{x} may be NULL (known zero, as for the network input).
void conv2d_rforward(const ConvGeom *g, const float *x, const float *w, const float *rx, const float *vw,
                     const float *vb, float *ry, float *col, size_t col_stride);
// R-backward: given dy and R{dy}, writes (acc: adds) R{dx} (if not NULL), accumulates R{dw} and
// R{db} (if not NULL):
// R{dx} = w^T * R{dy} + vw^T * dy, R{dw} = R{dy} (x) x + dy (x) R{x}, R{db} = sum R{dy}.
void conv2d_rbackward(const ConvGeom *g, const float *x, const float *w, const float *rx, const float *vw,
                      const float *dy, const float *rdy, float *rdx, bool acc, float *rdw, float *rdb, float *col,
                      size_t col_stride, float *wscratch, size_t ws_stride);

// Batch normalisation over (N, C, HW) per channel. x, y are (N, C, HW); gamma, beta,
// running_mean, running_var, mean, invstd are (C). Forward saves only mean and invstd: the
// other kernels recompute xhat = (x - mean) invstd from the same x.
// Training statistics: normalises by the batch mean and biased variance; if update, running =
// (1 - momentum) running + momentum batch (unbiased variance).
void batchnorm_forward_train(int N, int C, int HW, const float *x, const float *gamma, const float *beta, float eps,
                             float momentum, bool update, float *running_mean, float *running_var, float *y,
                             float *mean, float *invstd);
// Running statistics (eval mode): y = gamma (x - running_mean) / sqrt(running_var + eps) + beta;
// mean gets running_mean.
void batchnorm_forward_eval(int N, int C, int HW, const float *x, const float *gamma, const float *beta, float eps,
                            const float *running_mean, const float *running_var, float *y, float *mean,
                            float *invstd);
// Backward for either mode (batch_stats selects the coupled train-mode formula), from the
// forward's input x, mean and invstd. Accumulates dgamma, dbeta (C) and writes (acc: adds) dx
// (N, C, HW), each if not NULL. With relu_y (the forward's output y), dy is the gradient of
// relu(y), passed back where y > 0.
void batchnorm_backward(int N, int C, int HW, bool batch_stats, const float *dy, const float *relu_y, const float *x,
                        const float *mean, const float *invstd, const float *gamma, float *dx, bool acc,
                        float *dgamma, float *dbeta);

// R-operator along (vgamma, vbeta) given R{x} (rx), from the forward's x, mean and invstd.
// batch_stats selects train mode (mean and variance depend on x). Writes R{y} (N, C, HW) and
// rstat (2C): mean(R{x}) then mean(xhat R{x}) per channel (0 in eval mode), for rbackward.
// With relu_y (the forward's output y, N x C x HW), writes R{relu(y)} instead: R{y} where y > 0.
void batchnorm_rforward(int N, int C, int HW, bool batch_stats, const float *x, const float *mean,
                        const float *invstd, const float *gamma, const float *rx, const float *vgamma,
                        const float *vbeta, const float *relu_y, float *ry, float *rstat);
// R-backward: from dy, R{dy}, the forward's x, mean, invstd and R-forward's rx and rstat,
// writes (acc: adds) R{dx} (if not NULL) and accumulates R{dgamma} and R{dbeta} (C). With
// relu_y (eval mode only: the forward's output y), dy and rdy are the gradient and R-gradient
// of relu(y), passed back where y > 0.
void batchnorm_rbackward(int N, int C, int HW, bool batch_stats, const float *dy, const float *rdy, const float *x,
                         const float *mean, const float *invstd, const float *rx, const float *rstat,
                         const float *gamma, const float *vgamma, const float *relu_y, float *rdx, bool acc,
                         float *rdgamma, float *rdbeta);

// Pooling geometry: input (N*C planes of H x W), window k, stride, pad, output Ho x Wo.
typedef struct {
    int NC, H, W, k, stride, pad, Ho, Wo;
} PoolGeom;

// x is (NC, H, W), y is (NC, Ho, Wo); argmax (NC, Ho, Wo) gets the flat input index of each max.
void maxpool_forward(const PoolGeom *g, const float *x, float *y, int *argmax);
// dx (NC, H, W) = (acc: +=) dy routed to the argmax positions.
void maxpool_backward(const PoolGeom *g, const float *dy, const int *argmax, float *dx, bool acc);
// R{y} = R{x} at the argmax positions of the forward pass.
void maxpool_rforward(const PoolGeom *g, const float *rx, const int *argmax, float *ry);
// Average over each window, padding counted (PyTorch's count_include_pad=True).
void avgpool_forward(const PoolGeom *g, const float *x, float *y);
// dx (NC, H, W) = (acc: +=) each dy spread evenly over its window.
void avgpool_backward(const PoolGeom *g, const float *dy, float *dx, bool acc);
// x is (NC, HW), y is (NC): the mean of each plane.
void gap_forward(int NC, int HW, const float *x, float *y);
// dx (NC, HW) = (acc: +=) dy / HW at every position of its plane.
void gap_backward(int NC, int HW, const float *dy, float *dx, bool acc);

// x is (N, Fin), w is (Fout, Fin), b is (Fout) or NULL, y is (N, Fout): y = x w^T + b.
void linear_forward(int N, int Fin, int Fout, const float *x, const float *w, const float *b, float *y);
// dw (Fout, Fin) += dy^T x (if not NULL); db (Fout) += sum_n dy (if not NULL); dx (N, Fin) =
// (acc: +=) dy w (if not NULL).
void linear_backward(int N, int Fin, int Fout, const float *x, const float *w, const float *dy, float *dx, bool acc,
                     float *dw, float *db);
// R{y} = R{x} w^T + x vw^T + vb; rx may be NULL (zero).
void linear_rforward(int N, int Fin, int Fout, const float *x, const float *w, const float *rx, const float *vw,
                     const float *vb, float *ry);
// Writes (acc: adds) R{dx} = R{dy} w + dy vw (if rdx); accumulates R{dw} = R{dy}^T x + dy^T R{x}
// and R{db} = sum R{dy}.
void linear_rbackward(int N, int Fin, int Fout, const float *x, const float *w, const float *rx, const float *vw,
                      const float *dy, const float *rdy, float *rdx, bool acc, float *rdw, float *rdb);

// y = max(x, 0) over n elements; dx = (acc: +=) dy where x > 0, 0 elsewhere.
void relu_forward(size_t n, const float *x, float *y);
void relu_backward(size_t n, const float *x, const float *dy, float *dx, bool acc);
// R{y} = R{x} where x > 0 (the second derivative of ReLU is zero almost everywhere).
void relu_rforward(size_t n, const float *x, const float *rx, float *ry);
// y = a + b over n elements.
void add_forward(size_t n, const float *a, const float *b, float *y);
// y = max(a + b, 0) over n elements: a residual add with the ReLU after it folded in.
void add_relu_forward(size_t n, const float *a, const float *b, float *y);
// y = x * mask (mask holds 0 or 1/(1-p)); dx = (acc: +=) dy * mask.
void dropout_forward(size_t n, const float *x, const float *mask, float *y);
void dropout_backward(size_t n, const float *dy, const float *mask, float *dx, bool acc);
// dst = (acc: +=) src over n elements: the backward of an identity (flatten, each side of an add).
void pass_grad(size_t n, const float *src, float *dst, bool acc);
// dst = 0 over n elements, in parallel.
void zero_fill(size_t n, float *dst);

// Row-parallel sgemm (row-major): C (M, N) = alpha op(A) op(B) + beta C, rows split over the
// OpenMP threads, each calling single-threaded BLAS.
void gemm_par(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc);

#endif
