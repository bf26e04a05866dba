// obs.h: Optimal Brain Surgeon from the inverse empirical Fisher (WoodFisher, Singh and Alistarh
// 2020). F = lambda I + (1/N) sum_k g_k g_k^T over N gradients g_k, block-diagonal along the
// parameter vector; each block's inverse is built exactly (no further approximation) and stored.
// For a set Q of parameters, the loss increase of removing them is
//   score = 1/2 w_Q^T ([F^-1]_QQ)^-1 w_Q          (one weight: w_q^2 / (2 [F^-1]_qq))
// and the update of the others that achieves it is delta = -F^-1[:,Q] ([F^-1]_QQ)^-1 w_Q.
//
// Precision: every block inverse is computed in double and stored in float (inv); scores and
// updates read the float entries and work in double. Gradients are float, as the model's.
// Storage: N x n floats of gradients while building (freed after), sum_b S_b^2 floats of blocks
// kept, and per OpenMP thread a double scratch of one block's work (see fisher_bytes).
//
// Three ways to invert one block of S columns from its N gradient slices G_b (N x S):
//   recursion  F_0^-1 = I/lambda, F_k^-1 = F_{k-1}^-1 - u u^T / (N + g_k^T u), u = F_{k-1}^-1 g_k
//              (Sherman-Morrison, WoodFisher's own): 4 N S^2 flops, memory-bound.
//   woodbury   F^-1 = (1/lambda) [I - G_b^T (N lambda I + G_b G_b^T)^-1 G_b], by Cholesky of the
//              N x N kernel: ~ 2 N^2 S + N S^2 flops of BLAS 3 (cheap when N < S).
//   direct     Cholesky of F = lambda I + G_b^T G_b / N and its inverse: ~ N S^2 + S^3 flops of
//              BLAS 3 (cheap when N >= S).
// FISHER_AUTO takes woodbury when N < S_b, else direct; all three agree to rounding (tests).
//
// Functions return 0, or -1 with err set; they never print. Blocks are built in parallel
// (OpenMP over blocks, single-threaded BLAS inside each thread).
#ifndef HP_OBS_H
#define HP_OBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../nn/data.h"
#include "../nn/nn.h"
#include "linop.h"

typedef enum { FISHER_AUTO, FISHER_RECURSION, FISHER_WOODBURY, FISHER_DIRECT } FisherMethod;

typedef struct {
    int n_grads;          // N gradients (>= 1)
    int grad_batch;       // samples per gradient (>= 1; 1 = per-sample gradients)
    size_t block_size;    // S: block length along the parameter vector (>= 1, <= n_params)
    bool align_layers;    // blocks never straddle a node's parameters: a node's range is cut into
                          // ceil(len / S) nearly equal blocks (a node smaller than S is one block)
    double damp;          // lambda > 0 in F = lambda I + (1/N) sum g g^T (absolute, not relative)
    double budget_mb;     // refuse when gradients + blocks + scratch need more MiB (0: no limit)
    FisherMethod method;  // how blocks are inverted (FISHER_AUTO: see above)
} FisherOpts;

// Defaults, as WoodFisher's ResNet-20 experiments: N 1000 per-sample gradients (batch 1), blocks of
// S 2000 aligned to layers (WoodFisher inverts each layer's weights in chunks), damp 1e-5
// (absolute; their code's default is 1e-3), budget 4096 MiB, FISHER_AUTO.
FisherOpts fisher_defaults(void);

// The inverse: block b covers parameters [start[b], start[b+1]) and its S_b x S_b inverse is
// dense, symmetric, row-major, float, at inv + off[b].
typedef struct {
    size_t n;            // parameters covered (start[n_blocks])
    int n_blocks;
    size_t *start;       // [n_blocks + 1]
    float *inv;          // sum_b S_b^2 floats
    size_t *off;         // [n_blocks]
    double damp;
    int n_grads;         // N the inverse was built from
} FisherInv;

// Block boundaries of m's parameter vector for block size S (see align_layers): *start gets a
// malloc'd array of n_blocks + 1 offsets, start[0] = 0, start[n_blocks] = n_params, every block
// 1..S long. Returns n_blocks, or -1 with err set (S = 0, or a model without parameters).
int fisher_blocks(const Model *m, size_t S, bool align, size_t **start, HpErr *err);

// Bytes the build needs for model m with these options: N x n floats of gradients, sum S_b^2
// floats of blocks, and the larger of (a) per thread, one gradient's model workspace (estimated
// from the activations) and (b) per thread, the double scratch of the largest block's inversion.
// Threads: omp_get_max_threads(). Returns 0 for options fisher_check would refuse (or when the
// block list cannot be allocated).
size_t fisher_bytes(const Model *m, const FisherOpts *o);

// The range of the damping options (obs's absolute lambda, obs-layer's fraction of the mean
// diagonal): below it the damping vanishes in single precision, above it the inverse underflows.
#define HP_DAMP_MIN 1e-12
#define HP_DAMP_MAX 1e6

// Checks the options against m: N, batch, S >= 1, S <= n_params, damp in [HP_DAMP_MIN, HP_DAMP_MAX], budget >= 0
// and, if budget > 0, fisher_bytes within it; over budget, the message says the largest block size
// (with this N) and the largest N (with this S) that would fit. Returns 0 or -1 with err set.
int fisher_check(const Model *m, const FisherOpts *o, HpErr *err);

// The distinct training images a build with o draws: N * batch.
long fisher_images(const FisherOpts *o);

// Checks that n_train training images hold the fisher_images(o) a build draws, naming the two
// quantities as the caller's user knows them (grads_name, batch_name: "--fisher-grads",
// "--fisher-batch"). Returns 0, or -1 with err set ("--fisher-grads 300 x --fisher-batch 1 needs
// 300 training images, the training set has 256").
int fisher_check_images(const FisherOpts *o, int n_train, const char *grads_name, const char *batch_name,
                        HpErr *err);

// Checks that d fits m (its images' shape, at most m's classes) and, by fisher_check_images with
// the names "N" and "batch", holds the N * batch distinct samples a build draws. Returns 0, or -1
// with err set ("fisher: N 1000 x batch 1 needs 1000 training images, the training set has 256").
// Callers check it before work of their own.
int fisher_check_data(const Model *m, const Dataset *d, const FisherOpts *o, HpErr *err);

// Builds F^-1 block-diagonally: checks (fisher_check, then fisher_check_data) before any work; draws N * batch distinct samples of d by a permutation from rng; each
// gradient is the mean-loss gradient (softmax cross-entropy, eval-mode batchnorm, no augmentation)
// of `batch` of them, computed in parallel (one workspace per thread); then inverts every block.
// progress (may be NULL) gets two series on the calling thread, each with its total once, at its
// end: (gradients done, N, FISHER_UNIT_GRADS), then (blocks inverted, n_blocks,
// FISHER_UNIT_BLOCKS). On failure out holds nothing to free. m is not changed.
#define FISHER_UNIT_GRADS "gradients"
#define FISHER_UNIT_BLOCKS "block inversions"
int fisher_build(Model *m, const Dataset *d, const FisherOpts *o, Rng *rng, ProgressFn progress, void *user,
                 FisherInv *out, HpErr *err);

// The same from explicit gradients G (N x n, row-major), with FISHER_AUTO. block_start has
// n_blocks + 1 entries, strictly increasing from 0 to n.
int fisher_from_grads(const float *G, int N, size_t n, const size_t *block_start, int n_blocks, double damp,
                      FisherInv *out, HpErr *err);
// fisher_from_grads with a chosen method and a progress hook (called per block with (done,
// n_blocks, FISHER_UNIT_BLOCKS), n_blocks once: when all are done).
int fisher_from_grads_with(const float *G, int N, size_t n, const size_t *block_start, int n_blocks, double damp,
                           FisherMethod method, ProgressFn progress, void *user, FisherInv *out, HpErr *err);

// One block's inverse in double: G's columns [0, S) of N rows with row stride ldg (>= S) are the
// gradient slices; inv (S x S, row-major, both triangles) gets (damp I + (1/N) sum g g^T)^-1 by
// the given method (FISHER_AUTO as above). For tests and references; allocates its scratch.
int fisher_block_inverse(const float *G, int N, size_t ldg, size_t S, double damp, FisherMethod method, double *inv,
                         HpErr *err);

// Frees what a build allocated and zeroes f (NULL-safe).
void fisher_free(FisherInv *f);

// [F^-1]_ij (0 when i and j are in different blocks); i, j < f->n.
double fisher_inv_entry(const FisherInv *f, size_t i, size_t j);

// Name of a method ("auto", "recursion", "woodbury", "direct").
const char *fisher_method_name(FisherMethod m);

// OBS score of removing the set Q (q >= 1 distinct indices < f->n, any order) from weights w
// (f->n floats): the sum over blocks of 1/2 w_Qb^T ([F^-1]_QbQb)^-1 w_Qb, each solved by Cholesky
// in double (no explicit inverse of [F^-1]_QQ). Fails if a [F^-1]_QQ is not positive definite
// (rounding of the float inverse for very large groups).
int obs_score(const FisherInv *f, const float *w, const size_t *Q, size_t q, double *score, HpErr *err);

// The optimal update for removing Q: delta (f->n floats) += -F^-1[:,Q] ([F^-1]_QQ)^-1 w_Q, blockwise
// (only the blocks Q touches change), except that delta[Q] is SET to -w[Q], so that w + delta is
// exactly 0 on Q.
int obs_update(const FisherInv *f, const float *w, const size_t *Q, size_t q, float *delta, HpErr *err);

// Single-weight scores of every parameter: score[i] = w_i^2 / (2 [F^-1]_ii) (f->n doubles).
void obs_weight_scores(const FisherInv *f, const float *w, double *score);

// OBS score of every group of a partition: group_of[i] < n_groups names parameter i's group, or
// is UINT32_MAX for a parameter in none (f->n entries); score[g] for each group (0 for an empty
// one). Groups are scored in parallel (OpenMP), each as obs_score.
int obs_group_scores(const FisherInv *f, const float *w, const uint32_t *group_of, size_t n_groups, double *score,
                     HpErr *err);

#endif
