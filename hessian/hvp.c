// hvp.c: Hessian and Gauss-Newton products over batches (each batch's mean-loss product
// weighted by its share of the samples), the loss and gradient, per-sample gradients.
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hvp.h"

int curv_init(Curvature *c, Model *m, const Dataset *d, const int *idx, int n, int batch, Mode mode, CurvKind kind,
              HpErr *err) {
    memset(c, 0, sizeof *c);
    if (n < 1) return hp_fail(err, "no samples for the curvature (n = %d)", n);
    if (batch < 1) return hp_fail(err, "batch size %d must be >= 1", batch);
    if (mode != MODE_EVAL && mode != MODE_BATCHSTATS)
        return hp_fail(err, "curvature needs MODE_EVAL or MODE_BATCHSTATS, not MODE_TRAIN or MODE_INFER");
    if (d->n_classes > m->n_classes)
        return hp_fail(err, "model has %d classes, data has %d", m->n_classes, d->n_classes);
    if (d->c != m->input.c || d->h != m->input.h || d->w != m->input.w)
        return hp_fail(err, "model takes %dx%dx%d inputs, data has %dx%dx%d", m->input.c, m->input.h, m->input.w, d->c,
                       d->h, d->w);
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= d->n) return hp_fail(err, "sample index %d out of range (%d images)", idx[i], d->n);
    batch = curv_batch(n, batch);
    c->m = m;
    c->d = d;
    c->n = n;
    c->batch = batch;
    c->mode = mode;
    c->kind = kind;
    if (ws_init(&c->ws, m, batch, 0, err) < 0 || ws_enable_rop(&c->ws, m, err) < 0) {
        curv_free(c);
        return -1;
    }
    c->idx = hp_alloc((size_t)n, sizeof(int), err);
    c->x = c->idx ? hp_alloc((size_t)batch * shape_numel(m->input), sizeof(float), err) : NULL;
    c->y = c->x ? hp_alloc((size_t)batch, sizeof(int), err) : NULL;
    c->dlogits = c->y ? hp_alloc((size_t)batch * m->n_classes, sizeof(float), err) : NULL;
    c->rdlogits = c->dlogits ? hp_alloc((size_t)batch * m->n_classes, sizeof(float), err) : NULL;
    c->part = c->rdlogits ? hp_alloc(m->n_params, sizeof(float), err) : NULL;
    if (!c->part) {
        curv_free(c);
        return -1;
    }
    memcpy(c->idx, idx, (size_t)n * sizeof(int));
    curv_invalidate(c);
    return 0;
}

int curv_batch(int n, int batch) { return batch > n ? n : batch; }

size_t curv_bytes(const Model *m, int n, int batch, int n_threads) {
    size_t B = (size_t)curv_batch(n, batch), K = (size_t)m->n_classes;
    size_t bytes = hp_size_add(ws_bytes(m, (int)B, n_threads), ws_rop_bytes(m, (int)B));
    bytes = hp_size_add(bytes, hp_size_mul((size_t)n, sizeof(int)));                                 // idx
    bytes = hp_size_add(bytes, hp_size_mul(hp_size_mul(B, shape_numel(m->input)), sizeof(float)));  // x
    bytes = hp_size_add(bytes, hp_size_mul(B, sizeof(int)));                                          // y
    bytes = hp_size_add(bytes, hp_size_mul(hp_size_mul(2 * B, K), sizeof(float)));                   // dlogits, rdlogits
    return hp_size_add(bytes, hp_size_mul(m->n_params, sizeof(float)));                              // part
}

void curv_invalidate(Curvature *c) {
    c->cached_batch = -1;
    c->grads_cached = false;
}

void curv_free(Curvature *c) {
    ws_free(&c->ws);
    free(c->idx);
    free(c->x);
    free(c->y);
    free(c->dlogits);
    free(c->rdlogits);
    free(c->part);
    memset(c, 0, sizeof *c);
}

// Number of batches the samples split into.
static int n_batches(const Curvature *c) { return (c->n + c->batch - 1) / c->batch; }

// Runs the forward pass of batch b (unless it is still in the workspace) and the loss
// gradient dlogits; returns the batch's size and its mean loss in *loss.
static int forward_batch(Curvature *c, int b, float *loss) {
    int start = b * c->batch, count = c->n - start < c->batch ? c->n - start : c->batch;
    Model *m = c->m;
    if (c->cached_batch != b) {
        data_batch(c->d, c->idx + start, count, m->norm_mean, m->norm_std, NULL, NULL, c->x, c->y);
        model_forward(m, &c->ws, c->x, count, c->mode, NULL);
        c->cached_batch = b;
        c->grads_cached = false;
    }
    const float *logits = c->ws.act[m->n_nodes - 1];
    float l = softmax_xent(logits, c->y, count, m->n_classes, 0.0f, c->dlogits, NULL);
    if (loss) *loss = l;
    return count;
}

int curv_apply(void *ctx, const float *v, float *out, HpErr *err) {
    (void)err;
    Curvature *c = ctx;
    const Model *m = c->m;
    HP_ASSERT(v != out);  // out is cleared before v is read
    memset(out, 0, m->n_params * sizeof(float));
    for (int b = 0; b < n_batches(c); b++) {
        int count = forward_batch(c, b, NULL);
        const float *rlogits = model_rforward(m, &c->ws, v);
        softmax_xent_rop(c->ws.act[m->n_nodes - 1], rlogits, count, m->n_classes, c->rdlogits);
        memset(c->part, 0, m->n_params * sizeof(float));
        if (c->kind == CURV_HESSIAN) {
            model_rbackward(m, &c->ws, v, c->dlogits, c->rdlogits, c->part, NULL, c->grads_cached);
            c->grads_cached = true;  // valid while this batch's forward stays cached
        } else {
            model_backward(m, &c->ws, c->rdlogits, c->part, NULL);  // J^T H_loss J v (overwrites grads)
            c->grads_cached = false;
        }
        float share = (float)count / (float)c->n;
#pragma omp parallel for simd schedule(static)
        for (size_t j = 0; j < m->n_params; j++) out[j] += share * c->part[j];
    }
    return 0;
}

LinOp curv_linop(Curvature *c) { return (LinOp){.n = c->m->n_params, .apply = curv_apply, .ctx = c}; }

float curv_loss_grad(Curvature *c, float *grad) {
    const Model *m = c->m;
    double total = 0.0;
    if (grad) memset(grad, 0, m->n_params * sizeof(float));
    curv_invalidate(c);  // the parameters may have moved since the last pass
    for (int b = 0; b < n_batches(c); b++) {
        float loss;
        int count = forward_batch(c, b, &loss);
        total += (double)loss * count;
        if (!grad) continue;
        memset(c->part, 0, m->n_params * sizeof(float));
        model_backward(m, &c->ws, c->dlogits, c->part, NULL);
        c->grads_cached = true;  // the ordinary backward of this batch, as Hessian products need
        float share = (float)count / (float)c->n;
#pragma omp parallel for simd schedule(static)
        for (size_t j = 0; j < m->n_params; j++) grad[j] += share * c->part[j];
    }
    return (float)(total / c->n);
}

int curv_sample_grads(Curvature *c, float *out, HpErr *err) {
    Model *m = c->m;
    if (c->mode != MODE_EVAL)  // with batch statistics the samples' losses depend on each other
        return hp_fail(err, "per-sample gradients need batchnorm in eval mode: batch statistics couple the samples");
    Workspace one;
    if (ws_init(&one, m, 1, 0, err) < 0) return -1;
    float *xs = hp_alloc(shape_numel(m->input), sizeof(float), err);
    float *dl = xs ? hp_alloc((size_t)m->n_classes, sizeof(float), err) : NULL;
    if (!dl) {
        free(xs);
        ws_free(&one);
        return -1;
    }
    int y;
    for (int s = 0; s < c->n; s++) {
        data_batch(c->d, c->idx + s, 1, m->norm_mean, m->norm_std, NULL, NULL, xs, &y);
        const float *logits = model_forward(m, &one, xs, 1, MODE_EVAL, NULL);
        softmax_xent(logits, &y, 1, m->n_classes, 0.0f, dl, NULL);
        float *row = out + (size_t)s * m->n_params;
        memset(row, 0, m->n_params * sizeof(float));
        model_backward(m, &one, dl, row, NULL);
    }
    free(xs);
    free(dl);
    ws_free(&one);
    return 0;
}

// p = softmax(logits) (K).
static void softmax_probs(const float *logits, int K, double *p) {
    double top = logits[0], sum = 0;
    for (int k = 1; k < K; k++)
        if (logits[k] > top) top = logits[k];
    for (int k = 0; k < K; k++) sum += p[k] = exp((double)logits[k] - top);
    for (int k = 0; k < K; k++) p[k] /= sum;
}

// Calls visit(ctx, t, g) for each class k with g = J_s^T a_k, a_k = sqrt(p_k) (e_k - p), the
// factor columns of sample s's softmax Hessian; ws holds that sample's forward pass. a and g are
// scratch (n_classes, n_params).
static void visit_sample(const Model *m, Workspace *ws, const double *p, float *a, float *g, int t, GgnGradFn visit,
                         void *ctx) {
    int K = m->n_classes;
    for (int k = 0; k < K; k++) {
        if (p[k] == 0.0) continue;  // the column is zero
        double root = sqrt(p[k]);
        for (int j = 0; j < K; j++) a[j] = (float)(root * ((j == k) - p[j]));
        memset(g, 0, m->n_params * sizeof(float));
        model_backward(m, ws, a, g, NULL);
        visit(ctx, t, g);
    }
}

int curv_ggn_grads(Curvature *c, int T, GgnGradFn visit, void *ctx, ProgressFn progress, void *user, HpErr *err) {
    Model *m = c->m;
    if (c->mode != MODE_EVAL)
        return hp_fail(err, "the exact Gauss-Newton quantities need eval-mode batchnorm (samples independent)");
    HP_ASSERT(T >= 1);
    int K = m->n_classes;
    size_t n = m->n_params, in_len = shape_numel(m->input);
    Workspace *ws = hp_zalloc((size_t)T, sizeof(Workspace), err);
    if (!ws) return -1;
    int rc = 0;
    for (int t = 0; t < T && rc == 0; t++) rc = ws_init(&ws[t], m, 1, 1, err);  // serially: ws_init sets BLAS threads
    long done = 0;
    bool short_of_memory = false;  // a thread's buffers failed: it does no samples, the call fails
    if (rc == 0) {
#pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num();
            HP_ASSERT(t < T);
            float *x = malloc(in_len * sizeof(float)), *a = malloc((size_t)K * sizeof(float));
            float *g = malloc(n * sizeof(float));
            double *p = malloc((size_t)K * sizeof(double));
            if (!(x && a && g && p)) {
#pragma omp atomic write
                short_of_memory = true;
            }
            int y;
#pragma omp for schedule(static)  // each thread's share fixed: the same sums for the same T
            for (int s = 0; s < c->n; s++) {
                bool stop;
#pragma omp atomic read
                stop = short_of_memory;
                if (stop) continue;
                data_batch(c->d, c->idx + s, 1, m->norm_mean, m->norm_std, NULL, NULL, x, &y);
                softmax_probs(model_forward(m, &ws[t], x, 1, MODE_EVAL, NULL), K, p);
                visit_sample(m, &ws[t], p, a, g, t, visit, ctx);
                long now;
#pragma omp atomic capture
                now = ++done;
                if (progress && t == 0 && now < c->n) progress(now, c->n, "images", user);
            }
            free(x), free(a), free(g), free(p);
        }
    }
    for (int t = 0; t < T; t++) ws_free(&ws[t]);
    free(ws);
    if (rc == 0 && short_of_memory) rc = hp_fail(err, "out of memory: cannot allocate a thread's sample buffers");
    if (rc == 0 && progress) progress(c->n, c->n, "images", user);
    return rc;
}

// Per-thread sums of squares for curv_ggn_diag.
typedef struct {
    double *acc;  // [threads][n]
    size_t n;
} DiagSums;

// acc[t] += g .* g.
static void add_squares(void *ctx, int t, const float *g) {
    DiagSums *d = ctx;
    double *acc = d->acc + (size_t)t * d->n;
    for (size_t i = 0; i < d->n; i++) acc[i] += (double)g[i] * g[i];
}

int curv_ggn_diag(Curvature *c, float *diag, ProgressFn progress, void *user, HpErr *err) {
    int T = omp_get_max_threads();
    DiagSums d = {hp_zalloc((size_t)T * c->m->n_params, sizeof(double), err), c->m->n_params};
    if (!d.acc) return -1;
    int rc = curv_ggn_grads(c, T, add_squares, &d, progress, user, err);
    for (size_t i = 0; i < d.n && rc == 0; i++) {
        double sum = 0;
        for (int t = 0; t < T; t++) sum += d.acc[(size_t)t * d.n + i];
        diag[i] = (float)(sum / c->n);
    }
    free(d.acc);
    return rc;
}
