// estimators.c: Hutchinson, Hutch++, Lanczos, power iteration and SLQ over a LinOp.
// Formulas: Hutchinson (1989); Meyer, Musco, Musco, Woodruff, "Hutch++" (SOSA 2021); Lanczos with
// full reorthogonalisation (Golub and Van Loan, sec. 10.1); Ghorbani, Krishnan, Xiao, "An
// Investigation into Neural Net Optimization via Hessian Eigenvalue Density" (ICML 2019).
#include "estimators.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

// Below this fraction of ||T|| a Lanczos beta is taken as zero: the float interface cannot
// resolve anything smaller.
#define BREAKDOWN_REL (8.0 * FLT_EPSILON)
// Gaussian kernel terms farther than this many sigmas from a node are dropped (exp(-72)).
#define KERNEL_CUTOFF 12.0
#define SLQ_AUTO_MIN_POINTS 1001
#define SLQ_AUTO_MAX_POINTS 200001

// ---------------------------------------------------------------------------------------------
// Shared helpers.

// Counts products for one estimator call and reports progress.
typedef struct {
    LinOp *op;
    ProgressFn fn;
    void *user;
    long done, total;
    const char *who;
} Counter;

// out = A v through c; reports progress; on failure err names the estimator.
static int cnt_apply(Counter *c, const float *v, float *out, HpErr *err) {
    hp_fail(err, "operator failed without a message");
    if (linop_apply(c->op, v, out, err) != 0) return hp_prefix(err, c->who);
    c->done++;
    if (c->fn) c->fn(c->done, c->total, "products", c->user);
    return 0;
}

// Checks that op is usable (and small enough for BLAS/LAPACK int sizes).
static int check_op(const LinOp *op, const char *who, HpErr *err) {
    if (!op || !op->apply) return hp_fail(err, "%s: no operator", who);
    if (op->n < 1) return hp_fail(err, "%s: operator of size 0", who);
    if (op->n > (size_t)INT_MAX) return hp_fail(err, "%s: operator size %zu too large", who, op->n);
    return 0;
}

// Fills z[0..n) with independent +-1 (Rademacher) values.
static void rademacher(Rng *rng, float *z, size_t n) {
    uint64_t bits = 0;
    for (size_t i = 0; i < n; i++) {
        if ((i & 63) == 0) bits = rng_u64(rng);
        z[i] = (bits & 1) ? 1.0f : -1.0f;
        bits >>= 1;
    }
}

// Fills v[0..n) with standard normal values.
static void normal_vec(Rng *rng, double *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = rng_normal(rng);
}

// Returns the dot product of a and b (double).
static double dot(const double *a, const double *b, size_t n) {
    return cblas_ddot((int)n, a, 1, b, 1);
}

// Scales v to unit norm; returns its norm before (0 leaves v unchanged).
static double normalise(double *v, size_t n) {
    double s = cblas_dnrm2((int)n, v, 1);
    if (s > 0) cblas_dscal((int)n, 1.0 / s, v, 1);
    return s;
}

// Converts n doubles to floats.
static void to_float(const double *a, float *b, size_t n) {
    for (size_t i = 0; i < n; i++) b[i] = (float)a[i];
}

// Converts n floats to doubles.
static void to_double(const float *a, double *b, size_t n) {
    for (size_t i = 0; i < n; i++) b[i] = a[i];
}

// One Welford update of a running mean and sum of squared deviations with sample x (count-th).
static void welford(double *mean, double *m2, double x, int count) {
    double d = x - *mean;
    *mean += d / count;
    *m2 += d * (x - *mean);
}

// Standard error of a mean of count samples with Welford sum of squares m2 (count >= 2).
static double std_err(double m2, int count) {
    return sqrt(fmax(m2, 0.0) / (count - 1) / count);
}

// w -= B^T (B w), twice (classical Gram-Schmidt with reorthogonalisation) against the rows of
// the rows x n row-major B; h is rows doubles of scratch.
static void orth_against(const double *B, int rows, size_t n, double *w, double *h) {
    if (rows < 1) return;
    for (int pass = 0; pass < 2; pass++) {
        cblas_dgemv(CblasRowMajor, CblasNoTrans, rows, (int)n, 1.0, B, (int)n, w, 1, 0.0, h, 1);
        cblas_dgemv(CblasRowMajor, CblasTrans, rows, (int)n, -1.0, B, (int)n, h, 1, 1.0, w, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Hutchinson.

HutchOpts hutch_defaults(void) {
    return (HutchOpts){.min_probes = 8, .max_probes = 100, .tol = 1e-2};
}

// Validates Hutchinson arguments; sets *n_groups to 1 for the single-group case and *minp.
static int hutch_check(const LinOp *op, const uint32_t *group_of, size_t *n_groups,
                       const HutchOpts *o, const Rng *rng, const HutchOut *out, int *minp,
                       HpErr *err) {
    if (check_op(op, "hutchinson", err)) return -1;
    if (!o || !rng || !out) return hp_fail(err, "hutchinson: missing options, rng or output");
    if (!group_of) {
        if (*n_groups > 1) return hp_fail(err, "hutchinson: %zu groups but no group map", *n_groups);
        *n_groups = 1;
    } else if (*n_groups < 1) {
        return hp_fail(err, "hutchinson: a group map needs at least one group");
    }
    *minp = o->min_probes == 0 ? 8 : o->min_probes;
    if (o->max_probes < 2 || *minp < 2)
        return hp_fail(err, "hutchinson: need at least 2 probes (min %d, max %d)", *minp,
                       o->max_probes);
    if (!(o->tol > 0) || !isfinite(o->tol))
        return hp_fail(err, "hutchinson: tolerance must be positive (got %g)", o->tol);
    if (*minp > o->max_probes) *minp = o->max_probes;
    for (size_t i = 0; group_of && i < op->n; i++)
        if (group_of[i] >= *n_groups)
            return hp_fail(err, "hutchinson: coordinate %zu in group %u of %zu", i,
                           (unsigned)group_of[i], *n_groups);
    return 0;
}

// Sets gsum to the probe's group sums of z_i (Az)_i, in coordinate order; adds them to dacc[i]
// too if dacc.
static void hutch_accumulate(const float *z, const float *az, size_t n, const uint32_t *group_of,
                             double *gsum, size_t n_groups, double *dacc) {
    memset(gsum, 0, n_groups * sizeof *gsum);
    for (size_t i = 0; i < n; i++) {
        double v = (double)z[i] * (double)az[i];
        gsum[group_of ? group_of[i] : 0] += v;
        if (dacc) dacc[i] += v;
    }
}

int hutchinson_trace(LinOp *op, const uint32_t *group_of, size_t n_groups, const HutchOpts *opts,
                     Rng *rng, HutchOut *out, HpErr *err) {
    int minp = 0;
    if (hutch_check(op, group_of, &n_groups, opts, rng, out, &minp, err)) return -1;
    size_t n = op->n;
    float *z = hp_alloc(n, sizeof *z, err);
    float *az = z ? hp_alloc(n, sizeof *az, err) : NULL;
    double *gsum = az ? hp_zalloc(n_groups, sizeof *gsum, err) : NULL;
    double *gmean = gsum ? hp_zalloc(n_groups, sizeof *gmean, err) : NULL;
    double *gm2 = gmean ? hp_zalloc(n_groups, sizeof *gm2, err) : NULL;
    double *dacc = gm2 && out->diag ? hp_zalloc(n, sizeof *dacc, err) : NULL;
    Counter c = {op, opts->progress, opts->user, 0, opts->max_probes, "hutchinson"};
    double tmean = 0, tm2 = 0;
    int p = 0, rc = gm2 && (dacc || !out->diag) ? 0 : hp_prefix(err, "hutchinson");
    while (rc == 0 && p < opts->max_probes) {
        rademacher(rng, z, n);
        if (cnt_apply(&c, z, az, err)) { rc = -1; break; }
        hutch_accumulate(z, az, n, group_of, gsum, n_groups, dacc);
        p++;
        double t = 0;
        for (size_t g = 0; g < n_groups; g++) {
            t += gsum[g];
            welford(&gmean[g], &gm2[g], gsum[g], p);
        }
        if (!isfinite(t)) { rc = hp_fail(err, "hutchinson: operator returned non-finite values"); break; }
        welford(&tmean, &tm2, t, p);
        if (p < minp) continue;
        double est = 0;
        for (size_t g = 0; g < n_groups; g++) est += gmean[g];
        if (std_err(tm2, p) <= opts->tol * fabs(est)) break;
    }
    if (rc == 0) {
        out->trace = 0;
        for (size_t g = 0; g < n_groups; g++) {
            out->trace += gmean[g];
            if (out->group_trace) out->group_trace[g] = gmean[g];
            if (out->group_se) out->group_se[g] = std_err(gm2[g], p);
        }
        out->trace_se = std_err(tm2, p);
        out->probes = p;
        out->converged = out->trace_se <= opts->tol * fabs(out->trace);
        for (size_t i = 0; dacc && i < n; i++) out->diag[i] = (float)(dacc[i] / p);
    }
    free(z), free(az), free(gsum), free(gmean), free(gm2), free(dacc);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Hutch++.

// Y[:, c] = A s_c for k random sign columns (n x k column-major), then Y = orth(Y) in place.
static int hutchpp_range(Counter *c, double *Y, size_t n, int k, Rng *rng, float *vf, float *wf,
                         HpErr *err) {
    for (int j = 0; j < k; j++) {
        rademacher(rng, vf, n);
        if (cnt_apply(c, vf, wf, err)) return -1;
        to_double(wf, Y + (size_t)j * n, n);
    }
    double *tau = hp_alloc((size_t)k, sizeof *tau, err);
    if (!tau) return hp_prefix(err, "hutchpp");
    int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (int)n, k, Y, (int)n, tau);
    if (info == 0) info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, (int)n, k, k, Y, (int)n, tau);
    free(tau);
    if (info != 0) return hp_fail(err, "hutchpp: QR failed (LAPACK info %d)", info);
    return 0;
}

// Returns sum_c q_c^T A q_c over the k orthonormal columns of Q (the low-rank part).
static int hutchpp_lowrank(Counter *c, const double *Q, size_t n, int k, float *vf, float *wf,
                           double *tr, HpErr *err) {
    *tr = 0;
    for (int j = 0; j < k; j++) {
        const double *q = Q + (size_t)j * n;
        to_float(q, vf, n);
        if (cnt_apply(c, vf, wf, err)) return -1;
        double s = 0;
        for (size_t i = 0; i < n; i++) s += q[i] * (double)wf[i];
        *tr += s;
    }
    return 0;
}

// Hutchinson on (I - QQ^T) A (I - QQ^T) with l probes: mean and its standard error.
static int hutchpp_residual(Counter *c, const double *Q, size_t n, int k, int l, Rng *rng,
                            float *vf, float *wf, double *mean, double *se, HpErr *err) {
    double *g = hp_alloc(n, sizeof *g, err), *h = g ? hp_alloc((size_t)k, sizeof *h, err) : NULL;
    if (!h) {
        free(g);
        return hp_prefix(err, "hutchpp");
    }
    double m2 = 0;
    int rc = 0;
    *mean = 0;
    for (int p = 1; p <= l; p++) {
        rademacher(rng, vf, n);
        to_double(vf, g, n);
        cblas_dgemv(CblasColMajor, CblasTrans, (int)n, k, 1.0, Q, (int)n, g, 1, 0.0, h, 1);
        cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, k, -1.0, Q, (int)n, h, 1, 1.0, g, 1);
        to_float(g, vf, n);
        if (cnt_apply(c, vf, wf, err)) { rc = -1; break; }
        double v = 0;
        for (size_t i = 0; i < n; i++) v += (double)vf[i] * (double)wf[i];
        welford(mean, &m2, v, p);
    }
    *se = l >= 2 ? std_err(m2, l) : NAN;
    free(g), free(h);
    return rc;
}

int hutchpp_trace(LinOp *op, int m, Rng *rng, ProgressFn progress, void *user, HutchppOut *out,
                  HpErr *err) {
    if (check_op(op, "hutchpp", err)) return -1;
    if (!rng || !out) return hp_fail(err, "hutchpp: missing rng or output");
    if (m < 6) return hp_fail(err, "hutchpp: budget of %d products is below the minimum 6", m);
    size_t n = op->n;
    int k = m / 3;
    if ((size_t)k > n) k = (int)n;
    int l = m - 2 * k;
    Counter c = {op, progress, user, 0, m, "hutchpp"};
    double *Q = hp_alloc(n * (size_t)k, sizeof *Q, err);
    float *vf = Q ? hp_alloc(n, sizeof *vf, err) : NULL, *wf = vf ? hp_alloc(n, sizeof *wf, err) : NULL;
    double low = 0, mean = 0, se = 0;
    int rc = wf ? 0 : hp_prefix(err, "hutchpp");
    if (rc == 0) rc = hutchpp_range(&c, Q, n, k, rng, vf, wf, err);
    if (rc == 0) rc = hutchpp_lowrank(&c, Q, n, k, vf, wf, &low, err);
    if (rc == 0) rc = hutchpp_residual(&c, Q, n, k, l, rng, vf, wf, &mean, &se, err);
    if (rc == 0 && !isfinite(low + mean))
        rc = hp_fail(err, "hutchpp: operator returned non-finite values");
    if (rc == 0)
        *out = (HutchppOut){.trace = low + mean, .trace_lowrank = low, .se = se, .rank = k,
                            .probes = l, .products = c.done};
    free(Q), free(vf), free(wf);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Lanczos core (shared by lanczos_eigs and slq_density).

// A Lanczos run: basis rows q_0.. in Q (cap x n), tridiagonal T = (alpha, beta).
typedef struct {
    size_t n;
    int cap;
    double *Q, *alpha, *beta, *w, *h;
    float *vf, *wf;
    double tnorm;  // running Gershgorin bound of ||T||
} Lanczos;

// Frees a run's buffers.
static void lz_free(Lanczos *lz) {
    free(lz->Q), free(lz->alpha), free(lz->beta), free(lz->h), free(lz->w), free(lz->vf);
    free(lz->wf);
}

// Allocates a run of at most cap steps on vectors of n; returns 0, or -1 with err set and
// nothing to free.
static int lz_init(Lanczos *lz, size_t n, int cap, HpErr *err) {
    *lz = (Lanczos){.n = n, .cap = cap};
    lz->Q = hp_alloc((size_t)cap * n, sizeof *lz->Q, err);
    lz->alpha = lz->Q ? hp_zalloc((size_t)cap, sizeof *lz->alpha, err) : NULL;
    lz->beta = lz->alpha ? hp_zalloc((size_t)cap, sizeof *lz->beta, err) : NULL;
    lz->h = lz->beta ? hp_alloc((size_t)cap, sizeof *lz->h, err) : NULL;
    lz->w = lz->h ? hp_alloc(n, sizeof *lz->w, err) : NULL;
    lz->vf = lz->w ? hp_alloc(n, sizeof *lz->vf, err) : NULL;
    lz->wf = lz->vf ? hp_alloc(n, sizeof *lz->wf, err) : NULL;
    if (!lz->wf) {
        lz_free(lz);
        *lz = (Lanczos){.n = n, .cap = cap};
        return -1;
    }
    return 0;
}

// Sets q_0 = v / ||v|| (v nonzero) and forgets earlier steps.
static void lz_start(Lanczos *lz, const double *v) {
    memcpy(lz->Q, v, lz->n * sizeof *v);
    normalise(lz->Q, lz->n);
    lz->tnorm = 0;
}

// Step j (q_j in row j): alpha_j, beta_j and the new direction w orthogonal to q_0..q_j.
// beta_j is set to 0 when it falls below BREAKDOWN_REL ||T|| (invariant subspace).
static int lz_step(Lanczos *lz, int j, Counter *c, HpErr *err) {
    size_t n = lz->n;
    const double *q = lz->Q + (size_t)j * n;
    to_float(q, lz->vf, n);
    if (cnt_apply(c, lz->vf, lz->wf, err)) return -1;
    to_double(lz->wf, lz->w, n);
    double a = dot(q, lz->w, n);
    cblas_daxpy((int)n, -a, q, 1, lz->w, 1);
    if (j > 0 && lz->beta[j - 1] != 0) cblas_daxpy((int)n, -lz->beta[j - 1], q - n, 1, lz->w, 1);
    orth_against(lz->Q, j + 1, n, lz->w, lz->h);
    double b = cblas_dnrm2((int)n, lz->w, 1);
    if (!isfinite(a) || !isfinite(b))
        return hp_fail(err, "%s: operator returned non-finite values", c->who);
    lz->tnorm = fmax(lz->tnorm, fabs(a) + b + (j > 0 ? lz->beta[j - 1] : 0));
    lz->alpha[j] = a;
    lz->beta[j] = b <= BREAKDOWN_REL * lz->tnorm ? 0 : b;
    return 0;
}

// Sets q_{j+1} = w / beta_j (beta_j > 0, j + 1 < cap).
static void lz_next(Lanczos *lz, int j) {
    double *q = lz->Q + (size_t)(j + 1) * lz->n;
    for (size_t i = 0; i < lz->n; i++) q[i] = lz->w[i] / lz->beta[j];
}

// After a breakdown at step j: q_{j+1} = a random unit vector orthogonal to q_0..q_j
// (j + 1 < cap <= n); T stays block diagonal (beta_j = 0).
static void lz_restart(Lanczos *lz, int j, Rng *rng) {
    double *q = lz->Q + (size_t)(j + 1) * lz->n;
    do {
        normal_vec(rng, q, lz->n);
        orth_against(lz->Q, j + 1, lz->n, q, lz->h);
    } while (normalise(q, lz->n) < 1e-3);
}

// Eigen-decomposition of the m x m T: theta ascending, S column-major (column i = vector i);
// e is m doubles of scratch; who names the caller in an error.
static int tridiag_eig(const Lanczos *lz, int m, double *theta, double *S, double *e,
                       const char *who, HpErr *err) {
    memcpy(theta, lz->alpha, (size_t)m * sizeof *theta);
    memcpy(e, lz->beta, (size_t)m * sizeof *e);
    int info = LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', m, theta, e, S, m);
    if (info != 0) return hp_fail(err, "%s: tridiagonal eigensolver failed (LAPACK info %d)", who, info);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Lanczos eigenpairs.

LanczosOpts lanczos_defaults(void) {
    return (LanczosOpts){.k = 1, .which = EIG_LARGEST, .max_steps = 100, .tol = 1e-5};
}

// Validates Lanczos arguments; sets *cap = min(n, max_steps).
static int lanczos_check(const LinOp *op, const LanczosOpts *o, const Rng *rng,
                         const LanczosOut *out, int *cap, HpErr *err) {
    if (check_op(op, "lanczos", err)) return -1;
    if (!o || !rng || !out || !out->values)
        return hp_fail(err, "lanczos: missing options, rng or output");
    if (o->max_steps < 1) return hp_fail(err, "lanczos: max_steps must be >= 1 (got %d)", o->max_steps);
    if (!(o->tol > 0) || !isfinite(o->tol))
        return hp_fail(err, "lanczos: tolerance must be positive (got %g)", o->tol);
    if (o->which != EIG_LARGEST && o->which != EIG_SMALLEST)
        return hp_fail(err, "lanczos: unknown end of the spectrum %d", (int)o->which);
    *cap = (size_t)o->max_steps < op->n ? o->max_steps : (int)op->n;
    if (o->k < 1 || o->k > *cap)
        return hp_fail(err, "lanczos: k = %d must be in [1, min(n, max_steps) = %d]", o->k, *cap);
    return 0;
}

// Index in the ascending theta[0..m) of the i-th wanted Ritz value.
static int wanted(EigWhich which, int m, int i) { return which == EIG_LARGEST ? m - 1 - i : i; }

// 1 if the k wanted Ritz pairs of the m x m T (theta, S) meet tol after step m - 1.
static int ritz_converged(const Lanczos *lz, const LanczosOpts *o, int m, const double *theta,
                          const double *S) {
    double tiny = FLT_EPSILON * lz->tnorm, b = lz->beta[m - 1];
    for (int i = 0; i < o->k; i++) {
        int col = wanted(o->which, m, i);
        double res = fabs(b * S[(size_t)col * m + m - 1]);
        if (res > o->tol * fmax(fabs(theta[col]), tiny)) return 0;
    }
    return 1;
}

// Writes the k wanted Ritz values, residuals and (unit) vectors Q^T s of the m-step run;
// returns 0, or -1 with err set (out of memory) and nothing written.
static int ritz_output(const Lanczos *lz, const LanczosOpts *o, int m, const double *theta,
                       const double *S, LanczosOut *out, HpErr *err) {
    double *v = out->vectors ? hp_alloc(lz->n, sizeof *v, err) : NULL;
    if (out->vectors && !v) return hp_prefix(err, "lanczos");
    for (int i = 0; i < o->k; i++) {
        int col = wanted(o->which, m, i);
        const double *s = S + (size_t)col * m;
        out->values[i] = theta[col];
        if (out->residuals) out->residuals[i] = fabs(lz->beta[m - 1] * s[m - 1]);
        if (!v) continue;
        cblas_dgemv(CblasRowMajor, CblasTrans, m, (int)lz->n, 1.0, lz->Q, (int)lz->n, s, 1, 0.0,
                    v, 1);
        normalise(v, lz->n);
        to_float(v, out->vectors + (size_t)i * lz->n, lz->n);
    }
    free(v);
    return 0;
}

int lanczos_eigs(LinOp *op, const LanczosOpts *opts, Rng *rng, LanczosOut *out, HpErr *err) {
    int cap = 0;
    if (lanczos_check(op, opts, rng, out, &cap, err)) return -1;
    Lanczos lz;
    if (lz_init(&lz, op->n, cap, err)) return hp_prefix(err, "lanczos");
    double *theta = hp_alloc((size_t)cap, sizeof *theta, err);
    double *e = theta ? hp_alloc((size_t)cap, sizeof *e, err) : NULL;
    double *S = e ? hp_alloc((size_t)cap * cap, sizeof *S, err) : NULL;
    if (!S) {
        lz_free(&lz);
        free(theta), free(e);
        return hp_prefix(err, "lanczos");
    }
    Counter c = {op, opts->progress, opts->user, 0, cap, "lanczos"};
    do normal_vec(rng, lz.w, op->n); while (normalise(lz.w, op->n) == 0);
    lz_start(&lz, lz.w);
    int m = 0, conv = 0, rc = 0;
    for (int j = 0; j < cap && rc == 0; j++) {
        rc = lz_step(&lz, j, &c, err);
        if (rc) break;
        m = j + 1;
        if (m >= opts->k) {
            rc = tridiag_eig(&lz, m, theta, S, e, "lanczos", err);
            if (rc || (conv = ritz_converged(&lz, opts, m, theta, S))) break;
        }
        if (m == cap) break;
        if (lz.beta[j] == 0) lz_restart(&lz, j, rng);
        else lz_next(&lz, j);
    }
    if (rc == 0) rc = ritz_output(&lz, opts, m, theta, S, out, err);
    if (rc == 0) {
        out->steps = m;
        out->converged = conv;
    }
    lz_free(&lz);
    free(theta), free(e), free(S);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Power iteration.

PowerOpts power_defaults(void) { return (PowerOpts){.k = 1, .max_iters = 1000, .tol = 1e-6}; }

// w -= sum_i lam_i (v_i . v) v_i over the p previous unit vectors V (p x n); h is p scratch.
static void deflate(const double *V, const double *lam, int p, size_t n, const double *v,
                    double *w, double *h) {
    if (p < 1) return;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, p, (int)n, 1.0, V, (int)n, v, 1, 0.0, h, 1);
    for (int i = 0; i < p; i++) h[i] *= lam[i];
    cblas_dgemv(CblasRowMajor, CblasTrans, p, (int)n, -1.0, V, (int)n, h, 1, 1.0, w, 1);
}

// Power iteration for pair p on the deflated operator; leaves the unit vector in row p of V.
static int power_one(Counter *c, const PowerOpts *o, Rng *rng, double *V, double *lam, int p,
                     double *w, double *h, float *vf, float *wf, int *conv, HpErr *err) {
    size_t n = c->op->n;
    double *v = V + (size_t)p * n, old = 0;
    do {
        normal_vec(rng, v, n);
        orth_against(V, p, n, v, h);
    } while (normalise(v, n) < 1e-3);
    *conv = 0;
    for (int it = 0; it < o->max_iters; it++) {
        to_float(v, vf, n);
        if (cnt_apply(c, vf, wf, err)) return -1;
        to_double(wf, w, n);
        deflate(V, lam, p, n, v, w, h);
        lam[p] = dot(v, w, n);
        double s = cblas_dnrm2((int)n, w, 1);
        if (!isfinite(s)) return hp_fail(err, "power: operator returned non-finite values");
        if (s == 0) { *conv = 1; break; }  // v is in the deflated operator's null space
        for (size_t i = 0; i < n; i++) v[i] = w[i] / s;
        if (it > 0 && fabs(lam[p] - old) <= o->tol * fabs(lam[p])) { *conv = 1; break; }
        old = lam[p];
    }
    return 0;
}

int power_eigs(LinOp *op, const PowerOpts *opts, Rng *rng, PowerOut *out, HpErr *err) {
    if (check_op(op, "power", err)) return -1;
    if (!opts || !rng || !out || !out->values)
        return hp_fail(err, "power: missing options, rng or output");
    if (opts->k < 1 || (size_t)opts->k > op->n)
        return hp_fail(err, "power: k = %d must be in [1, n = %zu]", opts->k, op->n);
    if (opts->max_iters < 1) return hp_fail(err, "power: max_iters must be >= 1 (got %d)", opts->max_iters);
    if (!(opts->tol > 0) || !isfinite(opts->tol))
        return hp_fail(err, "power: tolerance must be positive (got %g)", opts->tol);
    size_t n = op->n;
    int k = opts->k, rc = 0, nconv = 0;
    double *V = hp_alloc((size_t)k * n, sizeof *V, err), *lam = V ? hp_zalloc((size_t)k, sizeof *lam, err) : NULL;
    double *w = lam ? hp_alloc(n, sizeof *w, err) : NULL, *h = w ? hp_alloc((size_t)k, sizeof *h, err) : NULL;
    float *vf = h ? hp_alloc(n, sizeof *vf, err) : NULL, *wf = vf ? hp_alloc(n, sizeof *wf, err) : NULL;
    if (!wf) rc = hp_prefix(err, "power");
    Counter c = {op, opts->progress, opts->user, 0, (long)k * opts->max_iters, "power"};
    for (int p = 0; p < k && rc == 0; p++) {
        int conv;
        rc = power_one(&c, opts, rng, V, lam, p, w, h, vf, wf, &conv, err);
        nconv += conv;
    }
    if (rc == 0) {
        memcpy(out->values, lam, (size_t)k * sizeof *lam);
        if (out->vectors) to_float(V, out->vectors, (size_t)k * n);
        out->products = c.done;
        out->converged = nconv;
    }
    free(V), free(lam), free(w), free(h), free(vf), free(wf);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// SLQ.

SlqOpts slq_defaults(void) { return (SlqOpts){.n_probes = 10, .steps = 90}; }

void slq_free(SlqResult *res) {
    if (!res) return;
    free(res->n_nodes), free(res->nodes), free(res->weights), free(res->grid), free(res->density);
    memset(res, 0, sizeof *res);
}

// Validates SLQ arguments.
static int slq_check(const LinOp *op, const SlqOpts *o, const Rng *rng, const SlqResult *res,
                     HpErr *err) {
    if (check_op(op, "slq", err)) return -1;
    if (!o || !rng || !res) return hp_fail(err, "slq: missing options, rng or result");
    if (o->n_probes < 1) return hp_fail(err, "slq: n_probes must be >= 1 (got %d)", o->n_probes);
    if (o->steps < 1) return hp_fail(err, "slq: steps must be >= 1 (got %d)", o->steps);
    if (!(o->sigma2_frac >= 0) || !isfinite(o->sigma2_frac))
        return hp_fail(err, "slq: sigma2_frac must be >= 0 (got %g)", o->sigma2_frac);
    if (o->grid_points != 0 && o->grid_points < 2)
        return hp_fail(err, "slq: grid_points must be 0 (automatic) or >= 2 (got %d)", o->grid_points);
    int autorange = o->t_min == 0 && o->t_max == 0;
    if (!autorange && !(o->t_max > o->t_min && isfinite(o->t_min) && isfinite(o->t_max)))
        return hp_fail(err, "slq: grid range [%g, %g] is empty", o->t_min, o->t_max);
    return 0;
}

// One SLQ run of up to cap steps from a random unit vector; writes nodes, weights, count.
static int slq_probe(Lanczos *lz, Counter *c, const SlqOpts *o, Rng *rng, double *nodes,
                     double *weights, int *count, double *S, double *e, HpErr *err) {
    size_t n = lz->n;
    if (o->gaussian) {
        do normal_vec(rng, lz->w, n); while (normalise(lz->w, n) == 0);
    } else {
        rademacher(rng, lz->wf, n);
        to_double(lz->wf, lz->w, n);
    }
    lz_start(lz, lz->w);
    int m = 0;
    for (int j = 0; j < lz->cap; j++) {
        if (lz_step(lz, j, c, err)) return -1;
        m = j + 1;
        if (lz->beta[j] == 0 || m == lz->cap) break;
        lz_next(lz, j);
    }
    if (tridiag_eig(lz, m, nodes, S, e, "slq", err)) return -1;
    for (int i = 0; i < m; i++) weights[i] = S[(size_t)i * m] * S[(size_t)i * m];
    *count = m;
    return 0;
}

// Fills res's grid and density from its nodes and weights (sigma2 set); returns 0, or -1 with
// err set (out of memory; res's arrays are then for slq_free).
static int slq_smooth(SlqResult *res, const SlqOpts *o, HpErr *err) {
    double sigma = sqrt(res->sigma2), lo = o->t_min, hi = o->t_max;
    if (lo == 0 && hi == 0) lo = res->lambda_min - 8 * sigma, hi = res->lambda_max + 8 * sigma;
    int g = o->grid_points;
    if (g == 0) {
        double want = ceil((hi - lo) / (sigma / 4)) + 1;
        g = want < SLQ_AUTO_MIN_POINTS ? SLQ_AUTO_MIN_POINTS
            : want > SLQ_AUTO_MAX_POINTS ? SLQ_AUTO_MAX_POINTS : (int)want;
    }
    res->grid_points = g;
    res->grid = hp_alloc((size_t)g, sizeof *res->grid, err);
    res->density = res->grid ? hp_zalloc((size_t)g, sizeof *res->density, err) : NULL;
    if (!res->density) return -1;
    double norm = 1.0 / (sqrt(2 * M_PI * res->sigma2) * res->n_probes);
    for (int t = 0; t < g; t++) res->grid[t] = lo + (hi - lo) * t / (g - 1);
    for (int p = 0; p < res->n_probes; p++) {
        for (int i = 0; i < res->n_nodes[p]; i++) {
            double th = res->nodes[(size_t)p * res->steps + i];
            double tau = res->weights[(size_t)p * res->steps + i];
            for (int t = 0; t < g; t++) {
                double d = (res->grid[t] - th) / sigma;
                if (fabs(d) < KERNEL_CUTOFF) res->density[t] += tau * norm * exp(-0.5 * d * d);
            }
        }
    }
    return 0;
}

int slq_density(LinOp *op, const SlqOpts *opts, Rng *rng, SlqResult *res, HpErr *err) {
    if (slq_check(op, opts, rng, res, err)) return -1;
    int cap = (size_t)opts->steps < op->n ? opts->steps : (int)op->n, np = opts->n_probes;
    *res = (SlqResult){.n_probes = np, .steps = cap};
    res->n_nodes = hp_zalloc((size_t)np, sizeof *res->n_nodes, err);
    res->nodes = res->n_nodes ? hp_zalloc((size_t)np * cap, sizeof *res->nodes, err) : NULL;
    res->weights = res->nodes ? hp_zalloc((size_t)np * cap, sizeof *res->weights, err) : NULL;
    Lanczos lz;
    if (!res->weights || lz_init(&lz, op->n, cap, err)) {
        slq_free(res);
        return hp_prefix(err, "slq");
    }
    double *S = hp_alloc((size_t)cap * cap, sizeof *S, err), *e = S ? hp_alloc((size_t)cap, sizeof *e, err) : NULL;
    Counter c = {op, opts->progress, opts->user, 0, (long)np * cap, "slq"};
    int rc = e ? 0 : hp_prefix(err, "slq");
    for (int p = 0; p < np && rc == 0; p++)
        rc = slq_probe(&lz, &c, opts, rng, res->nodes + (size_t)p * cap,
                       res->weights + (size_t)p * cap, &res->n_nodes[p], S, e, err);
    lz_free(&lz);
    free(S), free(e);
    if (rc) {
        slq_free(res);
        return -1;
    }
    res->products = c.done;
    res->lambda_min = INFINITY, res->lambda_max = -INFINITY;
    for (int p = 0; p < np; p++)
        for (int i = 0; i < res->n_nodes[p]; i++) {
            res->lambda_min = fmin(res->lambda_min, res->nodes[(size_t)p * cap + i]);
            res->lambda_max = fmax(res->lambda_max, res->nodes[(size_t)p * cap + i]);
        }
    double width = res->lambda_max - res->lambda_min;
    if (!(width > 0)) width = fabs(res->lambda_max) > 0 ? fabs(res->lambda_max) : 1.0;
    res->sigma2 = (opts->sigma2_frac > 0 ? opts->sigma2_frac : 1e-5) * width * width;
    if (slq_smooth(res, opts, err)) {
        slq_free(res);
        return hp_prefix(err, "slq");
    }
    return 0;
}

int slq_figures(const SlqResult *res, double rel_floor, SpectrumFigures *fig, HpErr *err) {
    if (!res || !fig || !res->nodes || !res->weights || !res->n_nodes || res->n_probes < 1)
        return hp_fail(err, "slq_figures: missing or empty SLQ result");
    if (!(rel_floor >= 0 && rel_floor < 1))
        return hp_fail(err, "slq_figures: rel_floor must be in [0, 1) (got %g)", rel_floor);
    if (rel_floor == 0) rel_floor = 1e-6;
    double lmax = -INFINITY, lmin = INFINITY, neg = 0, pos = 0;
    for (int p = 0; p < res->n_probes; p++)
        for (int i = 0; i < res->n_nodes[p]; i++) {
            double th = res->nodes[(size_t)p * res->steps + i];
            double tau = res->weights[(size_t)p * res->steps + i];
            lmax = fmax(lmax, th), lmin = fmin(lmin, th);
            if (th < 0) neg += -th * tau;
            else pos += th * tau;
        }
    double minpos = INFINITY;
    for (int p = 0; p < res->n_probes && lmax > 0; p++)
        for (int i = 0; i < res->n_nodes[p]; i++) {
            double th = res->nodes[(size_t)p * res->steps + i];
            if (th > rel_floor * lmax) minpos = fmin(minpos, th);
        }
    if (!isfinite(minpos)) minpos = NAN;
    *fig = (SpectrumFigures){.lambda_max = lmax, .lambda_min = lmin, .lambda_min_pos = minpos,
                             .condition = lmax > 0 ? lmax / minpos : NAN,
                             .neg_mass = neg / res->n_probes, .pos_mass = pos / res->n_probes,
                             .neg_pos_ratio = pos > 0 ? neg / pos : NAN};
    return 0;
}
