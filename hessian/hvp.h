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
// idx[s]'s own loss. Runs one sample at a time.
void curv_sample_grads(Curvature *c, float *out);

#endif
