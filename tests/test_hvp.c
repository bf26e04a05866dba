// test_hvp.c: exact Hessian-vector products (R-operator) and Gauss-Newton products against
// finite differences, symmetry on every built-in architecture, per-sample gradients.
#include "tests/testutil.h"

#include <omp.h>

#include "hessian/hvp.h"
#include "nn/data.h"
#include "nn/nn.h"

// A small dataset of n random images of shape (c, h, w) with labels in [0, classes).
static void make_data(Dataset *d, int n, int c, int h, int w, int classes, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 7);
    assert_int_equal(dataset_alloc(d, n, c, h, w, classes, NULL), 0);
    for (size_t i = 0; i < (size_t)n * c * h * w; i++) d->images[i] = (uint8_t)rng_below(&rng, 256);
    for (int i = 0; i < n; i++) d->labels[i] = (uint8_t)(i % classes);
}

// Randomises parameters (and running statistics) so that every term of the Hessian matters.
static void randomise(Model *m, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 3);
    model_init_params(m, &rng);
    for (size_t j = 0; j < m->n_params; j++) m->params[j] += 0.2f * rng_normal(&rng);
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        if (n->op != OP_BATCHNORM2D) continue;
        for (int c = 0; c < n->out.c; c++) {
            m->buffers[n->mean_off + c] = 0.3f * rng_normal(&rng);
            m->buffers[n->var_off + c] = 0.5f + rng_uniform(&rng);
        }
    }
    for (int c = 0; c < m->input.c; c++) {
        m->norm_mean[c] = 0.5f;
        m->norm_std[c] = 0.25f;
    }
}

// Smooth network (no ReLU): conv(bias) - bn - conv(stride 2) - gap - linear.
static void net_smooth(Model *m) {
    HpErr err;
    model_init(m, (Shape){2, 5, 5}, 3);
    int x = mb_input(m, &err);
    x = mb_conv(m, "conv1", x, 3, 3, 1, 1, 1, true, &err);
    x = mb_bn(m, "bn1", x, &err);
    x = mb_conv(m, "conv2", x, 4, 3, 2, 1, 1, false, &err);
    x = mb_gap(m, "gap", x, &err);
    x = mb_flatten(m, "flat", x, &err);
    x = mb_linear(m, "fc", x, 3, true, &err);
    assert_true(x > 0);
    assert_int_equal(model_finalize(m, &err), 0);
}

// ReLU network with max pooling, grouped conv, average pooling and a hidden linear layer.
static void net_relu(Model *m) {
    HpErr err;
    model_init(m, (Shape){2, 6, 6}, 3);
    int x = mb_input(m, &err);
    x = mb_conv(m, "conv1", x, 4, 3, 1, 1, 1, true, &err);
    x = mb_bn(m, "bn1", x, &err);
    x = mb_relu(m, "relu1", x, &err);
    x = mb_maxpool(m, "pool1", x, 2, 2, 0, &err);
    x = mb_conv(m, "conv2", x, 4, 3, 1, 1, 2, false, &err);
    x = mb_relu(m, "relu2", x, &err);
    x = mb_avgpool(m, "pool2", x, 2, 1, 0, &err);
    x = mb_flatten(m, "flat", x, &err);
    x = mb_linear(m, "fc1", x, 5, true, &err);
    x = mb_relu(m, "relu3", x, &err);
    x = mb_dropout(m, "drop", x, 0.5f, &err);
    x = mb_linear(m, "fc2", x, 3, true, &err);
    assert_true(x > 0);
    assert_int_equal(model_finalize(m, &err), 0);
}

// Residual network: conv-bn-relu, a block with a 1x1 projection shortcut and an add.
static void net_residual(Model *m) {
    HpErr err;
    model_init(m, (Shape){1, 5, 5}, 3);
    int x = mb_input(m, &err);
    x = mb_conv(m, "conv1", x, 3, 3, 1, 1, 1, false, &err);
    x = mb_bn(m, "bn1", x, &err);
    int a = mb_relu(m, "relu1", x, &err);
    int b = mb_conv(m, "b.conv", a, 4, 3, 1, 1, 1, false, &err);
    b = mb_bn(m, "b.bn", b, &err);
    int s = mb_conv(m, "b.short", a, 4, 1, 1, 0, 1, false, &err);
    x = mb_add(m, "b.add", b, s, &err);
    x = mb_relu(m, "b.relu", x, &err);
    x = mb_gap(m, "gap", x, &err);
    x = mb_flatten(m, "flat", x, &err);
    x = mb_linear(m, "fc", x, 3, true, &err);
    assert_true(x > 0);
    assert_int_equal(model_finalize(m, &err), 0);
}

// A network without batchnorm: conv(bias)-relu-maxpool, conv(stride 2)-relu, then linear-relu-
// linear: the products with no batchnorm term in them.
static void net_plain(Model *m) {
    HpErr err;
    model_init(m, (Shape){2, 6, 6}, 3);
    int x = mb_input(m, &err);
    x = mb_conv(m, "conv1", x, 3, 3, 1, 1, 1, true, &err);
    x = mb_relu(m, "relu1", x, &err);
    x = mb_maxpool(m, "pool1", x, 2, 2, 0, &err);
    x = mb_conv(m, "conv2", x, 4, 3, 2, 1, 1, true, &err);
    x = mb_relu(m, "relu2", x, &err);
    x = mb_flatten(m, "flat", x, &err);
    x = mb_linear(m, "fc1", x, 5, true, &err);
    x = mb_relu(m, "relu3", x, &err);
    x = mb_linear(m, "fc2", x, 3, true, &err);
    assert_true(x > 0);
    assert_int_equal(model_finalize(m, &err), 0);
}

// Curvature operator over all n samples of d in one batch.
static void curv_all(Curvature *c, Model *m, const Dataset *d, Mode mode, CurvKind kind) {
    int idx[64];
    for (int i = 0; i < d->n; i++) idx[i] = i;
    HpErr err;
    assert_int_equal(curv_init(c, m, d, idx, d->n, d->n, mode, kind, &err), 0);
}

// Full matrix (P x P, row-major, column j = A e_j) of the curvature operator.
static double *full_matrix(Curvature *c) {
    size_t P = c->m->n_params;
    double *A = xmalloc(P * P * sizeof(double));
    float *e = xcalloc(P, sizeof(float)), *col = xmalloc(P * sizeof(float));
    HpErr err;
    for (size_t j = 0; j < P; j++) {
        e[j] = 1.0f;
        assert_int_equal(curv_apply(c, e, col, &err), 0);
        e[j] = 0.0f;
        for (size_t i = 0; i < P; i++) A[i * P + j] = col[i];
    }
    free(e);
    free(col);
    return A;
}

// ||a - b|| / max(||a||, ||b||) over n doubles.
static double vec_disagree(const double *a, const double *b, size_t n) {
    double d = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        d += (a[i] - b[i]) * (a[i] - b[i]);
        na += a[i] * a[i];
        nb += b[i] * b[i];
    }
    return sqrt(d) / fmax(sqrt(fmax(na, nb)), 1e-30);
}

// Column j of the Hessian by central differences of the gradient, (g(θ + h e_j) - g(θ - h e_j)) / 2h,
// with a step that crosses no ReLU or max-pool kink: the forward and backward one-sided
// differences must agree, else the step shrinks (up to 3 times). Returns false if no step did.
static bool fd_column(Curvature *c, size_t j, float h, const float *g0, double *col) {
    size_t P = c->m->n_params;
    float *gp = xmalloc(P * sizeof(float)), *gm = xmalloc(P * sizeof(float));
    double *fwd = xmalloc(P * sizeof(double)), *bwd = xmalloc(P * sizeof(double));
    float *theta = c->m->params, t0 = theta[j];
    bool ok = false;
    for (int tries = 0; tries < 4 && !ok; tries++, h *= 0.25f) {
        theta[j] = t0 + h;
        curv_loss_grad(c, gp);
        theta[j] = t0 - h;
        curv_loss_grad(c, gm);
        theta[j] = t0;
        for (size_t i = 0; i < P; i++) {
            fwd[i] = ((double)gp[i] - g0[i]) / h;
            bwd[i] = ((double)g0[i] - gm[i]) / h;
            col[i] = ((double)gp[i] - gm[i]) / (2.0 * h);
        }
        ok = vec_disagree(fwd, bwd, P) < 0.05;
    }
    free(gp);
    free(gm);
    free(fwd);
    free(bwd);
    return ok;
}

// Hessian by finite differences (see fd_column); used[j] tells which columns had a kink-free step.
static double *fd_hessian(Curvature *c, float h, bool *used) {
    size_t P = c->m->n_params;
    double *A = xmalloc(P * P * sizeof(double)), *col = xmalloc(P * sizeof(double));
    float *g0 = xmalloc(P * sizeof(float));
    curv_loss_grad(c, g0);
    for (size_t j = 0; j < P; j++) {
        used[j] = fd_column(c, j, h, g0, col);
        for (size_t i = 0; i < P; i++) A[i * P + j] = col[i];
    }
    free(g0);
    free(col);
    return A;
}

// ||A - B||_F / ||B||_F.
static double rel_frob(const double *A, const double *B, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (A[i] - B[i]) * (A[i] - B[i]);
        den += B[i] * B[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

// ||A - B||_F / ||B||_F over the columns j of P x P matrices with used[j].
static double rel_frob_cols(const double *A, const double *B, size_t P, const bool *used) {
    double num = 0, den = 0;
    for (size_t i = 0; i < P; i++)
        for (size_t j = 0; j < P; j++) {
            if (!used[j]) continue;
            double d = A[i * P + j] - B[i * P + j];
            num += d * d;
            den += B[i * P + j] * B[i * P + j];
        }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

// ||A - A^T||_F / ||A||_F for a P x P matrix.
static double asymmetry(const double *A, size_t P) {
    double num = 0, den = 0;
    for (size_t i = 0; i < P; i++)
        for (size_t j = 0; j < P; j++) {
            double d = A[i * P + j] - A[j * P + i];
            num += d * d;
            den += A[i * P + j] * A[i * P + j];
        }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

// Checks the exact Hessian of a small network against finite differences and symmetry, and
// that the Gauss-Newton matrix (missing the second-order terms) is far from it: so the
// tolerance would catch a missing term.
static void check_hessian(void (*build)(Model *), const char *name, Mode mode, float h, double tol) {
    Model m;
    build(&m);
    randomise(&m, 11);
    Dataset d;
    make_data(&d, 6, m.input.c, m.input.h, m.input.w, m.n_classes, 5);
    Curvature c, g;
    curv_all(&c, &m, &d, mode, CURV_HESSIAN);
    curv_all(&g, &m, &d, mode, CURV_GGN);
    size_t P = m.n_params;
    bool *used = xmalloc(P * sizeof(bool));
    double *H = full_matrix(&c), *F = fd_hessian(&c, h, used), *G = full_matrix(&g);
    size_t n_used = 0;
    for (size_t j = 0; j < P; j++) n_used += used[j];
    double err_fd = rel_frob_cols(H, F, P, used), asym = asymmetry(H, P), gap = rel_frob(G, H, P * P);
    fprintf(stderr, "  %-9s %-10s P=%3zu  |H-FD|/|FD| %.2e (%zu kink-free columns)  asym %.2e  |G-H|/|H| %.2e\n",
            name, mode == MODE_EVAL ? "eval" : "batchstats", P, err_fd, n_used, asym, gap);
    assert_true(n_used >= P * 9 / 10);
    assert_true(err_fd < tol);
    assert_true(asym < 1e-5);
    assert_true(gap > 20 * tol);
    free(H);
    free(F);
    free(G);
    free(used);
    curv_free(&c);
    curv_free(&g);
    dataset_free(&d);
    model_free(&m);
}

static void test_hessian_smooth(void **state) {
    (void)state;
    check_hessian(net_smooth, "smooth", MODE_EVAL, 1e-2f, 2e-3);
    check_hessian(net_smooth, "smooth", MODE_BATCHSTATS, 1e-2f, 2e-3);
}

static void test_hessian_relu(void **state) {
    (void)state;
    check_hessian(net_relu, "relu", MODE_EVAL, 2e-3f, 2e-3);
    check_hessian(net_relu, "relu", MODE_BATCHSTATS, 2e-3f, 2e-3);
}

static void test_hessian_plain(void **state) {
    (void)state;
    check_hessian(net_plain, "plain", MODE_EVAL, 2e-3f, 2e-3);
}

static void test_hessian_residual(void **state) {
    (void)state;
    check_hessian(net_residual, "residual", MODE_EVAL, 2e-3f, 2e-3);
    check_hessian(net_residual, "residual", MODE_BATCHSTATS, 2e-3f, 2e-3);
}

// Logits (N*K) at the current parameters into out (double).
static void logits_at(Model *m, Workspace *ws, const float *x, int N, Mode mode, double *out) {
    const float *z = model_forward(m, ws, x, N, mode, NULL);
    for (size_t r = 0; r < (size_t)N * m->n_classes; r++) out[r] = z[r];
}

// Jacobian of all logits (N*K) with respect to the parameters by central differences, (N*K, P),
// each column with a kink-free step (one-sided differences agree; the step shrinks if not).
static double *fd_jacobian(Model *m, const float *x, int N, Mode mode, float h0) {
    size_t P = m->n_params, R = (size_t)N * m->n_classes;
    double *J = xmalloc(R * P * sizeof(double));
    double *z0 = xmalloc(R * sizeof(double)), *zp = xmalloc(R * sizeof(double)), *zm = xmalloc(R * sizeof(double));
    double *fwd = xmalloc(R * sizeof(double)), *bwd = xmalloc(R * sizeof(double));
    Workspace ws;
    assert_int_equal(ws_init(&ws, m, N, 0, NULL), 0);
    logits_at(m, &ws, x, N, mode, z0);
    for (size_t j = 0; j < P; j++) {
        float t0 = m->params[j], h = h0;
        for (int tries = 0; tries < 4; tries++, h *= 0.25f) {
            m->params[j] = t0 + h;
            logits_at(m, &ws, x, N, mode, zp);
            m->params[j] = t0 - h;
            logits_at(m, &ws, x, N, mode, zm);
            m->params[j] = t0;
            for (size_t r = 0; r < R; r++) {
                fwd[r] = (zp[r] - z0[r]) / h;
                bwd[r] = (z0[r] - zm[r]) / h;
            }
            if (vec_disagree(fwd, bwd, R) < 0.05) break;  // a crossed kink makes them disagree
        }
        for (size_t r = 0; r < R; r++) J[r * P + j] = (zp[r] - zm[r]) / (2.0 * h);
    }
    ws_free(&ws);
    free(z0);
    free(zp);
    free(zm);
    free(fwd);
    free(bwd);
    return J;
}

// Gauss-Newton product G = J^T H_loss J against a finite-difference Jacobian and the softmax
// cross-entropy Hessian (diag(p) - p p^T) / N built by hand; G must be PSD-symmetric.
static void check_ggn(void (*build)(Model *), const char *name, Mode mode) {
    Model m;
    build(&m);
    randomise(&m, 21);
    Dataset d;
    int N = 5;
    make_data(&d, N, m.input.c, m.input.h, m.input.w, m.n_classes, 9);
    Curvature g;
    curv_all(&g, &m, &d, mode, CURV_GGN);
    size_t P = m.n_params, K = (size_t)m.n_classes;
    double *G = full_matrix(&g);
    // inputs and logits at θ
    float *x = xmalloc((size_t)N * shape_numel(m.input) * sizeof(float));
    int idx[8], y[8];
    for (int i = 0; i < N; i++) idx[i] = i;
    data_batch(&d, idx, N, m.norm_mean, m.norm_std, NULL, NULL, x, y);
    Workspace ws;
    assert_int_equal(ws_init(&ws, &m, N, 0, NULL), 0);
    const float *z = model_forward(&m, &ws, x, N, mode, NULL);
    double *p = xmalloc((size_t)N * K * sizeof(double));
    for (int n = 0; n < N; n++) {
        double mx = z[n * K], s = 0;
        for (size_t k = 1; k < K; k++) mx = fmax(mx, z[n * K + k]);
        for (size_t k = 0; k < K; k++) s += exp(z[n * K + k] - mx);
        for (size_t k = 0; k < K; k++) p[n * K + k] = exp(z[n * K + k] - mx) / s;
    }
    ws_free(&ws);
    double *J = fd_jacobian(&m, x, N, mode, 3e-3f);
    double *ref = xcalloc(P * P, sizeof(double)), *HJ = xmalloc(K * P * sizeof(double));
    for (int n = 0; n < N; n++) {
        const double *Jn = J + (size_t)n * K * P, *pn = p + (size_t)n * K;
        for (size_t a = 0; a < K; a++)
            for (size_t j = 0; j < P; j++) {
                double s = 0;
                for (size_t b = 0; b < K; b++) s += ((a == b ? pn[a] : 0.0) - pn[a] * pn[b]) * Jn[b * P + j];
                HJ[a * P + j] = s / N;
            }
        for (size_t i = 0; i < P; i++)
            for (size_t j = 0; j < P; j++) {
                double s = 0;
                for (size_t a = 0; a < K; a++) s += Jn[a * P + i] * HJ[a * P + j];
                ref[i * P + j] += s;
            }
    }
    double e = rel_frob(G, ref, P * P);
    fprintf(stderr, "  GGN %-9s %-10s P=%3zu  |G - J^T H J|/|J^T H J| %.2e  asym %.2e\n", name,
            mode == MODE_EVAL ? "eval" : "batchstats", P, e, asymmetry(G, P));
    assert_true(e < 5e-3);  // float finite differences; the Hessian-GGN gap above is 0.5 or more
    assert_true(asymmetry(G, P) < 1e-5);
    free(G);
    free(x);
    free(p);
    free(J);
    free(ref);
    free(HJ);
    curv_free(&g);
    dataset_free(&d);
    model_free(&m);
}

static void test_ggn(void **state) {
    (void)state;
    check_ggn(net_smooth, "smooth", MODE_EVAL);
    check_ggn(net_smooth, "smooth", MODE_BATCHSTATS);
    check_ggn(net_residual, "residual", MODE_EVAL);
    check_ggn(net_residual, "residual", MODE_BATCHSTATS);
    check_ggn(net_plain, "plain", MODE_EVAL);
}

// The exact Gauss-Newton diagonal equals the diagonal of the matrix assembled column by column
// from Gauss-Newton products, on several threads; batch-statistics mode is refused.
static void test_ggn_diag(void **state) {
    (void)state;
    void (*builds[])(Model *) = {net_smooth, net_relu, net_residual};
    for (int b = 0; b < 3; b++) {
        Model m;
        builds[b](&m);
        randomise(&m, 61 + (uint64_t)b);
        Dataset d;
        make_data(&d, 6, m.input.c, m.input.h, m.input.w, m.n_classes, 19);
        Curvature c;
        curv_all(&c, &m, &d, MODE_EVAL, CURV_GGN);
        size_t P = m.n_params;
        double *G = full_matrix(&c);
        float *want = xmalloc(P * sizeof(float)), *got = xmalloc(P * sizeof(float));
        for (size_t j = 0; j < P; j++) want[j] = (float)G[j * P + j];
        HpErr err;
        int threads = omp_get_max_threads();
        omp_set_num_threads(2);  // the per-thread accumulators are summed
        assert_int_equal(curv_ggn_diag(&c, got, NULL, NULL, &err), 0);
        omp_set_num_threads(threads);
        double e = tu_rel_err(got, want, P);
        fprintf(stderr, "  exact GGN diagonal, net %d, P=%zu: rel err %.2e against the assembled matrix\n", b, P, e);
        assert_true(e < 1e-5);
        free(G), free(want), free(got);
        curv_free(&c);
        curv_all(&c, &m, &d, MODE_BATCHSTATS, CURV_GGN);
        float *diag = xmalloc(P * sizeof(float));
        assert_int_equal(curv_ggn_diag(&c, diag, NULL, NULL, &err), -1);
        assert_non_null(strstr(err.msg, "eval-mode"));
        free(diag);
        curv_free(&c);
        dataset_free(&d);
        model_free(&m);
    }
}

// u^T (H v) = v^T (H u) on every built-in architecture, in both batchnorm modes.
static void test_symmetry_builtin(void **state) {
    (void)state;
    const char *const *names = arch_names();
    for (int a = 0; names[a]; a++) {
        Model m;
        HpErr err;
        Shape in = strcmp(names[a], "lenet5") == 0 ? (Shape){1, 16, 16} : (Shape){3, 8, 8};
        assert_int_equal(arch_build(&m, names[a], in, 4, &err), 0);
        randomise(&m, 31);
        Dataset d;
        make_data(&d, 4, in.c, in.h, in.w, 4, 13);
        for (int mode = 0; mode < 2; mode++) {
            Curvature c;
            curv_all(&c, &m, &d, mode == 0 ? MODE_EVAL : MODE_BATCHSTATS, CURV_HESSIAN);
            size_t P = m.n_params;
            float *u = xmalloc(P * sizeof(float)), *v = xmalloc(P * sizeof(float));
            float *Hu = xmalloc(P * sizeof(float)), *Hv = xmalloc(P * sizeof(float));
            Rng rng;
            rng_seed(&rng, 77, (uint64_t)a);
            for (size_t j = 0; j < P; j++) {
                u[j] = rng_normal(&rng);
                v[j] = rng_normal(&rng);
            }
            assert_int_equal(curv_apply(&c, u, Hu, &err), 0);
            assert_int_equal(curv_apply(&c, v, Hv, &err), 0);
            double uHv = 0, vHu = 0, nu = 0, nHv = 0;
            for (size_t j = 0; j < P; j++) {
                uHv += (double)u[j] * Hv[j];
                vHu += (double)v[j] * Hu[j];
                nu += (double)u[j] * u[j];
                nHv += (double)Hv[j] * Hv[j];
            }
            // against the size a product of random directions has, |u| |Hv| / sqrt(P) (comparing
            // with |u| |Hv| itself would let an error sqrt(P) times larger pass on a large model)
            double rel = fabs(uHv - vHu) * sqrt((double)P) / (sqrt(nu) * sqrt(nHv));
            fprintf(stderr, "  %-8s %-10s P=%7zu  u'Hv %+.6e  v'Hu %+.6e  rel %.1e\n", names[a],
                    mode == 0 ? "eval" : "batchstats", P, uHv, vHu, rel);
            assert_true(rel < 1e-4);
            free(u);
            free(v);
            free(Hu);
            free(Hv);
            curv_free(&c);
        }
        dataset_free(&d);
        model_free(&m);
    }
}

// The mean of the per-sample gradients is the gradient of the mean loss (eval mode).
static void test_sample_grads(void **state) {
    (void)state;
    Model m;
    net_residual(&m);
    randomise(&m, 41);
    Dataset d;
    make_data(&d, 7, m.input.c, m.input.h, m.input.w, m.n_classes, 17);
    Curvature c;
    int idx[7] = {6, 0, 3, 1, 5, 2, 4};
    HpErr err;
    assert_int_equal(curv_init(&c, &m, &d, idx, 7, 3, MODE_EVAL, CURV_HESSIAN, &err), 0);
    size_t P = m.n_params;
    float *G = xmalloc(7 * P * sizeof(float)), *g = xmalloc(P * sizeof(float)), *mean = xcalloc(P, sizeof(float));
    assert_int_equal(curv_sample_grads(&c, G, NULL), 0);
    curv_loss_grad(&c, g);
    for (int s = 0; s < 7; s++)
        for (size_t j = 0; j < P; j++) mean[j] += G[s * P + j] / 7.0f;
    double e = tu_rel_err(mean, g, P);
    fprintf(stderr, "  mean of per-sample gradients vs batched gradient: rel err %.2e\n", e);
    assert_true(e < 1e-5);
    // and each row differs (they are per sample, not copies)
    assert_true(tu_rel_err(G, G + P, P) > 1e-2);
    curv_free(&c);
    // with batch statistics the samples are coupled: refused with an error, not an abort
    assert_int_equal(curv_init(&c, &m, &d, idx, 7, 3, MODE_BATCHSTATS, CURV_HESSIAN, &err), 0);
    assert_int_equal(curv_sample_grads(&c, G, &err), -1);
    assert_non_null(strstr(err.msg, "batchnorm in eval mode"));
    free(G);
    free(g);
    free(mean);
    curv_free(&c);
    dataset_free(&d);
    model_free(&m);
}

// Products over several batches equal the product over one batch holding them all (eval mode,
// where samples are independent), and bad arguments are refused.
static void test_batches_and_errors(void **state) {
    (void)state;
    Model m;
    net_relu(&m);
    randomise(&m, 51);
    Dataset d;
    make_data(&d, 9, m.input.c, m.input.h, m.input.w, m.n_classes, 19);
    int idx[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    Curvature one, many;
    HpErr err;
    assert_int_equal(curv_init(&one, &m, &d, idx, 9, 9, MODE_EVAL, CURV_HESSIAN, &err), 0);
    assert_int_equal(curv_init(&many, &m, &d, idx, 9, 4, MODE_EVAL, CURV_HESSIAN, &err), 0);
    size_t P = m.n_params;
    float *v = xmalloc(P * sizeof(float)), *a = xmalloc(P * sizeof(float)), *b = xmalloc(P * sizeof(float));
    Rng rng;
    rng_seed(&rng, 5, 5);
    for (size_t j = 0; j < P; j++) v[j] = rng_normal(&rng);
    curv_apply(&one, v, a, &err);
    curv_apply(&many, v, b, &err);
    assert_true(tu_rel_err(b, a, P) < 1e-5);
    curv_free(&many);
    Curvature bad;  // refused set-ups allocate nothing
    assert_int_equal(curv_init(&bad, &m, &d, idx, 0, 4, MODE_EVAL, CURV_HESSIAN, &err), -1);
    assert_int_equal(curv_init(&bad, &m, &d, idx, 9, 4, MODE_TRAIN, CURV_HESSIAN, &err), -1);
    idx[3] = 99;
    assert_int_equal(curv_init(&bad, &m, &d, idx, 9, 4, MODE_EVAL, CURV_HESSIAN, &err), -1);
    assert_non_null(strstr(err.msg, "out of range"));
    free(v);
    free(a);
    free(b);
    curv_free(&one);
    dataset_free(&d);
    model_free(&m);
}

int main(void) {
    omp_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hessian_smooth),   cmocka_unit_test(test_hessian_relu),
        cmocka_unit_test(test_hessian_plain),
        cmocka_unit_test(test_hessian_residual), cmocka_unit_test(test_ggn),
        cmocka_unit_test(test_ggn_diag),
        cmocka_unit_test(test_symmetry_builtin), cmocka_unit_test(test_sample_grads),
        cmocka_unit_test(test_batches_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
