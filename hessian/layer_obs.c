// layer_obs.c: layer Hessians H = 2 X X^T / n from an eval-mode forward pass over calibration
// images, and layer-wise OBS scores, joint removal and greedy removal of input channels.
//
// Symmetric double matrices follow obs.c's convention: cblas on the row-major upper triangle,
// LAPACKE with LAPACK_COL_MAJOR and 'L' on the same memory (no transposed copies).
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "../nn/ops.h"
#include "layer_obs.h"

// ---------------------------------------------------------------------------------------------
// Building H.

// Input shape of node nd (the model input for the input node).
static Shape input_shape(const Model *m, const Node *nd) { return nd->n_in > 0 ? m->nodes[nd->in[0]].out : m->input; }

// Fills h's layout (node, d, block, n_in_ch) for node id `node` and *positions, the rows of X each
// sample gives; fails unless the node is a conv with groups 1 or a linear.
static int describe_node(const Model *m, int node, LayerHessian *h, int *positions, HpErr *err) {
    if (node < 1 || node >= m->n_nodes) return hp_fail(err, "layer OBS: node %d out of range (1..%d)", node, m->n_nodes - 1);
    const Node *nd = &m->nodes[node];
    Shape in = input_shape(m, nd);
    h->node = node;
    if (nd->op == OP_CONV2D) {
        if (nd->groups != 1)
            return hp_fail(err, "layer OBS: node '%s' is a conv with %d groups (needs groups 1)", nd->name, nd->groups);
        h->d = in.c * nd->kernel * nd->kernel;
        h->block = nd->kernel * nd->kernel;
        h->n_in_ch = in.c;
        *positions = nd->out.h * nd->out.w;
    } else if (nd->op == OP_LINEAR) {
        h->d = in.c;
        h->block = 1;
        h->n_in_ch = in.c;
        const Node *src = &m->nodes[nd->in[0]];
        if (src->op == OP_FLATTEN) {  // channel c of the flattened map is H*W consecutive features
            Shape fin = input_shape(m, src);
            h->block = fin.h * fin.w;
            h->n_in_ch = fin.c;
        }
        *positions = 1;
    } else {
        return hp_fail(err, "layer OBS: node '%s' is a %s (needs a conv or a linear)", nd->name, op_kind_name(nd->op));
    }
    return 0;
}

// Convolution geometry of conv node nd for one sample (classic im2col).
static ConvGeom unfold_geom(const Model *m, const Node *nd) {
    Shape in = input_shape(m, nd);
    return (ConvGeom){1, in.c, in.h, in.w, nd->out_features, nd->kernel, nd->stride, nd->padding, 1,
                      nd->out.h, nd->out.w, 1};
}

// Adds the upper triangle of t (d x d, float) to the upper triangle of a (double).
static void add_upper(double *a, const float *t, int d) {
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) a[(size_t)i * d + j] += t[(size_t)i * d + j];
}

// Copies the row-major upper triangle of a (d x d) onto its lower one.
static void mirror_upper(double *a, int d) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) a[(size_t)i * d + j] = a[(size_t)j * d + i];
}

// Per-thread accumulation buffers of layer_hessians.
typedef struct {
    int T;               // threads
    size_t *part_off;    // [n_nodes]: offset of node i's d x d partial sum inside a thread's part
    size_t part_len;     // doubles of one thread's partial sums
    double *part;        // T x part_len: upper triangles of sum X X^T, per thread
    size_t tmp_len;      // floats of one thread's d x d float product
    float *tmp;          // T x tmp_len
    size_t col_len;      // floats of one thread's unfolded sample and padded plane
    float *col;          // T x col_len
} Accum;

// Frees acc's buffers and zeroes it.
static void accum_free(Accum *acc) {
    free(acc->part_off);
    free(acc->part);
    free(acc->tmp);
    free(acc->col);
    memset(acc, 0, sizeof *acc);
}

// Sizes and allocates acc for the nodes described in h; returns 0, or -1 with err set and acc
// zeroed.
static int accum_init(Accum *acc, const Model *m, const LayerHessian *h, const int *nodes, int n_nodes, HpErr *err) {
    memset(acc, 0, sizeof *acc);
    acc->T = omp_get_max_threads();
    acc->part_off = hp_alloc((size_t)n_nodes, sizeof(size_t), err);
    if (!acc->part_off) return -1;
    for (int i = 0; i < n_nodes; i++) {
        size_t dd = (size_t)h[i].d * h[i].d;
        acc->part_off[i] = acc->part_len;
        acc->part_len += dd;
        if (dd > acc->tmp_len) acc->tmp_len = dd;
        const Node *nd = &m->nodes[nodes[i]];
        if (nd->op == OP_CONV2D) {
            Shape in = input_shape(m, nd);
            size_t c = (size_t)h[i].d * nd->out.h * nd->out.w + (size_t)(in.h + 2 * nd->padding) * (in.w + 2 * nd->padding);
            if (c > acc->col_len) acc->col_len = c;
        }
    }
    acc->part = hp_zalloc((size_t)acc->T * acc->part_len, sizeof(double), err);
    acc->tmp = acc->part ? hp_alloc((size_t)acc->T * acc->tmp_len, sizeof(float), err) : NULL;
    acc->col = acc->tmp ? hp_alloc((size_t)acc->T * (acc->col_len ? acc->col_len : 1), sizeof(float), err) : NULL;
    if (!acc->col) {
        accum_free(acc);
        return -1;
    }
    return 0;
}

// Adds the batch's X X^T (upper triangles) of every node to the calling thread's partial sums:
// the N samples of the last forward pass in ws, split over the threads of the enclosing region.
static void accumulate_batch(const Model *m, const Workspace *ws, int N, const int *nodes, int n_nodes,
                             const LayerHessian *h, Accum *acc) {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    double *my_part = acc->part + (size_t)t * acc->part_len;
    float *my_tmp = acc->tmp + (size_t)t * acc->tmp_len, *my_col = acc->col + (size_t)t * acc->col_len;
    for (int i = 0; i < n_nodes; i++) {
        const Node *nd = &m->nodes[nodes[i]];
        const float *x = ws->act[nd->in[0]];
        const int d = h[i].d;
        double *Hp = my_part + acc->part_off[i];
        if (nd->op == OP_CONV2D) {
            ConvGeom g = unfold_geom(m, nd);
            const int P = g.Ho * g.Wo;
            const size_t in_len = (size_t)g.C * g.H * g.W;
#pragma omp for schedule(static)
            for (int s = 0; s < N; s++) {
                // col (d, P); tmp (d, d) = col col^T
                conv2d_im2col(&g, x + (size_t)s * in_len, 0, g.C, my_col, my_col + (size_t)d * P);
                cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, d, P, 1.0f, my_col, P, 0.0f, my_tmp, d);
                add_upper(Hp, my_tmp, d);
            }
        } else {
            // rows of x (N, d) in T chunks; tmp (d, d) = x_chunk^T x_chunk
#pragma omp for schedule(static)
            for (int c = 0; c < T; c++) {
                int s0 = (int)((long)N * c / T), s1 = (int)((long)N * (c + 1) / T);
                if (s1 <= s0) continue;
                cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, d, s1 - s0, 1.0f, x + (size_t)s0 * d, d, 0.0f,
                            my_tmp, d);
                add_upper(Hp, my_tmp, d);
            }
        }
    }
}

// Sums the threads' partial sums into out[i].H in thread order, scales by 2 / n_rows, fills both
// triangles and the mean diagonal.
static void accum_finish(const Accum *acc, LayerHessian *out, int n_nodes) {
    for (int i = 0; i < n_nodes; i++) {
        LayerHessian *h = &out[i];
        const size_t dd = (size_t)h->d * h->d;
        for (int t = 0; t < acc->T; t++) {
            const double *p = acc->part + (size_t)t * acc->part_len + acc->part_off[i];
            for (size_t j = 0; j < dd; j++) h->H[j] += p[j];
        }
        double scale = 2.0 / (double)h->n_rows, tr = 0;
        for (size_t j = 0; j < dd; j++) h->H[j] *= scale;
        mirror_upper(h->H, h->d);
        for (int j = 0; j < h->d; j++) tr += h->H[(size_t)j * h->d + j];
        h->mean_diag = tr / h->d;
    }
}

// Checks the calibration arguments of layer_hessians.
static int check_calibration(const Model *m, const Dataset *d, const int *idx, int n, int batch, int n_nodes,
                             HpErr *err) {
    if (n < 1) return hp_fail(err, "layer OBS: no calibration samples (n = %d)", n);
    if (batch < 1) return hp_fail(err, "layer OBS: batch size %d must be >= 1", batch);
    if (n_nodes < 1) return hp_fail(err, "layer OBS: no nodes");
    if (d->c != m->input.c || d->h != m->input.h || d->w != m->input.w)
        return hp_fail(err, "layer OBS: model takes %dx%dx%d inputs, data has %dx%dx%d", m->input.c, m->input.h,
                       m->input.w, d->c, d->h, d->w);
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= d->n)
            return hp_fail(err, "layer OBS: sample index %d out of range (%d images)", idx[i], d->n);
    return 0;
}

int layer_hessians(Model *m, const Dataset *d, const int *idx, int n, int batch, const int *nodes, int n_nodes,
                   LayerHessian *out, HpErr *err) {
    if (check_calibration(m, d, idx, n, batch, n_nodes, err) < 0) return -1;
    memset(out, 0, (size_t)n_nodes * sizeof *out);
    for (int i = 0; i < n_nodes; i++) {
        int positions = 0;
        if (describe_node(m, nodes[i], &out[i], &positions, err) < 0) {
            memset(out, 0, (size_t)n_nodes * sizeof *out);
            return -1;
        }
        out[i].n_rows = (long)n * positions;
    }
    int rc = 0;
    for (int i = 0; i < n_nodes && rc == 0; i++) {
        out[i].H = hp_zalloc((size_t)out[i].d * out[i].d, sizeof(double), err);
        if (!out[i].H) rc = -1;
    }
    if (batch > n) batch = n;
    Accum acc = {0};
    Workspace ws = {0};
    float *x = NULL;
    int *y = NULL;
    if (rc == 0) rc = accum_init(&acc, m, out, nodes, n_nodes, err);
    if (rc == 0) rc = ws_init(&ws, m, batch, 0, err);
    if (rc == 0) {
        x = hp_alloc((size_t)batch * shape_numel(m->input), sizeof(float), err);
        y = x ? hp_alloc((size_t)batch, sizeof(int), err) : NULL;
        if (!y) rc = -1;
    }
    for (int start = 0; start < n && rc == 0; start += batch) {
        int cnt = n - start < batch ? n - start : batch;
        data_batch(d, idx + start, cnt, m->norm_mean, m->norm_std, NULL, NULL, x, y);
        model_forward(m, &ws, x, cnt, MODE_EVAL, NULL);
#pragma omp parallel num_threads(acc.T)
        accumulate_batch(m, &ws, cnt, nodes, n_nodes, out, &acc);
    }
    if (rc == 0) accum_finish(&acc, out, n_nodes);
    accum_free(&acc);
    ws_free(&ws);
    free(x);
    free(y);
    if (rc != 0) {
        for (int i = 0; i < n_nodes; i++) layer_hessian_free(&out[i]);
        return hp_prefix(err, "layer OBS");
    }
    return 0;
}

void layer_hessian_free(LayerHessian *h) {
    if (!h) return;
    free(h->H);
    memset(h, 0, sizeof *h);
}

// ---------------------------------------------------------------------------------------------
// Scores and removal.

// Checks the arguments every scoring function shares.
static int check_layer(const LayerHessian *h, int out, int block, double damp_rel, HpErr *err) {
    if (!h || !h->H || h->d < 1) return hp_fail(err, "layer OBS: no layer Hessian");
    if (out < 1) return hp_fail(err, "layer OBS: node %d: %d output rows (must be >= 1)", h->node, out);
    if (block < 1 || h->d % block != 0)
        return hp_fail(err, "layer OBS: node %d: block %d does not divide its %d columns", h->node, block, h->d);
    if (!(damp_rel >= 0) || !isfinite(damp_rel))
        return hp_fail(err, "layer OBS: damping %g must be >= 0 and finite", damp_rel);
    return 0;
}

// Hinv (d x d, both triangles) = (H + damp_rel mean_diag I)^-1 by Cholesky. Returns 0, or -1 with
// err set if the damped H is not positive definite.
static int damped_inverse(const LayerHessian *h, double damp_rel, double *Hinv, HpErr *err) {
    const int d = h->d;
    memcpy(Hinv, h->H, (size_t)d * d * sizeof(double));
    for (int i = 0; i < d; i++) Hinv[(size_t)i * d + i] += damp_rel * h->mean_diag;
    int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', d, Hinv, d);
    if (info == 0) info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', d, Hinv, d);
    HP_ASSERT(info >= 0);
    if (info > 0)
        return hp_fail(err,
                       "layer OBS: node %d: H + %g x mean diagonal is singular (column %d; a dead input?): "
                       "use a damping > 0",
                       h->node, damp_rel, info);
    mirror_upper(Hinv, d);
    return 0;
}

// A (q x q) = Hinv[cols, cols] and its Cholesky factor in place (col-major lower). Returns 0, or -1
// with err set if it is not positive definite.
static int factor_qq(const double *Hinv, int d, const int *cols, int q, double *A, int node, HpErr *err) {
    for (int i = 0; i < q; i++)
        for (int j = 0; j < q; j++) A[(size_t)i * q + j] = Hinv[(size_t)cols[i] * d + cols[j]];
    int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', q, A, q);
    HP_ASSERT(info >= 0);
    if (info > 0) return hp_fail(err, "layer OBS: node %d: [H^-1]_QQ of %d columns is not positive definite", node, q);
    return 0;
}

// The OBS error of removing columns cols (q) from every row of Wd (out x d, double) given the
// factor A of [H^-1]_QQ: 1/2 sum_r ||L^-1 w_rQ||^2. Y: q x out doubles of scratch.
static double set_score(const double *A, int q, const double *Wd, int out, int d, const int *cols, double *Y) {
    for (int r = 0; r < out; r++)
        for (int j = 0; j < q; j++) Y[(size_t)r * q + j] = Wd[(size_t)r * d + cols[j]];
    cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, q, out, 1.0, A, q, Y, q);
    double s = 0;
    for (size_t i = 0; i < (size_t)q * out; i++) s += Y[i] * Y[i];
    return 0.5 * s;
}

// Removes columns cols (q) of Wd (out x d) with the optimal update, given Hinv and the factor A of
// Hinv[cols, cols]: x_r = A^-1 w_rQ, Wd -= X Hinv[cols, :], then Wd[:, cols] = 0. Returns the
// error 1/2 sum_r w_rQ x_r. X (out x q) and HQ (q x d): scratch.
static double remove_cols(const double *A, int q, const double *Hinv, int d, const int *cols, double *Wd, int out,
                          double *X, double *HQ) {
    for (int r = 0; r < out; r++)
        for (int j = 0; j < q; j++) X[(size_t)r * q + j] = Wd[(size_t)r * d + cols[j]];
    int info = LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', q, out, A, q, X, q);  // columns of X^T: rows of X
    HP_ASSERT(info == 0);
    double e = 0;
    for (int r = 0; r < out; r++)
        for (int j = 0; j < q; j++) e += Wd[(size_t)r * d + cols[j]] * X[(size_t)r * q + j];
    for (int j = 0; j < q; j++) memcpy(HQ + (size_t)j * d, Hinv + (size_t)cols[j] * d, (size_t)d * sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, d, q, -1.0, X, q, HQ, d, 1.0, Wd, d);
    for (int r = 0; r < out; r++)
        for (int j = 0; j < q; j++) Wd[(size_t)r * d + cols[j]] = 0.0;
    return 0.5 * e;
}

// Columns of channels ch[0..k): cols[j * block + t] = ch[j] * block + t.
static void channel_cols(const int *ch, int k, int block, int *cols) {
    for (int j = 0; j < k; j++)
        for (int t = 0; t < block; t++) cols[j * block + t] = ch[j] * block + t;
}

// W (out x d, float) into a new double array; NULL with err set when out of memory.
static double *to_double(const float *W, size_t len, HpErr *err) {
    double *Wd = hp_alloc(len, sizeof(double), err);
    if (!Wd) return NULL;
    for (size_t i = 0; i < len; i++) Wd[i] = W[i];
    return Wd;
}

int layer_obs_scores(const LayerHessian *h, const float *W, int out, int block, double damp_rel, double *score,
                     HpErr *err) {
    if (check_layer(h, out, block, damp_rel, err) < 0) return -1;
    const int d = h->d, n_ch = d / block;
    double *Hinv = hp_alloc((size_t)d * d, sizeof(double), err);
    double *Wd = Hinv ? to_double(W, (size_t)out * d, err) : NULL;
    double *A = Wd ? hp_alloc((size_t)block * block, sizeof(double), err) : NULL;
    double *Y = A ? hp_alloc((size_t)block * out, sizeof(double), err) : NULL;
    int *cols = Y ? hp_alloc((size_t)block, sizeof(int), err) : NULL;
    int rc = cols ? damped_inverse(h, damp_rel, Hinv, err) : hp_prefix(err, "layer OBS");
    for (int c = 0; c < n_ch && rc == 0; c++) {
        channel_cols(&c, 1, block, cols);
        rc = factor_qq(Hinv, d, cols, block, A, h->node, err);
        if (rc == 0) score[c] = set_score(A, block, Wd, out, d, cols, Y);
    }
    free(Hinv), free(Wd), free(A), free(Y), free(cols);
    return rc;
}

// Checks a channel list: k >= 1 channels, distinct, each < n_ch.
static int check_channels(const int *ch, int k, int n_ch, int node, HpErr *err) {
    if (k < 1 || !ch) return hp_fail(err, "layer OBS: node %d: no channels to remove", node);
    bool *seen = hp_zalloc((size_t)n_ch, sizeof(bool), err);
    if (!seen) return hp_prefix(err, "layer OBS");
    int rc = 0;
    for (int j = 0; j < k && rc == 0; j++) {
        if (ch[j] < 0 || ch[j] >= n_ch)
            rc = hp_fail(err, "layer OBS: node %d: channel %d out of range (%d input channels)", node, ch[j], n_ch);
        else if (seen[ch[j]])
            rc = hp_fail(err, "layer OBS: node %d: channel %d listed twice", node, ch[j]);
        else
            seen[ch[j]] = true;
    }
    free(seen);
    return rc;
}

// 1/2 sum_r w_rQ [Hd]_QQ w_rQ^T: the error of zeroing columns cols without compensation.
static double plain_error(const LayerHessian *h, double damp_rel, const float *W, int out, const int *cols, int q) {
    const int d = h->d;
    double e = 0;
    for (int r = 0; r < out; r++) {
        const float *w = W + (size_t)r * d;
        for (int i = 0; i < q; i++) {
            double row = 0;
            for (int j = 0; j < q; j++) row += h->H[(size_t)cols[i] * d + cols[j]] * w[cols[j]];
            row += damp_rel * h->mean_diag * w[cols[i]];
            e += w[cols[i]] * row;
        }
    }
    return 0.5 * e;
}

int layer_obs_remove(const LayerHessian *h, float *W, int out, int block, double damp_rel, const int *ch, int k,
                     bool compensate, double *err_pred, HpErr *err) {
    if (check_layer(h, out, block, damp_rel, err) < 0) return -1;
    const int d = h->d, q = k * block;
    if (check_channels(ch, k, d / block, h->node, err) < 0) return -1;
    int *cols = hp_alloc((size_t)q, sizeof(int), err);
    if (!cols) return hp_prefix(err, "layer OBS");
    channel_cols(ch, k, block, cols);
    if (!compensate) {
        double e = plain_error(h, damp_rel, W, out, cols, q);
        for (int r = 0; r < out; r++)
            for (int j = 0; j < q; j++) W[(size_t)r * d + cols[j]] = 0.0f;
        if (err_pred) *err_pred = e;
        free(cols);
        return 0;
    }
    double *Hinv = hp_alloc((size_t)d * d, sizeof(double), err);
    double *A = Hinv ? hp_alloc((size_t)q * q, sizeof(double), err) : NULL;
    int rc = A ? damped_inverse(h, damp_rel, Hinv, err) : hp_prefix(err, "layer OBS");
    if (rc == 0) rc = factor_qq(Hinv, d, cols, q, A, h->node, err);
    if (rc == 0) {
        double *Wd = to_double(W, (size_t)out * d, err);
        double *X = Wd ? hp_alloc((size_t)out * q, sizeof(double), err) : NULL;
        double *HQ = X ? hp_alloc((size_t)q * d, sizeof(double), err) : NULL;
        if (HQ) {
            double e = remove_cols(A, q, Hinv, d, cols, Wd, out, X, HQ);
            for (size_t i = 0; i < (size_t)out * d; i++) W[i] = (float)Wd[i];
            if (err_pred) *err_pred = e;
        } else {
            rc = hp_prefix(err, "layer OBS");
        }
        free(Wd), free(X), free(HQ);
    }
    free(Hinv), free(A), free(cols);
    return rc;
}

// Hinv -= Hinv[:, cols] A^-1 Hinv[cols, :] with A = L L^T the factor of Hinv[cols, cols], then
// rows and columns cols set to exactly 0 (what the update gives them in exact arithmetic).
// Z: q x d doubles of scratch.
static void downdate_inverse(double *Hinv, int d, const double *A, const int *cols, int q, double *Z) {
    for (int j = 0; j < q; j++) memcpy(Z + (size_t)j * d, Hinv + (size_t)cols[j] * d, (size_t)d * sizeof(double));
    // Z = L^-1 Hinv[cols, :]; L is the row-major upper triangle of A transposed
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, q, d, 1.0, A, q, Z, d);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, q, -1.0, Z, d, 1.0, Hinv, d);
    mirror_upper(Hinv, d);
    for (int j = 0; j < q; j++) {
        memset(Hinv + (size_t)cols[j] * d, 0, (size_t)d * sizeof(double));
        for (int i = 0; i < d; i++) Hinv[(size_t)i * d + cols[j]] = 0.0;
    }
}

int layer_obs_greedy(const LayerHessian *h, float *W, int out, int block, double damp_rel, int k, int *order,
                     double *cost, HpErr *err) {
    if (check_layer(h, out, block, damp_rel, err) < 0) return -1;
    const int d = h->d, n_ch = d / block;
    if (k < 1 || k > n_ch) return hp_fail(err, "layer OBS: node %d: greedy removal of %d of %d channels", h->node, k, n_ch);
    double *Hinv = hp_alloc((size_t)d * d, sizeof(double), err);
    double *Wd = Hinv ? to_double(W, (size_t)out * d, err) : NULL;
    double *A = Wd ? hp_alloc((size_t)block * block, sizeof(double), err) : NULL;
    double *Y = A ? hp_alloc((size_t)block * (out > d ? out : d), sizeof(double), err) : NULL;
    double *X = Y ? hp_alloc((size_t)out * block, sizeof(double), err) : NULL;
    double *HQ = X ? hp_alloc((size_t)block * d, sizeof(double), err) : NULL;
    int *cols = HQ ? hp_alloc((size_t)block, sizeof(int), err) : NULL;
    bool *removed = cols ? hp_zalloc((size_t)n_ch, sizeof(bool), err) : NULL;
    int rc = removed ? damped_inverse(h, damp_rel, Hinv, err) : hp_prefix(err, "layer OBS");
    for (int step = 0; step < k && rc == 0; step++) {
        int best = -1;
        double best_score = INFINITY;
        for (int c = 0; c < n_ch && rc == 0; c++) {
            if (removed[c]) continue;
            channel_cols(&c, 1, block, cols);
            rc = factor_qq(Hinv, d, cols, block, A, h->node, err);
            double s = rc == 0 ? set_score(A, block, Wd, out, d, cols, Y) : INFINITY;
            if (s < best_score || best < 0) best = c, best_score = s;
        }
        if (rc != 0) break;
        channel_cols(&best, 1, block, cols);
        rc = factor_qq(Hinv, d, cols, block, A, h->node, err);
        if (rc != 0) break;
        cost[step] = remove_cols(A, block, Hinv, d, cols, Wd, out, X, HQ);
        order[step] = best;
        removed[best] = true;
        downdate_inverse(Hinv, d, A, cols, block, Y);
    }
    if (rc == 0)
        for (size_t i = 0; i < (size_t)out * d; i++) W[i] = (float)Wd[i];
    free(Hinv), free(Wd), free(A), free(Y), free(X), free(HQ), free(cols), free(removed);
    return rc;
}
