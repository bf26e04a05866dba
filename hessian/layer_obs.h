// layer_obs.h: layer-wise Optimal Brain Surgeon for structured (input-channel) pruning, as in
// OBC / ZipLM (Frantar and Alistarh 2022). For a conv (groups 1) or linear node with weight W
// (out x d) and unfolded inputs X (d x n: one column per sample and output position), the
// reconstruction error of replacing W by W' is ||(W - W') X||^2 / n = 1/2 sum_r dw_r H dw_r^T with
// H = 2 X X^T / n. Removing input channel c zeroes its `block` columns Q in every row; the best
// update of the other columns and the error it leaves are, per row r,
//   dw_r = -w_rQ ([H^-1]_QQ)^-1 H^-1[Q,:],     error_r = 1/2 w_rQ ([H^-1]_QQ)^-1 w_rQ^T.
// H is damped as Hd = H + damp_rel * mean_diag * I (OBC uses 1% of the mean diagonal).
//
// Columns of channel c are [c * block, (c + 1) * block): for a conv, block = k*k (W's layout is
// (out, Cin, k, k)); for a linear after a flatten of (C, H, W), block = H*W; for a linear that
// reads features directly, block = 1.
//
// H is accumulated in double (each sample's X X^T in float, added in double). Scores and updates
// run in double (Cholesky by LAPACKE) and write W back in float. Functions return 0, or -1 with
// err set; they never print.
#ifndef HP_LAYER_OBS_H
#define HP_LAYER_OBS_H

#include <stdbool.h>

#include "../nn/data.h"
#include "../nn/nn.h"

typedef struct {
    int node;          // node id
    int d;             // columns of W: Cin*k*k (conv) or in_features (linear)
    int block;         // columns per input channel the node reads: k*k (conv); for a linear, H*W
                       // of the flattened map when its input is a flatten, else 1
    int n_in_ch;       // d / block
    double *H;         // d x d, row-major, symmetric: 2 X X^T / n_rows
    double mean_diag;  // trace(H) / d
    long n_rows;       // n: samples x output positions (conv) or samples (linear)
} LayerHessian;

// Builds H for each listed node (conv with groups 1, or linear) from samples idx[0..n) of d, in
// batches of `batch` (one eval-mode forward per batch serves all nodes; the unfolding and
// accumulation run in parallel over the batch's samples). out[i] is for nodes[i]. On failure out
// holds nothing to free. m is not changed.
int layer_hessians(Model *m, const Dataset *d, const int *idx, int n, int batch, const int *nodes, int n_nodes,
                   LayerHessian *out, HpErr *err);
// Frees h->H and zeroes h (NULL-safe).
void layer_hessian_free(LayerHessian *h);

// score[c] for each input channel c < h->d / block: the error of removing channel c alone with
// the optimal update, sum over the out rows of W (out x h->d) of 1/2 w_rQ ([Hd^-1]_QQ)^-1 w_rQ^T.
// damp_rel >= 0 (0 needs H positive definite).
int layer_obs_scores(const LayerHessian *h, const float *W, int out, int block, double damp_rel, double *score,
                     HpErr *err);

// Removes input channels ch[0..k) (distinct, k >= 1) jointly: their columns of W become exactly 0
// and, if compensate, every other column gets the optimal update. *err_pred (if not NULL) gets
// the increase of 1/2 sum_r dw_r Hd dw_r^T (= ||(W - W') X||^2 / n when damp_rel = 0): with
// compensation the OBS score of the set, without it 1/2 sum_r w_rQ [Hd]_QQ w_rQ^T.
int layer_obs_remove(const LayerHessian *h, float *W, int out, int block, double damp_rel, const int *ch, int k,
                     bool compensate, double *err_pred, HpErr *err);

// Greedy: removes k channels one at a time (1 <= k <= d / block), each the cheapest given those
// already removed, W compensated after each and Hd^-1 updated (Hd^-1 <- Hd^-1 - Hd^-1[:,Q]
// ([Hd^-1]_QQ)^-1 Hd^-1[Q,:]). order[k] gets the channels in removal order, cost[k] each one's
// marginal error (their sum is the joint OBS score of the set). Ties go to the lower channel.
int layer_obs_greedy(const LayerHessian *h, float *W, int out, int block, double damp_rel, int k, int *order,
                     double *cost, HpErr *err);

#endif
