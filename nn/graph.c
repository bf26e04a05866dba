// graph.c: the workspace (all activations in one allocation, sized once per batch size)
// and the forward and backward passes over the DAG in topological order.
#include <omp.h>
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

// Floats of op state node n saves for backward, per batch of N.
static size_t aux_len(const Node *n, int N) {
    size_t out = (size_t)N * shape_numel(n->out);
    switch (n->op) {
    case OP_BATCHNORM2D: return out + 2 * (size_t)n->out.c;  // xhat, mean, invstd
    case OP_MAXPOOL2D: return out;                           // argmax (int32, same size as float)
    case OP_DROPOUT: return out;                             // mask
    default: return 0;
    }
}

void ws_init(Workspace *ws, const Model *m, int batch, int n_threads) {
    memset(ws, 0, sizeof *ws);
    ws->batch = batch;
    ws->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
    openblas_set_num_threads(1);  // each OpenMP thread runs its own single-threaded BLAS calls
    int L = m->n_nodes;
    ws->act = hp_calloc((size_t)L, sizeof(float *));
    ws->grad = hp_calloc((size_t)L, sizeof(float *));
    ws->aux = hp_calloc((size_t)L, sizeof(float *));
    size_t total = 0, col = 0, wsc = 0;
    for (int i = 0; i < L; i++) {
        const Node *n = &m->nodes[i];
        total += 2 * (size_t)batch * shape_numel(n->out) + aux_len(n, batch);
        if (n->op == OP_CONV2D) {
            ConvGeom g = conv_geom(m, n, batch, 1);
            size_t c = conv2d_col_len(&g);
            if (c > col) col = c;
            if (n->w_len + (size_t)n->out_features > wsc) wsc = n->w_len + (size_t)n->out_features;
        }
    }
    ws->col_stride = col;
    ws->wscratch_stride = wsc;
    total += (size_t)ws->n_threads * (col + wsc);
    ws->block = hp_calloc(total ? total : 1, sizeof(float));
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
}

void ws_free(Workspace *ws) {
    free(ws->act);
    free(ws->grad);
    free(ws->aux);
    free(ws->block);
    free(ws->ract);
    free(ws->rgrad);
    free(ws->raux);
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
        float *xhat = ws->aux[i], *mean = xhat + out_len, *invstd = mean + C;
        float *rm = m->buffers + n->mean_off, *rv = m->buffers + n->var_off;
        if (mode == MODE_EVAL)
            batchnorm_forward_eval(N, C, HW, x, w, m->params + n->b_off, n->eps, rm, rv, y, xhat, invstd);
        else
            batchnorm_forward_train(N, C, HW, x, w, m->params + n->b_off, n->eps, n->momentum, mode == MODE_TRAIN, rm,
                                    rv, y, xhat, mean, invstd);
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

const float *model_forward(Model *m, Workspace *ws, const float *x, int N, Mode mode, Rng *rng) {
    HP_ASSERT(N >= 1 && N <= ws->batch);
    memcpy(ws->act[0], x, (size_t)N * shape_numel(m->input) * sizeof(float));
    for (int i = 1; i < m->n_nodes; i++) node_forward(m, ws, i, N, mode, rng);
    ws->last_mode = mode;
    ws->last_n = N;
    return ws->act[m->n_nodes - 1];
}

// Gradient buffer of node id, or NULL for the model input when its gradient is not wanted.
static float *grad_of(Workspace *ws, int id, bool input_grad) { return (id == 0 && !input_grad) ? NULL : ws->grad[id]; }

// Runs node i backward: reads grad[i], accumulates into its inputs' grads (the model input's
// only when input_grad) and into the parameter gradient g (skipped when g is NULL).
static void node_backward(const Model *m, Workspace *ws, int i, int N, float *g, bool input_grad) {
    const Node *n = &m->nodes[i];
    Shape in = in_shape(m, n);
    const float *x = ws->act[n->in[0]], *dy = ws->grad[i];
    float *dx = grad_of(ws, n->in[0], input_grad);
    const float *w = m->params + n->w_off;
    float *dw = g ? g + n->w_off : NULL, *db = (g && n->b_len) ? g + n->b_off : NULL;
    size_t out_len = (size_t)N * shape_numel(n->out);
    switch (n->op) {
    case OP_CONV2D: {
        ConvGeom geo = conv_geom(m, n, N, ws->n_threads);
        conv2d_backward(&geo, x, w, dy, dx, dw, db, ws->col, ws->col_stride, ws->wscratch, ws->wscratch_stride);
        break;
    }
    case OP_BATCHNORM2D: {
        int C = n->out.c, HW = n->out.h * n->out.w;
        const float *xhat = ws->aux[i], *invstd = xhat + out_len + C;
        batchnorm_backward(N, C, HW, ws->last_mode != MODE_EVAL, dy, xhat, w, invstd, dx, dw, db);
        break;
    }
    case OP_RELU:
        if (dx) relu_backward(out_len, x, dy, dx);
        break;
    case OP_MAXPOOL2D: {
        PoolGeom geo = pool_geom(m, n, N);
        if (dx) maxpool_backward(&geo, dy, (const int *)ws->aux[i], dx);
        break;
    }
    case OP_AVGPOOL2D: {
        PoolGeom geo = pool_geom(m, n, N);
        if (dx) avgpool_backward(&geo, dy, dx);
        break;
    }
    case OP_GLOBAL_AVGPOOL:
        if (dx) gap_backward(N * in.c, in.h * in.w, dy, dx);
        break;
    case OP_LINEAR:
        linear_backward(N, in.c, n->out_features, x, w, dy, dx, dw, db);
        break;
    case OP_FLATTEN:
        if (dx) axpy_acc(out_len, dy, dx);
        break;
    case OP_ADD:
        if (dx) axpy_acc(out_len, dy, dx);
        if (grad_of(ws, n->in[1], input_grad)) axpy_acc(out_len, dy, ws->grad[n->in[1]]);
        break;
    case OP_DROPOUT:
        if (dx) dropout_backward(out_len, dy, ws->aux[i], dx);
        break;
    default:
        HP_ASSERT(0 && "unknown op");
    }
}

void model_backward(const Model *m, Workspace *ws, const float *dlogits, float *grad, float *dx) {
    int N = ws->last_n, L = m->n_nodes;
    for (int i = 0; i < L; i++) memset(ws->grad[i], 0, (size_t)N * shape_numel(m->nodes[i].out) * sizeof(float));
    memcpy(ws->grad[L - 1], dlogits, (size_t)N * m->n_classes * sizeof(float));
    for (int i = L - 1; i >= 1; i--) node_backward(m, ws, i, N, grad, dx != NULL);
    if (dx) memcpy(dx, ws->grad[0], (size_t)N * shape_numel(m->input) * sizeof(float));
}

// ---- R-operator over the graph ----

// Floats of R-state node n keeps between rforward and rbackward, per batch of N.
static size_t raux_len(const Node *n, int N) {
    return n->op == OP_BATCHNORM2D ? (size_t)N * shape_numel(n->out) + (size_t)n->out.c : 0;  // R{xhat}, rc
}

void ws_enable_rop(Workspace *ws, const Model *m) {
    if (ws->rblock) return;
    int L = m->n_nodes, B = ws->batch;
    ws->ract = hp_calloc((size_t)L, sizeof(float *));
    ws->rgrad = hp_calloc((size_t)L, sizeof(float *));
    ws->raux = hp_calloc((size_t)L, sizeof(float *));
    size_t total = 0;
    for (int i = 0; i < L; i++) total += 2 * (size_t)B * shape_numel(m->nodes[i].out) + raux_len(&m->nodes[i], B);
    ws->rblock = hp_calloc(total, sizeof(float));  // R{input} stays zero
    float *p = ws->rblock;
    for (int i = 0; i < L; i++) {
        size_t len = (size_t)B * shape_numel(m->nodes[i].out), a = raux_len(&m->nodes[i], B);
        ws->ract[i] = p;
        p += len;
        ws->rgrad[i] = p;
        p += len;
        ws->raux[i] = a ? p : NULL;
        p += a;
    }
}

// R{x} of node id, or NULL when it is the network input (whose R{x} is zero).
static const float *rin_of(const Workspace *ws, int id) { return id == 0 ? NULL : ws->ract[id]; }

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
        const float *xhat = ws->aux[i], *invstd = xhat + out_len + C;
        float *rxhat = ws->raux[i], *rc = rxhat + out_len;
        batchnorm_rforward(N, C, HW, ws->last_mode != MODE_EVAL, xhat, invstd, w, rxz, vw, v + n->b_off, ry, rxhat,
                           rc);
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

const float *model_rforward(const Model *m, Workspace *ws, const float *v) {
    HP_ASSERT(ws->rblock != NULL);
    for (int i = 1; i < m->n_nodes; i++) node_rforward(m, ws, i, ws->last_n, v);
    return ws->ract[m->n_nodes - 1];
}

// R-backward of node i: reads grad[i] and rgrad[i], accumulates R{dx} into its inputs'
// rgrad (never the network input's) and R{dθ} into hv.
static void node_rbackward(const Model *m, Workspace *ws, int i, int N, const float *v, float *hv) {
    const Node *n = &m->nodes[i];
    Shape in = in_shape(m, n);
    const float *x = ws->act[n->in[0]], *rx = rin_of(ws, n->in[0]);
    const float *dy = ws->grad[i], *rdy = ws->rgrad[i];
    float *rdx = n->in[0] == 0 ? NULL : ws->rgrad[n->in[0]];
    const float *w = m->params + n->w_off, *vw = v + n->w_off;
    float *rdw = hv + n->w_off, *rdb = n->b_len ? hv + n->b_off : NULL;
    size_t out_len = (size_t)N * shape_numel(n->out);
    switch (n->op) {
    case OP_CONV2D: {
        ConvGeom g = conv_geom(m, n, N, ws->n_threads);
        conv2d_rbackward(&g, x, w, rx, vw, dy, rdy, rdx, rdw, rdb, ws->col, ws->col_stride, ws->wscratch,
                         ws->wscratch_stride);
        break;
    }
    case OP_BATCHNORM2D: {
        int C = n->out.c, HW = n->out.h * n->out.w;
        const float *xhat = ws->aux[i], *invstd = xhat + out_len + C;
        const float *rxhat = ws->raux[i], *rc = rxhat + out_len;
        batchnorm_rbackward(N, C, HW, ws->last_mode != MODE_EVAL, dy, rdy, xhat, rxhat, w, invstd, rc, vw, rdx, rdw,
                            hv + n->b_off);
        break;
    }
    case OP_RELU:
        if (rdx) relu_backward(out_len, x, rdy, rdx);
        break;
    case OP_MAXPOOL2D: {
        PoolGeom g = pool_geom(m, n, N);
        if (rdx) maxpool_backward(&g, rdy, (const int *)ws->aux[i], rdx);
        break;
    }
    case OP_AVGPOOL2D: {
        PoolGeom g = pool_geom(m, n, N);
        if (rdx) avgpool_backward(&g, rdy, rdx);
        break;
    }
    case OP_GLOBAL_AVGPOOL:
        if (rdx) gap_backward(N * in.c, in.h * in.w, rdy, rdx);
        break;
    case OP_LINEAR:
        linear_rbackward(N, in.c, n->out_features, x, w, rx, vw, dy, rdy, rdx, rdw, rdb);
        break;
    case OP_FLATTEN:
        if (rdx) axpy_acc(out_len, rdy, rdx);
        break;
    case OP_ADD:
        if (rdx) axpy_acc(out_len, rdy, rdx);
        if (n->in[1] != 0) axpy_acc(out_len, rdy, ws->rgrad[n->in[1]]);
        break;
    case OP_DROPOUT:
        if (rdx) dropout_backward(out_len, rdy, ws->aux[i], rdx);
        break;
    default:
        HP_ASSERT(0 && "unknown op");
    }
}

void model_rbackward(const Model *m, Workspace *ws, const float *v, const float *dlogits, const float *rdlogits,
                     float *hv, float *grad, bool grads_ready) {
    int N = ws->last_n, L = m->n_nodes;
    for (int i = 0; i < L; i++) {
        size_t len = (size_t)N * shape_numel(m->nodes[i].out) * sizeof(float);
        if (!grads_ready) memset(ws->grad[i], 0, len);
        memset(ws->rgrad[i], 0, len);
    }
    if (!grads_ready) memcpy(ws->grad[L - 1], dlogits, (size_t)N * m->n_classes * sizeof(float));
    memcpy(ws->rgrad[L - 1], rdlogits, (size_t)N * m->n_classes * sizeof(float));
    for (int i = L - 1; i >= 1; i--) {
        // the ordinary backward first: it completes grad[i]'s inputs, which R-backward reads
        if (!grads_ready) node_backward(m, ws, i, N, grad, false);
        node_rbackward(m, ws, i, N, v, hv);
    }
}
