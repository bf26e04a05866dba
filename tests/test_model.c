// test_model.c: whole graphs through model_forward/model_backward: end-to-end gradient checks
// (parameters and input, running statistics and batch statistics) on LeNet-5, a small custom
// ResNet and ResNet-20; MODE_INFER's fused forward against MODE_EVAL; training drives a synthetic loss down; determinism; model_copy; graphs
// the builder must reject; parameter and MAC counts of the built-in architectures.
#include <limits.h>
#include <omp.h>

#include "testutil.h"

#include "nn/nn.h"
#include "nn/train.h"

#define N_THREADS 2
#define GC_BATCH 4          // samples per gradient-check batch
#define GC_STEP 1e-2f       // central-difference step on one coordinate (retried at 1/2, 1/4)
#define GC_TRIES 3          // steps tried per coordinate before it counts as a failure
#define GC_REL 2e-2         // per-coordinate tolerance: |fd - an| <= GC_REL * max(|an|, scale)
#define GC_SCALE_FRAC 0.05  // scale = GC_SCALE_FRAC * rms of the whole analytic gradient vector
#define GC_MIN_PASS 0.98    // fraction of coordinates that must pass
#define GC_N_PARAMS 200     // parameter coordinates checked per mode (at least 2 per tensor)
#define GC_N_INPUT 100      // input coordinates checked per mode

// ---- helpers ----

// Mean softmax cross-entropy of logits z (N, K) against labels, computed in double.
static double xent_d(const float *z, const int *labels, int N, int K) {
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        const float *zn = z + (size_t)n * K;
        double zmax = zn[0], s = 0.0;
        for (int k = 1; k < K; k++) zmax = fmax(zmax, zn[k]);
        for (int k = 0; k < K; k++) s += exp((double)zn[k] - zmax);
        total += zmax + log(s) - zn[labels[n]];
    }
    return total / N;
}

// Loss of the model on x (N, C, H, W) in the given mode at the current parameters.
static double model_loss(Model *m, Workspace *ws, const float *x, const int *labels, int N, Mode mode) {
    const float *z = model_forward(m, ws, x, N, mode, NULL);
    return xent_d(z, labels, N, m->n_classes);
}

// Gives every batchnorm non-trivial affine parameters and running statistics.
static void perturb_bn(Model *m, Rng *rng) {
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        if (n->op != OP_BATCHNORM2D) continue;
        for (int c = 0; c < n->out.c; c++) {
            m->params[n->w_off + c] = 0.6f + 0.8f * rng_uniform(rng);
            m->params[n->b_off + c] = 0.4f * rng_uniform(rng) - 0.2f;
            m->buffers[n->mean_off + c] = 0.6f * rng_uniform(rng) - 0.2f;
            m->buffers[n->var_off + c] = 0.5f + 1.5f * rng_uniform(rng);
        }
    }
}

// Fills idx with about `total` parameter coordinates to check: 2 random ones from every
// parameter tensor (so no layer is missed), the rest drawn uniformly over the whole vector.
// Returns the count (<= cap).
static size_t pick_params(const Model *m, Rng *rng, size_t total, size_t *idx, size_t cap) {
    int nt = model_tensors(m, NULL, 0);
    TensorRef *t = xmalloc((size_t)nt * sizeof *t);
    model_tensors(m, t, nt);
    size_t k = 0;
    for (int i = 0; i < nt; i++) {
        if (!t[i].is_param) continue;
        size_t off = (size_t)(t[i].data - m->params);
        for (int j = 0; j < 2 && k < cap; j++) idx[k++] = off + (size_t)rng_below(rng, t[i].numel);
    }
    while (k < total && k < cap) idx[k++] = (size_t)rng_below(rng, m->n_params);
    free(t);
    return k;
}

// Fills idx with n distinct random coordinates of a vector of length len (n <= len).
static size_t pick_distinct(Rng *rng, size_t len, size_t n, size_t *idx) {
    int *perm = xmalloc(len * sizeof(int));
    for (size_t i = 0; i < len; i++) perm[i] = (int)i;
    rng_shuffle(rng, perm, (int)len);
    if (n > len) n = len;
    for (size_t i = 0; i < n; i++) idx[i] = (size_t)perm[i];
    free(perm);
    return n;
}

// Root mean square of a[0..n).
static double rms(const float *a, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * a[i];
    return sqrt(s / (double)(n ? n : 1));
}

// ---- kinks ----
// A relu or maxpool kink crossed inside a finite-difference step spoils the difference. The
// loss with every relu mask and maxpool argmax frozen at the base point is smooth and has the
// same gradient there; the loss actually computed differs from it by the contributions of the
// units that changed side, to first order g_u * e_u, where g_u is dL/d(output of u) at the base
// point and e_u the output of u minus its frozen-rule output (relu: relu(p) - on0 * p;
// maxpool: y - x[argmax0]). Subtracting that sum from each perturbed loss removes the kinks to
// first order, so every coordinate can be held to one tight tolerance (a GC_MIN_PASS fraction
// must meet it: float32 rounding and second-order kink effects remain). A wrong backward still
// fails: the correction only touches the few units that changed side.

// Base-point state of the kinked nodes, indexed by node id (NULL for other nodes).
typedef struct {
    int n_nodes;
    unsigned char **on;  // relu: 1 where its input was > 0, (N * numel)
    int **arg;           // maxpool: argmax, (N * numel)
    float **g;           // relu and maxpool: dL/d(node output) from the backward pass
} Kinks;

// Saves the kink state of the last forward and backward passes of a batch of N.
static void kinks_save(Kinks *k, const Model *m, const Workspace *ws, int N) {
    k->n_nodes = m->n_nodes;
    k->on = xcalloc((size_t)m->n_nodes, sizeof *k->on);
    k->arg = xcalloc((size_t)m->n_nodes, sizeof *k->arg);
    k->g = xcalloc((size_t)m->n_nodes, sizeof *k->g);
    for (int i = 1; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        size_t len = (size_t)N * shape_numel(n->out);
        if (n->op != OP_RELU && n->op != OP_MAXPOOL2D) continue;
        k->g[i] = xmalloc(len * sizeof(float));
        memcpy(k->g[i], ws->grad[i], len * sizeof(float));
        if (n->op == OP_RELU) {
            k->on[i] = xmalloc(len);
            for (size_t j = 0; j < len; j++) k->on[i][j] = ws->act[n->in[0]][j] > 0.0f;
        } else {
            k->arg[i] = xmalloc(len * sizeof(int));
            memcpy(k->arg[i], ws->aux[i], len * sizeof(int));
        }
    }
}

// Frees what kinks_save allocated.
static void kinks_free(Kinks *k) {
    for (int i = 0; i < k->n_nodes; i++) {
        free(k->on[i]);
        free(k->arg[i]);
        free(k->g[i]);
    }
    free(k->on);
    free(k->arg);
    free(k->g);
}

// Returns the first-order change of the loss due to the kinks crossed between the base point
// and the last forward pass (see above); adds the number of units that changed side to *flips.
static double kink_effect(const Kinks *k, const Model *m, const Workspace *ws, int N, int *flips) {
    double s = 0.0;
    for (int i = 1; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        size_t len = (size_t)N * shape_numel(n->out);
        const float *x = ws->act[n->in[0]], *y = ws->act[i];
        if (n->op == OP_RELU) {
            for (size_t j = 0; j < len; j++) {
                bool on = x[j] > 0.0f;
                if (on == (bool)k->on[i][j]) continue;
                s += (double)k->g[i][j] * (on ? x[j] : -x[j]);  // relu(p) - on0 * p
                ++*flips;
            }
        } else if (n->op == OP_MAXPOOL2D) {
            Shape in = m->nodes[n->in[0]].out;
            size_t in_plane = (size_t)in.h * in.w, out_plane = (size_t)n->out.h * n->out.w;
            const int *arg = (const int *)ws->aux[i];
            for (size_t j = 0; j < len; j++) {
                if (arg[j] == k->arg[i][j]) continue;
                s += (double)k->g[i][j] * (y[j] - x[(j / out_plane) * in_plane + (size_t)k->arg[i][j]]);
                ++*flips;
            }
        }
    }
    return s;
}

// ---- the check ----

// One gradient-check problem: a model in a mode on a fixed batch, with its base-point kinks.
typedef struct {
    Model *m;
    Workspace *ws;
    float *x;  // (N, C, H, W)
    const int *labels;
    int N;
    Mode mode;
    const Kinks *kinks;
} GcCase;

// Loss at the current parameters and input, minus the first-order effect of crossed kinks.
static double smooth_loss(const GcCase *gc, int *flips) {
    double l = model_loss(gc->m, gc->ws, gc->x, gc->labels, gc->N, gc->mode);
    return l - kink_effect(gc->kinks, gc->m, gc->ws, gc->N, flips);
}

// Kink-corrected central difference of the loss in coordinate i of array a, step h; a[i] is
// restored exactly. Adds the units that changed side to *flips.
static double fd_at(const GcCase *gc, float *a, size_t i, float h, int *flips) {
    float a0 = a[i], ap = a0 + h, am = a0 - h;
    a[i] = ap;
    double lp = smooth_loss(gc, flips);
    a[i] = am;
    double lm = smooth_loss(gc, flips);
    a[i] = a0;
    return (lp - lm) / ((double)ap - (double)am);
}

// Compares the analytic gradient an (len) of array a (the parameters or the input) at the
// coordinates idx[0..n) with kink-corrected central differences of the loss. A coordinate
// outside the tolerance at GC_STEP is retried at half and a quarter of the step (what is left of
// the kinks at second order, and float32 rounding, change with the step; a wrong gradient does
// not). Prints a summary under label; returns the fraction of coordinates that pass.
static double fd_compare(const GcCase *gc, const char *label, float *a, const float *an, size_t len,
                         const size_t *idx, size_t n) {
    double scale = GC_SCALE_FRAC * rms(an, len), worst = 0.0;
    float *fd = xmalloc(n * sizeof(float)), *sel = xmalloc(n * sizeof(float));
    size_t pass = 0, retried = 0, kinked = 0;
    int flips = 0;
    for (size_t j = 0; j < n; j++) {
        size_t i = idx[j];
        double bound = GC_REL * fmax(fabs(an[i]), scale), dev = INFINITY;
        float h = GC_STEP;
        for (int t = 0; t < GC_TRIES && dev > bound; t++, h *= 0.5f) {
            int f = 0;
            double d = fd_at(gc, a, i, h, &f);
            if (t == 0) {
                fd[j] = (float)d;
                kinked += f > 0;
                flips += f;
            }
            retried += t == 1;
            dev = fmin(dev, fabs(d - an[i]));
        }
        sel[j] = an[i];
        pass += dev <= bound;
        worst = fmax(worst, dev / bound);
    }
    double frac = (double)pass / (double)n;
    fprintf(stderr,
            "  %-6s %3zu coords: %5.1f%% pass (%zu after a smaller step; worst dev/tol %.2f), vector rel err at"
            " step %.0e %.1e, %zu steps crossed kinks (%d units)\n",
            label, n, 100.0 * frac, retried, worst, (double)GC_STEP, tu_rel_err(sel, fd, n), kinked, flips);
    free(fd);
    free(sel);
    return frac;
}

// Gradient-checks model m (parameters already set) in one mode: about 200 parameter
// coordinates and GC_N_INPUT input coordinates.
static void grad_check_mode(Model *m, Mode mode, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 7);
    Workspace ws;
    assert_int_equal(ws_init(&ws, m, GC_BATCH, N_THREADS, NULL), 0);
    size_t nx = (size_t)GC_BATCH * shape_numel(m->input);
    float *x = xmalloc(nx * sizeof(float)), *dx = xmalloc(nx * sizeof(float));
    for (size_t i = 0; i < nx; i++) x[i] = rng_normal(&rng);
    int labels[GC_BATCH];
    for (int n = 0; n < GC_BATCH; n++) labels[n] = (int)rng_below(&rng, (uint64_t)m->n_classes);
    // analytic gradient: dlogits from softmax_xent, backward into a zeroed gradient
    const float *z = model_forward(m, &ws, x, GC_BATCH, mode, NULL);
    float *dz = xmalloc((size_t)GC_BATCH * m->n_classes * sizeof(float));
    float loss = softmax_xent(z, labels, GC_BATCH, m->n_classes, 0.0f, dz, NULL);
    assert_float_equal(loss, xent_d(z, labels, GC_BATCH, m->n_classes), 1e-5);
    float *grad = xcalloc(m->n_params, sizeof(float));
    model_backward(m, &ws, dz, grad, dx);
    Kinks kinks;
    kinks_save(&kinks, m, &ws, GC_BATCH);
    GcCase gc = {m, &ws, x, labels, GC_BATCH, mode, &kinks};
    size_t cap = 512, *idx = xmalloc(cap * sizeof(size_t));
    fprintf(stderr, "%s in %s (%zu params, loss %.4f)\n", m->arch, mode == MODE_EVAL ? "MODE_EVAL" : "MODE_BATCHSTATS",
            m->n_params, (double)loss);
    size_t n = pick_params(m, &rng, GC_N_PARAMS, idx, cap);
    double fp = fd_compare(&gc, "params", m->params, grad, m->n_params, idx, n);
    n = pick_distinct(&rng, nx, GC_N_INPUT, idx);
    double fx = fd_compare(&gc, "input", x, dx, nx, idx, n);
    assert_true(fp >= GC_MIN_PASS);
    assert_true(fx >= GC_MIN_PASS);
    kinks_free(&kinks);
    free(idx);
    free(grad);
    free(dz);
    free(x);
    free(dx);
    ws_free(&ws);
}

// Initialises m's parameters from seed, perturbs batchnorm, and gradient-checks both modes.
static void grad_check_model(Model *m, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 8);
    model_init_params(m, &rng);
    perturb_bn(m, &rng);
    grad_check_mode(m, MODE_EVAL, seed + 1);
    grad_check_mode(m, MODE_BATCHSTATS, seed + 2);
}

// A small ResNet on `input`: conv-bn-relu stem (8 channels), one basic block to 16 channels at
// stride 2 with a 1x1 conv-bn projection shortcut, add, relu, gap, flatten, dropout, linear.
static void build_small_resnet(Model *m, Shape input, int n_classes) {
    HpErr err = {{0}};
    model_init(m, input, n_classes);
    int x = mb_input(m, &err);
    tu_expect_ok(x = mb_conv(m, "conv1", x, 8, 3, 1, 1, 1, false, &err), &err);
    tu_expect_ok(x = mb_bn(m, "bn1", x, &err), &err);
    int stem;
    tu_expect_ok(stem = mb_relu(m, "relu", x, &err), &err);
    tu_expect_ok(x = mb_conv(m, "block.conv1", stem, 16, 3, 2, 1, 1, false, &err), &err);
    tu_expect_ok(x = mb_bn(m, "block.bn1", x, &err), &err);
    tu_expect_ok(x = mb_relu(m, "block.relu1", x, &err), &err);
    tu_expect_ok(x = mb_conv(m, "block.conv2", x, 16, 3, 1, 1, 1, false, &err), &err);
    int main_path;
    tu_expect_ok(main_path = mb_bn(m, "block.bn2", x, &err), &err);
    tu_expect_ok(x = mb_conv(m, "block.shortcut.0", stem, 16, 1, 2, 0, 1, false, &err), &err);
    tu_expect_ok(x = mb_bn(m, "block.shortcut.1", x, &err), &err);
    tu_expect_ok(x = mb_add(m, "block.add", main_path, x, &err), &err);
    tu_expect_ok(x = mb_relu(m, "block.relu2", x, &err), &err);
    tu_expect_ok(x = mb_gap(m, "avgpool", x, &err), &err);
    tu_expect_ok(x = mb_flatten(m, "flatten", x, &err), &err);
    tu_expect_ok(x = mb_dropout(m, "dropout", x, 0.5f, &err), &err);
    tu_expect_ok(x = mb_linear(m, "fc", x, n_classes, true, &err), &err);
    tu_expect_ok(model_finalize(m, &err), &err);
    snprintf(m->arch, sizeof m->arch, "small_resnet");
}

// ---- gradient checks ----

static void test_grad_lenet5(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    tu_expect_ok(arch_build(&m, "lenet5", (Shape){1, 12, 12}, 4, &err), &err);
    grad_check_model(&m, 100);
    model_free(&m);
}

static void test_grad_small_resnet(void **state) {
    (void)state;
    Model m;
    build_small_resnet(&m, (Shape){2, 8, 8}, 3);
    grad_check_model(&m, 200);
    model_free(&m);
}

static void test_grad_resnet20(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    tu_expect_ok(arch_build(&m, "resnet20", (Shape){1, 8, 8}, 3, &err), &err);
    grad_check_model(&m, 300);
    model_free(&m);
}

// ---- inference with fused ops ----

// Asserts that MODE_INFER gives MODE_EVAL's logits (to float rounding) on m at random
// parameters with non-trivial batchnorm, and that an eval forward and backward still work after
// it; returns the number of residual adds the fused pass folded into a convolution.
static int check_infer_matches_eval(Model *m, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 9);
    model_init_params(m, &rng);
    perturb_bn(m, &rng);
    for (size_t j = 0; j < m->n_params; j++) m->params[j] += 0.05f * (rng_uniform(&rng) - 0.5f);  // biases too
    const int N = 3, K = m->n_classes;
    size_t nx = (size_t)N * shape_numel(m->input);
    float *x = xmalloc(nx * sizeof(float)), *z_eval = xmalloc((size_t)N * K * sizeof(float));
    tu_fill_uniform(x, nx, -1, 1, &rng);
    Workspace ws;
    assert_int_equal(ws_init(&ws, m, N, N_THREADS, NULL), 0);
    memcpy(z_eval, model_forward(m, &ws, x, N, MODE_EVAL, NULL), (size_t)N * K * sizeof(float));
    const float *z_infer = model_forward(m, &ws, x, N, MODE_INFER, NULL);
    int fused = 0, adds = 0;  // nodes computed by the op before them: the fusion really ran
    for (int i = 0; i < m->n_nodes; i++) {
        fused += ws.skip[i];
        adds += ws.skip[i] && m->nodes[i].op == OP_ADD;
    }
    assert_true(fused > 0);
    double worst = 0.0, scale = 0.0;
    for (int i = 0; i < N * K; i++) {
        worst = fmax(worst, fabs((double)z_infer[i] - z_eval[i]));
        scale = fmax(scale, fabs(z_eval[i]));
    }
    fprintf(stderr, "%-14s MODE_INFER (%d nodes fused away) vs MODE_EVAL logits: max abs diff %.2e (max |z| %.2f)\n",
            m->arch, fused, worst, scale);
    assert_true(worst <= 1e-5 * (1.0 + scale));
    // the eval path is untouched by the fused pass before it
    model_forward(m, &ws, x, N, MODE_EVAL, NULL);
    float *dlogits = xcalloc((size_t)N * K, sizeof(float)), *grad = xcalloc(m->n_params, sizeof(float));
    dlogits[0] = 1.0f;
    model_backward(m, &ws, dlogits, grad, NULL);
    ws_free(&ws);
    free(x), free(z_eval), free(dlogits), free(grad);
    return adds;
}

// Every built-in architecture, a ResNet with a projection shortcut and dropout, and a conv with
// bias before its batchnorm (the bias folds into the batchnorm shift).
static void test_infer_matches_eval(void **state) {
    (void)state;
    HpErr err = {{0}};
    uint64_t seed = 400;
    for (const char *const *a = arch_names(); *a; a++) {
        Model m;
        tu_expect_ok(arch_build(&m, *a, (Shape){1, 28, 28}, 10, &err), &err);
        int adds = check_infer_matches_eval(&m, seed++);
        if (strncmp(*a, "resnet", 6) == 0) assert_true(adds > 0);  // residual adds folded too
        model_free(&m);
    }
    Model m;
    build_small_resnet(&m, (Shape){2, 8, 8}, 3);
    assert_true(check_infer_matches_eval(&m, seed++) > 0);
    model_free(&m);
    model_init(&m, (Shape){2, 6, 6}, 3);
    int x = mb_input(&m, &err);
    tu_expect_ok(x = mb_conv(&m, "conv", x, 5, 3, 1, 1, 1, true, &err), &err);
    tu_expect_ok(x = mb_bn(&m, "bn", x, &err), &err);
    tu_expect_ok(x = mb_relu(&m, "relu", x, &err), &err);
    tu_expect_ok(x = mb_gap(&m, "avgpool", x, &err), &err);
    tu_expect_ok(x = mb_flatten(&m, "flatten", x, &err), &err);
    tu_expect_ok(x = mb_linear(&m, "fc", x, 3, true, &err), &err);
    tu_expect_ok(model_finalize(&m, &err), &err);
    snprintf(m.arch, sizeof m.arch, "conv_bias_bn");
    check_infer_matches_eval(&m, seed++);
    model_free(&m);
}

// ---- training ----

#define SYN_N 256
#define SYN_CLASSES 4
#define SYN_HW 8
#define SYN_BATCH 32

// A synthetic task: SYN_CLASSES random +-1 patterns of 1 x SYN_HW x SYN_HW; sample i is the
// pattern of class i % SYN_CLASSES plus Gaussian noise of std 1. x (SYN_N, 1, 8, 8), y (SYN_N).
static void make_synthetic(float *x, int *y, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 9);
    const int P = SYN_HW * SYN_HW;
    float pat[SYN_CLASSES][SYN_HW * SYN_HW];
    for (int c = 0; c < SYN_CLASSES; c++)
        for (int p = 0; p < P; p++) pat[c][p] = rng_uniform(&rng) < 0.5f ? -1.0f : 1.0f;
    for (int i = 0; i < SYN_N; i++) {
        y[i] = i % SYN_CLASSES;
        for (int p = 0; p < P; p++) x[(size_t)i * P + p] = pat[y[i]][p] + rng_normal(&rng);
    }
}

// A small conv net for 1x8x8 inputs: conv(8, 3x3, pad 1)-bn-relu-maxpool 2-flatten-dropout-linear.
static void build_small_convnet(Model *m) {
    HpErr err = {{0}};
    model_init(m, (Shape){1, SYN_HW, SYN_HW}, SYN_CLASSES);
    int x = mb_input(m, &err);
    tu_expect_ok(x = mb_conv(m, "conv1", x, 8, 3, 1, 1, 1, true, &err), &err);
    tu_expect_ok(x = mb_bn(m, "bn1", x, &err), &err);
    tu_expect_ok(x = mb_relu(m, "relu1", x, &err), &err);
    tu_expect_ok(x = mb_maxpool(m, "pool1", x, 2, 2, 0, &err), &err);
    tu_expect_ok(x = mb_flatten(m, "flatten", x, &err), &err);
    tu_expect_ok(x = mb_dropout(m, "dropout", x, 0.1f, &err), &err);
    tu_expect_ok(x = mb_linear(m, "fc", x, SYN_CLASSES, true, &err), &err);
    tu_expect_ok(model_finalize(m, &err), &err);
}

// Mean loss of m (MODE_EVAL) over the whole synthetic set; ws takes SYN_N samples.
static double synthetic_loss(Model *m, Workspace *ws, const float *x, const int *y) {
    return model_loss(m, ws, x, y, SYN_N, MODE_EVAL);
}

// Runs `steps` SGD steps (MODE_TRAIN, lr 0.05, momentum 0.9) on shuffled batches of SYN_BATCH,
// drawing batch order and dropout masks from rng. momentum (n_params) carries across calls.
static void train_steps(Model *m, Workspace *ws, const float *x, const int *y, int steps, Rng *rng, float *momentum) {
    const size_t P = (size_t)SYN_HW * SYN_HW;
    int order[SYN_N], by[SYN_BATCH];
    float *bx = xmalloc(SYN_BATCH * P * sizeof(float)), dz[SYN_BATCH * SYN_CLASSES];
    float *grad = xmalloc(m->n_params * sizeof(float));
    for (int i = 0; i < SYN_N; i++) order[i] = i;
    for (int s = 0; s < steps; s++) {
        int b0 = (s * SYN_BATCH) % SYN_N;
        if (b0 == 0) rng_shuffle(rng, order, SYN_N);
        for (int j = 0; j < SYN_BATCH; j++) {
            by[j] = y[order[b0 + j]];
            memcpy(bx + j * P, x + (size_t)order[b0 + j] * P, P * sizeof(float));
        }
        const float *z = model_forward(m, ws, bx, SYN_BATCH, MODE_TRAIN, rng);
        softmax_xent(z, by, SYN_BATCH, SYN_CLASSES, 0.0f, dz, NULL);
        memset(grad, 0, m->n_params * sizeof(float));
        model_backward(m, ws, dz, grad, NULL);
        sgd_step(m->params, grad, momentum, m->n_params, 0.05f, 0.9f, 0.0f, false);
    }
    free(bx);
    free(grad);
}

// 100 SGD steps take the loss on the synthetic set below 0.3 of its initial value.
static void test_training_reduces_loss(void **state) {
    (void)state;
    float *x = xmalloc((size_t)SYN_N * SYN_HW * SYN_HW * sizeof(float));
    int y[SYN_N];
    make_synthetic(x, y, 5);
    Model m;
    build_small_convnet(&m);
    Rng rng;
    rng_seed(&rng, 6, 10);
    model_init_params(&m, &rng);
    Workspace ws;
    assert_int_equal(ws_init(&ws, &m, SYN_N, N_THREADS, NULL), 0);
    float *mom = xcalloc(m.n_params, sizeof(float));
    double l0 = synthetic_loss(&m, &ws, x, y);
    train_steps(&m, &ws, x, y, 100, &rng, mom);
    double l1 = synthetic_loss(&m, &ws, x, y);
    fprintf(stderr, "synthetic task: loss %.4f -> %.4f after 100 steps (ratio %.3f)\n", l0, l1, l1 / l0);
    assert_true(l1 < 0.3 * l0);
    free(mom);
    free(x);
    ws_free(&ws);
    model_free(&m);
}

// Trains a fresh model 5 steps from seed; leaves it in m (caller frees).
static void train_five(Model *m, const float *x, const int *y, uint64_t seed) {
    build_small_convnet(m);
    Rng rng;
    rng_seed(&rng, seed, 11);
    model_init_params(m, &rng);
    Workspace ws;
    assert_int_equal(ws_init(&ws, m, SYN_BATCH, N_THREADS, NULL), 0);
    float *mom = xcalloc(m->n_params, sizeof(float));
    train_steps(m, &ws, x, y, 5, &rng, mom);
    free(mom);
    ws_free(&ws);
}

// Same seed and thread count: bit-identical parameters and running statistics after 5 steps.
static void test_determinism(void **state) {
    (void)state;
    float *x = xmalloc((size_t)SYN_N * SYN_HW * SYN_HW * sizeof(float));
    int y[SYN_N];
    make_synthetic(x, y, 7);
    Model a, b, c;
    train_five(&a, x, y, 42);
    train_five(&b, x, y, 42);
    train_five(&c, x, y, 43);
    assert_int_equal(a.n_params, b.n_params);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    assert_memory_equal(a.buffers, b.buffers, a.n_buffers * sizeof(float));
    assert_memory_not_equal(a.params, c.params, a.n_params * sizeof(float));  // the seed matters
    free(x);
    model_free(&a);
    model_free(&b);
    model_free(&c);
}

// ---- accumulation ----

// model_backward adds to the parameter gradient (a second pass doubles it) and overwrites dx.
static void test_backward_accumulates(void **state) {
    (void)state;
    Model m;
    build_small_resnet(&m, (Shape){2, 8, 8}, 3);
    Rng rng;
    rng_seed(&rng, 13, 13);
    model_init_params(&m, &rng);
    perturb_bn(&m, &rng);
    Workspace ws;
    assert_int_equal(ws_init(&ws, &m, 3, N_THREADS, NULL), 0);
    size_t nx = 3 * shape_numel(m.input);
    float *x = xmalloc(nx * sizeof(float)), *dx1 = xmalloc(nx * sizeof(float));
    float *dx2 = xmalloc(nx * sizeof(float));
    tu_fill_uniform(x, nx, -1, 1, &rng);
    const int labels[3] = {0, 2, 1};
    float dz[9];
    softmax_xent(model_forward(&m, &ws, x, 3, MODE_BATCHSTATS, NULL), labels, 3, 3, 0.0f, dz, NULL);
    float *g1 = xcalloc(m.n_params, sizeof(float)), *g2 = xcalloc(m.n_params, sizeof(float));
    model_backward(&m, &ws, dz, g1, dx1);
    for (size_t i = 0; i < nx; i++) dx2[i] = NAN;
    model_backward(&m, &ws, dz, g2, NULL);
    model_backward(&m, &ws, dz, g2, dx2);
    for (size_t i = 0; i < m.n_params; i++) g1[i] *= 2.0f;
    assert_true(tu_rel_err(g2, g1, m.n_params) < 1e-6);
    assert_memory_equal(dx1, dx2, nx * sizeof(float));
    free(x);
    free(dx1);
    free(dx2);
    free(g1);
    free(g2);
    ws_free(&ws);
    model_free(&m);
}

// ---- model_copy ----

// A copy gives bit-identical logits and owns its buffers (editing it leaves the source alone).
static void test_model_copy(void **state) {
    (void)state;
    Model m, c;
    build_small_resnet(&m, (Shape){2, 8, 8}, 3);
    Rng rng;
    rng_seed(&rng, 12, 12);
    model_init_params(&m, &rng);
    perturb_bn(&m, &rng);
    assert_int_equal(model_copy(&c, &m, NULL), 0);
    size_t nx = 3 * shape_numel(m.input), nz = 3 * (size_t)m.n_classes;
    float *x = xmalloc(nx * sizeof(float)), za[9];
    tu_fill_uniform(x, nx, -1, 1, &rng);
    Workspace wa, wc;
    assert_int_equal(ws_init(&wa, &m, 3, N_THREADS, NULL), 0);
    assert_int_equal(ws_init(&wc, &c, 3, N_THREADS, NULL), 0);
    memcpy(za, model_forward(&m, &wa, x, 3, MODE_EVAL, NULL), nz * sizeof(float));
    assert_memory_equal(za, model_forward(&c, &wc, x, 3, MODE_EVAL, NULL), nz * sizeof(float));
    assert_int_equal(c.n_nodes, m.n_nodes);
    assert_string_equal(c.nodes[5].name, m.nodes[5].name);
    assert_ptr_not_equal(c.params, m.params);
    assert_ptr_not_equal(c.buffers, m.buffers);
    assert_ptr_not_equal(c.nodes, m.nodes);
    c.params[0] += 1.0f;
    c.buffers[0] += 1.0f;
    assert_memory_equal(za, model_forward(&m, &wa, x, 3, MODE_EVAL, NULL), nz * sizeof(float));
    free(x);
    ws_free(&wa);
    ws_free(&wc);
    model_free(&m);
    model_free(&c);
}

// ---- out of memory ----

// hp_alloc and hp_zalloc: at least one byte for a zero size; NULL with the size in the message
// when the system refuses, or when count * size overflows.
static void test_alloc_errors(void **state) {
    (void)state;
    HpErr err = {{0}};
    void *p = hp_alloc(0, 4, &err), *q = hp_zalloc(3, 0, &err);
    assert_non_null(p);
    assert_non_null(q);
    free(p), free(q);
    assert_null(hp_alloc((size_t)1 << 50, 1, &err));  // a petabyte
    assert_string_equal(err.msg, "out of memory: cannot allocate 1.1 PB");
    assert_null(hp_zalloc(SIZE_MAX / 2, 4, &err));
    assert_non_null(strstr(err.msg, "more than the address space"));
    assert_null(hp_alloc(SIZE_MAX / 2, 4, NULL));  // err may be NULL
}

// A workspace the machine cannot hold: ws_init returns -1, says which batch, and leaves ws
// empty (ws_free on it is harmless).
static void test_ws_init_out_of_memory(void **state) {
    (void)state;
    Model m;
    build_small_resnet(&m, (Shape){2, 8, 8}, 3);
    Workspace ws;
    HpErr err = {{0}};
    assert_int_equal(ws_init(&ws, &m, 1 << 30, N_THREADS, &err), -1);  // about 1.5 PB of activations
    assert_non_null(strstr(err.msg, "the workspace for batches of 1073741824: out of memory: cannot allocate"));
    assert_null(ws.block);
    assert_null(ws.act);
    ws_free(&ws);
    model_free(&m);
}

// ---- graphs the builder rejects ----

// Asserts that the builder call returned -1 with a message naming node `name`, and that the
// model kept its previous nodes.
static void expect_reject(int rc, const HpErr *err, const Model *m, int n_before, const char *name) {
    fprintf(stderr, "rejected: %s\n", err->msg);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err->msg, name));
    assert_int_equal(m->n_nodes, n_before);
}

// Starts a model on a 3x6x6 input with an input node and one 4-channel 3x3 conv "c1" (6x6 out).
static int start_model(Model *m, HpErr *err) {
    model_init(m, (Shape){3, 6, 6}, 2);
    int x = mb_input(m, err);
    tu_expect_ok(x, err);
    tu_expect_ok(x = mb_conv(m, "c1", x, 4, 3, 1, 1, 1, false, err), err);
    return x;
}

static void test_reject_linear_without_flatten(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    int x = start_model(&m, &err);
    expect_reject(mb_linear(&m, "fc_unflat", x, 2, true, &err), &err, &m, 2, "fc_unflat");
    model_free(&m);
}

static void test_reject_add_mismatch(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    int x = start_model(&m, &err), y;
    tu_expect_ok(y = mb_conv(&m, "c2", x, 5, 3, 1, 1, 1, false, &err), &err);  // 5 channels, c1 has 4
    expect_reject(mb_add(&m, "add_bad", x, y, &err), &err, &m, 3, "add_bad");
    tu_expect_ok(y = mb_conv(&m, "c3", x, 4, 3, 2, 1, 1, false, &err), &err);  // 4 channels but 3x3
    expect_reject(mb_add(&m, "add_bad2", x, y, &err), &err, &m, 4, "add_bad2");
    model_free(&m);
}

static void test_reject_kernel_too_large(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    int x = start_model(&m, &err);
    expect_reject(mb_conv(&m, "conv_big", x, 4, 7, 1, 0, 1, false, &err), &err, &m, 2, "conv_big");
    expect_reject(mb_maxpool(&m, "pool_big", x, 7, 1, 0, &err), &err, &m, 2, "pool_big");
    model_free(&m);
}

// Shapes near INT_MAX are inferred in 64 bits: a window over an input INT_MAX wide fits, one whose
// output would be wider is refused, and so is a flatten to more than INT_MAX features.
static void test_huge_shapes(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    model_init(&m, (Shape){1, 1, INT_MAX}, 2);
    int x = mb_input(&m, &err), y;
    tu_expect_ok(x, &err);
    tu_expect_ok(y = mb_conv(&m, "c1", x, 6, 5, 1, 2, 1, false, &err), &err);
    assert_int_equal(m.nodes[y].out.w, INT_MAX);
    assert_int_equal(m.nodes[y].out.h, 1);
    expect_reject(mb_conv(&m, "c_wide", x, 6, 5, 1, 4, 1, false, &err), &err, &m, 2, "c_wide");
    assert_non_null(strstr(err.msg, "too large"));
    expect_reject(mb_flatten(&m, "flat", y, &err), &err, &m, 2, "flat");
    assert_non_null(strstr(err.msg, "features"));
    model_free(&m);
}

static void test_reject_bad_groups(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    int x = start_model(&m, &err);  // 4 channels
    expect_reject(mb_conv(&m, "conv_g3", x, 6, 3, 1, 1, 3, false, &err), &err, &m, 2, "conv_g3");
    expect_reject(mb_conv(&m, "conv_g2o", x, 3, 3, 1, 1, 2, false, &err), &err, &m, 2, "conv_g2o");
    model_free(&m);
}

static void test_reject_duplicate_name(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    int x = start_model(&m, &err);
    expect_reject(mb_relu(&m, "c1", x, &err), &err, &m, 2, "c1");
    assert_non_null(strstr(err.msg, "duplicate"));
    model_free(&m);
}

// model_finalize rejects a graph whose last node is not (n_classes, 1, 1), naming that node.
static void test_reject_bad_head(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    int x = start_model(&m, &err);
    tu_expect_ok(x = mb_gap(&m, "gap_head", x, &err), &err);  // 4 x 1 x 1 but 2 classes
    int rc = model_finalize(&m, &err);
    fprintf(stderr, "rejected: %s\n", err.msg);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, "gap_head"));
    model_free(&m);
}

// ---- counts ----

// Sums node_params and node_macs over the graph.
static void count_model(const Model *m, size_t *params, uint64_t *macs) {
    *params = 0;
    *macs = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        *params += node_params(m, i);
        *macs += node_macs(m, i);
    }
}

// Parameters of a 3x3 conv without bias, and of a batchnorm (weight and bias).
static size_t conv3(size_t cin, size_t cout) { return cout * cin * 9; }
static size_t bn(size_t c) { return 2 * c; }

// ResNet-20 (CIFAR, 1x1 projection shortcuts) on 3x32x32, 10 classes, counted by hand:
// stem conv 3->16 + bn; stage 1: 3 blocks of two 16->16 convs + bns; stages 2 and 3: a first
// block with a stride-2 conv c->2c, a 2c->2c conv and a 1x1 projection c->2c (each with bn),
// then 2 blocks of two 2c->2c convs + bns; fc 64->10 with bias. Total 272474 (0.27M).
// MACs per image: every conv weight is used once per output pixel (32x32, 16x16, 8x8 by stage).
static void test_counts_resnet20(void **state) {
    (void)state;
    size_t stem = conv3(3, 16) + bn(16);
    size_t stage1 = 3 * (2 * conv3(16, 16) + 2 * bn(16));
    size_t stage2 = conv3(16, 32) + conv3(32, 32) + 32 * 16 + 3 * bn(32) + 2 * (2 * conv3(32, 32) + 2 * bn(32));
    size_t stage3 = conv3(32, 64) + conv3(64, 64) + 64 * 32 + 3 * bn(64) + 2 * (2 * conv3(64, 64) + 2 * bn(64));
    size_t fc = 64 * 10 + 10, want = stem + stage1 + stage2 + stage3 + fc;
    assert_int_equal(want, 272474);
    uint64_t macs_want = (uint64_t)conv3(3, 16) * 1024 + (uint64_t)6 * conv3(16, 16) * 1024 +
                         ((uint64_t)conv3(16, 32) + 5 * conv3(32, 32) + 32 * 16) * 256 +
                         ((uint64_t)conv3(32, 64) + 5 * conv3(64, 64) + 64 * 32) * 64 + 64 * 10;
    Model m;
    HpErr err = {{0}};
    tu_expect_ok(arch_build(&m, "resnet20", (Shape){3, 32, 32}, 10, &err), &err);
    size_t params;
    uint64_t macs;
    count_model(&m, &params, &macs);
    fprintf(stderr, "resnet20 3x32x32/10: %zu params (%.2fM), %llu MACs (%.2fM)\n", params, params / 1e6,
            (unsigned long long)macs, macs / 1e6);
    assert_int_equal(m.n_params, want);
    assert_int_equal(params, want);
    assert_int_equal(macs, macs_want);
    assert_int_equal(macs_want, 40813184);
    model_free(&m);
}

// LeNet-5 on 1x28x28, 10 classes: 6*1*25+6 + 16*6*25+16 + 400*120+120 + 120*84+84 + 84*10+10
// = 61706 parameters; MACs 6*28*28*25 + 16*10*10*150 + 400*120 + 120*84 + 84*10 = 416520.
static void test_counts_lenet5(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    tu_expect_ok(arch_build(&m, "lenet5", (Shape){1, 28, 28}, 10, &err), &err);
    size_t params;
    uint64_t macs;
    count_model(&m, &params, &macs);
    fprintf(stderr, "lenet5 1x28x28/10: %zu params, %llu MACs\n", params, (unsigned long long)macs);
    assert_int_equal(6 * 1 * 25 + 6 + 16 * 6 * 25 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10, 61706);
    assert_int_equal(m.n_params, 61706);
    assert_int_equal(params, 61706);
    assert_int_equal(macs, 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10);
    model_free(&m);
}

int main(void) {
    omp_set_num_threads(N_THREADS);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_lenet5),
        cmocka_unit_test(test_grad_small_resnet),
        cmocka_unit_test(test_grad_resnet20),
        cmocka_unit_test(test_infer_matches_eval),
        cmocka_unit_test(test_training_reduces_loss),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_model_copy),
        cmocka_unit_test(test_reject_linear_without_flatten),
        cmocka_unit_test(test_reject_add_mismatch),
        cmocka_unit_test(test_reject_kernel_too_large),
        cmocka_unit_test(test_huge_shapes),
        cmocka_unit_test(test_reject_bad_groups),
        cmocka_unit_test(test_reject_duplicate_name),
        cmocka_unit_test(test_reject_bad_head),
        cmocka_unit_test(test_counts_resnet20),
        cmocka_unit_test(test_counts_lenet5),
        cmocka_unit_test(test_alloc_errors),
        cmocka_unit_test(test_ws_init_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
