// test_estimators.c: Hutchinson, Hutch++, Lanczos, power iteration and SLQ (hessian/estimators.c)
// on operators made of explicit dense matrices with known traces and spectra.
#include "testutil.h"

#include <cblas.h>
#include <lapacke.h>

#include "hessian/estimators.h"
#include "nn/err.h"

// ---------------------------------------------------------------------------------------------
// Dense test operators.

// A dense symmetric n x n matrix (row-major, double) as a LinOp; fails on purpose after
// fail_after products when fail_after >= 0.
typedef struct {
    size_t n;
    double *a;
    long calls, fail_after;
} Dense;

// out = A v in double, rounded to float; the injected failure when due.
static int dense_apply(void *ctx, const float *v, float *out, HpErr *err) {
    Dense *d = ctx;
    if (d->fail_after >= 0 && d->calls >= d->fail_after) return hp_fail(err, "dense: injected failure");
    d->calls++;
    for (size_t i = 0; i < d->n; i++) {
        const double *row = d->a + i * d->n;
        double s = 0;
        for (size_t j = 0; j < d->n; j++) s += row[j] * (double)v[j];
        out[i] = (float)s;
    }
    return 0;
}

// A LinOp over d.
static LinOp dense_op(Dense *d) { return (LinOp){.n = d->n, .apply = dense_apply, .ctx = d}; }

// A zero n x n Dense.
static Dense dense_new(size_t n) {
    return (Dense){.n = n, .a = calloc(n * n, sizeof(double)), .fail_after = -1};
}

// Fills Q (n x n, column-major) with a random orthogonal matrix (QR of a Gaussian matrix).
static void random_orthogonal(double *Q, size_t n, Rng *rng) {
    for (size_t i = 0; i < n * n; i++) Q[i] = rng_normal(rng);
    double *tau = malloc(n * sizeof *tau);
    assert_int_equal(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (int)n, (int)n, Q, (int)n, tau), 0);
    assert_int_equal(LAPACKE_dorgqr(LAPACK_COL_MAJOR, (int)n, (int)n, (int)n, Q, (int)n, tau), 0);
    free(tau);
}

// A = Q diag(lam) Q^T for a random orthogonal Q: a matrix with exactly the spectrum lam.
static Dense dense_spectrum(const double *lam, size_t n, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 1);
    Dense d = dense_new(n);
    double *Q = malloc(n * n * sizeof *Q), *B = malloc(n * n * sizeof *B);
    random_orthogonal(Q, n, &rng);
    for (size_t c = 0; c < n; c++)
        for (size_t r = 0; r < n; r++) B[c * n + r] = Q[c * n + r] * lam[c];
    // Column-major: A = B Q^T (symmetric, so the row-major reading is the same matrix).
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0, B, (int)n, Q,
                (int)n, 0.0, d.a, (int)n);
    for (size_t i = 0; i < n; i++)  // symmetrise away rounding
        for (size_t j = 0; j < i; j++) d.a[i * n + j] = d.a[j * n + i] = 0.5 * (d.a[i * n + j] + d.a[j * n + i]);
    free(Q), free(B);
    return d;
}

// ||A v - lam v|| / |lam| for a float vector v (in double).
static double eig_residual(const Dense *d, const float *v, double lam) {
    double r2 = 0;
    for (size_t i = 0; i < d->n; i++) {
        double s = 0;
        for (size_t j = 0; j < d->n; j++) s += d->a[i * d->n + j] * v[j];
        s -= lam * v[i];
        r2 += s * s;
    }
    return sqrt(r2) / fabs(lam);
}

// Trapezoid integral of y over x[lo..hi] (indices).
static double trapezoid(const double *x, const double *y, int lo, int hi) {
    double s = 0;
    for (int i = lo; i < hi; i++) s += 0.5 * (x[i + 1] - x[i]) * (y[i] + y[i + 1]);
    return s;
}

// Trapezoid mass of the SLQ density on grid points with t in [a, b).
static double mass_between(const SlqResult *r, double a, double b) {
    int lo = 0, hi = r->grid_points - 1;
    while (lo < r->grid_points - 1 && r->grid[lo] < a) lo++;
    while (hi > 0 && r->grid[hi] >= b) hi--;
    return hi > lo ? trapezoid(r->grid, r->density, lo, hi) : 0;
}

// Counts progress calls; checks done increases by one each time, in products.
typedef struct {
    long calls, last;
} Progress;

static void count_progress(long done, long total, const char *unit, void *user) {
    Progress *p = user;
    (void)total;
    p->calls++;
    assert_int_equal(done, p->last + 1);
    assert_string_equal(unit, "products");
    p->last = done;
}

// ---------------------------------------------------------------------------------------------
// Hutchinson.

// A diagonal matrix: Rademacher probes give every group's sum exactly, with zero error bars.
static void test_hutch_diagonal_exact(void **state) {
    (void)state;
    const size_t n = 200, G = 7;
    Rng rng;
    rng_seed(&rng, 11, 0);
    Dense d = dense_new(n);
    uint32_t *grp = malloc(n * sizeof *grp);
    double want[7] = {0}, want_total = 0;
    for (size_t i = 0; i < n; i++) {
        d.a[i * n + i] = (double)(float)(rng_uniform(&rng) * 4 - 1);
        grp[i] = (uint32_t)(i * i % G);
        want[grp[i]] += d.a[i * n + i];
        want_total += d.a[i * n + i];
    }
    LinOp op = dense_op(&d);
    double gt[7], gse[7];
    float *diag = malloc(n * sizeof *diag);
    HutchOut out = {.group_trace = gt, .group_se = gse, .diag = diag};
    HutchOpts o = hutch_defaults();
    Progress pr = {0, 0};
    o.progress = count_progress, o.user = &pr;
    HpErr err;
    assert_int_equal(hutchinson_trace(&op, grp, G, &o, &rng, &out, &err), 0);
    assert_int_equal(out.probes, 8);  // zero variance: stops at min_probes
    assert_int_equal(pr.calls, 8);
    assert_int_equal(op.products, 8);
    double sum = 0;
    for (size_t g = 0; g < G; g++) {
        assert_true(fabs(gt[g] - want[g]) <= 1e-12 * fabs(want[g]) + 1e-12);
        assert_true(gse[g] == 0);
        sum += gt[g];
    }
    assert_true(sum == out.trace);
    assert_true(fabs(out.trace - want_total) <= 1e-12 * fabs(want_total));
    for (size_t i = 0; i < n; i++) assert_float_equal(diag[i], d.a[i * n + i], 1e-7);
    free(grp), free(diag), free(d.a);
}

// Diagonal plus a zero-diagonal symmetric perturbation: traces known exactly, the estimates
// noisy. Every group within 3.5 of its own standard errors, most within 2; the groups add up to
// the total exactly; the total's SE matches theory (Var z^T A z = 2 sum_{i != j} A_ij^2).
static void test_hutch_groups_error_bars(void **state) {
    (void)state;
    const size_t n = 300, G = 30;
    const int P = 400;
    Rng rng;
    rng_seed(&rng, 12, 0);
    Dense d = dense_new(n);
    uint32_t *grp = malloc(n * sizeof *grp);
    double want[30] = {0}, want_total = 0, off2 = 0;
    for (size_t i = 0; i < n; i++) {
        d.a[i * n + i] = 1 + 3 * rng_uniform(&rng);
        grp[i] = (uint32_t)rng_below(&rng, G);  // groups of uneven sizes
        want[grp[i]] += d.a[i * n + i];
        want_total += d.a[i * n + i];
        for (size_t j = 0; j < i; j++) {
            double e = 0.3 * rng_normal(&rng);
            d.a[i * n + j] = d.a[j * n + i] = e;
            off2 += 2 * e * e;
        }
    }
    LinOp op = dense_op(&d);
    double gt[30], gse[30];
    float *diag = malloc(n * sizeof *diag);
    HutchOut out = {.group_trace = gt, .group_se = gse, .diag = diag};
    HutchOpts o = {.min_probes = P, .max_probes = P, .tol = 1e-9};
    HpErr err;
    assert_int_equal(hutchinson_trace(&op, grp, G, &o, &rng, &out, &err), 0);
    assert_int_equal(out.probes, P);
    int within2 = 0;
    double zmax = 0, sum = 0;
    for (size_t g = 0; g < G; g++) {
        double z = fabs(gt[g] - want[g]) / gse[g];
        zmax = fmax(zmax, z);
        within2 += z <= 2;
        assert_true(z <= 3.5);
        sum += gt[g];
    }
    printf("hutchinson groups: %d/%zu within 2 SE, max |error|/SE %.2f\n", within2, G, zmax);
    assert_true(within2 >= (int)(0.8 * G));
    assert_true(sum == out.trace);
    assert_true(fabs(out.trace - want_total) <= 3.5 * out.trace_se);
    double se_theory = sqrt(2 * off2 / P);
    printf("hutchinson total: %.3f (true %.3f), SE %.3f (theory %.3f)\n", out.trace, want_total,
           out.trace_se, se_theory);
    assert_true(fabs(out.trace_se / se_theory - 1) < 0.2);
    // Diagonal: per-coordinate error variance sum_{j != i} A_ij^2 / P.
    double e2 = 0;
    for (size_t i = 0; i < n; i++) e2 += pow(diag[i] - d.a[i * n + i], 2);
    assert_true(sqrt(e2 / n) < 1.3 * sqrt(off2 / n / P));
    free(grp), free(diag), free(d.a);
}

// The stopping rule: with tol 2% and no group map, stops between min and max probes with
// SE <= tol |estimate|.
static void test_hutch_stopping_rule(void **state) {
    (void)state;
    const size_t n = 100;
    double lam[100];
    for (size_t i = 0; i < n; i++) lam[i] = 1 + (double)i / 10;
    Dense d = dense_spectrum(lam, n, 13);
    LinOp op = dense_op(&d);
    Rng rng;
    rng_seed(&rng, 13, 0);
    HutchOut out = {0};
    HutchOpts o = {.min_probes = 0, .max_probes = 5000, .tol = 0.02};
    HpErr err;
    assert_int_equal(hutchinson_trace(&op, NULL, 0, &o, &rng, &out, &err), 0);
    printf("hutchinson stopping: %d probes, %.2f +- %.2f (true 595)\n", out.probes, out.trace,
           out.trace_se);
    assert_true(out.probes >= 8 && out.probes < 5000);
    assert_true(out.trace_se <= 0.02 * fabs(out.trace));
    assert_true(fabs(out.trace - 595) <= 4 * out.trace_se);
    assert_int_equal(out.converged, 1);
    o.max_probes = 4, o.tol = 1e-4;  // a budget the rule cannot meet: stopped there, and says so
    assert_int_equal(hutchinson_trace(&op, NULL, 0, &o, &rng, &out, &err), 0);
    assert_int_equal(out.probes, 4);
    assert_true(out.trace_se > 1e-4 * fabs(out.trace));
    assert_int_equal(out.converged, 0);
    free(d.a);
}

// ---------------------------------------------------------------------------------------------
// Hutch++.

// Low rank (8 eigenvalues in [10, 40]) plus small PSD noise: Hutch++ beats Hutchinson at the
// same budget on average over seeds, and reaches 2% with far fewer products.
static void test_hutchpp_low_rank(void **state) {
    (void)state;
    const size_t n = 300;
    const int seeds = 8, budget = 30;
    const double eps = 0.02;
    double *lam = malloc(n * sizeof *lam), tr = 0;
    Rng rng;
    rng_seed(&rng, 14, 0);
    for (size_t i = 0; i < n; i++) {
        lam[i] = i < 8 ? 10 + 30 * rng_uniform(&rng) : 0.05 * rng_uniform(&rng);
        tr += lam[i];
    }
    Dense d = dense_spectrum(lam, n, 14);
    LinOp op = dense_op(&d);
    HpErr err;
    double epp = 0, eh = 0, worst_pp = 0;
    for (int s = 0; s < seeds; s++) {
        rng_seed(&rng, 100 + s, 0);
        HutchppOut pp;
        assert_int_equal(hutchpp_trace(&op, budget, &rng, NULL, NULL, &pp, &err), 0);
        assert_int_equal(pp.products, budget);
        assert_int_equal(pp.rank, budget / 3);
        HutchOut h = {0};
        HutchOpts o = {.min_probes = budget, .max_probes = budget, .tol = 1};
        assert_int_equal(hutchinson_trace(&op, NULL, 1, &o, &rng, &h, &err), 0);
        epp += fabs(pp.trace / tr - 1) / seeds;
        eh += fabs(h.trace / tr - 1) / seeds;
        worst_pp = fmax(worst_pp, fabs(pp.trace / tr - 1));
        assert_true(fabs(pp.trace - tr) <= 5 * pp.se + 1e-6 * tr);
    }
    // Products plain Hutchinson's stopping rule needs for 2 SE <= eps (about 95% within eps).
    rng_seed(&rng, 99, 0);
    HutchOut h = {0};
    HutchOpts o = {.min_probes = 8, .max_probes = 20000, .tol = eps / 2};
    assert_int_equal(hutchinson_trace(&op, NULL, 0, &o, &rng, &h, &err), 0);
    printf("trace %.3f, budget %d: mean |rel err| Hutch++ %.2e (worst %.2e), Hutchinson %.2e\n",
           tr, budget, epp, worst_pp, eh);
    printf("products for %.0f%%: Hutch++ %d (worst of %d seeds), Hutchinson %d (2 SE rule, err %.2e)\n",
           100 * eps, budget, seeds, h.probes, fabs(h.trace / tr - 1));
    assert_true(epp <= eh);
    assert_true(worst_pp <= eps);
    assert_true(h.probes > 10 * budget);
    free(lam), free(d.a);
}

// ---------------------------------------------------------------------------------------------
// Lanczos and power iteration.

// An indefinite spectrum: top 10, 9, 8.5; bottom -7, -6, -5.5; the rest in [-4, 6].
static Dense indefinite(size_t n, double *lam) {
    static const double ends[6] = {10, 9, 8.5, -7, -6, -5.5};
    for (size_t i = 0; i < n; i++) lam[i] = i < 6 ? ends[i] : -4 + 10.0 * (i - 6) / (n - 7);
    return dense_spectrum(lam, n, 15);
}

// Lanczos: top 3 and most negative 3 to 1e-6 relative, small residuals; power agrees.
static void test_lanczos_indefinite(void **state) {
    (void)state;
    const size_t n = 200;
    const int k = 3;
    double lam[200];
    Dense d = indefinite(n, lam);
    LinOp op = dense_op(&d);
    Rng rng;
    rng_seed(&rng, 15, 0);
    HpErr err;
    static const double top[3] = {10, 9, 8.5}, bottom[3] = {-7, -6, -5.5};
    for (int end = 0; end < 2; end++) {
        double vals[3], res[3];
        float *vecs = malloc(k * n * sizeof *vecs);
        LanczosOpts o = {.k = k, .which = end ? EIG_SMALLEST : EIG_LARGEST, .max_steps = 200,
                         .tol = 1e-8};
        LanczosOut out = {.values = vals, .vectors = vecs, .residuals = res};
        long before = op.products;
        assert_int_equal(lanczos_eigs(&op, &o, &rng, &out, &err), 0);
        assert_int_equal(op.products - before, out.steps);
        printf("lanczos %s: %d steps, converged %d:", end ? "smallest" : "largest", out.steps,
               out.converged);
        for (int i = 0; i < k; i++) {
            double want = end ? bottom[i] : top[i];
            double r = eig_residual(&d, vecs + i * n, vals[i]);
            printf(" %.9f (res est %.1e, true %.1e)", vals[i], res[i], r * fabs(vals[i]));
            assert_true(fabs(vals[i] - want) <= 1e-6 * fabs(want));
            assert_true(r <= 1e-5);
            double nrm = 0;
            for (size_t j = 0; j < n; j++) nrm += (double)vecs[i * n + j] * vecs[i * n + j];
            assert_true(fabs(sqrt(nrm) - 1) < 1e-6);
        }
        printf("\n");
        assert_true(out.converged);
        free(vecs);
    }
    // Power iteration: by magnitude, which here is also the top 3.
    double pv[3];
    float *pvec = malloc(k * n * sizeof *pvec);
    PowerOpts po = {.k = k, .max_iters = 5000, .tol = 1e-11};
    PowerOut pout = {.values = pv, .vectors = pvec};
    assert_int_equal(power_eigs(&op, &po, &rng, &pout, &err), 0);
    printf("power: %ld products, converged %d: %.9f %.9f %.9f\n", pout.products, pout.converged,
           pv[0], pv[1], pv[2]);
    assert_int_equal(pout.converged, k);
    for (int i = 0; i < k; i++) {
        assert_true(fabs(pv[i] - top[i]) <= 1e-5 * top[i]);
        assert_true(eig_residual(&d, pvec + i * n, pv[i]) <= 1e-3);
    }
    free(pvec), free(d.a);
}

// Products Lanczos and power iteration need (from the same seeded start) until their top
// eigenvalue is within 1e-3 relative of 1; each method is rerun with a growing step limit.
static void products_to_1e3(LinOp *op, uint64_t seed, int *lz_steps, int *pw_iters) {
    HpErr err;
    Rng rng;
    *lz_steps = *pw_iters = 0;
    for (int s = 1; s <= 150 && !*lz_steps; s++) {
        rng_seed(&rng, seed, 0);
        double v;
        LanczosOpts o = {.k = 1, .which = EIG_LARGEST, .max_steps = s, .tol = 1e-12};
        LanczosOut out = {.values = &v};
        assert_int_equal(lanczos_eigs(op, &o, &rng, &out, &err), 0);
        if (fabs(v - 1) <= 1e-3) *lz_steps = out.steps;
    }
    for (int t = 1; t <= 1000 && !*pw_iters; t++) {
        rng_seed(&rng, seed, 0);
        double v;
        PowerOpts o = {.k = 1, .max_iters = t, .tol = 1e-15};
        PowerOut out = {.values = &v};
        assert_int_equal(power_eigs(op, &o, &rng, &out, &err), 0);
        if (fabs(v - 1) <= 1e-3) *pw_iters = (int)out.products;
    }
    assert_true(*lz_steps > 0 && *pw_iters > 0);
}

// Products for the top eigenvalue to 1e-3 relative on spectra with a modest gap (1 vs 0.95,
// the rest in [-0.5, 0.8]), summed over 4 matrices and starts: Lanczos at most a third of
// power iteration's. (With a 10% gap, 0.9, at this loose accuracy the ratio is only 2 to 3.)
static void test_lanczos_vs_power(void **state) {
    (void)state;
    const size_t n = 150;
    double lam[150];
    for (size_t i = 0; i < n; i++) lam[i] = i == 0 ? 1 : i == 1 ? 0.95 : -0.5 + 1.3 * (i - 2) / (n - 3);
    int lz_total = 0, pw_total = 0;
    for (uint64_t seed = 16; seed < 20; seed++) {
        Dense d = dense_spectrum(lam, n, seed);
        LinOp op = dense_op(&d);
        int lz, pw;
        products_to_1e3(&op, seed, &lz, &pw);
        printf("top eigenvalue to 1e-3 (matrix %d): Lanczos %d products, power iteration %d\n",
               (int)(seed - 15), lz, pw);
        lz_total += lz, pw_total += pw;
        if (seed == 16) {  // what power's own stopping rule spends, and how close it gets
            Rng rng;
            rng_seed(&rng, seed, 0);
            double v;
            PowerOpts o = {.k = 1, .max_iters = 1000, .tol = 1e-4};
            PowerOut out = {.values = &v};
            HpErr err;
            assert_int_equal(power_eigs(&op, &o, &rng, &out, &err), 0);
            printf("  power with tol 1e-4: %ld products, error %.1e\n", out.products, fabs(v - 1));
        }
        free(d.a);
    }
    printf("top eigenvalue to 1e-3, total over 4: Lanczos %d, power %d (ratio %.2f)\n", lz_total,
           pw_total, (double)pw_total / lz_total);
    assert_true(3 * lz_total <= pw_total);
}

// A Krylov space that becomes invariant (3 distinct eigenvalues, k = 2): exact after 3 steps;
// and a breakdown before k Ritz values are known (2 I, k = 2): a restart finds the second.
static void test_lanczos_invariant(void **state) {
    (void)state;
    const size_t n = 60;
    double lam[60];
    for (size_t i = 0; i < n; i++) lam[i] = (double)(i % 3) - 1;  // -1, 0, 1
    Dense d = dense_spectrum(lam, n, 17);
    LinOp op = dense_op(&d);
    Rng rng;
    rng_seed(&rng, 17, 0);
    HpErr err;
    double v[2];
    LanczosOpts o = {.k = 2, .which = EIG_SMALLEST, .max_steps = 50, .tol = 1e-10};
    LanczosOut out = {.values = v};
    assert_int_equal(lanczos_eigs(&op, &o, &rng, &out, &err), 0);
    printf("invariant subspace: %d steps, %.9f %.9f\n", out.steps, v[0], v[1]);
    assert_int_equal(out.steps, 3);
    assert_true(out.converged);
    assert_true(fabs(v[0] + 1) < 1e-6 && fabs(v[1]) < 1e-6);
    free(d.a);
    // 2 I: every step breaks down; k = 2 needs a restart orthogonal to the first vector.
    d = dense_new(n);
    for (size_t i = 0; i < n; i++) d.a[i * n + i] = 2;
    op = dense_op(&d);
    o.which = EIG_LARGEST;
    float *vec = malloc(2 * n * sizeof *vec);
    out = (LanczosOut){.values = v, .vectors = vec};
    assert_int_equal(lanczos_eigs(&op, &o, &rng, &out, &err), 0);
    assert_int_equal(out.steps, 2);
    assert_true(fabs(v[0] - 2) < 1e-6 && fabs(v[1] - 2) < 1e-6);
    double overlap = 0;
    for (size_t i = 0; i < n; i++) overlap += (double)vec[i] * vec[n + i];
    assert_true(fabs(overlap) < 1e-6);
    free(vec), free(d.a);
}

// ---------------------------------------------------------------------------------------------
// SLQ.

// Half the eigenvalues at 1, half at 5: each run's Krylov space is invariant after two steps,
// the nodes are exactly 1 and 5, half the density's mass lies near each, it integrates to 1,
// and the weighted mean of the nodes is tr(A)/n = 3.
static void test_slq_two_point(void **state) {
    (void)state;
    const size_t n = 400;
    double *lam = malloc(n * sizeof *lam);
    for (size_t i = 0; i < n; i++) lam[i] = i % 2 ? 5 : 1;
    Dense d = dense_spectrum(lam, n, 18);
    LinOp op = dense_op(&d);
    Rng rng;
    rng_seed(&rng, 18, 0);
    HpErr err;
    SlqOpts o = slq_defaults();
    o.n_probes = 30, o.steps = 20;
    Progress pr = {0, 0};
    o.progress = count_progress, o.user = &pr;
    SlqResult r;
    assert_int_equal(slq_density(&op, &o, &rng, &r, &err), 0);
    assert_int_equal(pr.calls, r.products);
    double mean = 0;
    for (int p = 0; p < r.n_probes; p++) {
        double wsum = 0;
        for (int i = 0; i < r.n_nodes[p]; i++) {
            double th = r.nodes[p * r.steps + i], w = r.weights[p * r.steps + i];
            wsum += w;
            mean += th * w / r.n_probes;
            if (w > 1e-6) assert_true(fmin(fabs(th - 1), fabs(th - 5)) < 1e-5);
        }
        assert_true(fabs(wsum - 1) < 1e-12);
    }
    double total = trapezoid(r.grid, r.density, 0, r.grid_points - 1);
    double low = mass_between(&r, -INFINITY, 3), high = mass_between(&r, 3, INFINITY);
    printf("slq two-point: %ld products (%d probes), nodes/run %d, grid %d, sigma2 %.2e, "
           "integral %.6f, mass near 1 %.3f, near 5 %.3f, mean node %.4f (tr/n 3)\n",
           r.products, r.n_probes, r.n_nodes[0], r.grid_points, r.sigma2, total, low, high, mean);
    assert_true(r.n_nodes[0] <= 3);  // stops at the invariant subspace
    assert_true(fabs(total - 1) < 1e-3);
    assert_true(fabs(low - 0.5) < 0.05 && fabs(high - 0.5) < 0.05);
    assert_true(fabs(mean / 3 - 1) < 0.05);
    assert_true(fabs(r.sigma2 - 1e-5 * 16) < 1e-9);
    slq_free(&r);
    slq_free(&r);  // idempotent
    free(lam), free(d.a);
}

// A continuous indefinite spectrum (uniform on [-1, 3]) and a PSD one (uniform on [0.5, 5]):
// interval masses, extremes, the negative/positive curvature ratio and the condition number.
static void test_slq_figures(void **state) {
    (void)state;
    const size_t n = 300;
    double *lam = malloc(n * sizeof *lam), neg = 0, pos = 0, tr = 0;
    for (size_t i = 0; i < n; i++) {
        lam[i] = -1 + 4.0 * i / (n - 1);
        tr += lam[i];
        if (lam[i] < 0) neg -= lam[i];
        else pos += lam[i];
    }
    Dense d = dense_spectrum(lam, n, 19);
    LinOp op = dense_op(&d);
    Rng rng;
    rng_seed(&rng, 19, 0);
    HpErr err;
    SlqOpts o = {.n_probes = 10, .steps = 60, .gaussian = 1};
    SlqResult r;
    assert_int_equal(slq_density(&op, &o, &rng, &r, &err), 0);
    SpectrumFigures f;
    assert_int_equal(slq_figures(&r, 0, &f, &err), 0);
    double total = trapezoid(r.grid, r.density, 0, r.grid_points - 1);
    double below0 = mass_between(&r, -INFINITY, 0), mid = mass_between(&r, 0, 2), mean = 0;
    for (int p = 0; p < r.n_probes; p++)
        for (int i = 0; i < r.n_nodes[p]; i++)
            mean += r.nodes[p * r.steps + i] * r.weights[p * r.steps + i] / r.n_probes;
    printf("slq uniform[-1,3]: integral %.6f, mass<0 %.3f (0.25), mass[0,2) %.3f (0.5), "
           "range [%.5f, %.5f], neg/pos %.4f (true %.4f), mean node %.4f (tr/n %.4f)\n",
           total, below0, mid, f.lambda_min, f.lambda_max, f.neg_pos_ratio, neg / pos, mean,
           tr / n);
    assert_true(fabs(mean - tr / n) < 0.1);
    assert_true(fabs(total - 1) < 1e-3);
    assert_true(fabs(below0 - 0.25) < 0.05 && fabs(mid - 0.5) < 0.05);
    assert_true(fabs(f.lambda_max - 3) < 1e-3 && fabs(f.lambda_min + 1) < 1e-3);
    assert_true(fabs(f.neg_pos_ratio / (neg / pos) - 1) < 0.25);
    assert_true(fabs(f.neg_mass - f.pos_mass * f.neg_pos_ratio) < 1e-12);
    slq_free(&r);
    free(d.a);

    for (size_t i = 0; i < n; i++) lam[i] = 0.5 + 4.5 * i / (n - 1);
    d = dense_spectrum(lam, n, 20);
    op = dense_op(&d);
    assert_int_equal(slq_density(&op, &o, &rng, &r, &err), 0);
    assert_int_equal(slq_figures(&r, 0, &f, &err), 0);
    printf("slq uniform[0.5,5]: condition %.4f (true 10), neg/pos %.1f\n", f.condition,
           f.neg_pos_ratio);
    assert_true(fabs(f.condition / 10 - 1) < 0.02);
    assert_true(f.neg_pos_ratio == 0);
    slq_free(&r);
    free(lam), free(d.a);
}

// ---------------------------------------------------------------------------------------------
// Bad arguments and operator failures.

// Asserts rc is -1 and err holds a message containing want.
static void expect_fail(int rc, const HpErr *err, const char *want) {
    assert_int_equal(rc, -1);
    if (!strstr(err->msg, want)) fail_msg("message '%s' lacks '%s'", err->msg, want);
}

static void test_bad_arguments(void **state) {
    (void)state;
    const size_t n = 10;
    double lam[10];
    for (size_t i = 0; i < n; i++) lam[i] = (double)i + 1;
    Dense d = dense_spectrum(lam, n, 21);
    LinOp op = dense_op(&d);
    Rng rng;
    rng_seed(&rng, 21, 0);
    HpErr err = {{0}};
    double v[20], res[20];
    LanczosOut lo = {.values = v, .residuals = res};
    LanczosOpts l = lanczos_defaults();
    l.k = 11;
    expect_fail(lanczos_eigs(&op, &l, &rng, &lo, &err), &err, "k = 11");
    l.k = 0;
    expect_fail(lanczos_eigs(&op, &l, &rng, &lo, &err), &err, "k = 0");
    l = lanczos_defaults(), l.tol = 0;
    expect_fail(lanczos_eigs(&op, &l, &rng, &lo, &err), &err, "tolerance");
    l = lanczos_defaults(), l.max_steps = 0;
    expect_fail(lanczos_eigs(&op, &l, &rng, &lo, &err), &err, "max_steps");
    l = lanczos_defaults(), l.k = 3, l.max_steps = 2;
    expect_fail(lanczos_eigs(&op, &l, &rng, &lo, &err), &err, "min(n, max_steps) = 2");
    expect_fail(lanczos_eigs(NULL, &l, &rng, &lo, &err), &err, "no operator");

    PowerOut po = {.values = v};
    PowerOpts p = power_defaults();
    p.k = 11;
    expect_fail(power_eigs(&op, &p, &rng, &po, &err), &err, "k = 11");
    p = power_defaults(), p.tol = -1;
    expect_fail(power_eigs(&op, &p, &rng, &po, &err), &err, "tolerance");
    p = power_defaults(), p.max_iters = 0;
    expect_fail(power_eigs(&op, &p, &rng, &po, &err), &err, "max_iters");

    HutchOut ho = {0};
    HutchOpts h = hutch_defaults();
    uint32_t grp[10] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 3};
    expect_fail(hutchinson_trace(&op, grp, 3, &h, &rng, &ho, &err), &err, "group 3 of 3");
    expect_fail(hutchinson_trace(&op, NULL, 4, &h, &rng, &ho, &err), &err, "no group map");
    h.tol = 0;
    expect_fail(hutchinson_trace(&op, NULL, 1, &h, &rng, &ho, &err), &err, "tolerance");
    h = hutch_defaults(), h.max_probes = 1;
    expect_fail(hutchinson_trace(&op, NULL, 1, &h, &rng, &ho, &err), &err, "at least 2 probes");

    HutchppOut hp;
    expect_fail(hutchpp_trace(&op, 5, &rng, NULL, NULL, &hp, &err), &err, "minimum 6");

    SlqResult r;
    SlqOpts s = slq_defaults();
    s.steps = 0;
    expect_fail(slq_density(&op, &s, &rng, &r, &err), &err, "steps");
    s = slq_defaults(), s.n_probes = 0;
    expect_fail(slq_density(&op, &s, &rng, &r, &err), &err, "n_probes");
    s = slq_defaults(), s.t_min = 2, s.t_max = 1;
    expect_fail(slq_density(&op, &s, &rng, &r, &err), &err, "empty");
    s = slq_defaults(), s.grid_points = 1;
    expect_fail(slq_density(&op, &s, &rng, &r, &err), &err, "grid_points");
    SpectrumFigures f;
    expect_fail(slq_figures(NULL, 0, &f, &err), &err, "missing");

    // The operator's own error comes back, named by the estimator, with nothing leaked.
    d.fail_after = 3;
    l = lanczos_defaults();
    expect_fail(lanczos_eigs(&op, &l, &rng, &lo, &err), &err, "lanczos: dense: injected failure");
    d.calls = 0;
    p = power_defaults();
    expect_fail(power_eigs(&op, &p, &rng, &po, &err), &err, "power: dense: injected failure");
    d.calls = 0;
    h = hutch_defaults();
    expect_fail(hutchinson_trace(&op, NULL, 1, &h, &rng, &ho, &err), &err, "hutchinson: dense");
    d.calls = 0;
    expect_fail(hutchpp_trace(&op, 9, &rng, NULL, NULL, &hp, &err), &err, "hutchpp: dense");
    d.calls = 0;
    s = slq_defaults();
    expect_fail(slq_density(&op, &s, &rng, &r, &err), &err, "slq: dense");
    free(d.a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hutch_diagonal_exact),
        cmocka_unit_test(test_hutch_groups_error_bars),
        cmocka_unit_test(test_hutch_stopping_rule),
        cmocka_unit_test(test_hutchpp_low_rank),
        cmocka_unit_test(test_lanczos_indefinite),
        cmocka_unit_test(test_lanczos_vs_power),
        cmocka_unit_test(test_lanczos_invariant),
        cmocka_unit_test(test_slq_two_point),
        cmocka_unit_test(test_slq_figures),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
