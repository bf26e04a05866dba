// obs.c: the block-diagonal inverse empirical Fisher (Sherman-Morrison recursion, Woodbury matrix
// form, direct Cholesky inverse), built from per-sample or mini-batch gradients, and the OBS scores
// and updates read from it.
//
// Convention for symmetric double matrices: cblas works on the row-major UPPER triangle, and
// LAPACKE is called with LAPACK_COL_MAJOR and 'L' on the same memory (the column-major lower
// triangle of a buffer is its row-major upper one), so LAPACKE never makes transposed copies.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "obs.h"

#define MIB (1024.0 * 1024.0)

FisherOpts fisher_defaults(void) {
    return (FisherOpts){.n_grads = 1000,
                        .grad_batch = 1,
                        .block_size = 2000,
                        .align_layers = true,
                        .damp = 1e-5,
                        .budget_mb = 4096,
                        .method = FISHER_AUTO};
}

const char *fisher_method_name(FisherMethod m) {
    switch (m) {
    case FISHER_AUTO: return "auto";
    case FISHER_RECURSION: return "recursion";
    case FISHER_WOODBURY: return "woodbury";
    case FISHER_DIRECT: return "direct";
    }
    return "?";
}

// ---------------------------------------------------------------------------------------------
// Block layout and memory.

// Appends the starts of ceil(len / S) nearly equal blocks covering [a, b) to s (at *nb).
static void cut_range(size_t a, size_t b, size_t S, size_t *s, int *nb) {
    size_t len = b - a, parts = (len + S - 1) / S;
    for (size_t p = 0; p < parts; p++) s[(*nb)++] = a + len * p / parts;
}

int fisher_blocks(const Model *m, size_t S, bool align, size_t **start, HpErr *err) {
    *start = NULL;
    if (S == 0) return hp_fail(err, "fisher: block size 0: must be >= 1");
    if (m->n_params == 0) return hp_fail(err, "fisher: the model has no parameters");
    size_t n = m->n_params, cap = (size_t)m->n_nodes + n / S + 2;
    HP_ASSERT(cap < (size_t)1 << 31);
    size_t *s = hp_alloc(cap, sizeof *s, err);
    if (!s) return hp_prefix(err, "fisher");
    int nb = 0;
    if (!align) {
        for (size_t a = 0; a < n; a += S) s[nb++] = a;
    } else {
        size_t end = 0;  // parameters are laid out node by node, weight then bias
        for (int i = 0; i < m->n_nodes; i++) {
            const Node *nd = &m->nodes[i];
            size_t len = nd->w_len + nd->b_len;
            if (len == 0) continue;
            HP_ASSERT(nd->w_off == end && (nd->b_len == 0 || nd->b_off == nd->w_off + nd->w_len));
            cut_range(end, end + len, S, s, &nb);
            end += len;
        }
        HP_ASSERT(end == n);
    }
    s[nb] = n;
    *start = s;
    return nb;
}

// Picks the inversion of one block of S columns from N gradients.
static FisherMethod pick_method(FisherMethod m, int N, size_t S) {
    if (m != FISHER_AUTO) return m;
    return (size_t)N < S ? FISHER_WOODBURY : FISHER_DIRECT;
}

// Doubles of scratch one thread needs to invert a block of S columns from N gradients by method m
// (the S x S result first).
static size_t scratch_doubles(int N, size_t S, FisherMethod m) {
    switch (pick_method(m, N, S)) {
    case FISHER_RECURSION: return S * S + 2 * S;
    case FISHER_WOODBURY: return S * S + (size_t)N * S + (size_t)N * (size_t)N;
    default: return S * S + (size_t)N * S;
    }
}

// Estimated bytes of one gradient's workspace for batches of B: activations, their gradients and
// op state, the input batch, and one thread's conv scratch.
static double grad_ws_bytes(const Model *m, int B) {
    double act = 0, conv = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *nd = &m->nodes[i];
        act += (double)shape_numel(nd->out);
        if (nd->op == OP_CONV2D) {
            Shape in = nd->n_in > 0 ? m->nodes[nd->in[0]].out : m->input;
            double col = (double)in.c / nd->groups * nd->kernel * nd->kernel * nd->out.h * (in.w + 2.0 * nd->padding);
            conv = fmax(conv, 2 * col + (double)(in.h + 2 * nd->padding) * (in.w + 2 * nd->padding) +
                                  (double)nd->w_len + nd->out_features);
        }
    }
    return 4.0 * (3.0 * B * act + (double)B * shape_numel(m->input) + conv);
}

// What a build needs, in bytes.
typedef struct {
    double grads, blocks, scratch, total;
} FisherCost;

// *c = the cost of a build of N gradients of batch B with blocks of S (o gives alignment and
// method). Returns 0, or -1 with err set (out of memory for the block list).
static int cost_of(const Model *m, const FisherOpts *o, int N, size_t S, FisherCost *c, HpErr *err) {
    *c = (FisherCost){0};
    size_t *start;
    int nb = fisher_blocks(m, S, o->align_layers, &start, err);
    if (nb < 0) return -1;
    size_t scratch = 0;
    for (int b = 0; b < nb; b++) {
        size_t len = start[b + 1] - start[b];
        c->blocks += 4.0 * (double)len * (double)len;
        size_t sd = scratch_doubles(N, len, o->method);
        if (sd > scratch) scratch = sd;
    }
    free(start);
    double T = omp_get_max_threads();
    c->grads = 4.0 * N * (double)m->n_params;
    c->scratch = T * fmax(8.0 * (double)scratch, grad_ws_bytes(m, o->grad_batch)) + 24.0 * (nb + 1);
    c->total = c->grads + c->blocks + c->scratch;
    return 0;
}

// Checks the options that need no memory estimate.
static int check_opts(const Model *m, const FisherOpts *o, HpErr *err) {
    if (o->n_grads < 1) return hp_fail(err, "fisher: N = %d gradients: must be >= 1", o->n_grads);
    if (o->grad_batch < 1) return hp_fail(err, "fisher: %d samples per gradient: must be >= 1", o->grad_batch);
    if (o->block_size < 1) return hp_fail(err, "fisher: block size 0: must be >= 1");
    if (m->n_params == 0) return hp_fail(err, "fisher: the model has no parameters");
    if (o->block_size > m->n_params)
        return hp_fail(err, "fisher: block size %zu is larger than the model's %zu parameters", o->block_size,
                       m->n_params);
    if (!(o->damp >= HP_DAMP_MIN && o->damp <= HP_DAMP_MAX))
        return hp_fail(err, "fisher: damp %g: must be in [%g, %g]", o->damp, HP_DAMP_MIN, HP_DAMP_MAX);
    if (!(o->budget_mb >= 0) || !isfinite(o->budget_mb))
        return hp_fail(err, "fisher: memory budget %g MiB: must be >= 0 (0: no limit)", o->budget_mb);
    if (o->method < FISHER_AUTO || o->method > FISHER_DIRECT)
        return hp_fail(err, "fisher: unknown inversion method %d", (int)o->method);
    return 0;
}

size_t fisher_bytes(const Model *m, const FisherOpts *o) {
    FisherCost c;
    if (check_opts(m, o, NULL) < 0 || cost_of(m, o, o->n_grads, o->block_size, &c, NULL) < 0) return 0;
    return (size_t)c.total;
}

// *fit = the largest S in [1, hi] whose build fits `budget` bytes with N gradients (0 if none), by
// bisection (the cost grows with S, up to the rounding of the last block). Returns 0, or -1 with
// err set (out of memory).
static int fitting_block(const Model *m, const FisherOpts *o, size_t hi, double budget, size_t *fit, HpErr *err) {
    FisherCost c;
    *fit = 0;
    if (hi < 1) return 0;
    if (cost_of(m, o, o->n_grads, 1, &c, err) < 0) return -1;
    if (c.total > budget) return 0;
    size_t lo = 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        if (cost_of(m, o, o->n_grads, mid, &c, err) < 0) return -1;
        if (c.total <= budget)
            lo = mid;
        else
            hi = mid - 1;
    }
    *fit = lo;
    return 0;
}

// *fit = the largest N in [1, hi] whose build fits `budget` bytes with the options' block size (0 if
// none). Returns 0, or -1 with err set (out of memory).
static int fitting_grads(const Model *m, const FisherOpts *o, int hi, double budget, int *fit, HpErr *err) {
    FisherCost c;
    *fit = 0;
    if (hi < 1) return 0;
    if (cost_of(m, o, 1, o->block_size, &c, err) < 0) return -1;
    if (c.total > budget) return 0;
    int lo = 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (cost_of(m, o, mid, o->block_size, &c, err) < 0) return -1;
        if (c.total <= budget)
            lo = mid;
        else
            hi = mid - 1;
    }
    *fit = lo;
    return 0;
}

// Formats bytes as MiB into buf: whole MiB from 100 on, else 3 significant digits.
static const char *mib(double bytes, char buf[32]) {
    double v = bytes / MIB;
    snprintf(buf, 32, v >= 100 ? "%.0f" : "%.3g", v);
    return buf;
}

int fisher_check(const Model *m, const FisherOpts *o, HpErr *err) {
    if (check_opts(m, o, err) < 0) return -1;
    if (o->budget_mb == 0) return 0;
    double budget = o->budget_mb * MIB;
    FisherCost c;
    if (cost_of(m, o, o->n_grads, o->block_size, &c, err) < 0) return -1;
    if (c.total <= budget) return 0;
    size_t s_fit;
    int n_fit;
    if (fitting_block(m, o, o->block_size - 1, budget, &s_fit, err) < 0 ||
        fitting_grads(m, o, o->n_grads - 1, budget, &n_fit, err) < 0)
        return -1;
    char hint[200], a[4][32];
    if (s_fit && n_fit)
        snprintf(hint, sizeof hint, "block size %zu (with N %d) or N %d (with block size %zu) would fit", s_fit,
                 o->n_grads, n_fit, o->block_size);
    else if (s_fit)
        snprintf(hint, sizeof hint, "block size %zu (with N %d) would fit", s_fit, o->n_grads);
    else if (n_fit)
        snprintf(hint, sizeof hint, "N %d (with block size %zu) would fit", n_fit, o->block_size);
    else
        snprintf(hint, sizeof hint, "no smaller block size or N fits: raise the budget");
    return hp_fail(err,
                   "fisher: N %d gradients with blocks of %zu need %s MiB (gradients %s, blocks %s, scratch %s), "
                   "over the budget of %g MiB; %s",
                   o->n_grads, o->block_size, mib(c.total, a[0]), mib(c.grads, a[1]), mib(c.blocks, a[2]),
                   mib(c.scratch, a[3]), o->budget_mb, hint);
}

// ---------------------------------------------------------------------------------------------
// One block's inverse, in double.

// Copies columns [0, S) of N rows of G (row stride ldg) into Gd (N x S), in double.
static void load_grads(const float *G, int N, size_t ldg, size_t S, double *Gd) {
    for (int k = 0; k < N; k++)
        for (size_t j = 0; j < S; j++) Gd[(size_t)k * S + j] = G[(size_t)k * ldg + j];
}

// Copies the row-major upper triangle of a (S x S) onto its lower one.
static void mirror_upper(double *a, size_t S) {
    for (size_t i = 0; i < S; i++)
        for (size_t j = 0; j < i; j++) a[i * S + j] = a[j * S + i];
}

// Sherman-Morrison recursion: inv (S x S) = F_N^-1 from F_0^-1 = I / damp, one gradient at a time;
// g, u: S doubles of scratch each. Returns 0.
static int inv_recursion(const float *G, int N, size_t ldg, size_t S, double damp, double *inv, double *g,
                         double *u) {
    memset(inv, 0, S * S * sizeof(double));
    for (size_t i = 0; i < S; i++) inv[i * S + i] = 1.0 / damp;
    for (int k = 0; k < N; k++) {
        load_grads(G + (size_t)k * ldg, 1, ldg, S, g);
        // u = F^-1 g; F^-1 -= u u^T / (N + g^T u)
        cblas_dsymv(CblasRowMajor, CblasUpper, (int)S, 1.0, inv, (int)S, g, 1, 0.0, u, 1);
        double den = N + cblas_ddot((int)S, g, 1, u, 1);
        cblas_dsyr(CblasRowMajor, CblasUpper, (int)S, -1.0 / den, u, 1, inv, (int)S);
    }
    mirror_upper(inv, S);
    return 0;
}

// Woodbury matrix form: inv (S x S) = (1/damp) [I - G^T (N damp I + G G^T)^-1 G] with G the N x S
// slices; Gd (N x S) and K (N x N) are scratch. Returns 0, or the Cholesky's info.
static int inv_woodbury(const float *G, int N, size_t ldg, size_t S, double damp, double *inv, double *Gd,
                        double *K) {
    load_grads(G, N, ldg, S, Gd);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, (int)S, 1.0, Gd, (int)S, 0.0, K, N);  // K = G G^T
    for (int i = 0; i < N; i++) K[(size_t)i * N + i] += N * damp;
    int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', N, K, N);  // row-major upper: K = U^T U
    if (info != 0) return info;
    // W = U^-T G (N x S), so that G^T K^-1 G = W^T W; inv = (1/damp) (I - W^T W)
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, N, (int)S, 1.0, K, N, Gd, (int)S);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)S, N, -1.0 / damp, Gd, (int)S, 0.0, inv, (int)S);
    for (size_t i = 0; i < S; i++) inv[i * S + i] += 1.0 / damp;
    mirror_upper(inv, S);
    return 0;
}

// Direct: inv (S x S) = (damp I + G^T G / N)^-1 by Cholesky and its inverse; Gd (N x S) is scratch.
// Returns 0, or LAPACK's info.
static int inv_direct(const float *G, int N, size_t ldg, size_t S, double damp, double *inv, double *Gd) {
    load_grads(G, N, ldg, S, Gd);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)S, N, 1.0 / N, Gd, (int)S, 0.0, inv, (int)S);
    for (size_t i = 0; i < S; i++) inv[i * S + i] += damp;
    int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (int)S, inv, (int)S);
    if (info == 0) info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', (int)S, inv, (int)S);
    if (info != 0) return info;
    mirror_upper(inv, S);
    return 0;
}

// Inverts one block into scratch[0 .. S*S) (scratch holds scratch_doubles(N, S, method)).
// Returns 0 or LAPACK's info.
static int invert_one(const float *G, int N, size_t ldg, size_t S, double damp, FisherMethod method,
                      double *scratch) {
    double *inv = scratch, *rest = scratch + S * S;
    switch (pick_method(method, N, S)) {
    case FISHER_RECURSION: return inv_recursion(G, N, ldg, S, damp, inv, rest, rest + S);
    case FISHER_WOODBURY: return inv_woodbury(G, N, ldg, S, damp, inv, rest, rest + (size_t)N * S);
    default: return inv_direct(G, N, ldg, S, damp, inv, rest);
    }
}

int fisher_block_inverse(const float *G, int N, size_t ldg, size_t S, double damp, FisherMethod method, double *inv,
                         HpErr *err) {
    if (N < 1 || S < 1 || ldg < S) return hp_fail(err, "fisher: block of %zu columns from %d gradients (row stride %zu)", S, N, ldg);
    if (!(damp > 0) || !isfinite(damp)) return hp_fail(err, "fisher: damp %g: must be > 0 and finite", damp);
    double *scratch = hp_alloc(scratch_doubles(N, S, method), sizeof(double), err);
    if (!scratch) return hp_prefix(err, "fisher");
    int info = invert_one(G, N, ldg, S, damp, method, scratch);
    if (info == 0) memcpy(inv, scratch, S * S * sizeof(double));
    free(scratch);
    if (info != 0) return hp_fail(err, "fisher: the %s inversion failed (LAPACK info %d)", fisher_method_name(method), info);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// All blocks.

// Fails if any entry of G (N x n) is not finite.
static int check_finite(const float *G, int N, size_t n, HpErr *err) {
    for (int k = 0; k < N; k++)
        for (size_t j = 0; j < n; j++)
            if (!isfinite(G[(size_t)k * n + j]))
                return hp_fail(err, "fisher: gradient %d has a non-finite entry (parameter %zu)", k, j);
    return 0;
}

// A block's length and index, for ordering the work largest first (load balance).
typedef struct {
    size_t len;
    int b;
} BlockJob;

// Orders jobs by decreasing length, then by index.
static int by_len_desc(const void *a, const void *b) {
    const BlockJob *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? 1 : -1;
    return (x->b > y->b) - (x->b < y->b);
}

// Sets out's layout for blocks start[0..nb] (copied) from N gradients: offsets, the float store,
// and returns the blocks ordered largest first; *scratch gets the doubles one thread needs.
// Returns NULL with err set (out of memory) and out zeroed.
static BlockJob *layout_blocks(const size_t *start, int nb, int N, double damp, FisherMethod method,
                               FisherInv *out, size_t *scratch, HpErr *err) {
    memset(out, 0, sizeof *out);
    out->n = start[nb];
    out->n_blocks = nb;
    out->damp = damp;
    out->n_grads = N;
    out->start = hp_alloc((size_t)(nb + 1), sizeof(size_t), err);
    out->off = out->start ? hp_alloc((size_t)nb, sizeof(size_t), err) : NULL;
    BlockJob *order = out->off ? hp_alloc((size_t)nb, sizeof(BlockJob), err) : NULL;
    if (!order) {
        fisher_free(out);
        return NULL;
    }
    memcpy(out->start, start, (size_t)(nb + 1) * sizeof(size_t));
    size_t floats = 0;
    *scratch = 0;
    for (int b = 0; b < nb; b++) {
        size_t S = start[b + 1] - start[b];
        out->off[b] = floats;
        floats += S * S;
        size_t sd = scratch_doubles(N, S, method);
        if (sd > *scratch) *scratch = sd;
        order[b] = (BlockJob){S, b};
    }
    qsort(order, (size_t)nb, sizeof *order, by_len_desc);
    out->inv = hp_alloc(floats, sizeof(float), err);
    if (!out->inv) {
        free(order);
        fisher_free(out);
        hp_prefix(err, "the inverse blocks");
        return NULL;
    }
    return order;
}

// Inverts every block of G (N x n) into out (allocated here; start copied), in parallel over
// blocks. progress gets (blocks done, nb, "block inversions") on the calling thread, nb once: when
// all are done. Returns 0, or -1 with err set (out then holds nothing to free).
static int invert_blocks(const float *G, int N, size_t n, const size_t *start, int nb, double damp,
                         FisherMethod method, ProgressFn progress, void *user, FisherInv *out, HpErr *err) {
    size_t scratch;
    BlockJob *order = layout_blocks(start, nb, N, damp, method, out, &scratch, err);
    if (!order) return hp_prefix(err, "fisher");
    int T = omp_get_max_threads();
    double *scr = hp_alloc((size_t)T * scratch, sizeof(double), err);
    if (!scr) {
        free(order);
        fisher_free(out);
        return hp_prefix(err, "fisher: the inversion scratch");
    }
    int bad = -1, bad_info = 0;
    long done = 0;
#pragma omp parallel num_threads(T)
    {
        double *my = scr + (size_t)omp_get_thread_num() * scratch;
#pragma omp for schedule(dynamic, 1)
        for (int j = 0; j < nb; j++) {
            int b = order[j].b;
            size_t S = order[j].len;
            int info = invert_one(G + start[b], N, n, S, damp, method, my);
            if (info != 0) {
#pragma omp critical(obs_bad_block)
                if (bad < 0 || b < bad) {
                    bad = b;
                    bad_info = info;
                }
                continue;
            }
            float *dst = out->inv + out->off[b];
            for (size_t i = 0; i < S * S; i++) dst[i] = (float)my[i];
            long now;
#pragma omp atomic capture
            now = ++done;
            if (progress && omp_get_thread_num() == 0 && now < nb) progress(now, nb, FISHER_UNIT_BLOCKS, user);
        }
    }
    free(scr);
    free(order);
    if (bad >= 0) {
        size_t S = start[bad + 1] - start[bad];
        fisher_free(out);
        return hp_fail(err, "fisher: block %d (parameters %zu..%zu): the %s inversion failed (LAPACK info %d)", bad,
                       start[bad], start[bad] + S - 1, fisher_method_name(pick_method(method, N, S)), bad_info);
    }
    if (progress) progress(nb, nb, FISHER_UNIT_BLOCKS, user);
    return 0;
}

// Checks explicit gradients' arguments.
static int check_grads_args(const float *G, int N, size_t n, const size_t *start, int nb, double damp,
                            FisherMethod method, HpErr *err) {
    if (N < 1) return hp_fail(err, "fisher: N = %d gradients: must be >= 1", N);
    if (n < 1 || !G) return hp_fail(err, "fisher: no parameters (n = %zu)", n);
    if (nb < 1 || !start) return hp_fail(err, "fisher: %d blocks: must be >= 1", nb);
    if (start[0] != 0 || start[nb] != n)
        return hp_fail(err, "fisher: blocks cover [%zu, %zu), not [0, %zu)", start[0], start[nb], n);
    for (int b = 0; b < nb; b++)
        if (start[b + 1] <= start[b]) return hp_fail(err, "fisher: block %d is empty or reversed", b);
    if (!(damp > 0) || !isfinite(damp)) return hp_fail(err, "fisher: damp %g: must be > 0 and finite", damp);
    if (method < FISHER_AUTO || method > FISHER_DIRECT)
        return hp_fail(err, "fisher: unknown inversion method %d", (int)method);
    return 0;
}

int fisher_from_grads_with(const float *G, int N, size_t n, const size_t *block_start, int n_blocks, double damp,
                           FisherMethod method, ProgressFn progress, void *user, FisherInv *out, HpErr *err) {
    memset(out, 0, sizeof *out);
    if (check_grads_args(G, N, n, block_start, n_blocks, damp, method, err) < 0) return -1;
    if (check_finite(G, N, n, err) < 0) return -1;
    return invert_blocks(G, N, n, block_start, n_blocks, damp, method, progress, user, out, err);
}

int fisher_from_grads(const float *G, int N, size_t n, const size_t *block_start, int n_blocks, double damp,
                      FisherInv *out, HpErr *err) {
    return fisher_from_grads_with(G, N, n, block_start, n_blocks, damp, FISHER_AUTO, NULL, NULL, out, err);
}

// ---------------------------------------------------------------------------------------------
// Gradients.

long fisher_images(const FisherOpts *o) { return (long)o->n_grads * o->grad_batch; }

// Fails when the images the build draws exceed n_train (contract in obs.h).
int fisher_check_images(const FisherOpts *o, int n_train, const char *grads_name, const char *batch_name,
                        HpErr *err) {
    long need = fisher_images(o);
    if (need <= n_train) return 0;
    return hp_fail(err, "%s %d x %s %d needs %ld training images, the training set has %d", grads_name, o->n_grads,
                   batch_name, o->grad_batch, need, n_train);
}

// Checks that d fits m and holds the N * batch samples the build draws (contract in obs.h).
int fisher_check_data(const Model *m, const Dataset *d, const FisherOpts *o, HpErr *err) {
    if (d->c != m->input.c || d->h != m->input.h || d->w != m->input.w)
        return hp_fail(err, "fisher: model takes %dx%dx%d inputs, data has %dx%dx%d", m->input.c, m->input.h,
                       m->input.w, d->c, d->h, d->w);
    if (d->n_classes > m->n_classes)
        return hp_fail(err, "fisher: model has %d classes, data has %d", m->n_classes, d->n_classes);
    if (fisher_check_images(o, d->n, "N", "batch", err) < 0) return hp_prefix(err, "fisher");
    return 0;
}

// Row k of G (N x n) = the mean-loss gradient over samples idx[k B .. (k+1) B) (eval mode), in
// parallel over k with one workspace per thread. progress gets (gradients done, N, "gradients")
// on the calling thread, N once: when all are done. Returns 0, or -1 with err set (out of memory).
static int compute_grads(Model *m, const Dataset *d, const int *idx, int N, int B, float *G, ProgressFn progress,
                         void *user, HpErr *err) {
    size_t n = m->n_params, in_len = shape_numel(m->input);
    int T = omp_get_max_threads();
    Workspace *ws = hp_zalloc((size_t)T, sizeof(Workspace), err);
    if (!ws) return -1;
    int rc = 0;
    for (int t = 0; t < T && rc == 0; t++) rc = ws_init(&ws[t], m, B, 1, err);  // serially: ws_init sets BLAS threads
    long done = 0;
    bool short_of_memory = false;  // a thread's buffers failed: it does no gradients, the call fails
    if (rc == 0) {
#pragma omp parallel num_threads(T)
        {
            Workspace *my = &ws[omp_get_thread_num()];
            float *x = malloc((size_t)B * in_len * sizeof(float));
            float *dl = malloc((size_t)B * m->n_classes * sizeof(float));
            int *y = malloc((size_t)B * sizeof(int));
            if (!(x && dl && y)) {
#pragma omp atomic write
                short_of_memory = true;
            }
#pragma omp for schedule(dynamic, 1)
            for (int k = 0; k < N; k++) {
                bool stop;
#pragma omp atomic read
                stop = short_of_memory;
                if (stop) continue;
                data_batch(d, idx + (size_t)k * B, B, m->norm_mean, m->norm_std, NULL, NULL, x, y);
                const float *logits = model_forward(m, my, x, B, MODE_EVAL, NULL);
                softmax_xent(logits, y, B, m->n_classes, 0.0f, dl, NULL);
                float *row = G + (size_t)k * n;
                memset(row, 0, n * sizeof(float));
                model_backward(m, my, dl, row, NULL);
                long now;
#pragma omp atomic capture
                now = ++done;
                if (progress && omp_get_thread_num() == 0 && now < N) progress(now, N, FISHER_UNIT_GRADS, user);
            }
            free(x);
            free(dl);
            free(y);
        }
    }
    for (int t = 0; t < T; t++) ws_free(&ws[t]);
    free(ws);
    if (rc == 0 && short_of_memory) rc = hp_fail(err, "out of memory: cannot allocate a thread's gradient buffers");
    if (rc == 0 && progress) progress(N, N, FISHER_UNIT_GRADS, user);
    return rc;
}

int fisher_build(Model *m, const Dataset *d, const FisherOpts *o, Rng *rng, ProgressFn progress, void *user,
                 FisherInv *out, HpErr *err) {
    memset(out, 0, sizeof *out);
    if (fisher_check(m, o, err) < 0 || fisher_check_data(m, d, o, err) < 0) return -1;
    size_t *start;
    int nb = fisher_blocks(m, o->block_size, o->align_layers, &start, err);
    if (nb < 0) return -1;
    int N = o->n_grads;
    size_t n = m->n_params;
    int *perm = hp_alloc((size_t)d->n, sizeof(int), err);
    float *G = perm ? hp_alloc((size_t)N * n, sizeof(float), err) : NULL;
    if (!G) {
        const char *what = perm ? "fisher: the gradients" : "fisher";
        free(perm);
        free(start);
        return hp_prefix(err, what);
    }
    for (int i = 0; i < d->n; i++) perm[i] = i;
    rng_shuffle(rng, perm, d->n);
    int rc = compute_grads(m, d, perm, N, o->grad_batch, G, progress, user, err);
    free(perm);
    if (rc != 0) hp_prefix(err, "fisher");
    if (rc == 0) rc = check_finite(G, N, n, err);
    if (rc == 0) rc = invert_blocks(G, N, n, start, nb, o->damp, o->method, progress, user, out, err);
    free(G);
    free(start);
    return rc;
}

void fisher_free(FisherInv *f) {
    if (!f) return;
    free(f->start);
    free(f->inv);
    free(f->off);
    memset(f, 0, sizeof *f);
}

// Index of the block holding parameter i < f->n (binary search over the starts).
static int block_of(const FisherInv *f, size_t i) {
    int lo = 0, hi = f->n_blocks - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (f->start[mid] <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

double fisher_inv_entry(const FisherInv *f, size_t i, size_t j) {
    HP_ASSERT(i < f->n && j < f->n);
    int b = block_of(f, i);
    if (block_of(f, j) != b) return 0.0;
    size_t S = f->start[b + 1] - f->start[b], s0 = f->start[b];
    return f->inv[f->off[b] + (i - s0) * S + (j - s0)];
}

// ---------------------------------------------------------------------------------------------
// OBS.

// Compares two size_t for qsort.
static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

// A sorted copy of Q (q >= 1 distinct indices < n), or NULL with err set.
static size_t *sorted_set(const size_t *Q, size_t q, size_t n, HpErr *err) {
    if (q < 1 || !Q) {
        hp_fail(err, "obs: the set Q is empty");
        return NULL;
    }
    size_t *s = hp_alloc(q, sizeof *s, err);
    if (!s) {
        hp_prefix(err, "obs");
        return NULL;
    }
    memcpy(s, Q, q * sizeof *s);
    qsort(s, q, sizeof *s, cmp_size);
    const char *why = s[q - 1] >= n ? "out of range" : NULL;
    for (size_t i = 1; i < q && !why; i++)
        if (s[i] == s[i - 1]) why = "repeated";
    if (why) {
        size_t bad = s[q - 1] >= n ? s[q - 1] : 0;
        for (size_t i = 1; i < q && !bad; i++)
            if (s[i] == s[i - 1]) bad = s[i];
        hp_fail(err, "obs: index %zu in Q is %s (the inverse covers %zu parameters)", bad, why, n);
        free(s);
        return NULL;
    }
    return s;
}

// End of the run of sorted indices s[i..) that lie in block b.
static size_t run_end(const FisherInv *f, const size_t *s, size_t i, size_t q, int b) {
    while (i < q && s[i] < f->start[b + 1]) i++;
    return i;
}

// Longest run of s (q sorted indices) inside one block.
static size_t longest_run(const FisherInv *f, const size_t *s, size_t q) {
    size_t best = 0;
    for (size_t i = 0; i < q;) {
        size_t j = run_end(f, s, i, q, block_of(f, s[i]));
        if (j - i > best) best = j - i;
        i = j;
    }
    return best;
}

// x (r) = ([F^-1]_RR)^-1 w_R for the run R = s[0..r) of block b, by Cholesky in double; A is r*r
// scratch. Returns 0, or -1 with err set if [F^-1]_RR is not positive definite.
static int solve_run(const FisherInv *f, int b, const size_t *s, size_t r, const float *w, double *A, double *x,
                     HpErr *err) {
    const float *B = f->inv + f->off[b];
    size_t S = f->start[b + 1] - f->start[b], s0 = f->start[b];
    for (size_t i = 0; i < r; i++) {
        const float *row = B + (s[i] - s0) * S;
        for (size_t j = 0; j < r; j++) A[i * r + j] = row[s[j] - s0];
        x[i] = w[s[i]];
    }
    int info = LAPACKE_dposv(LAPACK_COL_MAJOR, 'L', (int)r, 1, A, (int)r, x, (int)r);
    HP_ASSERT(info >= 0);
    if (info > 0)
        return hp_fail(err, "obs: [F^-1]_QQ for %zu parameters of block %d is not positive definite (minor %d)", r, b,
                       info);
    return 0;
}

int obs_score(const FisherInv *f, const float *w, const size_t *Q, size_t q, double *score, HpErr *err) {
    size_t *s = sorted_set(Q, q, f->n, err);
    if (!s) return -1;
    size_t r_max = longest_run(f, s, q);
    double *A = hp_alloc(r_max * r_max, sizeof(double), err), *x = A ? hp_alloc(r_max, sizeof(double), err) : NULL;
    double total = 0;
    int rc = x ? 0 : hp_prefix(err, "obs");
    for (size_t i = 0; i < q && rc == 0;) {
        int b = block_of(f, s[i]);
        size_t j = run_end(f, s, i, q, b);
        rc = solve_run(f, b, s + i, j - i, w, A, x, err);
        for (size_t k = 0; k < j - i && rc == 0; k++) total += 0.5 * (double)w[s[i + k]] * x[k];
        i = j;
    }
    free(A);
    free(x);
    free(s);
    if (rc == 0) *score = total;
    return rc;
}

int obs_update(const FisherInv *f, const float *w, const size_t *Q, size_t q, float *delta, HpErr *err) {
    size_t *s = sorted_set(Q, q, f->n, err);
    if (!s) return -1;
    size_t r_max = longest_run(f, s, q), S_max = 0;
    for (int b = 0; b < f->n_blocks; b++)
        if (f->start[b + 1] - f->start[b] > S_max) S_max = f->start[b + 1] - f->start[b];
    double *A = hp_alloc(r_max * r_max, sizeof(double), err), *x = A ? hp_alloc(r_max, sizeof(double), err) : NULL;
    double *acc = x ? hp_alloc(S_max, sizeof(double), err) : NULL;
    int rc = acc ? 0 : hp_prefix(err, "obs");
    for (size_t i = 0; i < q && rc == 0;) {
        int b = block_of(f, s[i]);
        size_t j = run_end(f, s, i, q, b), S = f->start[b + 1] - f->start[b], s0 = f->start[b];
        rc = solve_run(f, b, s + i, j - i, w, A, x, err);
        if (rc != 0) break;
        // acc = F^-1[:, R] x (rows of the symmetric block), then delta -= acc
        memset(acc, 0, S * sizeof(double));
        for (size_t k = 0; k < j - i; k++) {
            const float *row = f->inv + f->off[b] + (s[i + k] - s0) * S;
            for (size_t c = 0; c < S; c++) acc[c] += (double)row[c] * x[k];
        }
        for (size_t c = 0; c < S; c++) delta[s0 + c] -= (float)acc[c];
        i = j;
    }
    if (rc == 0)
        for (size_t k = 0; k < q; k++) delta[s[k]] = -w[s[k]];
    free(A);
    free(x);
    free(acc);
    free(s);
    return rc;
}

void obs_weight_scores(const FisherInv *f, const float *w, double *score) {
    for (int b = 0; b < f->n_blocks; b++) {
        size_t S = f->start[b + 1] - f->start[b], s0 = f->start[b];
        const float *B = f->inv + f->off[b];
        for (size_t i = 0; i < S; i++) {
            double wi = w[s0 + i];
            score[s0 + i] = wi * wi / (2.0 * B[i * S + i]);
        }
    }
}

int obs_group_scores(const FisherInv *f, const float *w, const uint32_t *group_of, size_t n_groups, double *score,
                     HpErr *err) {
    size_t *first = hp_zalloc(n_groups + 1, sizeof(size_t), err);
    if (!first) return hp_prefix(err, "obs");
    for (size_t i = 0; i < f->n; i++) {
        if (group_of[i] == UINT32_MAX) continue;
        if (group_of[i] >= n_groups) {
            free(first);
            return hp_fail(err, "obs: parameter %zu is in group %u of %zu", i, group_of[i], n_groups);
        }
        first[group_of[i] + 1]++;
    }
    for (size_t g = 0; g < n_groups; g++) first[g + 1] += first[g];
    size_t *members = hp_alloc(first[n_groups] ? first[n_groups] : 1, sizeof(size_t), err);
    size_t *fill = members ? hp_alloc(n_groups ? n_groups : 1, sizeof(size_t), err) : NULL;
    if (!fill) {
        free(first);
        free(members);
        return hp_prefix(err, "obs");
    }
    memcpy(fill, first, n_groups * sizeof(size_t));
    for (size_t i = 0; i < f->n; i++)
        if (group_of[i] != UINT32_MAX) members[fill[group_of[i]]++] = i;
    long bad = -1;
    HpErr bad_err = {{0}};
#pragma omp parallel for schedule(dynamic, 1)
    for (long g = 0; g < (long)n_groups; g++) {
        size_t cnt = first[g + 1] - first[g];
        score[g] = 0.0;
        HpErr e;
        if (cnt > 0 && obs_score(f, w, members + first[g], cnt, &score[g], &e) < 0) {
#pragma omp critical(obs_bad_group)
            if (bad < 0 || g < bad) {
                bad = g;
                bad_err = e;
            }
        }
    }
    free(first);
    free(members);
    free(fill);
    if (bad >= 0) return hp_fail(err, "obs: group %ld: %s", bad, bad_err.msg);
    return 0;
}
