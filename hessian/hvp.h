// hvp.h: curvature products of a model's loss over a fixed set of samples, as linear operators
// on flat parameter vectors: exact Hessian-vector products (R-operator), generalized
// Gauss-Newton products, the loss and its gradient, and per-sample gradients.
#ifndef HP_HVP_H
#define HP_HVP_H

#include "../nn/data.h"
#include "../nn/nn.h"
#include "linop.h"

typedef enum { CURV_HESSIAN, CURV_GGN } CurvKind;

// The loss L(θ) = mean over the samples of softmax cross-entropy (no label smoothing, no
// augmentation), on samples idx[0..n) of a dataset, taken in batches of `batch`. mode is
// MODE_EVAL (batchnorm with running statistics: samples independent; the default, as
// PyHessian and HAP) or MODE_BATCHSTATS (batch statistics: samples coupled within a batch).
typedef struct {
    Model *m;
    const Dataset *d;
    int *idx;
    int n;
    int batch;
    Mode mode;
    CurvKind kind;
    Workspace ws;
    float *x, *dlogits, *rdlogits, *part;  // batch inputs, loss gradients, one batch's product
    int *y;
    int cached_batch;   // index of the batch whose forward pass is in ws (-1: none)
    bool grads_cached;  // ws also holds that batch's ordinary backward (reused by Hessian products)
} Curvature;

// Sets up products over samples idx[0..n) (copied) of d. Returns 0, or -1 with err set.
int curv_init(Curvature *c, Model *m, const Dataset *d, const int *idx, int n, int batch, Mode mode, CurvKind kind,
              HpErr *err);
void curv_free(Curvature *c);
// The batch curv_init runs for n samples asked in batches of `batch`: batch, or n if fewer.
int curv_batch(int n, int batch);
// Bytes curv_init allocates for n samples in batches of `batch` (at most n: curv_batch) on
// n_threads threads (0: all, as curv_init's workspace): the workspace with its R-operator
// buffers, the batch buffers, the sample list and one product. SIZE_MAX if that overflows.
size_t curv_bytes(const Model *m, int n, int batch, int n_threads);
// out = A v with A the Hessian or Gauss-Newton matrix of L at the model's parameters (n_params).
int curv_apply(void *ctx, const float *v, float *out, HpErr *err);
// The operator view of c (for the estimators).
LinOp curv_linop(Curvature *c);
// Forgets the cached forward pass: call it after changing the model's parameters or buffers
// other than through curv_loss_grad (products reuse a single batch's forward pass).
void curv_invalidate(Curvature *c);
// Loss L at the model's current parameters and, if grad is not NULL, its gradient.
float curv_loss_grad(Curvature *c, float *grad);
// Per-sample gradients (eval mode): row s of out (n × n_params) is the gradient of sample
// idx[s]'s own loss. Runs one sample at a time. Returns 0, or -1 with err set (out of memory,
// or c made with batch statistics, MODE_BATCHSTATS).
int curv_sample_grads(Curvature *c, float *out, HpErr *err);
// Exact diagonal of the Gauss-Newton matrix G = (1/n) sum_s J_s^T H_s J_s (eval mode; no
// probes, no noise) into diag (n_params floats). H_s = diag(p) - p p^T of sample s's softmax
// factors as A A^T with column k of A = sqrt(p_k) (e_k - p), so diag(G) is the mean over
// samples and classes of (J_s^T a_k)^2: one forward and n_classes backward passes per sample,
// samples in parallel. progress (may be NULL) gets (samples done, n, "images") on the calling
// thread, n once: when all are done. Returns 0, or -1 with err set (batch-statistics mode
// couples the samples).
int curv_ggn_diag(Curvature *c, float *diag, ProgressFn progress, void *user, HpErr *err);
// The Gauss-Newton matrix's factor gradients, for exact quantities other than the diagonal:
// calls visit(ctx, t, g) for every sample s and class k with g = J_s^T a_k (n_params floats,
// the caller's to read only), so that G = (1/n) sum of g g^T. Runs on at most `threads`
// threads, t < threads being the calling one (per-thread accumulators need no locks); each
// thread's samples are fixed by the count, so sums per thread reproduce exactly. Same
// progress and errors as curv_ggn_diag.
typedef void (*GgnGradFn)(void *ctx, int thread, const float *g);
int curv_ggn_grads(Curvature *c, int threads, GgnGradFn visit, void *ctx, ProgressFn progress, void *user, HpErr *err);

#endif
