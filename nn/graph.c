// graph.c: the workspace (all activations in one allocation, sized once per batch size)
// and the forward and backward passes over the DAG in topological order.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "nn.h"
#include "ops.h"

// Input shape of node i (the model input for the input node).
static Shape in_shape(const Model *m, const Node *n) { return n->n_in > 0 ? m->nodes[n->in[0]].out : m->input; }

// Convolution geometry of conv node n for a batch of N, on at most `threads` threads.
static ConvGeom conv_geom(const Model *m, const Node *n, int N, int threads) {
    Shape in = in_shape(m, n);
    return (ConvGeom){N,        in.c,     in.h,       in.w,      n->out_features, n->kernel, n->stride,
                      n->padding, n->groups, n->out.h, n->out.w, threads};
}

// Pooling geometry of pool node n for a batch of N.
static PoolGeom pool_geom(const Model *m, const Node *n, int N) {
    Shape in = in_shape(m, n);
    return (PoolGeom){N * in.c, in.h, in.w, n->kernel, n->stride, n->padding, n->out.h, n->out.w};
}

// Floats of op state node n saves for backward, per batch of N (saturating at SIZE_MAX).
static size_t aux_len(const Node *n, int N) {
    size_t out = hp_size_mul((size_t)N, shape_numel(n->out));
    switch (n->op) {
    case OP_BATCHNORM2D: return 2 * (size_t)n->out.c;        // mean, invstd
    case OP_MAXPOOL2D: return out;                           // argmax (int32, same size as float)
    case OP_DROPOUT: return out;                             // mask
    default: return 0;
    }
}

// sole[i] = the node that alone reads node i's output, or -1 when none or several do (an add
// reading one node twice counts twice; the last node, the model's output, has none); uses is
// scratch of n_nodes ints.
static void find_sole_consumers(const Model *m, int *sole, int *uses) {
    const int L = m->n_nodes;
    for (int i = 0; i < L; i++) sole[i] = -1, uses[i] = 0;
    for (int j = 0; j < L; j++)
        for (int t = 0; t < m->nodes[j].n_in; t++) {
            int i = m->nodes[j].in[t];
            if (i < 0) continue;
            uses[i]++;
            sole[i] = j;
        }
    for (int i = 0; i < L; i++)
        if (uses[i] != 1) sole[i] = -1;
}

// Threads a workspace is sized for: n_threads, or all of OpenMP's when it is 0 or less.
static int ws_threads(int n_threads) { return n_threads > 0 ? n_threads : omp_get_max_threads(); }

// Floats of a workspace's single block for batches of `batch` on `threads` threads (saturating
// at SIZE_MAX); *col and *wsc get the per-thread im2col and weight-scratch strides.
static size_t ws_block_floats(const Model *m, int batch, int threads, size_t *col, size_t *wsc) {
    size_t total = 0;
    *col = *wsc = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        size_t act = hp_size_mul((size_t)batch, shape_numel(n->out));
        total = hp_size_add(total, hp_size_add(hp_size_mul(2, act), aux_len(n, batch)));
        if (n->op == OP_CONV2D) {
            ConvGeom g = conv_geom(m, n, batch, 1);
            size_t c = conv2d_col_len(&g);
            if (c > *col) *col = c;
            if (n->w_len + (size_t)n->out_features > *wsc) *wsc = n->w_len + (size_t)n->out_features;
        }
    }
    return hp_size_add(total, hp_size_mul((size_t)threads, hp_size_add(*col, *wsc)));
}

size_t ws_bytes(const Model *m, int batch, int n_threads) {
    size_t col, wsc, L = (size_t)m->n_nodes;
    size_t floats = ws_block_floats(m, batch, ws_threads(n_threads), &col, &wsc);
    size_t index = L * (3 * sizeof(float *) + 2 * sizeof(bool) + 2 * sizeof(int));  // act, grad, aux; fresh, skip; sole
    return hp_size_add(index, hp_size_mul(floats, sizeof(float)));
}

int ws_init(Workspace *ws, const Model *m, int batch, int n_threads, HpErr *err) {
    memset(ws, 0, sizeof *ws);
    ws->batch = batch;
    ws->n_threads = ws_threads(n_threads);
    openblas_set_num_threads(1);  // each OpenMP thread runs its own single-threaded BLAS calls
    int L = m->n_nodes;
    ws->act = hp_zalloc((size_t)L, sizeof(float *), err);
    ws->grad = ws->act ? hp_zalloc((size_t)L, sizeof(float *), err) : NULL;
    ws->aux = ws->grad ? hp_zalloc((size_t)L, sizeof(float *), err) : NULL;
    ws->fresh = ws->aux ? hp_zalloc((size_t)L, sizeof(bool), err) : NULL;
    ws->skip = ws->fresh ? hp_zalloc((size_t)L, sizeof(bool), err) : NULL;
    ws->sole = ws->skip ? hp_alloc((size_t)L, 2 * sizeof(int), err) : NULL;  // sole, then scratch
    if (!ws->sole) {
        ws_free(ws);
        return -1;
    }
    find_sole_consumers(m, ws->sole, ws->sole + L);
    size_t col, wsc, total = ws_block_floats(m, batch, ws->n_threads, &col, &wsc);
    ws->col_stride = col;
    ws->wscratch_stride = wsc;
    ws->block = hp_zalloc(total, sizeof(float), err);
    if (!ws->block) {
        ws_free(ws);
        char what[64];
        snprintf(what, sizeof what, "the workspace for batches of %d", batch);
        return hp_prefix(err, what);
    }
    ws->block_len = total;
    float *p = ws->block;
    for (int i = 0; i < L; i++) {
        const Node *n = &m->nodes[i];
        size_t len = (size_t)batch * shape_numel(n->out), a = aux_len(n, batch);
        ws->act[i] = p;
        p += len;
        ws->grad[i] = p;
        p += len;
        ws->aux[i] = a ? p : NULL;
        p += a;
    }
    ws->col = p;
    p += (size_t)ws->n_threads * col;
    ws->wscratch = p;
    return 0;
}

void ws_free(Workspace *ws) {
    free(ws->act);
    free(ws->grad);
    free(ws->aux);
    free(ws->fresh);
    free(ws->skip);
    free(ws->sole);
    free(ws->block);
    free(ws->ract);
    free(ws->rgrad);
    free(ws->raux);
    free(ws->rfresh);
    free(ws->rblock);
    memset(ws, 0, sizeof *ws);
}

// Draws a dropout mask (0 or 1/(1-p)) serially from rng, so it is the same for any thread count.
static void dropout_mask(float *mask, size_t n, float p, Rng *rng) {
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) mask[i] = rng_uniform(rng) >= p ? keep : 0.0f;
}

// Runs node i forward on a batch of N.
static void node_forward(Model *m, Workspace *ws, int i, int N, Mode mode, Rng *rng) {
    const Node *n = &m->nodes[i];
    Shape in = in_shape(m, n);
    const float *x = n->n_in > 0 ? ws->act[n->in[0]] : NULL;
    float *y = ws->act[i];
    const float *w = m->params + n->w_off, *b = n->b_len ? m->params + n->b_off : NULL;
    size_t out_len = (size_t)N * shape_numel(n->out);
    switch (n->op) {
    case OP_INPUT:
        break;
    case OP_CONV2D: {
        ConvGeom g = conv_geom(m, n, N, ws->n_threads);
        conv2d_forward(&g, x, w, b, y, ws->col, ws->col_stride);
        break;
    }
    case OP_BATCHNORM2D: {
        int C = n->out.c, HW = n->out.h * n->out.w;
        float *mean = ws->aux[i], *invstd = mean + C;
        float *rm = m->buffers + n->mean_off, *rv = m->buffers + n->var_off;
        if (mode == MODE_EVAL || mode == MODE_INFER)
            batchnorm_forward_eval(N, C, HW, x, w, m->params + n->b_off, n->eps, rm, rv, y, mean, invstd);
        else
            batchnorm_forward_train(N, C, HW, x, w, m->params + n->b_off, n->eps, n->momentum, mode == MODE_TRAIN, rm,
                                    rv, y, mean, invstd);
        break;
    }
    case OP_RELU:
        relu_forward(out_len, x, y);
        break;
    case OP_MAXPOOL2D: {
        PoolGeom g = pool_geom(m, n, N);
        maxpool_forward(&g, x, y, (int *)ws->aux[i]);
        break;
    }
    case OP_AVGPOOL2D: {
        PoolGeom g = pool_geom(m, n, N);
        avgpool_forward(&g, x, y);
        break;
    }
    case OP_GLOBAL_AVGPOOL:
        gap_forward(N * in.c, in.h * in.w, x, y);
        break;
    case OP_LINEAR:
        linear_forward(N, in.c, n->out_features, x, w, b, y);
        break;
    case OP_FLATTEN:
        memcpy(y, x, out_len * sizeof(float));
        break;
    case OP_ADD:
        add_forward(out_len, x, ws->act[n->in[1]], y);
        break;
    case OP_DROPOUT:
        if (mode == MODE_TRAIN && n->p > 0.0f) {
            HP_ASSERT(rng != NULL);
            dropout_mask(ws->aux[i], out_len, n->p, rng);
        } else {
            for (size_t j = 0; j < out_len; j++) ws->aux[i][j] = 1.0f;
        }
        dropout_forward(out_len, x, ws->aux[i], y);
        break;
    default:
        HP_ASSERT(0 && "unknown op");
    }
}

// The node that alone consumes node i's output if it has op `op`, else -1.
static int sole_of_op(const Model *m, const Workspace *ws, int i, OpKind op) {
    int j = ws->sole[i];
    return j >= 0 && m->nodes[j].op == op ? j : -1;
}

// The ReLU that alone consumes batchnorm node i, or -1.
static int relu_after_bn(const Model *m, const Workspace *ws, int i) {
    return m->nodes[i].op == OP_BATCHNORM2D ? sole_of_op(m, ws, i, OP_RELU) : -1;
}

// The ReLU whose backward batchnorm node i's does (reading the ReLU's gradient, masked by its
// own output), or -1: in eval and train mode. With batch statistics, the R-backward reads the
// batchnorm's own gradient, so both stay apart.
static int backward_relu(const Model *m, const Workspace *ws, int i) {
    return ws->last_mode == MODE_EVAL || ws->last_mode == MODE_TRAIN ? relu_after_bn(m, ws, i) : -1;
}

// Writes into wf (w_len floats) and bf (O) conv node c's weights and bias with eval-mode
// batchnorm node bn folded in: scale_o = gamma_o / sqrt(var_o + eps), wf_o = scale_o w_o,
// bf_o = scale_o (b_o - mean_o) + beta_o.
static void fold_batchnorm(const Model *m, const Node *c, const Node *bn, float *wf, float *bf) {
    const float *w = m->params + c->w_off, *gamma = m->params + bn->w_off, *beta = m->params + bn->b_off;
    const float *mean = m->buffers + bn->mean_off, *var = m->buffers + bn->var_off;
    const size_t per_o = c->w_len / (size_t)c->out_features;
    for (int o = 0; o < c->out_features; o++) {
        float scale = gamma[o] / sqrtf(var[o] + bn->eps);
        for (size_t j = 0; j < per_o; j++) wf[(size_t)o * per_o + j] = scale * w[(size_t)o * per_o + j];
        float b = c->b_len ? m->params[c->b_off + o] : 0.0f;
        bf[o] = scale * (b - mean[o]) + beta[o];
    }
}

// The add that alone consumes node last, if its other input is a node before first, else -1;
// *other gets that input. Such a node is computed: nodes run in order, a fused chain writes its
// last node's output, and an unwritten node inside a chain has its sole consumer in that chain
// (which cannot hold this add, whose input last is at or after first).
static int add_after(const Model *m, const Workspace *ws, int last, int first, int *other) {
    int a = sole_of_op(m, ws, last, OP_ADD);
    if (a < 0) return -1;
    const Node *an = &m->nodes[a];
    *other = an->in[0] == last ? an->in[1] : an->in[0];
    return *other < first ? a : -1;
}

// MODE_INFER: runs node i together with the batchnorm, residual add and/or ReLU that alone
// consume it in that order (a convolution; the add only when its other input is already
// computed) or the ReLU that alone consumes it (an add), writing the last one's output and
// marking the others skipped. Returns false when node i has nothing to fuse.
static bool forward_fused(Model *m, Workspace *ws, int i, int N) {
    const Node *n = &m->nodes[i];
    if (n->op == OP_ADD) {
        int r = sole_of_op(m, ws, i, OP_RELU);
        if (r < 0) return false;
        add_relu_forward((size_t)N * shape_numel(n->out), ws->act[n->in[0]], ws->act[n->in[1]], ws->act[r]);
        ws->skip[r] = true;
        return true;
    }
    if (n->op != OP_CONV2D) return false;
    int bn = sole_of_op(m, ws, i, OP_BATCHNORM2D), last = bn >= 0 ? bn : i, other = -1;
    int add = add_after(m, ws, last, i, &other);
    int r = sole_of_op(m, ws, add >= 0 ? add : last, OP_RELU);
    if (bn < 0 && add < 0 && r < 0) return false;
    const float *w = m->params + n->w_off, *b = n->b_len ? m->params + n->b_off : NULL;
    if (bn >= 0) {
        float *wf = ws->wscratch, *bf = wf + n->w_len;  // forward passes leave wscratch free
        fold_batchnorm(m, n, &m->nodes[bn], wf, bf);
        w = wf;
        b = bf;
        ws->skip[bn] = true;
    }
    ConvGeom g = conv_geom(m, n, N, ws->n_threads);
    int out = r >= 0 ? r : add >= 0 ? add : bn;  // the last node of the chain
    conv2d_infer(&g, ws->act[n->in[0]], w, b, add >= 0 ? ws->act[other] : NULL, r >= 0, ws->act[out], ws->col,
                 ws->col_stride);
    if (add >= 0) ws->skip[add] = true;
    if (r >= 0) ws->skip[r] = true;
    return true;
}

const float *model_forward(Model *m, Workspace *ws, const float *x, int N, Mode mode, Rng *rng) {
    HP_ASSERT(N >= 1 && N <= ws->batch);
    memcpy(ws->act[0], x, (size_t)N * shape_numel(m->input) * sizeof(float));
    for (int i = 0; i < m->n_nodes; i++) ws->skip[i] = false;
    for (int i = 1; i < m->n_nodes; i++) {
        if (ws->skip[i]) continue;
        if (mode == MODE_INFER && forward_fused(m, ws, i, N)) continue;
        node_forward(m, ws, i, N, mode, rng);
    }
    ws->last_mode = mode;
    ws->last_n = N;
    return ws->act[m->n_nodes - 1];
}

// The gradient buffer a backward writes for node id (NULL for the model input when its gradient
// is not wanted: skip). *acc tells whether the buffer already holds a contribution (add to it)
// or not (assign); it is marked as holding one from now on.
static float *grad_for(float **bufs, bool *fresh, int id, bool wanted, bool *acc) {
    *acc = false;
    if (!wanted) return NULL;
    *acc = !fresh[id];
    fresh[id] = false;
    return bufs[id];
}

// Readies grad-like buffer i (n floats) to be read: zeroed if nothing has written it (a node no
// later node consumes), so that reading it is defined.
static void settle(float *buf, bool *fresh, int i, size_t n) {
    if (!fresh[i]) return;
    zero_fill(n, buf);
    fresh[i] = false;
}

// Runs node i backward: reads grad[i], writes or adds into its inputs' grads (the model
// input's only when input_grad) and accumulates into the parameter gradient g (skipped when g
// is NULL).
static void node_backward(const Model *m, Workspace *ws, int i, int N, float *g, bool input_grad) {
    const Node *n = &m->nodes[i];
    if (n->op == OP_RELU && backward_relu(m, ws, n->in[0]) == i) return;  // its batchnorm does it
    Shape in = in_shape(m, n);
    const float *x = ws->act[n->in[0]], *dy = ws->grad[i];
    bool acc;
    float *dx = grad_for(ws->grad, ws->fresh, n->in[0], n->in[0] != 0 || input_grad, &acc);
    const float *w = m->params + n->w_off;
    float *dw = g ? g + n->w_off : NULL, *db = (g && n->b_len) ? g + n->b_off : NULL;
    size_t out_len = (size_t)N * shape_numel(n->out);
    switch (n->op) {
    case OP_CONV2D: {
        ConvGeom geo = conv_geom(m, n, N, ws->n_threads);
        conv2d_backward(&geo, x, w, dy, dx, acc, dw, db, ws->col, ws->col_stride, ws->wscratch, ws->wscratch_stride);
        break;
    }
    case OP_BATCHNORM2D: {
        int C = n->out.c, HW = n->out.h * n->out.w;
        const float *mean = ws->aux[i], *invstd = mean + C;
        int r = backward_relu(m, ws, i);  // then dy is the ReLU's, passed back where y > 0
        batchnorm_backward(N, C, HW, ws->last_mode != MODE_EVAL, r >= 0 ? ws->grad[r] : dy,
                           r >= 0 ? ws->act[i] : NULL, x, mean, invstd, w, dx, acc, dw, db);
        break;
    }
    case OP_RELU:
        if (dx) relu_backward(out_len, x, dy, dx, acc);
        break;
    case OP_MAXPOOL2D: {
        PoolGeom geo = pool_geom(m, n, N);
        if (dx) maxpool_backward(&geo, dy, (const int *)ws->aux[i], dx, acc);
        break;
    }
    case OP_AVGPOOL2D: {
        PoolGeom geo = pool_geom(m, n, N);
        if (dx) avgpool_backward(&geo, dy, dx, acc);
        break;
    }
    case OP_GLOBAL_AVGPOOL:
        if (dx) gap_backward(N * in.c, in.h * in.w, dy, dx, acc);
        break;
    case OP_LINEAR:
        linear_backward(N, in.c, n->out_features, x, w, dy, dx, acc, dw, db);
        break;
    case OP_FLATTEN:
        if (dx) pass_grad(out_len, dy, dx, acc);
        break;
    case OP_ADD: {
        if (dx) pass_grad(out_len, dy, dx, acc);
        bool acc2;
        float *dx2 = grad_for(ws->grad, ws->fresh, n->in[1], n->in[1] != 0 || input_grad, &acc2);
        if (dx2) pass_grad(out_len, dy, dx2, acc2);
        break;
    }
    case OP_DROPOUT:
        if (dx) dropout_backward(out_len, dy, ws->aux[i], dx, acc);
        break;
    default:
        HP_ASSERT(0 && "unknown op");
    }
}

// Floats of node i's output (and gradient) for a batch of N.
static size_t node_len(const Model *m, int i, int N) { return (size_t)N * shape_numel(m->nodes[i].out); }

void model_backward(const Model *m, Workspace *ws, const float *dlogits, float *grad, float *dx) {
    int N = ws->last_n, L = m->n_nodes;
    HP_ASSERT(ws->last_mode != MODE_INFER);
    for (int i = 0; i < L - 1; i++) ws->fresh[i] = true;  // each buffer's first writer assigns: no zeroing
    ws->fresh[L - 1] = false;
    memcpy(ws->grad[L - 1], dlogits, (size_t)N * m->n_classes * sizeof(float));
    for (int i = L - 1; i >= 1; i--) {
        if (backward_relu(m, ws, i) < 0) settle(ws->grad[i], ws->fresh, i, node_len(m, i, N));  // else unused
        node_backward(m, ws, i, N, grad, dx != NULL);
    }
    if (!dx) return;
    settle(ws->grad[0], ws->fresh, 0, node_len(m, 0, N));
    memcpy(dx, ws->grad[0], node_len(m, 0, N) * sizeof(float));
}

// ---- R-operator over the graph ----

// Floats of R-state node n keeps between rforward and rbackward.
static size_t raux_len(const Node *n) {
    return n->op == OP_BATCHNORM2D ? 2 * (size_t)n->out.c : 0;  // mean(R{x}), mean(xhat R{x})
}

// Floats of the R-operator's block for batches of `batch` (saturating at SIZE_MAX).
static size_t rop_block_floats(const Model *m, int batch) {
    size_t total = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        size_t act = hp_size_mul((size_t)batch, shape_numel(m->nodes[i].out));
        total = hp_size_add(total, hp_size_add(hp_size_mul(2, act), raux_len(&m->nodes[i])));
    }
    return total;
}

size_t ws_rop_bytes(const Model *m, int batch) {
    size_t index = (size_t)m->n_nodes * (3 * sizeof(float *) + sizeof(bool));  // ract, rgrad, raux; rfresh
    return hp_size_add(index, hp_size_mul(rop_block_floats(m, batch), sizeof(float)));
}

int ws_enable_rop(Workspace *ws, const Model *m, HpErr *err) {
    if (ws->rblock) return 0;
    int L = m->n_nodes, B = ws->batch;
    ws->ract = hp_zalloc((size_t)L, sizeof(float *), err);
    ws->rgrad = ws->ract ? hp_zalloc((size_t)L, sizeof(float *), err) : NULL;
    ws->raux = ws->rgrad ? hp_zalloc((size_t)L, sizeof(float *), err) : NULL;
    ws->rfresh = ws->raux ? hp_zalloc((size_t)L, sizeof(bool), err) : NULL;
    size_t total = rop_block_floats(m, B);
    ws->rblock = ws->rfresh ? hp_zalloc(total, sizeof(float), err) : NULL;  // R{input} stays zero
    if (!ws->rblock) {
        free(ws->ract), free(ws->rgrad), free(ws->raux), free(ws->rfresh);
        ws->ract = ws->rgrad = ws->raux = NULL, ws->rfresh = NULL;
        return hp_prefix(err, "the R-operator's workspace");
    }
    float *p = ws->rblock;
    for (int i = 0; i < L; i++) {
        size_t len = (size_t)B * shape_numel(m->nodes[i].out), a = raux_len(&m->nodes[i]);
        ws->ract[i] = p;
        p += len;
        ws->rgrad[i] = p;
        p += len;
        ws->raux[i] = a ? p : NULL;
        p += a;
    }
    return 0;
}

// R{x} of node id, or NULL when it is the network input (whose R{x} is zero).
static const float *rin_of(const Workspace *ws, int id) { return id == 0 ? NULL : ws->ract[id]; }

// The ReLU whose R-backward batchnorm node i's does, or -1: in eval mode, where the backward is
// fused too (backward_relu), so both gradients are read from the ReLU.
static int rbackward_relu(const Model *m, const Workspace *ws, int i) {
    return ws->last_mode == MODE_EVAL ? relu_after_bn(m, ws, i) : -1;
}

// R-forward of node i along v.
static void node_rforward(const Model *m, Workspace *ws, int i, int N, const float *v) {
    const Node *n = &m->nodes[i];
    Shape in = in_shape(m, n);
    const float *x = ws->act[n->in[0]], *rx = rin_of(ws, n->in[0]);
    const float *rxz = ws->ract[n->in[0]];  // R{x} with the input's zeros, for elementwise ops
    float *ry = ws->ract[i];
    const float *w = m->params + n->w_off, *vw = v + n->w_off, *vb = n->b_len ? v + n->b_off : NULL;
    size_t out_len = (size_t)N * shape_numel(n->out);
    switch (n->op) {
    case OP_CONV2D: {
        ConvGeom g = conv_geom(m, n, N, ws->n_threads);
        conv2d_rforward(&g, x, w, rx, vw, vb, ry, ws->col, ws->col_stride);
        break;
    }
    case OP_BATCHNORM2D: {
        int C = n->out.c, HW = n->out.h * n->out.w;
        const float *mean = ws->aux[i], *invstd = mean + C;
        int r = relu_after_bn(m, ws, i);  // then R{relu(y)} goes straight into the ReLU's buffer
        batchnorm_rforward(N, C, HW, ws->last_mode != MODE_EVAL, x, mean, invstd, w, rxz, vw, v + n->b_off,
                           r >= 0 ? ws->act[i] : NULL, r >= 0 ? ws->ract[r] : ry, ws->raux[i]);
        break;
    }
    case OP_RELU:
        relu_rforward(out_len, x, rxz, ry);
        break;
    case OP_MAXPOOL2D: {
        PoolGeom g = pool_geom(m, n, N);
        maxpool_rforward(&g, rxz, (const int *)ws->aux[i], ry);
        break;
    }
    case OP_AVGPOOL2D: {
        PoolGeom g = pool_geom(m, n, N);
        avgpool_forward(&g, rxz, ry);
        break;
    }
    case OP_GLOBAL_AVGPOOL:
        gap_forward(N * in.c, in.h * in.w, rxz, ry);
        break;
    case OP_LINEAR:
        linear_rforward(N, in.c, n->out_features, x, w, rx, vw, vb, ry);
        break;
    case OP_FLATTEN:
        memcpy(ry, rxz, out_len * sizeof(float));
        break;
    case OP_ADD:
        add_forward(out_len, rxz, ws->ract[n->in[1]], ry);
        break;
    case OP_DROPOUT:
        dropout_forward(out_len, rxz, ws->aux[i], ry);  // the mask of the forward pass, held fixed
        break;
    default:
        HP_ASSERT(0 && "unknown op");
    }
}

// True when the last forward pass is one the R-operator runs through: MODE_EVAL or
// MODE_BATCHSTATS (MODE_TRAIN's fused backward leaves the batchnorm gradients its R-backward
// would read unwritten; MODE_INFER keeps too little).
static bool rop_mode(const Workspace *ws) { return ws->last_mode == MODE_EVAL || ws->last_mode == MODE_BATCHSTATS; }

const float *model_rforward(const Model *m, Workspace *ws, const float *v) {
    HP_ASSERT(ws->rblock != NULL && rop_mode(ws));
    for (int i = 1; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        if (n->op == OP_RELU && relu_after_bn(m, ws, n->in[0]) == i) continue;  // its batchnorm did it
        node_rforward(m, ws, i, ws->last_n, v);
    }
    return ws->ract[m->n_nodes - 1];
}

// R-backward of node i: reads grad[i] and rgrad[i], writes or adds R{dx} into its inputs'
// rgrad (never the network input's) and accumulates R{dθ} into hv.
static void node_rbackward(const Model *m, Workspace *ws, int i, int N, const float *v, float *hv) {
    const Node *n = &m->nodes[i];
    if (n->op == OP_RELU && rbackward_relu(m, ws, n->in[0]) == i) return;  // its batchnorm does it
    Shape in = in_shape(m, n);
    const float *x = ws->act[n->in[0]], *rx = rin_of(ws, n->in[0]);
    const float *dy = ws->grad[i], *rdy = ws->rgrad[i];
    bool acc;
    float *rdx = grad_for(ws->rgrad, ws->rfresh, n->in[0], n->in[0] != 0, &acc);
    const float *w = m->params + n->w_off, *vw = v + n->w_off;
    float *rdw = hv + n->w_off, *rdb = n->b_len ? hv + n->b_off : NULL;
    size_t out_len = (size_t)N * shape_numel(n->out);
    switch (n->op) {
    case OP_CONV2D: {
        ConvGeom g = conv_geom(m, n, N, ws->n_threads);
        conv2d_rbackward(&g, x, w, rx, vw, dy, rdy, rdx, acc, rdw, rdb, ws->col, ws->col_stride, ws->wscratch,
                         ws->wscratch_stride);
        break;
    }
    case OP_BATCHNORM2D: {
        int C = n->out.c, HW = n->out.h * n->out.w;
        const float *mean = ws->aux[i], *invstd = mean + C;
        int r = rbackward_relu(m, ws, i);  // then dy and R{dy} are the ReLU's, passed back where y > 0
        batchnorm_rbackward(N, C, HW, ws->last_mode != MODE_EVAL, r >= 0 ? ws->grad[r] : dy,
                            r >= 0 ? ws->rgrad[r] : rdy, x, mean, invstd, ws->ract[n->in[0]], ws->raux[i], w, vw,
                            r >= 0 ? ws->act[i] : NULL, rdx, acc, rdw, hv + n->b_off);
        break;
    }
    case OP_RELU:
        if (rdx) relu_backward(out_len, x, rdy, rdx, acc);
        break;
    case OP_MAXPOOL2D: {
        PoolGeom g = pool_geom(m, n, N);
        if (rdx) maxpool_backward(&g, rdy, (const int *)ws->aux[i], rdx, acc);
        break;
    }
    case OP_AVGPOOL2D: {
        PoolGeom g = pool_geom(m, n, N);
        if (rdx) avgpool_backward(&g, rdy, rdx, acc);
        break;
    }
    case OP_GLOBAL_AVGPOOL:
        if (rdx) gap_backward(N * in.c, in.h * in.w, rdy, rdx, acc);
        break;
    case OP_LINEAR:
        linear_rbackward(N, in.c, n->out_features, x, w, rx, vw, dy, rdy, rdx, acc, rdw, rdb);
        break;
    case OP_FLATTEN:
        if (rdx) pass_grad(out_len, rdy, rdx, acc);
        break;
    case OP_ADD: {
        if (rdx) pass_grad(out_len, rdy, rdx, acc);
        bool acc2;
        float *rdx2 = grad_for(ws->rgrad, ws->rfresh, n->in[1], n->in[1] != 0, &acc2);
        if (rdx2) pass_grad(out_len, rdy, rdx2, acc2);
        break;
    }
    case OP_DROPOUT:
        if (rdx) dropout_backward(out_len, rdy, ws->aux[i], rdx, acc);
        break;
    default:
        HP_ASSERT(0 && "unknown op");
    }
}

void model_rbackward(const Model *m, Workspace *ws, const float *v, const float *dlogits, const float *rdlogits,
                     float *hv, float *grad, bool grads_ready) {
    HP_ASSERT(ws->rblock != NULL && rop_mode(ws));
    int N = ws->last_n, L = m->n_nodes;
    for (int i = 0; i < L - 1; i++) {
        if (!grads_ready) ws->fresh[i] = true;
        ws->rfresh[i] = true;
    }
    ws->rfresh[L - 1] = false;
    if (!grads_ready) {
        ws->fresh[L - 1] = false;
        memcpy(ws->grad[L - 1], dlogits, (size_t)N * m->n_classes * sizeof(float));
    }
    memcpy(ws->rgrad[L - 1], rdlogits, (size_t)N * m->n_classes * sizeof(float));
    for (int i = L - 1; i >= 1; i--) {
        if (rbackward_relu(m, ws, i) < 0) settle(ws->rgrad[i], ws->rfresh, i, node_len(m, i, N));  // else unused
        // the ordinary backward first: it completes grad[i]'s inputs, which R-backward reads
        if (!grads_ready) {
            if (backward_relu(m, ws, i) < 0) settle(ws->grad[i], ws->fresh, i, node_len(m, i, N));
            node_backward(m, ws, i, N, grad, false);
        }
        node_rbackward(m, ws, i, N, v, hv);
    }
}
