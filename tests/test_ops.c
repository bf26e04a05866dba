// test_ops.c: every op kernel's backward (input and parameter gradients) against central
// finite differences of the scalar L = sum(r * y), r fixed and random (so dL/dy = r), on
// small random tensors, with 2 OpenMP threads and per-thread scratch. Also shows that the
// tolerance is tight enough to catch one dropped term of the batchnorm train-mode derivative.
// Convolution (every kernel) and pooling forwards are also checked against their definitions.
#include <float.h>
#include <omp.h>

#include <cblas.h>

#include "testutil.h"

#include "nn/conv_direct.h"
#include "nn/conv_winograd.h"
#include "nn/nn.h"
#include "nn/ops.h"

#define N_THREADS 2
#define FD_STEP 1e-2f  // central-difference step (float32 engine)
#define TOL 5e-3       // largest relative error ||fd - an|| / ||fd|| accepted
#define ACC0 1.0f      // gradient buffers start here: backward with acc must add (+=), not assign

// ---- the finite-difference harness ----

// An op under test: fwd(ctx, y) recomputes its output y (ny floats) from the arrays ctx points
// to. L = sum r * y, accumulated in double.
typedef struct {
    void (*fwd)(void *ctx, float *y);
    void *ctx;
    size_t ny;
    const float *r;  // (ny)
    float *y;        // (ny) scratch for fwd
} Probe;

// Returns L = sum_i r_i y_i at the current values of the op's arrays.
static double probe_loss(const Probe *p) {
    p->fwd(p->ctx, p->y);
    double s = 0.0;
    for (size_t i = 0; i < p->ny; i++) s += (double)p->r[i] * p->y[i];
    return s;
}

// fd[i] = (L(a + h e_i) - L(a - h e_i)) / (2h) for i < n, using the float-rounded step;
// a is restored exactly.
static void fd_grad(const Probe *p, float *a, size_t n, float *fd) {
    for (size_t i = 0; i < n; i++) {
        float a0 = a[i], ap = a0 + FD_STEP, am = a0 - FD_STEP;
        a[i] = ap;
        double lp = probe_loss(p);
        a[i] = am;
        double lm = probe_loss(p);
        a[i] = a0;
        fd[i] = (float)((lp - lm) / ((double)ap - (double)am));
    }
}

// Relative error of the analytic gradient an (n) of array a against finite differences.
static double fd_rel_err(const Probe *p, float *a, size_t n, const float *an) {
    float *fd = xmalloc(n * sizeof(float));
    fd_grad(p, a, n, fd);
    double e = tu_rel_err(an, fd, n);
    free(fd);
    return e;
}

// Checks gradient an (n, started at ACC0 and accumulated into by backward) of array a against
// finite differences; prints the error under label and asserts it is below TOL.
static void check_grad(const char *label, const Probe *p, float *a, size_t n, float *an) {
    for (size_t i = 0; i < n; i++) an[i] -= ACC0;
    double e = fd_rel_err(p, a, n, an);
    fprintf(stderr, "  %-34s rel err %.2e\n", label, e);
    assert_true(e < TOL);
}

// Returns n floats, uniform in [lo, hi).
static float *rand_buf(size_t n, float lo, float hi, Rng *rng) {
    float *a = xmalloc(n * sizeof(float));
    tu_fill_uniform(a, n, lo, hi, rng);
    return a;
}

// Returns n floats, all ACC0 (a gradient buffer for backward to accumulate into).
static float *acc_buf(size_t n) {
    float *a = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = ACC0;
    return a;
}

// Returns n floats, all NaN (scratch the kernel must initialise itself).
static float *nan_buf(size_t n) {
    float *a = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = NAN;
    return a;
}

// The larger of worst and d, NaN once either is NaN (fmax would drop a NaN: an output left
// unwritten in a NaN-filled buffer must fail the check it is measured by).
static double worse(double worst, double d) { return d > worst || isnan(d) ? d : worst; }

// Checks that a backward run without acc into NaN-filled assigned (n) wrote every value, and
// the same values as the run with acc added to ACC0 in added (n); frees assigned.
static void check_assigns(const char *label, const float *added, float *assigned, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        assert_false(isnan(assigned[i]));
        worst = fmax(worst, fabs((double)added[i] - ACC0 - assigned[i]) / (1.0 + fabs(assigned[i])));
    }
    fprintf(stderr, "  %-34s max diff %.2e\n", label, worst);
    assert_true(worst < 1e-5);
    free(assigned);
}

// ---- conv2d ----

typedef struct {
    ConvGeom g;
    float *x, *w, *b;  // x (N, C, H, W), w (O, C/groups, k, k), b (O) or NULL
    float *col;        // N_THREADS * col_len
    size_t col_len;
} ConvCtx;

// Probe forward: y (N, O, Ho, Wo) = conv(x).
static void conv_fwd(void *ctx, float *y) {
    ConvCtx *c = ctx;
    conv2d_forward(&c->g, c->x, c->w, c->b, y, c->col, c->col_len);
}

// Direct convolution by its definition, in double: y (N, O, Ho, Wo).
static void conv_direct(const ConvGeom *g, const float *x, const float *w, const float *b, double *y) {
    int Cg = g->C / g->groups, Og = g->O / g->groups;
    for (int n = 0; n < g->N; n++)
        for (int o = 0; o < g->O; o++)
            for (int oh = 0; oh < g->Ho; oh++)
                for (int ow = 0; ow < g->Wo; ow++) {
                    double s = b ? b[o] : 0.0;
                    int gi = o / Og;
                    for (int c = 0; c < Cg; c++)
                        for (int ki = 0; ki < g->k; ki++)
                            for (int kj = 0; kj < g->k; kj++) {
                                int ih = oh * g->stride - g->pad + ki, iw = ow * g->stride - g->pad + kj;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                                s += (double)w[((o * Cg + c) * g->k + ki) * g->k + kj] *
                                     x[(((size_t)n * g->C + gi * Cg + c) * g->H + ih) * g->W + iw];
                            }
                    y[(((size_t)n * g->O + o) * g->Ho + oh) * g->Wo + ow] = s;
                }
}

// Checks the R-forward R{y} = conv(R{x}, w) + conv(x, V_w) [+ V_b] of c against the definition,
// with and without R{x}.
static void check_conv_rforward(const ConvCtx *c, Rng *rng) {
    const ConvGeom *g = &c->g;
    size_t nx = (size_t)g->N * g->C * g->H * g->W, nw = (size_t)g->O * (g->C / g->groups) * g->k * g->k;
    size_t ny = (size_t)g->N * g->O * g->Ho * g->Wo;
    float *rx = rand_buf(nx, -1, 1, rng);
    float *vw = rand_buf(nw, -0.5f, 0.5f, rng);
    float *vb = c->b ? rand_buf((size_t)g->O, -0.5f, 0.5f, rng) : NULL;
    float *ry = xmalloc(ny * sizeof(float));
    double *want = xmalloc(ny * sizeof(double)), *part = xmalloc(ny * sizeof(double));
    for (int with_rx = 1; with_rx >= 0; with_rx--) {
        for (size_t i = 0; i < ny; i++) ry[i] = NAN;  // every output must be written
        conv2d_rforward(g, c->x, c->w, with_rx ? rx : NULL, vw, vb, ry, c->col, c->col_len);
        conv_direct(g, c->x, vw, vb, want);
        if (with_rx) {
            conv_direct(g, rx, c->w, NULL, part);
            for (size_t i = 0; i < ny; i++) want[i] += part[i];
        }
        double worst = 0, scale = 0;
        for (size_t i = 0; i < ny; i++) worst = worse(worst, fabs(ry[i] - want[i])), scale = fmax(scale, fabs(want[i]));
        const char *what = with_rx ? "R-forward vs definition" : "R-forward, no R{x}";
        fprintf(stderr, "  %-34s max abs err %.2e of %.1f\n", what, worst, scale);
        assert_true(worst < fmax(1e-5, 2e-6 * scale));  // float sums of up to 2 x 144 terms
    }
    free(rx); free(vw); free(vb); free(ry); free(want); free(part);
}


// out (N, O, H, W) = Winograd's wino_run on every sample of c, whether or not conv2d_infer
// picks it on this machine (wino_fits(&c->g)), with c's bias, res (or NULL) and relu.
static void wino_infer(const ConvCtx *c, const float *res, bool relu, float *out) {
    const ConvGeom *g = &c->g;
    const Wino w = wino_make(g);
    const size_t in_len = (size_t)g->C * g->H * g->W, out_len = (size_t)g->O * g->Ho * g->Wo;
    float *packed = nan_buf(wino_packed_len(&w)), *work = nan_buf(wino_work_len(&w));
    wino_pack(&w, c->w, packed);
    for (int n = 0; n < g->N; n++)
        wino_run(&w, c->x + (size_t)n * in_len, packed, work, out + (size_t)n * out_len, c->b,
                 res ? res + (size_t)n * out_len : NULL, relu);
    free(packed);
    free(work);
}

// conv2d_infer (Winograd where wino_ok, else the fused direct kernel) and, where wino_fits,
// Winograd itself, against the definition yref, with and without the residual r, the bias and
// the ReLU: within 2e-6 of the output's largest magnitude (Winograd rounds differently from
// the direct sum). y: scratch.
static void check_conv_infer(ConvCtx *c, const float *r, const double *yref, float *y) {
    const ConvGeom *g = &c->g;
    const size_t ny = (size_t)g->N * g->O * g->Ho * g->Wo;
    double scale = 1;
    for (size_t i = 0; i < ny; i++) scale = fmax(scale, fabs(yref[i]) + fabs(r[i]));
    for (int path = 0; path < (wino_fits(g) ? 2 : 1); path++)
        for (int variant = 0; variant < 3; variant++) {
            const float *res = variant == 2 ? r : NULL;
            const bool relu = variant >= 1;
            for (size_t i = 0; i < ny; i++) y[i] = NAN;  // every output must be written
            if (path == 0)
                conv2d_infer(g, c->x, c->w, c->b, res, relu, y, c->col, c->col_len);
            else
                wino_infer(c, res, relu, y);
            double worst = 0;
            for (size_t i = 0; i < ny; i++) {
                double want = yref[i] + (res ? res[i] : 0.0);
                worst = worse(worst, fabs(y[i] - (relu ? fmax(want, 0.0) : want)));
            }
            static const char *const what[] = {"infer vs definition", "infer + ReLU vs definition",
                                               "infer + res + ReLU vs definition"};
            const char *how = path == 1 ? " (Winograd)" : wino_ok(g) ? " (conv2d_infer: Winograd)" : "";
            fprintf(stderr, "  %-34s max abs err %.2e of %.1f%s\n", what[variant], worst, scale, how);
            assert_true(worst <= 2e-6 * scale);
        }
}

// Checks the forward against the definition, then dx, dw and db (when bias) of one geometry.
static void check_conv(const char *name, int N, int C, int H, int W, int O, int k, int stride, int pad, int groups,
                       bool bias, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 1);
    ConvGeom g = {N, C, H, W, O, k, stride, pad, groups, (H + 2 * pad - k) / stride + 1,
                  (W + 2 * pad - k) / stride + 1, N_THREADS};
    size_t nx = (size_t)N * C * H * W, nw = (size_t)O * (C / groups) * k * k, ny = (size_t)N * O * g.Ho * g.Wo;
    ConvCtx c = {.g = g, .col_len = conv2d_col_len(&g)};
    c.x = rand_buf(nx, -1, 1, &rng);  // one statement each: the draws from rng stay in order
    c.w = rand_buf(nw, -0.5f, 0.5f, &rng);
    c.b = bias ? rand_buf((size_t)O, -0.5f, 0.5f, &rng) : NULL;
    c.col = nan_buf(N_THREADS * c.col_len);
    float *r = rand_buf(ny, -1, 1, &rng), *y = xmalloc(ny * sizeof(float));
    Probe p = {conv_fwd, &c, ny, r, y};
    // backward with dL/dy = r; wscratch per thread (w_len + O), deliberately dirty
    size_t ws_stride = nw + (size_t)O;
    float *wscratch = nan_buf(N_THREADS * ws_stride);
    float *dx = acc_buf(nx), *dw = acc_buf(nw), *db = bias ? acc_buf((size_t)O) : NULL;
    conv2d_backward(&g, c.x, c.w, r, dx, true, dw, db, c.col, c.col_len, wscratch, ws_stride);
    float *dx_set = nan_buf(nx);
    conv2d_backward(&g, c.x, c.w, r, dx_set, false, NULL, NULL, c.col, c.col_len, wscratch, ws_stride);
    fprintf(stderr, "conv2d %s\n", name);
    check_assigns("dx assigned (no acc) = added", dx, dx_set, nx);
    double *yref = xmalloc(ny * sizeof(double)), worst = 0;
    conv_fwd(&c, y);
    conv_direct(&g, c.x, c.w, c.b, yref);
    for (size_t i = 0; i < ny; i++) worst = worse(worst, fabs(y[i] - yref[i]));
    fprintf(stderr, "  %-34s max abs err %.2e\n", "forward vs definition", worst);
    assert_true(worst < 1e-5);
    // the fused epilogue of inference: max(conv + b, 0)
    conv2d_forward_relu(&g, c.x, c.w, c.b, y, c.col, c.col_len);
    worst = 0;
    for (size_t i = 0; i < ny; i++) worst = worse(worst, fabs(y[i] - fmax(yref[i], 0.0)));
    fprintf(stderr, "  %-34s max abs err %.2e\n", "forward + ReLU vs definition", worst);
    assert_true(worst < 1e-5);
    // the fused residual add of inference, without and with the ReLU after it
    for (int relu = 0; relu < 2; relu++) {
        conv2d_forward_res(&g, c.x, c.w, c.b, r, relu, y, c.col, c.col_len);
        worst = 0;
        for (size_t i = 0; i < ny; i++) {
            double want = yref[i] + r[i];
            worst = worse(worst, fabs(y[i] - (relu ? fmax(want, 0.0) : want)));
        }
        const char *what = relu ? "forward + res + ReLU vs definition" : "forward + res vs definition";
        fprintf(stderr, "  %-34s max abs err %.2e\n", what, worst);
        assert_true(worst < 1e-5);
    }
    check_conv_infer(&c, r, yref, y);
    free(yref);
    check_conv_rforward(&c, &rng);
    check_grad("dx", &p, c.x, nx, dx);
    check_grad("dw", &p, c.w, nw, dw);
    if (bias) check_grad("db", &p, c.b, (size_t)O, db);
    free(c.x); free(c.w); free(c.b); free(c.col); free(r); free(y); free(wscratch); free(dx); free(dw); free(db);
}

static void test_conv_3x3_pad1_bias(void **state) {
    (void)state;
    check_conv("3x3 pad 1, bias, N=3", 3, 3, 6, 5, 4, 3, 1, 1, 1, true, 11);
}

static void test_conv_3x3_pad1_nobias(void **state) {
    (void)state;
    check_conv("3x3 pad 1, no bias, N=2", 2, 2, 5, 5, 3, 3, 1, 1, 1, false, 12);
}

static void test_conv_strided(void **state) {
    (void)state;
    check_conv("3x3 stride 2 pad 1, 7x6 input", 3, 2, 7, 6, 3, 3, 2, 1, 1, true, 13);
}

static void test_conv_5x5_nopad(void **state) {
    (void)state;
    check_conv("5x5 no pad", 2, 2, 7, 8, 3, 5, 1, 0, 1, false, 14);
}

static void test_conv_grouped(void **state) {
    (void)state;
    check_conv("groups=2 (C=4, O=6)", 3, 4, 5, 5, 6, 3, 1, 1, 2, true, 15);
}

static void test_conv_depthwise(void **state) {
    (void)state;
    check_conv("depthwise (groups=C=O=3)", 3, 3, 6, 6, 3, 3, 1, 1, 3, false, 16);
}

static void test_conv_pointwise(void **state) {
    (void)state;
    check_conv("1x1 pointwise (no im2col), bias", 3, 3, 4, 5, 4, 1, 1, 0, 1, true, 17);
    check_conv("1x1 pointwise (no im2col), no bias", 2, 4, 3, 3, 2, 1, 1, 0, 1, false, 18);
}

static void test_conv_projection(void **state) {
    (void)state;
    check_conv("1x1 stride 2 (projection shortcut)", 3, 3, 6, 6, 4, 1, 2, 0, 1, false, 19);
}

// The wide unfolding (stride 1, rows of 12 or more outputs): padded, unpadded, grouped, 5x5.
static void test_conv_wide_layout(void **state) {
    (void)state;
    check_conv("wide: 3x3 pad 1 on 13x14, bias", 2, 3, 13, 14, 4, 3, 1, 1, 1, true, 20);
    check_conv("wide: 5x5 pad 2, groups=2 on 12x12", 2, 4, 12, 12, 6, 5, 1, 2, 2, false, 21);
    check_conv("wide: 3x3 no pad on 14x15", 2, 2, 14, 15, 3, 3, 1, 0, 1, true, 22);
}

// The direct stride-1 kernel (nn/conv_direct.c): several tiles of positions with a short last
// one, weight gradients reduced over chunks of samples with a short last chunk, output channels
// not a multiple of its channel tiles (the weight gradient's tiles of 4 channels end in 1 to 3)
// nor the taps of its 6-tap (AVX-512) or 2-tap (AVX2) tiles (C = 1: 9 taps), small planes of 2 to 6 vectors of positions
// (the weight gradient's unrolled tiles), padding up to k - 1 (the input gradient runs directly
// too) and beyond it (the input gradient unfolds).
static void test_conv_direct_tiles(void **state) {
    (void)state;
    check_conv("direct: 3x3 pad 1, 9 -> 10 channels on 20x22, N=5", 5, 9, 20, 22, 10, 3, 1, 1, 1, true, 23);
    check_conv("direct: 3x3 pad 2 (= k - 1) on 7x9", 2, 3, 7, 9, 5, 3, 1, 2, 1, false, 24);
    check_conv("direct: 3x3 pad 3 (> k - 1) on 5x6", 2, 2, 5, 6, 3, 3, 1, 3, 1, true, 25);
    check_conv("direct: 2x2 no pad on 9x8, one output channel", 3, 4, 9, 8, 1, 2, 1, 0, 1, false, 26);
    check_conv("direct: 5x5 pad 2 on 9x11, N=1", 1, 3, 9, 11, 6, 5, 1, 2, 1, true, 27);
    check_conv("direct: 7x7 pad 3 on 10x8", 2, 2, 10, 8, 5, 7, 1, 3, 1, false, 28);
    check_conv("direct: 3x3 pad 1, 1 -> 14 channels on 8x9", 3, 1, 8, 9, 14, 3, 1, 1, 1, false, 30);
    check_conv("direct: 3x3 pad 1 on 4x6 (2 vectors of positions)", 2, 2, 4, 6, 4, 3, 1, 1, 1, false, 31);
    check_conv("direct: 3x3 pad 1 on 5x5 (3 vectors)", 2, 3, 5, 5, 5, 3, 1, 1, 1, false, 32);
    check_conv("direct: 3x3 pad 1 on 7x7, N=9 (4 vectors)", 9, 3, 7, 7, 9, 3, 1, 1, 1, true, 33);
    check_conv("direct: 3x3 pad 1 on 7x8 (5 vectors)", 2, 2, 7, 8, 4, 3, 1, 1, 1, false, 34);
    check_conv("direct: 3x3 pad 1 on 3x14 (padded rows of 16)", 2, 3, 3, 14, 5, 3, 1, 1, 1, true, 35);
    check_conv("direct: 3x3 pad 1 on 2x30 (padded rows of 32)", 2, 2, 2, 30, 3, 3, 1, 1, 1, true, 36);
    check_conv("direct: 5x5 pad 2 on 5x35 (padded rows of 39)", 2, 2, 5, 35, 3, 5, 1, 2, 1, true, 37);
    // narrow planes: several runs of valid positions in each vector the tiles write out
    check_conv("direct: 3x3 pad 1 on 40x1 (padded rows of 3)", 2, 2, 40, 1, 5, 3, 1, 1, 1, true, 38);
    check_conv("direct: 3x3 pad 1 on 17x2 (padded rows of 4)", 2, 3, 17, 2, 6, 3, 1, 1, 1, false, 39);
    check_conv("tiny plane (im2col): 3x3 pad 1 on 3x3", 2, 3, 3, 3, 4, 3, 1, 1, 1, true, 29);
}

// Inference by Winograd F(2x2, 3x3) (nn/conv_winograd.c), on the shapes it can compute
// (wino_fits; check_conv_infer runs it whether or not wino_ok picks it on this machine): even
// and odd planes (a half tile at the right and bottom edges), output channels not a multiple of
// 4, one input channel, several vectors of tiles and several tile rows per vector, with and
// without bias; and the shapes it leaves to the direct kernel.
static void test_conv_winograd(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int N, C, H, W, O;
        bool bias;
    } cases[] = {
        {"winograd: 28x28, 16 -> 16, N=3", 3, 16, 28, 28, 16, true},
        {"winograd: 14x14, 5 -> 7", 2, 5, 14, 14, 7, false},
        {"winograd: 15x17 (odd), 3 -> 6", 3, 3, 15, 17, 6, true},
        {"winograd: 16x40, 1 -> 1", 2, 1, 16, 40, 1, true},
        {"winograd: 21x13, 9 -> 5, N=5", 5, 9, 21, 13, 5, false},
        {"winograd: 30x30, 2 -> 9 (200+ tiles)", 2, 2, 30, 30, 9, true},
        {"winograd: 10x10, 6 -> 4 (2 vectors of tiles)", 3, 6, 10, 10, 4, true},
        {"winograd: 12x12, 4 -> 3 (3 vectors of tiles)", 2, 4, 12, 12, 3, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ConvGeom g = {cases[i].N, cases[i].C, cases[i].H, cases[i].W, cases[i].O, 3, 1, 1, 1, cases[i].H, cases[i].W,
                      N_THREADS};
        assert_true(wino_fits(&g));  // else the case would test the direct kernel only
#ifdef __AVX512F__
        assert_true(wino_ok(&g));  // the cost model picks Winograd for these shapes with AVX-512
#else
        assert_false(wino_ok(&g));  // and never without it
#endif
        check_conv(cases[i].name, cases[i].N, cases[i].C, cases[i].H, cases[i].W, cases[i].O, 3, 1, 1, 1,
                   cases[i].bias, 40 + (int)i);
    }
    // left to the direct kernel: 7x7 (Winograd fits, but too few tiles per vector), and the
    // shapes it does not fit: stride 2, 5x5, pad 0, groups
    const ConvGeom no[] = {{2, 64, 7, 7, 64, 3, 1, 1, 1, 7, 7, 2},   {2, 16, 28, 28, 32, 3, 2, 1, 1, 14, 14, 2},
                           {2, 16, 28, 28, 16, 5, 1, 2, 1, 28, 28, 2}, {2, 16, 28, 28, 16, 3, 1, 0, 1, 26, 26, 2},
                           {2, 16, 28, 28, 16, 3, 1, 1, 2, 28, 28, 2}};
    assert_true(wino_fits(&no[0]));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        assert_false(wino_ok(&no[i]));
        if (i > 0) assert_false(wino_fits(&no[i]));
    }
}

// The direct stride-2 forward pass (nn/conv_direct.c, four phase planes): 3x3 (the unrolled
// taps), 1x1 (one phase), other kernels, even and odd sizes and paddings, partial channel tiles,
// several tiles of positions.
static void test_conv_direct_stride2(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int N, C, H, W, O, k, pad;
        bool bias;
    } cases[] = {
        {"direct s2: 3x3 pad 1, 16x16 -> 8x8, 5 -> 6", 2, 5, 16, 16, 6, 3, 1, true},
        {"direct s2: 3x3 pad 1, 15x13 -> 8x7", 3, 3, 15, 13, 5, 3, 1, false},
        {"direct s2: 3x3 pad 1, 30x26, 2 -> 7, N=5", 5, 2, 30, 26, 7, 3, 1, true},
        {"direct s2: 3x3 no pad, 17x17 -> 8x8", 2, 3, 17, 17, 4, 3, 0, false},
        {"direct s2: 1x1 no pad, 14x14 -> 7x7", 3, 6, 14, 14, 9, 1, 0, false},
        {"direct s2: 1x1 no pad, 13x15 -> 7x8", 2, 4, 13, 15, 3, 1, 0, true},
        {"direct s2: 1x1 pad 1, 14x14 -> 8x8", 2, 3, 14, 14, 2, 1, 1, true},
        {"direct s2: 5x5 pad 2, 12x11 -> 6x6", 2, 3, 12, 11, 5, 5, 2, true},
        {"direct s2: 2x2 no pad, 16x17 -> 8x8", 2, 2, 16, 17, 3, 2, 0, false},
        {"direct s2: 4x4 pad 1, 12x12 -> 6x6", 2, 2, 12, 12, 4, 4, 1, true},
        // phase rows wider than one 32-column pass of the padding, vectors within one output row
        {"direct s2: 3x3 pad 1, 9x70 -> 5x35", 1, 2, 9, 70, 3, 3, 1, true},
        {"direct s2: 1x1 no pad, 6x67 -> 3x34", 2, 2, 6, 67, 5, 1, 0, false},
        // the stem's 7x7 pad 3: taps three phase rows down, padding wider than one column
        {"direct s2: 7x7 pad 3, 20x19 -> 10x10", 1, 2, 20, 19, 3, 7, 3, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int N = cases[i].N, C = cases[i].C, H = cases[i].H, W = cases[i].W, k = cases[i].k, pad = cases[i].pad;
        ConvGeom g = {N, C, H, W, cases[i].O, k, 2, pad, 1, (H + 2 * pad - k) / 2 + 1, (W + 2 * pad - k) / 2 + 1,
                      N_THREADS};
        assert_true(direct_fwd_ok(&g));  // the case tests the direct kernel, not the im2col fallback
        check_conv(cases[i].name, N, C, H, W, cases[i].O, k, 2, pad, 1, cases[i].bias, 40 + i);
    }
}

// ---- batchnorm ----

typedef struct {
    int N, C, HW;
    bool train;  // batch statistics (coupled) or running statistics
    float eps;
    float *x, *gamma, *beta, *rm, *rv;  // x (N, C, HW); the rest (C)
    float *mean, *invstd;               // saved by forward: (C), (C)
    float *xhat;                        // (N, C, HW): (x - mean) invstd, for the reference formulas
} BnCtx;

// Probe forward: y (N, C, HW) = batchnorm(x) with batch or running statistics.
static void bn_fwd(void *ctx, float *y) {
    BnCtx *b = ctx;
    if (b->train)
        batchnorm_forward_train(b->N, b->C, b->HW, b->x, b->gamma, b->beta, b->eps, 0.1f, false, b->rm, b->rv, y,
                                b->mean, b->invstd);
    else
        batchnorm_forward_eval(b->N, b->C, b->HW, b->x, b->gamma, b->beta, b->eps, b->rm, b->rv, y, b->mean,
                               b->invstd);
    for (int n = 0; n < b->N; n++)
        for (int c = 0; c < b->C; c++)
            for (int i = 0; i < b->HW; i++) {
                size_t o = ((size_t)n * b->C + c) * b->HW + i;
                b->xhat[o] = (b->x[o] - b->mean[c]) * b->invstd[c];
            }
}

// Makes a batchnorm fixture: x with per-channel offsets and scales, random affine parameters
// and running statistics away from 0/1.
static BnCtx bn_make(int N, int C, int HW, bool train, Rng *rng) {
    size_t nx = (size_t)N * C * HW;
    BnCtx b = {.N = N, .C = C, .HW = HW, .train = train, .eps = 1e-5f};
    b.x = rand_buf(nx, -1, 1, rng);
    b.gamma = rand_buf((size_t)C, 0.5f, 1.5f, rng);
    b.beta = rand_buf((size_t)C, -0.5f, 0.5f, rng);
    b.rm = rand_buf((size_t)C, -0.3f, 0.3f, rng);
    b.rv = rand_buf((size_t)C, 0.5f, 2.0f, rng);
    b.xhat = xmalloc(nx * sizeof(float));
    b.mean = xmalloc((size_t)C * sizeof(float));
    b.invstd = xmalloc((size_t)C * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) {
                float *v = &b.x[((size_t)n * C + c) * HW + i];
                *v = (1.0f + 0.5f * (float)c) * *v + 0.3f * (float)c;
            }
    return b;
}

// Frees a fixture made by bn_make.
static void bn_free(BnCtx *b) {
    free(b->x); free(b->gamma); free(b->beta); free(b->rm); free(b->rv); free(b->xhat); free(b->mean); free(b->invstd);
}

// Checks dx, dgamma, dbeta of batchnorm in one mode.
static void check_bn(bool train, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 2);
    const int N = 3, C = 3, HW = 5;
    size_t nx = (size_t)N * C * HW;
    BnCtx b = bn_make(N, C, HW, train, &rng);
    float *r = rand_buf(nx, -1, 1, &rng), *y = xmalloc(nx * sizeof(float));
    Probe p = {bn_fwd, &b, nx, r, y};
    probe_loss(&p);  // forward at the unperturbed point: saves mean, invstd
    float *dx = acc_buf(nx), *dg = acc_buf((size_t)C), *dbeta = acc_buf((size_t)C);
    batchnorm_backward(N, C, HW, train, r, NULL, b.x, b.mean, b.invstd, b.gamma, dx, true, dg, dbeta);
    float *dx_set = nan_buf(nx);
    batchnorm_backward(N, C, HW, train, r, NULL, b.x, b.mean, b.invstd, b.gamma, dx_set, false, NULL, NULL);
    fprintf(stderr, "batchnorm %s\n", train ? "train mode (batch statistics)" : "eval mode (running statistics)");
    check_assigns("dx assigned (no acc) = added", dx, dx_set, nx);
    check_grad("dx", &p, b.x, nx, dx);
    check_grad("dgamma", &p, b.gamma, (size_t)C, dg);
    check_grad("dbeta", &p, b.beta, (size_t)C, dbeta);
    bn_free(&b);
    free(r); free(y); free(dx); free(dg); free(dbeta);
}

static void test_bn_train(void **state) {
    (void)state;
    check_bn(true, 21);
}

static void test_bn_eval(void **state) {
    (void)state;
    check_bn(false, 22);
}

// Train-mode forward with update: running = 0.9 running + 0.1 batch, variance unbiased.
static void test_bn_running_update(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 23, 2);
    const int N = 2, C = 2, HW = 4, M = N * HW;
    BnCtx b = bn_make(N, C, HW, true, &rng);
    float rm0[2] = {b.rm[0], b.rm[1]}, rv0[2] = {b.rv[0], b.rv[1]}, y[16];
    batchnorm_forward_train(N, C, HW, b.x, b.gamma, b.beta, b.eps, 0.1f, true, b.rm, b.rv, y, b.mean, b.invstd);
    for (int c = 0; c < C; c++) {
        double s = 0, sq = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) s += b.x[((size_t)n * C + c) * HW + i];
        double mu = s / M;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) sq += pow(b.x[((size_t)n * C + c) * HW + i] - mu, 2);
        assert_float_equal(b.mean[c], mu, 1e-6);
        assert_float_equal(b.invstd[c], 1.0 / sqrt(sq / M + b.eps), 1e-4);
        assert_float_equal(b.rm[c], 0.9 * rm0[c] + 0.1 * mu, 1e-6);
        assert_float_equal(b.rv[c], 0.9 * rv0[c] + 0.1 * sq / (M - 1), 1e-6);
    }
    bn_free(&b);
}

// Train-mode dx re-implemented in double from the formula
// dx = gamma invstd (dy - [mean(dy)] - [xhat mean(dy xhat)]), each bracketed term kept or
// dropped: a deliberately mutilated derivative for the tolerance check. dx (N, C, HW) is set.
static void bn_dx_variant(int N, int C, int HW, const float *dy, const float *xhat, const float *gamma,
                          const float *invstd, bool keep_mean_dy, bool keep_xhat_term, float *dx) {
    const double M = (double)N * HW;
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + c) * HW + i;
                sdy += dy[o];
                sdyx += (double)dy[o] * xhat[o];
            }
        double mdy = keep_mean_dy ? sdy / M : 0.0, mdyx = keep_xhat_term ? sdyx / M : 0.0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + c) * HW + i;
                dx[o] = (float)((double)gamma[c] * invstd[c] * (dy[o] - mdy - xhat[o] * mdyx));
            }
    }
}

// The tolerance catches a dropped term: the real kernel and a faithful re-implementation pass,
// the variants without "- mean(dy)" or without "- xhat mean(dy xhat)" fail.
static void test_bn_dropped_term_fails(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 24, 2);
    const int N = 3, C = 3, HW = 5;
    size_t nx = (size_t)N * C * HW;
    BnCtx b = bn_make(N, C, HW, true, &rng);
    float *r = rand_buf(nx, -1, 1, &rng), *y = xmalloc(nx * sizeof(float));
    Probe p = {bn_fwd, &b, nx, r, y};
    probe_loss(&p);
    // every dx is computed before any finite difference (which re-runs forward, moving xhat)
    float *dx[4], dg[3] = {0}, dbeta[3] = {0};
    for (int v = 0; v < 4; v++) dx[v] = xcalloc(nx, sizeof(float));
    batchnorm_backward(N, C, HW, true, r, NULL, b.x, b.mean, b.invstd, b.gamma, dx[0], true, dg, dbeta);
    bn_dx_variant(N, C, HW, r, b.xhat, b.gamma, b.invstd, true, true, dx[1]);
    bn_dx_variant(N, C, HW, r, b.xhat, b.gamma, b.invstd, false, true, dx[2]);
    bn_dx_variant(N, C, HW, r, b.xhat, b.gamma, b.invstd, true, false, dx[3]);
    double e_real = fd_rel_err(&p, b.x, nx, dx[0]), e_full = fd_rel_err(&p, b.x, nx, dx[1]);
    double e_no_mean = fd_rel_err(&p, b.x, nx, dx[2]), e_no_xhat = fd_rel_err(&p, b.x, nx, dx[3]);
    fprintf(stderr,
            "batchnorm train-mode dx vs finite differences (tolerance %.0e):\n"
            "  real kernel                        rel err %.2e\n"
            "  re-implemented, all terms          rel err %.2e\n"
            "  without - mean(dy)                 rel err %.2e\n"
            "  without - xhat * mean(dy * xhat)   rel err %.2e\n",
            TOL, e_real, e_full, e_no_mean, e_no_xhat);
    assert_true(e_real < TOL);
    assert_true(e_full < TOL);
    assert_true(e_no_mean > TOL);
    assert_true(e_no_xhat > TOL);
    bn_free(&b);
    free(r); free(y);
    for (int v = 0; v < 4; v++) free(dx[v]);
}

// Largest |a - b| / (1 + |b|) over n values (NaN counts as the largest).
static double max_rel_diff(const float *a, const float *b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = worse(worst, fabs((double)a[i] - b[i]) / (1.0 + fabs(b[i])));
    return worst;
}

// Batchnorm with the ReLU that consumes it folded in (relu_y) gives what the two ops give one
// after the other: backward in both modes (dx assigned and added, dgamma, dbeta), R-forward in
// both modes, R-backward in eval mode. HW = 37 leaves a remainder after the vector loops.
static void check_bn_relu_fused(bool train, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 2);
    const int N = 3, C = 4, HW = 37;
    const size_t nx = (size_t)N * C * HW, nc = (size_t)C;
    BnCtx b = bn_make(N, C, HW, train, &rng);
    float *y = xmalloc(nx * sizeof(float));
    bn_fwd(&b, y);  // y: the ReLU's input, about half of it below zero (beta in [-0.5, 0.5])
    size_t below = 0;
    for (size_t i = 0; i < nx; i++) below += y[i] <= 0.0f;
    assert_true(below > nx / 5 && below < 4 * nx / 5);
    float *g = rand_buf(nx, -1, 1, &rng), *rg = rand_buf(nx, -1, 1, &rng), *rx = rand_buf(nx, -1, 1, &rng);
    float *vg = rand_buf(nc, -1, 1, &rng), *vb = rand_buf(nc, -1, 1, &rng);
    float *gm = xmalloc(nx * sizeof(float)), *rgm = xmalloc(nx * sizeof(float));  // through the ReLU
    relu_backward(nx, y, g, gm, false);
    relu_backward(nx, y, rg, rgm, false);
    double worst = 0.0;
    for (int acc = 0; acc < 2; acc++) {  // backward: dx, dgamma, dbeta
        float *dx[2], *dgam[2], *dbet[2];
        for (int f = 0; f < 2; f++) {
            dx[f] = acc ? acc_buf(nx) : nan_buf(nx), dgam[f] = acc_buf(nc), dbet[f] = acc_buf(nc);
            batchnorm_backward(N, C, HW, train, f ? g : gm, f ? y : NULL, b.x, b.mean, b.invstd, b.gamma, dx[f], acc,
                               dgam[f], dbet[f]);
        }
        worst = worse(worst, max_rel_diff(dx[1], dx[0], nx));
        worst = worse(worst, max_rel_diff(dgam[1], dgam[0], nc));
        worst = worse(worst, max_rel_diff(dbet[1], dbet[0], nc));
        for (int f = 0; f < 2; f++) free(dx[f]), free(dgam[f]), free(dbet[f]);
    }
    float *ry[2], *stat = xmalloc(2 * nc * sizeof(float));  // R-forward
    for (int f = 0; f < 2; f++) {
        ry[f] = nan_buf(nx);
        batchnorm_rforward(N, C, HW, train, b.x, b.mean, b.invstd, b.gamma, rx, vg, vb, f ? y : NULL, ry[f], stat);
    }
    relu_rforward(nx, y, ry[0], ry[0]);
    worst = worse(worst, max_rel_diff(ry[1], ry[0], nx));
    if (!train) {  // R-backward, eval mode only (train mode reads the batchnorm's own gradient)
        for (int acc = 0; acc < 2; acc++) {
            float *rdx[2], *rdg[2], *rdb[2];
            for (int f = 0; f < 2; f++) {
                rdx[f] = acc ? acc_buf(nx) : nan_buf(nx), rdg[f] = acc_buf(nc), rdb[f] = acc_buf(nc);
                batchnorm_rbackward(N, C, HW, false, f ? g : gm, f ? rg : rgm, b.x, b.mean, b.invstd, rx, stat,
                                    b.gamma, vg, f ? y : NULL, rdx[f], acc, rdg[f], rdb[f]);
            }
            worst = worse(worst, max_rel_diff(rdx[1], rdx[0], nx));
            worst = worse(worst, max_rel_diff(rdg[1], rdg[0], nc));
            worst = worse(worst, max_rel_diff(rdb[1], rdb[0], nc));
            for (int f = 0; f < 2; f++) free(rdx[f]), free(rdg[f]), free(rdb[f]);
        }
    }
    fprintf(stderr, "batchnorm + ReLU fused vs one after the other, %s mode: max diff %.2e\n",
            train ? "train" : "eval", worst);
    assert_true(worst < 1e-6);
    bn_free(&b);
    free(y), free(g), free(rg), free(rx), free(vg), free(vb), free(gm), free(rgm), free(ry[0]), free(ry[1]);
    free(stat);
}

static void test_bn_relu_fused(void **state) {
    (void)state;
    check_bn_relu_fused(false, 25);
    check_bn_relu_fused(true, 26);
}

// ---- pooling ----

typedef struct {
    PoolGeom g;
    float *x;     // (NC, H, W)
    int *argmax;  // (NC, Ho, Wo), maxpool only
} PoolCtx;

// Probe forwards: y (NC, Ho, Wo) = maxpool(x), avgpool(x); y (NC) = gap(x).
static void maxpool_fwd(void *ctx, float *y) {
    PoolCtx *c = ctx;
    maxpool_forward(&c->g, c->x, y, c->argmax);
}

static void avgpool_fwd(void *ctx, float *y) {
    PoolCtx *c = ctx;
    avgpool_forward(&c->g, c->x, y);
}

static void gap_fwd(void *ctx, float *y) {
    PoolCtx *c = ctx;
    gap_forward(c->g.NC, c->g.H * c->g.W, c->x, y);
}

// Fills x (n) with distinct values 0.05 apart in random order, so that a step of FD_STEP
// never changes which element of a window is the largest.
static void fill_distinct(float *x, size_t n, Rng *rng) {
    int *perm = xmalloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++) perm[i] = (int)i;
    rng_shuffle(rng, perm, (int)n);
    for (size_t i = 0; i < n; i++) x[i] = 0.05f * (float)(perm[i] - (int)n / 2);
    free(perm);
}

// y (NC, Ho, Wo) by the definition: the max, or the sum over k * k (padding counted), of every
// window's positions inside the input; for the max, a (NC, Ho, Wo) gets the plane index of the
// first largest value in the window's row order.
static void pool_reference(const PoolGeom *g, bool max, const float *x, float *y, int *a) {
    for (int pl = 0; pl < g->NC; pl++)
        for (int oh = 0; oh < g->Ho; oh++)
            for (int ow = 0; ow < g->Wo; ow++) {
                float best = -FLT_MAX, sum = 0.0f;
                int best_at = -1;
                for (int ki = 0; ki < g->k; ki++)
                    for (int kj = 0; kj < g->k; kj++) {
                        int ih = oh * g->stride - g->pad + ki, iw = ow * g->stride - g->pad + kj;
                        if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                        float v = x[((size_t)pl * g->H + ih) * g->W + iw];
                        if (best_at < 0 || v > best) best = v, best_at = ih * g->W + iw;
                        sum += v;
                    }
                size_t o = ((size_t)pl * g->Ho + oh) * g->Wo + ow;
                y[o] = max ? best : sum / (float)(g->k * g->k);
                if (max) a[o] = best_at;
            }
}

// Checks y (and for max pooling argmax) against pool_reference.
static void check_pool_forward(const char *name, const PoolGeom *g, bool max, const float *x, const float *y,
                               const int *argmax) {
    size_t ny = (size_t)g->NC * g->Ho * g->Wo;
    float *y_ref = xmalloc(ny * sizeof(float));
    int *a_ref = xmalloc(ny * sizeof(int));
    pool_reference(g, max, x, y_ref, a_ref);
    for (size_t i = 0; i < ny; i++) {
        if (fabsf(y[i] - y_ref[i]) > 1e-6f * (1.0f + fabsf(y_ref[i])))
            fail_msg("%s: y[%zu] = %g, by the definition %g", name, i, (double)y[i], (double)y_ref[i]);
        if (max && argmax[i] != a_ref[i])
            fail_msg("%s: argmax[%zu] = %d, by the definition %d", name, i, argmax[i], a_ref[i]);
    }
    free(y_ref);
    free(a_ref);
}

// Checks y against the definition and dx by finite differences, of max pooling (max) or
// average pooling (!max) for one geometry; k = 0 means global average pooling over the whole
// H x W plane.
static void check_pool(const char *name, bool max, int NC, int H, int W, int k, int stride, int pad, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 3);
    bool global = k == 0;
    PoolGeom g = {NC, H, W, k, stride, pad, global ? 1 : (H + 2 * pad - k) / stride + 1,
                  global ? 1 : (W + 2 * pad - k) / stride + 1};
    size_t nx = (size_t)NC * H * W, ny = (size_t)NC * g.Ho * g.Wo;
    PoolCtx c = {g, xmalloc(nx * sizeof(float)), xmalloc(ny * sizeof(int))};
    fill_distinct(c.x, nx, &rng);
    float *r = rand_buf(ny, -1, 1, &rng), *y = xmalloc(ny * sizeof(float)), *dx = acc_buf(nx);
    Probe p = {global ? gap_fwd : max ? maxpool_fwd : avgpool_fwd, &c, ny, r, y};
    probe_loss(&p);  // forward at the unperturbed point into y: saves argmax
    if (!global) check_pool_forward(name, &g, max, c.x, y, c.argmax);
    float *dx_set = nan_buf(nx);
    for (int acc = 1; acc >= 0; acc--) {
        float *d = acc ? dx : dx_set;
        if (global)
            gap_backward(NC, H * W, r, d, acc);
        else if (max)
            maxpool_backward(&g, r, c.argmax, d, acc);
        else
            avgpool_backward(&g, r, d, acc);
    }
    fprintf(stderr, "%s\n", name);
    check_assigns("dx assigned (no acc) = added", dx, dx_set, nx);
    check_grad("dx", &p, c.x, nx, dx);
    free(c.x); free(c.argmax); free(r); free(y); free(dx);
}

static void test_maxpool(void **state) {
    (void)state;
    check_pool("maxpool k2 s2", true, 6, 6, 8, 2, 2, 0, 31);
    check_pool("maxpool k3 s2 pad 1 (overlapping)", true, 6, 7, 7, 3, 2, 1, 32);
    check_pool("maxpool k7 s1 pad 3 (windows wider than the 3x4 input)", true, 2, 3, 4, 7, 1, 3, 36);
    check_pool("maxpool k3 s2 (overlapping, no padding, odd sizes)", true, 3, 9, 7, 3, 2, 0, 38);
    check_pool("maxpool k2 s2 on odd sizes (the last row and column dropped)", true, 3, 7, 5, 2, 2, 0, 39);
    check_pool("maxpool k2 s2, rows of 19 outputs (16 and a tail)", true, 2, 4, 38, 2, 2, 0, 40);
    check_pool("maxpool k2 s2, rows of 32 outputs", true, 2, 3, 65, 2, 2, 0, 42);
}

// Max pooling of planes full of ties (ReLU outputs: most windows hold several zeros, and some
// equal positive values): the value and the first largest position in the window's row order,
// whichever path the geometry takes.
static void test_maxpool_ties(void **state) {
    (void)state;
    const int geoms[][6] = {{3, 6, 40, 2, 2, 0}, {3, 7, 33, 2, 2, 0}, {2, 7, 7, 3, 2, 1}, {2, 9, 8, 3, 2, 0}};
    Rng rng;
    rng_seed(&rng, 43, 3);
    for (size_t t = 0; t < sizeof geoms / sizeof geoms[0]; t++) {
        const int *q = geoms[t];
        PoolGeom g = {q[0], q[1], q[2], q[3], q[4], q[5], (q[1] + 2 * q[5] - q[3]) / q[4] + 1,
                      (q[2] + 2 * q[5] - q[3]) / q[4] + 1};
        size_t nx = (size_t)g.NC * g.H * g.W, ny = (size_t)g.NC * g.Ho * g.Wo;
        float *x = xmalloc(nx * sizeof(float)), *y = xmalloc(ny * sizeof(float));
        int *argmax = xmalloc(ny * sizeof(int));
        for (size_t i = 0; i < nx; i++) {
            int r = (int)(rng_uniform(&rng) * 4.0f);  // 0, 1: zero; 2: 0.5; 3: -0.0 (ties with zero)
            x[i] = r < 2 ? 0.0f : r == 2 ? 0.5f : -0.0f;
        }
        maxpool_forward(&g, x, y, argmax);
        char name[96];
        snprintf(name, sizeof name, "maxpool ties, k%d s%d pad %d on %dx%d", g.k, g.stride, g.pad, g.H, g.W);
        check_pool_forward(name, &g, true, x, y, argmax);
        free(x); free(y); free(argmax);
    }
}

static void test_avgpool(void **state) {
    (void)state;
    check_pool("avgpool k2 s2", false, 5, 6, 6, 2, 2, 0, 33);
    check_pool("avgpool k3 s2 pad 1 (padding counted)", false, 5, 7, 6, 3, 2, 1, 34);
    check_pool("avgpool k9 s4 pad 4 (windows wider than the 5x3 input)", false, 2, 5, 3, 9, 4, 4, 37);
}

static void test_gap(void **state) {
    (void)state;
    check_pool("global average pool", false, 7, 3, 4, 0, 0, 0, 35);
}

// ---- linear ----

typedef struct {
    int N, Fin, Fout;
    float *x, *w, *b;  // x (N, Fin), w (Fout, Fin), b (Fout)
} LinCtx;

// Probe forward: y (N, Fout) = x w^T + b.
static void lin_fwd(void *ctx, float *y) {
    LinCtx *c = ctx;
    linear_forward(c->N, c->Fin, c->Fout, c->x, c->w, c->b, y);
}

static void test_linear(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 41, 4);
    const int N = 3, Fin = 7, Fout = 5;
    size_t nx = (size_t)N * Fin, nw = (size_t)Fout * Fin, ny = (size_t)N * Fout;
    LinCtx c = {.N = N, .Fin = Fin, .Fout = Fout};
    c.x = rand_buf(nx, -1, 1, &rng);
    c.w = rand_buf(nw, -0.5f, 0.5f, &rng);
    c.b = rand_buf((size_t)Fout, -0.5f, 0.5f, &rng);
    float *r = rand_buf(ny, -1, 1, &rng), *y = xmalloc(ny * sizeof(float));
    Probe p = {lin_fwd, &c, ny, r, y};
    float *dx = acc_buf(nx), *dw = acc_buf(nw), *db = acc_buf((size_t)Fout);
    linear_backward(N, Fin, Fout, c.x, c.w, r, dx, true, dw, db);
    float *dx_set = nan_buf(nx);
    linear_backward(N, Fin, Fout, c.x, c.w, r, dx_set, false, NULL, NULL);
    fprintf(stderr, "linear with bias\n");
    check_assigns("dx assigned (no acc) = added", dx, dx_set, nx);
    check_grad("dx", &p, c.x, nx, dx);
    check_grad("dw", &p, c.w, nw, dw);
    check_grad("db", &p, c.b, (size_t)Fout, db);
    free(c.x); free(c.w); free(c.b); free(r); free(y); free(dx); free(dw); free(db);
}

// ---- elementwise: relu, add, dropout ----

typedef struct {
    size_t n;
    float *a, *b;  // relu: x = a; add: a + b; dropout: x = a, mask = b
} EwCtx;

// Probe forwards: y = relu(a), a + b, a * mask(b).
static void relu_fwd(void *ctx, float *y) {
    EwCtx *c = ctx;
    relu_forward(c->n, c->a, y);
}

static void add_fwd(void *ctx, float *y) {
    EwCtx *c = ctx;
    add_forward(c->n, c->a, c->b, y);
}

static void dropout_fwd(void *ctx, float *y) {
    EwCtx *c = ctx;
    dropout_forward(c->n, c->a, c->b, y);
}

static void test_relu(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 51, 5);
    const size_t n = 300;
    EwCtx c = {n, rand_buf(n, 0.1f, 1.0f, &rng), NULL};
    for (size_t i = 0; i < n; i++)
        if (rng_uniform(&rng) < 0.5f) c.a[i] = -c.a[i];  // |x| >= 0.1: no kink within a step
    float *r = rand_buf(n, -1, 1, &rng), *y = xmalloc(n * sizeof(float)), *dx = acc_buf(n);
    Probe p = {relu_fwd, &c, n, r, y};
    relu_backward(n, c.a, r, dx, true);
    float *dx_set = nan_buf(n);
    relu_backward(n, c.a, r, dx_set, false);
    fprintf(stderr, "relu\n");
    check_assigns("dx assigned (no acc) = added", dx, dx_set, n);
    check_grad("dx", &p, c.a, n, dx);
    free(c.a); free(r); free(y); free(dx);
}

static void test_add(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 52, 5);
    const size_t n = 100;
    EwCtx c = {.n = n};
    c.a = rand_buf(n, -1, 1, &rng);
    c.b = rand_buf(n, -1, 1, &rng);
    float *r = rand_buf(n, -1, 1, &rng), *y = xmalloc(n * sizeof(float)), *da = acc_buf(n), *db = acc_buf(n);
    Probe p = {add_fwd, &c, n, r, y};
    pass_grad(n, r, da, true);  // the backward of y = a + b: dy passes to each side
    pass_grad(n, r, db, true);
    float *da_set = nan_buf(n);
    pass_grad(n, r, da_set, false);
    fprintf(stderr, "add\n");
    check_assigns("da assigned (no acc) = added", da, da_set, n);
    check_grad("da", &p, c.a, n, da);
    check_grad("db", &p, c.b, n, db);
    free(c.a); free(c.b); free(r); free(y); free(da); free(db);
}

static void test_dropout(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 53, 5);
    const size_t n = 200;
    const float p_drop = 0.3f;
    EwCtx c = {n, rand_buf(n, -1, 1, &rng), xmalloc(n * sizeof(float))};
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        c.b[i] = rng_uniform(&rng) >= p_drop ? 1.0f / (1.0f - p_drop) : 0.0f;
        kept += c.b[i] != 0.0f;
    }
    assert_true(kept > 0 && kept < n);
    float *r = rand_buf(n, -1, 1, &rng), *y = xmalloc(n * sizeof(float)), *dx = acc_buf(n);
    Probe p = {dropout_fwd, &c, n, r, y};
    dropout_backward(n, r, c.b, dx, true);
    float *dx_set = nan_buf(n);
    dropout_backward(n, r, c.b, dx_set, false);
    fprintf(stderr, "dropout (fixed mask, p=%.1f)\n", p_drop);
    check_assigns("dx assigned (no acc) = added", dx, dx_set, n);
    check_grad("dx", &p, c.a, n, dx);
    free(c.a); free(c.b); free(r); free(y); free(dx);
}

// ---- softmax cross-entropy ----

typedef struct {
    int N, K;
    float smoothing;
    float *logits;  // (N, K)
    const int *labels;
} XentCtx;

// Probe forward: y[0] = softmax_xent(logits).
static void xent_fwd(void *ctx, float *y) {
    XentCtx *c = ctx;
    y[0] = softmax_xent(c->logits, c->labels, c->N, c->K, c->smoothing, NULL, NULL);
}

// Checks dlogits of softmax_xent against finite differences of its returned loss.
static void check_xent(float smoothing) {
    Rng rng;
    rng_seed(&rng, 61, 6);
    const int N = 4, K = 5;
    static const int labels[4] = {0, 3, 4, 1};
    size_t nz = (size_t)N * K;
    XentCtx c = {N, K, smoothing, rand_buf(nz, -2, 2, &rng), labels};
    float one = 1.0f, y, *dz = xmalloc(nz * sizeof(float));
    Probe p = {xent_fwd, &c, 1, &one, &y};
    softmax_xent(c.logits, labels, N, K, smoothing, dz, NULL);
    double e = fd_rel_err(&p, c.logits, nz, dz);
    fprintf(stderr, "softmax_xent smoothing %.1f\n  %-34s rel err %.2e\n", smoothing, "dlogits", e);
    assert_true(e < TOL);
    free(c.logits); free(dz);
}

static void test_xent_grad(void **state) {
    (void)state;
    check_xent(0.0f);
    check_xent(0.1f);
}

// Two classes, two samples, by hand: logits (1, 3) label 0 and (2, -1) label 0.
// No smoothing: losses log(1 + e^2) and log(1 + e^-3); with s = 0.2 the targets of sample 1
// are (0.9, 0.1), so its loss is lse - 0.9*1 - 0.1*3 with lse = 3 + log(1 + e^-2).
static void test_xent_by_hand(void **state) {
    (void)state;
    const float z[4] = {1, 3, 2, -1};
    const int labels[2] = {0, 0};
    float d[4];
    int correct = -1;
    double l0 = log1p(exp(2.0)), l1 = log1p(exp(-3.0));
    float loss = softmax_xent(z, labels, 2, 2, 0.0f, d, &correct);
    assert_float_equal(loss, (l0 + l1) / 2, 1e-6);
    assert_int_equal(correct, 1);
    double p0 = 1.0 / (1.0 + exp(2.0)), q0 = 1.0 / (1.0 + exp(-3.0));  // P(class 0) per sample
    assert_float_equal(d[0], (p0 - 1) / 2, 1e-7);
    assert_float_equal(d[1], (1 - p0) / 2, 1e-7);
    assert_float_equal(d[2], (q0 - 1) / 2, 1e-7);
    assert_float_equal(d[3], (1 - q0) / 2, 1e-7);
    double lse0 = 3 + log1p(exp(-2.0)), lse1 = 2 + log1p(exp(-3.0));
    double s0 = lse0 - (0.9 * 1 + 0.1 * 3), s1 = lse1 - (0.9 * 2 + 0.1 * -1);
    loss = softmax_xent(z, labels, 2, 2, 0.2f, d, NULL);
    assert_float_equal(loss, (s0 + s1) / 2, 1e-6);
    assert_float_equal(d[0], (p0 - 0.9) / 2, 1e-7);
    assert_float_equal(d[1], ((1 - p0) - 0.1) / 2, 1e-7);
}

int main(void) {
    omp_set_num_threads(N_THREADS);
    openblas_set_num_threads(1);  // kernels call BLAS from inside their own OpenMP threads
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_3x3_pad1_bias),
        cmocka_unit_test(test_conv_3x3_pad1_nobias),
        cmocka_unit_test(test_conv_strided),
        cmocka_unit_test(test_conv_direct_stride2),
        cmocka_unit_test(test_conv_5x5_nopad),
        cmocka_unit_test(test_conv_grouped),
        cmocka_unit_test(test_conv_depthwise),
        cmocka_unit_test(test_conv_pointwise),
        cmocka_unit_test(test_conv_projection),
        cmocka_unit_test(test_conv_wide_layout),
        cmocka_unit_test(test_conv_direct_tiles),
        cmocka_unit_test(test_conv_winograd),
        cmocka_unit_test(test_bn_train),
        cmocka_unit_test(test_bn_eval),
        cmocka_unit_test(test_bn_running_update),
        cmocka_unit_test(test_bn_dropped_term_fails),
        cmocka_unit_test(test_bn_relu_fused),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_maxpool_ties),
        cmocka_unit_test(test_avgpool),
        cmocka_unit_test(test_gap),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_xent_grad),
        cmocka_unit_test(test_xent_by_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
