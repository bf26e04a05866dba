// test_obs.c: WoodFisher inverses and OBS (hessian/obs.c), layer-wise OBS (hessian/layer_obs.c),
// on small explicit matrices and tiny models: every inversion method against a LAPACK LU inverse of
// the explicitly formed damped Fisher; the OBS update reaching exactly the predicted loss, no other
// update doing better; block sums; gradients from the model; layer Hessians against an explicit
// X X^T; measured reconstruction errors against predictions; greedy removal; bad input.
#include "tests/testutil.h"

#include <omp.h>

#include <cblas.h>
#include <lapacke.h>

#include "hessian/hvp.h"
#include "hessian/layer_obs.h"
#include "hessian/obs.h"
#include "nn/data.h"
#include "nn/nn.h"

// ---------------------------------------------------------------------------------------------
// Helpers.

// N x n floats of standard normal values.
static float *random_grads(int N, size_t n, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 11);
    float *G = xmalloc((size_t)N * n * sizeof(float));
    for (size_t i = 0; i < (size_t)N * n; i++) G[i] = rng_normal(&rng);
    return G;
}

// F (S x S, double) = damp I + (1/N) sum_k g_k g_k^T over columns [0, S) of G (row stride ldg).
static double *explicit_fisher(const float *G, int N, size_t ldg, size_t S, double damp) {
    double *F = xcalloc(S * S, sizeof(double));
    for (int k = 0; k < N; k++)
        for (size_t i = 0; i < S; i++)
            for (size_t j = 0; j < S; j++) F[i * S + j] += (double)G[k * ldg + i] * G[k * ldg + j] / N;
    for (size_t i = 0; i < S; i++) F[i * S + i] += damp;
    return F;
}

// The inverse of A (S x S) by LU (dgetrf/dgetri), a method none of the code under test uses.
static double *lu_inverse(const double *A, size_t S) {
    double *B = xmalloc(S * S * sizeof(double));
    memcpy(B, A, S * S * sizeof(double));
    lapack_int *piv = xmalloc(S * sizeof(lapack_int));
    assert_int_equal(LAPACKE_dgetrf(LAPACK_ROW_MAJOR, (int)S, (int)S, B, (int)S, piv), 0);
    assert_int_equal(LAPACKE_dgetri(LAPACK_ROW_MAJOR, (int)S, B, (int)S, piv), 0);
    free(piv);
    return B;
}

// ||a - b||_F / ||b||_F in double.
static double rel_d(const double *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-300);
}

// 1/2 v^T F v for F (n x n, double) and v (n floats).
static double half_quad(const double *F, const float *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) s += (double)v[i] * F[i * n + j] * v[j];
    return 0.5 * s;
}

// |a - b| / max(|b|, tiny).
static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

// A small dataset of n random images of shape (c, h, w) with labels in [0, classes).
static void make_data(Dataset *d, int n, int c, int h, int w, int classes, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 7);
    assert_int_equal(dataset_alloc(d, n, c, h, w, classes, NULL), 0);
    for (size_t i = 0; i < (size_t)n * c * h * w; i++) d->images[i] = (uint8_t)rng_below(&rng, 256);
    for (int i = 0; i < n; i++) d->labels[i] = (uint8_t)(i % classes);
}

// Randomises parameters and running statistics, normalisation 0.5 / 0.25.
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
    for (int c = 0; c < m->input.c; c++) m->norm_mean[c] = 0.5f, m->norm_std[c] = 0.25f;
}

// conv(bias) - bn - relu - conv(stride 2) - gap - flatten - linear: node ids 1 input... see ids.
// Returns via ids[0..3]: conv1, bn1, conv2, fc.
static void net_small(Model *m, int ids[4]) {
    HpErr err;
    model_init(m, (Shape){2, 5, 5}, 3);
    int x = mb_input(m, &err);
    x = ids[0] = mb_conv(m, "conv1", x, 3, 3, 1, 1, 1, true, &err);
    x = ids[1] = mb_bn(m, "bn1", x, &err);
    x = mb_relu(m, "relu1", x, &err);
    x = ids[2] = mb_conv(m, "conv2", x, 4, 3, 2, 1, 1, false, &err);
    x = mb_gap(m, "gap", x, &err);
    x = mb_flatten(m, "flat", x, &err);
    x = ids[3] = mb_linear(m, "fc", x, 3, true, &err);
    assert_true(x > 0);
    assert_int_equal(model_finalize(m, &err), 0);
}

// conv(pad 1) - relu - flatten - linear: the linear reads 3 channels of 4x4 = 16 features each.
// ids: conv, fc.
static void net_flat(Model *m, int ids[2]) {
    HpErr err;
    model_init(m, (Shape){2, 4, 4}, 5);
    int x = mb_input(m, &err);
    x = ids[0] = mb_conv(m, "conv", x, 3, 3, 1, 1, 1, false, &err);
    x = mb_relu(m, "relu", x, &err);
    x = mb_flatten(m, "flat", x, &err);
    x = ids[1] = mb_linear(m, "fc", x, 5, true, &err);
    assert_true(x > 0);
    assert_int_equal(model_finalize(m, &err), 0);
}

// ---------------------------------------------------------------------------------------------
// Inverses.

// Every method's double inverse equals the LU inverse of the explicit damped Fisher, for N < S,
// N = S, N > S and N = 1, two dampings, a block inside a wider gradient matrix; the stored float
// inverse agrees to float rounding.
static void test_block_inverse_methods(void **state) {
    (void)state;
    const int Ns[] = {7, 12, 20, 1};
    const double damps[] = {1e-2, 1e-5};
    const FisherMethod methods[] = {FISHER_RECURSION, FISHER_WOODBURY, FISHER_DIRECT, FISHER_AUTO};
    const size_t S = 12, ldg = S + 5, off = 3;
    HpErr err;
    double worst_d = 0, worst_f = 0;
    for (int a = 0; a < 4; a++) {
        for (int b = 0; b < 2; b++) {
            float *G = random_grads(Ns[a], ldg, 100 + a);
            double *F = explicit_fisher(G + off, Ns[a], ldg, S, damps[b]);
            double *ref = lu_inverse(F, S), *inv = xmalloc(S * S * sizeof(double));
            for (int k = 0; k < 4; k++) {
                assert_int_equal(fisher_block_inverse(G + off, Ns[a], ldg, S, damps[b], methods[k], inv, &err), 0);
                double e = rel_d(inv, ref, S * S);
                worst_d = fmax(worst_d, e);
                if (e > 1e-9) fprintf(stderr, "  N %d damp %g %s: rel err %.2e\n", Ns[a], damps[b], fisher_method_name(methods[k]), e);
                assert_true(e < 1e-9);
                // the same through the float store: one block of the G slice
                float *Gs = xmalloc((size_t)Ns[a] * S * sizeof(float));
                for (int r = 0; r < Ns[a]; r++) memcpy(Gs + r * S, G + r * ldg + off, S * sizeof(float));
                size_t start[2] = {0, S};
                FisherInv f;
                assert_int_equal(fisher_from_grads_with(Gs, Ns[a], S, start, 1, damps[b], methods[k], NULL, NULL, &f, &err), 0);
                double *got = xmalloc(S * S * sizeof(double));
                for (size_t i = 0; i < S * S; i++) got[i] = f.inv[i];
                double ef = rel_d(got, ref, S * S);
                worst_f = fmax(worst_f, ef);
                assert_true(ef < 1e-6);
                free(got), free(Gs);
                fisher_free(&f);
            }
            free(G), free(F), free(ref), free(inv);
        }
    }
    fprintf(stderr, "  block inverses vs LU of the explicit Fisher: worst rel err %.1e (double), %.1e (float store)\n",
            worst_d, worst_f);
}

// Several blocks: each block is the inverse of its own part of the Fisher; entries across blocks
// are 0; the recursion, Woodbury and direct results agree blockwise.
static void test_blocks_independent(void **state) {
    (void)state;
    const int N = 9;
    const size_t n = 23, start[4] = {0, 9, 16, 23};
    float *G = random_grads(N, n, 7);
    HpErr err;
    FisherInv f, g;
    assert_int_equal(fisher_from_grads(G, N, n, start, 3, 1e-3, &f, &err), 0);
    assert_int_equal(fisher_from_grads_with(G, N, n, start, 3, 1e-3, FISHER_RECURSION, NULL, NULL, &g, &err), 0);
    assert_int_equal(f.n_blocks, 3);
    assert_int_equal(f.n, n);
    for (int b = 0; b < 3; b++) {
        size_t S = start[b + 1] - start[b];
        double *F = explicit_fisher(G + start[b], N, n, S, 1e-3), *ref = lu_inverse(F, S);
        double *got = xmalloc(S * S * sizeof(double)), *rec = xmalloc(S * S * sizeof(double));
        for (size_t i = 0; i < S; i++)
            for (size_t j = 0; j < S; j++) {
                got[i * S + j] = fisher_inv_entry(&f, start[b] + i, start[b] + j);
                rec[i * S + j] = fisher_inv_entry(&g, start[b] + i, start[b] + j);
            }
        assert_true(rel_d(got, ref, S * S) < 1e-6);
        assert_true(rel_d(rec, ref, S * S) < 1e-6);
        free(F), free(ref), free(got), free(rec);
    }
    assert_true(fisher_inv_entry(&f, 3, 12) == 0.0 && fisher_inv_entry(&f, 20, 0) == 0.0);
    fisher_free(&f);
    fisher_free(&g);
    free(G);
}

// Block layouts: fixed blocks of S (the last shorter), or aligned to nodes (nearly equal parts,
// none straddling a node, a node smaller than S in one block).
static void test_block_layout(void **state) {
    (void)state;
    Model m;
    int ids[4];
    net_small(&m, ids);  // conv1 57, bn1 6, conv2 108, fc 15 parameters: 186
    HpErr err;
    size_t *s;
    int nb = fisher_blocks(&m, 40, false, &s, &err);
    assert_int_equal(nb, 5);
    for (int b = 0; b < nb; b++) assert_int_equal(s[b], (size_t)(40 * b));
    assert_int_equal(s[nb], m.n_params);
    free(s);
    nb = fisher_blocks(&m, 40, true, &s, &err);
    // conv1 57 -> 2 blocks (28, 29); bn1 6 -> 1; conv2 108 -> 3 (36 each); fc 15 -> 1
    assert_int_equal(nb, 7);
    size_t expect[8] = {0, 28, 57, 63, 99, 135, 171, 186};
    for (int b = 0; b <= nb; b++) assert_int_equal(s[b], expect[b]);
    free(s);
    nb = fisher_blocks(&m, m.n_params, true, &s, &err);
    assert_int_equal(nb, 4);  // one block per node
    free(s);
    assert_int_equal(fisher_blocks(&m, 0, true, &s, &err), -1);
    assert_null(s);
    model_free(&m);
}

// ---------------------------------------------------------------------------------------------
// OBS on a known quadratic.

// For a loss L(w + dw) - L(w) = 1/2 dw^T F dw (w a minimum) with F built from explicit gradients:
// obs_update leaves w + delta exactly 0 on Q and raises the loss by exactly the score; the
// constrained minimum found by a direct LAPACK solve is the same; random changes of the kept
// weights do worse. For a single weight, the score is w^2 / (2 [F^-1]_qq).
static void test_obs_optimal(void **state) {
    (void)state;
    const int N = 30;
    const size_t n = 10;
    float *G = random_grads(N, n, 21);
    const double damp = 0.05;
    double *F = explicit_fisher(G, N, n, n, damp);
    size_t start[2] = {0, n};
    HpErr err;
    FisherInv f;
    assert_int_equal(fisher_from_grads(G, N, n, start, 1, damp, &f, &err), 0);
    Rng rng;
    rng_seed(&rng, 5, 5);
    float w[10], delta[10], trial[10];
    for (size_t i = 0; i < n; i++) w[i] = rng_normal(&rng);
    double wscore[10];
    obs_weight_scores(&f, w, wscore);
    const size_t single[1] = {3}, group[3] = {7, 1, 4}, group_sorted[3] = {1, 4, 7};
    const size_t *sets[2] = {single, group};
    const size_t sizes[2] = {1, 3};
    for (int t = 0; t < 2; t++) {
        const size_t *Q = sets[t];
        size_t q = sizes[t];
        double score;
        assert_int_equal(obs_score(&f, w, Q, q, &score, &err), 0);
        if (q == 1) {
            double expect = (double)w[3] * w[3] / (2.0 * fisher_inv_entry(&f, 3, 3));
            assert_true(rel(score, expect) < 1e-12 && rel(wscore[3], expect) < 1e-12);
        } else {
            double again;
            assert_int_equal(obs_score(&f, w, group_sorted, 3, &again, &err), 0);
            assert_true(score == again);  // the order of Q does not matter
        }
        memset(delta, 0, sizeof delta);
        assert_int_equal(obs_update(&f, w, Q, q, delta, &err), 0);
        for (size_t k = 0; k < q; k++) assert_true(w[Q[k]] + delta[Q[k]] == 0.0f);
        double loss = half_quad(F, delta, n);
        // the direct constrained solve: delta_R = -F_RR^-1 F_RQ delta_Q
        bool inQ[10] = {false};
        for (size_t k = 0; k < q; k++) inQ[Q[k]] = true;
        size_t R[10], r = 0;
        for (size_t i = 0; i < n; i++)
            if (!inQ[i]) R[r++] = i;
        double *FRR = xmalloc(r * r * sizeof(double)), rhs[10];
        for (size_t i = 0; i < r; i++) {
            for (size_t j = 0; j < r; j++) FRR[i * r + j] = F[R[i] * n + R[j]];
            rhs[i] = 0;
            for (size_t k = 0; k < q; k++) rhs[i] += F[R[i] * n + Q[k]] * w[Q[k]];  // -F_RQ delta_Q
        }
        assert_int_equal(LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (int)r, 1, FRR, (int)r, rhs, 1), 0);
        float best[10];
        for (size_t k = 0; k < q; k++) best[Q[k]] = -w[Q[k]];
        for (size_t i = 0; i < r; i++) best[R[i]] = (float)rhs[i];
        double loss_best = half_quad(F, best, n);
        fprintf(stderr, "  Q of %zu: score %.6g, loss after the update %.6g, constrained optimum %.6g\n", q, score, loss,
                loss_best);
        assert_true(rel(loss, score) < 1e-5);
        assert_true(rel(loss_best, score) < 1e-5);
        for (int p = 0; p < 20; p++) {  // other updates of the kept weights are worse
            memcpy(trial, delta, sizeof trial);
            for (size_t i = 0; i < r; i++) trial[R[i]] += 0.05f * rng_normal(&rng);
            assert_true(half_quad(F, trial, n) > loss);
        }
        free(FRR);
    }
    fisher_free(&f);
    free(F);
    free(G);
}

// With several blocks, the score of a Q spanning two of them is the sum of the per-block scores,
// the update is the sum of the per-block updates, and both match the block-diagonal explicit F.
static void test_obs_blocks_sum(void **state) {
    (void)state;
    const int N = 8;
    const size_t n = 14, start[3] = {0, 6, 14};
    float *G = random_grads(N, n, 31);
    HpErr err;
    FisherInv f;
    assert_int_equal(fisher_from_grads(G, N, n, start, 2, 1e-2, &f, &err), 0);
    Rng rng;
    rng_seed(&rng, 9, 9);
    float w[14];
    for (size_t i = 0; i < n; i++) w[i] = rng_normal(&rng);
    const size_t Q[4] = {13, 2, 8, 5}, Q1[2] = {2, 5}, Q2[2] = {8, 13};
    double s, s1, s2;
    assert_int_equal(obs_score(&f, w, Q, 4, &s, &err), 0);
    assert_int_equal(obs_score(&f, w, Q1, 2, &s1, &err), 0);
    assert_int_equal(obs_score(&f, w, Q2, 2, &s2, &err), 0);
    assert_true(rel(s, s1 + s2) < 1e-14);
    float d[14] = {0}, d1[14] = {0};
    assert_int_equal(obs_update(&f, w, Q, 4, d, &err), 0);
    assert_int_equal(obs_update(&f, w, Q1, 2, d1, &err), 0);
    assert_int_equal(obs_update(&f, w, Q2, 2, d1, &err), 0);
    for (size_t i = 0; i < n; i++) assert_true(d[i] == d1[i]);
    // the loss under the block-diagonal F
    double *F = xcalloc(n * n, sizeof(double));
    for (int b = 0; b < 2; b++) {
        size_t S = start[b + 1] - start[b];
        double *Fb = explicit_fisher(G + start[b], N, n, S, 1e-2);
        for (size_t i = 0; i < S; i++)
            for (size_t j = 0; j < S; j++) F[(start[b] + i) * n + start[b] + j] = Fb[i * S + j];
        free(Fb);
    }
    assert_true(rel(half_quad(F, d, n), s) < 1e-5);
    // obs_group_scores: the same numbers from a partition
    uint32_t group_of[14];
    for (size_t i = 0; i < n; i++) group_of[i] = UINT32_MAX;
    group_of[2] = group_of[5] = 0;
    group_of[8] = group_of[13] = 1;
    group_of[0] = 3;  // group 2 stays empty
    double gs[4];
    assert_int_equal(obs_group_scores(&f, w, group_of, 4, gs, &err), 0);
    assert_true(gs[0] == s1 && gs[1] == s2 && gs[2] == 0.0);
    group_of[1] = 9;
    assert_int_equal(obs_group_scores(&f, w, group_of, 4, gs, &err), -1);
    fisher_free(&f);
    free(F);
    free(G);
}

// ---------------------------------------------------------------------------------------------
// From a model.

// Progress calls of a Fisher build, per series (0: gradients, 1: block inversions): how many, how
// many at the total, the last done and total; a series once left does not come back.
typedef struct {
    long calls[2], at_total[2], last[2], total[2];
    int series;  // the current one (-1 before the first call)
} Seen;

static void seen_progress(long done, long total, const char *unit, void *user) {
    Seen *s = user;
    int k = strcmp(unit, FISHER_UNIT_GRADS) == 0 ? 0 : 1;
    assert_true(k == 0 || strcmp(unit, FISHER_UNIT_BLOCKS) == 0);
    assert_true(k >= s->series);
    s->series = k;
    s->calls[k]++;
    s->at_total[k] += done == total;
    s->last[k] = done;
    s->total[k] = total;
}

// fisher_build with N = all samples, one each, gives the inverse of the Fisher of the per-sample
// gradients (curv_sample_grads), whatever order it drew them in; batches of 2 work; the model is
// not changed; too few samples are refused.
static void test_fisher_build(void **state) {
    (void)state;
    Model m;
    int ids[4];
    net_small(&m, ids);
    randomise(&m, 3);
    Dataset d;
    make_data(&d, 6, 2, 5, 5, 3, 17);
    float *before = xmalloc(m.n_params * sizeof(float));
    memcpy(before, m.params, m.n_params * sizeof(float));
    FisherOpts o = fisher_defaults();
    o.n_grads = 6;
    o.block_size = 40;
    o.damp = 1e-3;
    o.budget_mb = 0;
    Rng rng;
    rng_seed(&rng, 1, 1);
    HpErr err;
    FisherInv f;
    Seen seen = {.series = -1};
    assert_int_equal(fisher_build(&m, &d, &o, &rng, seen_progress, &seen, &f, &err), 0);
    assert_int_equal(memcmp(before, m.params, m.n_params * sizeof(float)), 0);
    // the gradients, then the blocks: each its own series, ending at its total, reported once
    assert_true(seen.calls[0] > 0 && seen.last[0] == 6 && seen.total[0] == 6 && seen.at_total[0] == 1);
    assert_true(seen.calls[1] > 0 && seen.last[1] == f.n_blocks && seen.total[1] == f.n_blocks);
    assert_int_equal(seen.at_total[1], 1);
    // reference: per-sample gradients of all six images, the same layout
    Curvature c;
    int idx[6] = {0, 1, 2, 3, 4, 5};
    assert_int_equal(curv_init(&c, &m, &d, idx, 6, 6, MODE_EVAL, CURV_HESSIAN, &err), 0);
    float *G = xmalloc(6 * m.n_params * sizeof(float));
    assert_int_equal(curv_sample_grads(&c, G, NULL), 0);
    size_t *start;
    int nb = fisher_blocks(&m, 40, true, &start, &err);
    FisherInv ref;
    assert_int_equal(fisher_from_grads(G, 6, m.n_params, start, nb, 1e-3, &ref, &err), 0);
    assert_int_equal(ref.n_blocks, f.n_blocks);
    size_t floats = ref.off[nb - 1] + (start[nb] - start[nb - 1]) * (start[nb] - start[nb - 1]);
    double e = tu_rel_err(f.inv, ref.inv, floats);
    fprintf(stderr, "  fisher_build vs explicit per-sample gradients: rel err %.2e\n", e);
    assert_true(e < 1e-5);
    fisher_free(&f);
    // mini-batch gradients: 3 of 2 samples; symmetric, positive diagonal
    o.n_grads = 3;
    o.grad_batch = 2;
    assert_int_equal(fisher_build(&m, &d, &o, &rng, NULL, NULL, &f, &err), 0);
    for (size_t i = 0; i < m.n_params; i += 7) {
        assert_true(fisher_inv_entry(&f, i, i) > 0);
        size_t j = (i + 3) % m.n_params;
        assert_true(fisher_inv_entry(&f, i, j) == fisher_inv_entry(&f, j, i));
    }
    fisher_free(&f);
    o.grad_batch = 3;  // 9 samples from 6
    assert_int_equal(fisher_build(&m, &d, &o, &rng, NULL, NULL, &f, &err), -1);
    assert_non_null(strstr(err.msg, "fisher: N 3 x batch 3 needs 9 training images, the training set has 6"));
    assert_null(f.inv);
    fisher_free(&ref);
    free(start);
    free(G);
    free(before);
    curv_free(&c);
    dataset_free(&d);
    model_free(&m);
}

// Bad options and arguments fail with a message saying what and, for the budget, what would fit.
static void test_fisher_bad_input(void **state) {
    (void)state;
    Model m;
    int ids[4];
    net_small(&m, ids);
    HpErr err;
    FisherOpts o = fisher_defaults();
    o.n_grads = 50;
    o.block_size = 100;
    assert_int_equal(fisher_check(&m, &o, &err), 0);
    FisherOpts b = o;
    b.n_grads = 0;
    assert_int_equal(fisher_check(&m, &b, &err), -1);
    assert_non_null(strstr(err.msg, "N = 0"));
    b = o, b.block_size = 0;
    assert_int_equal(fisher_check(&m, &b, &err), -1);
    assert_non_null(strstr(err.msg, "block size 0"));
    b = o, b.block_size = m.n_params + 1;
    assert_int_equal(fisher_check(&m, &b, &err), -1);
    assert_non_null(strstr(err.msg, "larger than the model's 186 parameters"));
    b = o, b.damp = 0;
    assert_int_equal(fisher_check(&m, &b, &err), -1);
    assert_non_null(strstr(err.msg, "damp 0"));
    b = o, b.damp = -1;
    assert_int_equal(fisher_check(&m, &b, &err), -1);
    b = o, b.grad_batch = 0;
    assert_int_equal(fisher_check(&m, &b, &err), -1);
    assert_int_equal(fisher_bytes(&m, &b), 0);
    // a budget between the cost of S = 30 and S = 100: the message proposes a block size that fits
    b = o;
    b.align_layers = false;
    size_t at30 = fisher_bytes(&m, &(FisherOpts){.n_grads = 50, .grad_batch = 1, .block_size = 30, .damp = 1,
                                                  .method = FISHER_AUTO});
    size_t at100 = fisher_bytes(&m, &b);
    assert_true(at30 > 0 && at30 < at100);
    b.budget_mb = (at30 + 1.0) / (1024.0 * 1024.0);
    assert_int_equal(fisher_check(&m, &b, &err), -1);
    fprintf(stderr, "  %s\n", err.msg);
    assert_non_null(strstr(err.msg, "over the budget"));
    assert_non_null(strstr(err.msg, "would fit"));
    size_t s_fit = strtoul(strstr(err.msg, "block size ") + 11, NULL, 10);
    assert_true(s_fit >= 30 && s_fit < 100);
    b.block_size = s_fit;
    assert_int_equal(fisher_check(&m, &b, &err), 0);
    b.budget_mb = 1e-6;
    assert_int_equal(fisher_check(&m, &b, &err), -1);
    assert_non_null(strstr(err.msg, "raise the budget"));
    // explicit gradients
    float *G = random_grads(4, 10, 1);
    size_t good[3] = {0, 5, 10}, gap[3] = {0, 5, 9}, rev[3] = {0, 5, 5};
    FisherInv f;
    assert_int_equal(fisher_from_grads(G, 0, 10, good, 2, 1e-3, &f, &err), -1);
    assert_non_null(strstr(err.msg, "N = 0"));
    assert_int_equal(fisher_from_grads(G, 4, 10, good, 2, 0.0, &f, &err), -1);
    assert_non_null(strstr(err.msg, "damp"));
    assert_int_equal(fisher_from_grads(G, 4, 10, gap, 2, 1e-3, &f, &err), -1);
    assert_int_equal(fisher_from_grads(G, 4, 10, rev, 2, 1e-3, &f, &err), -1);
    G[13] = NAN;
    assert_int_equal(fisher_from_grads(G, 4, 10, good, 2, 1e-3, &f, &err), -1);
    assert_non_null(strstr(err.msg, "non-finite"));
    G[13] = 0;
    assert_int_equal(fisher_from_grads(G, 4, 10, good, 2, 1e-3, &f, &err), 0);
    float w[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, delta[10] = {0};
    double s;
    size_t dup[2] = {3, 3}, far[2] = {3, 10};
    assert_int_equal(obs_score(&f, w, dup, 2, &s, &err), -1);
    assert_non_null(strstr(err.msg, "repeated"));
    assert_int_equal(obs_update(&f, w, far, 2, delta, &err), -1);
    assert_non_null(strstr(err.msg, "out of range"));
    assert_int_equal(obs_score(&f, w, dup, 0, &s, &err), -1);
    assert_non_null(strstr(err.msg, "empty"));
    fisher_free(&f);
    free(G);
    model_free(&m);
}

// ---------------------------------------------------------------------------------------------
// Layer-wise OBS.

// A LayerHessian for explicit X (d x n, double): H = 2 X X^T / n.
static LayerHessian hessian_of(const double *X, int d, long n, int block) {
    LayerHessian h = {.node = 1, .d = d, .block = block, .n_in_ch = d / block, .n_rows = n};
    h.H = xcalloc((size_t)d * d, sizeof(double));
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (long c = 0; c < n; c++) s += X[i * n + c] * X[j * n + c];
            h.H[i * d + j] = 2.0 * s / n;
        }
    for (int i = 0; i < d; i++) h.mean_diag += h.H[i * d + i] / d;
    return h;
}

// ||(W - W2) X||^2 / n for W, W2 (out x d) and X (d x n).
static double recon_error(const float *W, const float *W2, const double *X, int out, int d, long n) {
    double e = 0;
    for (int r = 0; r < out; r++)
        for (long c = 0; c < n; c++) {
            double s = 0;
            for (int j = 0; j < d; j++) s += ((double)W[r * d + j] - W2[r * d + j]) * X[j * n + c];
            e += s * s;
        }
    return e / n;
}

// Correlated random inputs X = L Z (d x n; Z standard normal, L lower triangular with unit diagonal
// and normal entries below it, so that compensation has something to work with) and normal W
// (out x d).
static void random_layer(double *X, int d, long n, float *W, int out, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed, 2);
    double *Z = xmalloc((size_t)d * n * sizeof(double)), *L = xcalloc((size_t)d * d, sizeof(double));
    for (long i = 0; i < d * n; i++) Z[i] = rng_normal(&rng);
    for (int i = 0; i < d; i++)
        for (int j = 0; j <= i; j++) L[i * d + j] = i == j ? 1.0 : rng_normal(&rng);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, (int)n, d, 1.0, L, d, Z, (int)n, 0.0, X, (int)n);
    for (int i = 0; i < out * d; i++) W[i] = rng_normal(&rng);
    free(Z), free(L);
}

// Joint removal with compensation: the measured error equals the prediction, which is the least
// squares optimum over the kept columns; without compensation the error is larger and again as
// predicted; removed columns are exactly 0.
static void test_layer_remove_linear(void **state) {
    (void)state;
    enum { D = 12, OUT = 5, NR = 200, BLOCK = 3 };
    double *X = xmalloc(D * NR * sizeof(double));
    float W[OUT * D], W1[OUT * D], W2[OUT * D];
    random_layer(X, D, NR, W, OUT, 4);
    LayerHessian h = hessian_of(X, D, NR, BLOCK);
    const int ch[2] = {3, 1};
    HpErr err;
    double pred, pred2;
    memcpy(W1, W, sizeof W);
    assert_int_equal(layer_obs_remove(&h, W1, OUT, BLOCK, 0.0, ch, 2, true, &pred, &err), 0);
    memcpy(W2, W, sizeof W);
    assert_int_equal(layer_obs_remove(&h, W2, OUT, BLOCK, 0.0, ch, 2, false, &pred2, &err), 0);
    for (int r = 0; r < OUT; r++)
        for (int t = 0; t < BLOCK; t++) {
            assert_true(W1[r * D + 3 * BLOCK + t] == 0.0f && W1[r * D + 1 * BLOCK + t] == 0.0f);
            assert_true(W2[r * D + 3 * BLOCK + t] == 0.0f && W2[r * D + 0 * BLOCK + t] == W[r * D + t]);
        }
    double meas = recon_error(W, W1, X, OUT, D, NR), meas2 = recon_error(W, W2, X, OUT, D, NR);
    fprintf(stderr, "  linear: compensated %.6g (predicted %.6g), plain %.6g (predicted %.6g)\n", meas, pred, meas2,
            pred2);
    assert_true(rel(meas, pred) < 1e-5);
    assert_true(rel(meas2, pred2) < 1e-5);
    assert_true(meas < 0.9 * meas2);
    // least squares over the kept columns K: per row, min ||w X - v X_K||^2
    int K[6], nk = 0;
    for (int j = 0; j < D; j++)
        if (j / BLOCK != 1 && j / BLOCK != 3) K[nk++] = j;
    double best = 0;
    for (int r = 0; r < OUT; r++) {
        double A[36], b[6];
        for (int i = 0; i < nk; i++) {
            b[i] = 0;
            for (int j = 0; j < nk; j++) A[i * nk + j] = h.H[K[i] * D + K[j]];
            for (int j = 0; j < D; j++) b[i] += h.H[K[i] * D + j] * W[r * D + j];
        }
        assert_int_equal(LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', nk, 1, A, nk, b, 1), 0);
        float v[D] = {0};
        for (int i = 0; i < nk; i++) v[K[i]] = (float)b[i];
        best += recon_error(W + r * D, v, X, 1, D, NR);
    }
    assert_true(rel(best, pred) < 1e-5);
    layer_hessian_free(&h);
    free(X);
}

// The forward pass's input to node id for all n samples, from a fresh workspace: (n, numel).
static float *node_input(Model *m, const Dataset *d, int n, int id) {
    Workspace ws;
    assert_int_equal(ws_init(&ws, m, n, 1, NULL), 0);
    float *x = xmalloc((size_t)n * shape_numel(m->input) * sizeof(float));
    int *y = xmalloc((size_t)n * sizeof(int)), idx[16];
    for (int i = 0; i < n; i++) idx[i] = i;
    data_batch(d, idx, n, m->norm_mean, m->norm_std, NULL, NULL, x, y);
    model_forward(m, &ws, x, n, MODE_EVAL, NULL);
    const Node *nd = &m->nodes[id];
    size_t len = (size_t)n * shape_numel(m->nodes[nd->in[0]].out);
    float *in = xmalloc(len * sizeof(float));
    memcpy(in, ws.act[nd->in[0]], len * sizeof(float));
    free(x), free(y);
    ws_free(&ws);
    return in;
}

// The unfolded inputs of node id as X (d x n_rows, double), by direct indexing (no im2col):
// a conv's column (sample s, position oh, ow) holds x[c, oh*stride - pad + ki, ow*stride - pad + kj]
// (0 outside) at row c*k*k + ki*k + kj; a linear's column s is its input vector.
static double *explicit_X(Model *m, const Dataset *d, int n, int id, int *d_out, long *rows) {
    const Node *nd = &m->nodes[id];
    Shape in = m->nodes[nd->in[0]].out;
    float *x = node_input(m, d, n, id);
    if (nd->op == OP_LINEAR) {
        *d_out = in.c, *rows = n;
        double *X = xmalloc((size_t)in.c * n * sizeof(double));
        for (int s = 0; s < n; s++)
            for (int j = 0; j < in.c; j++) X[(size_t)j * n + s] = x[(size_t)s * in.c + j];
        free(x);
        return X;
    }
    int k = nd->kernel, Ho = nd->out.h, Wo = nd->out.w, D = in.c * k * k;
    long R = (long)n * Ho * Wo;
    double *X = xcalloc((size_t)D * R, sizeof(double));
    for (int s = 0; s < n; s++)
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                long col = ((long)s * Ho + oh) * Wo + ow;
                for (int c = 0; c < in.c; c++)
                    for (int ki = 0; ki < k; ki++)
                        for (int kj = 0; kj < k; kj++) {
                            int ih = oh * nd->stride - nd->padding + ki, iw = ow * nd->stride - nd->padding + kj;
                            if (ih < 0 || iw < 0 || ih >= in.h || iw >= in.w) continue;
                            X[(size_t)((c * k + ki) * k + kj) * R + col] = x[(((size_t)s * in.c + c) * in.h + ih) * in.w + iw];
                        }
            }
    *d_out = D, *rows = R;
    free(x);
    return X;
}

// layer_hessians on tiny models (two convs, one strided, and a linear after gap; a linear after a
// flatten of a 3x4x4 map) equals 2 X X^T / n from explicitly unfolded inputs; layouts are right.
static void test_layer_hessians_model(void **state) {
    (void)state;
    Model m;
    int ids[4];
    net_small(&m, ids);
    randomise(&m, 8);
    Dataset d;
    make_data(&d, 7, 2, 5, 5, 3, 23);
    int nodes[3] = {ids[0], ids[2], ids[3]}, idx[7] = {0, 1, 2, 3, 4, 5, 6};
    LayerHessian h[3];
    HpErr err;
    assert_int_equal(layer_hessians(&m, &d, idx, 7, 3, nodes, 3, h, &err), 0);
    const int expect_d[3] = {18, 27, 4}, expect_block[3] = {9, 9, 1};
    const long expect_rows[3] = {7 * 25, 7 * 9, 7};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h[i].node, nodes[i]);
        assert_int_equal(h[i].d, expect_d[i]);
        assert_int_equal(h[i].block, expect_block[i]);
        assert_int_equal(h[i].n_in_ch, expect_d[i] / expect_block[i]);
        assert_int_equal(h[i].n_rows, expect_rows[i]);
        int D;
        long R;
        double *X = explicit_X(&m, &d, 7, nodes[i], &D, &R);
        LayerHessian ref = hessian_of(X, D, R, expect_block[i]);
        double e = rel_d(h[i].H, ref.H, (size_t)D * D);
        fprintf(stderr, "  layer_hessians node %d vs explicit X X^T: rel err %.2e\n", nodes[i], e);
        assert_true(e < 1e-5);
        assert_true(rel(h[i].mean_diag, ref.mean_diag) < 1e-5);
        layer_hessian_free(&ref);
        free(X);
        layer_hessian_free(&h[i]);
    }
    // a conv's removal measured on its real inputs (conv1 reads the random images: full rank)
    assert_int_equal(layer_hessians(&m, &d, idx, 7, 7, nodes, 1, h, &err), 0);
    int D;
    long R;
    double *X = explicit_X(&m, &d, 7, ids[0], &D, &R);
    const Node *c1 = &m.nodes[ids[0]];
    float *W = m.params + c1->w_off, *W1 = xmalloc(c1->w_len * sizeof(float));
    memcpy(W1, W, c1->w_len * sizeof(float));
    const int ch[1] = {1};
    double pred;
    assert_int_equal(layer_obs_remove(&h[0], W1, 3, 9, 0.0, ch, 1, true, &pred, &err), 0);
    double meas = recon_error(W, W1, X, 3, D, R);
    fprintf(stderr, "  conv1: removing input channel 1: measured %.6g, predicted %.6g\n", meas, pred);
    assert_true(rel(meas, pred) < 1e-4);
    free(W1), free(X);
    layer_hessian_free(&h[0]);
    // grouping after a flatten: 3 channels of 16 features
    Model f;
    int fid[2];
    net_flat(&f, fid);
    randomise(&f, 9);
    Dataset d2;
    make_data(&d2, 5, 2, 4, 4, 5, 29);
    assert_int_equal(layer_hessians(&f, &d2, idx, 5, 2, &fid[1], 1, h, &err), 0);
    assert_int_equal(h[0].d, 48);
    assert_int_equal(h[0].block, 16);
    assert_int_equal(h[0].n_in_ch, 3);
    X = explicit_X(&f, &d2, 5, fid[1], &D, &R);
    LayerHessian ref = hessian_of(X, D, R, 16);
    assert_true(rel_d(h[0].H, ref.H, 48 * 48) < 1e-5);
    layer_hessian_free(&ref);
    layer_hessian_free(&h[0]);
    free(X);
    dataset_free(&d2);
    model_free(&f);
    dataset_free(&d);
    model_free(&m);
}

// Greedy removal: the first pick is the argmin of layer_obs_scores (with its score as cost), the
// costs add up to the joint score of the chosen set, and the weights equal the joint removal's.
static void test_layer_greedy(void **state) {
    (void)state;
    enum { D = 15, OUT = 4, NR = 120, BLOCK = 3, NCH = 5 };
    double *X = xmalloc(D * NR * sizeof(double));
    float W[OUT * D], Wg[OUT * D], Wj[OUT * D];
    random_layer(X, D, NR, W, OUT, 12);
    for (int r = 0; r < OUT; r++)
        for (int t = 0; t < BLOCK; t++) W[r * D + 2 * BLOCK + t] *= 0.1f;  // channel 2 is cheap
    LayerHessian h = hessian_of(X, D, NR, BLOCK);
    HpErr err;
    double score[NCH], cost[3], joint;
    int order[3];
    const double damp = 0.01;
    assert_int_equal(layer_obs_scores(&h, W, OUT, BLOCK, damp, score, &err), 0);
    int best = 0;
    for (int c = 1; c < NCH; c++)
        if (score[c] < score[best]) best = c;
    assert_int_equal(best, 2);
    memcpy(Wg, W, sizeof W);
    assert_int_equal(layer_obs_greedy(&h, Wg, OUT, BLOCK, damp, 3, order, cost, &err), 0);
    assert_int_equal(order[0], best);
    assert_true(rel(cost[0], score[best]) < 1e-9);
    assert_true(order[0] != order[1] && order[1] != order[2] && order[0] != order[2]);
    assert_true(cost[1] >= 0 && cost[2] >= 0);
    // each single score is what removing that channel alone costs
    for (int c = 0; c < NCH; c++) {
        float Wc[OUT * D];
        memcpy(Wc, W, sizeof W);
        double p;
        assert_int_equal(layer_obs_remove(&h, Wc, OUT, BLOCK, damp, &c, 1, true, &p, &err), 0);
        assert_true(rel(p, score[c]) < 1e-9);
    }
    memcpy(Wj, W, sizeof W);
    assert_int_equal(layer_obs_remove(&h, Wj, OUT, BLOCK, damp, order, 3, true, &joint, &err), 0);
    fprintf(stderr, "  greedy order %d %d %d, costs %.4g + %.4g + %.4g vs joint %.6g\n", order[0], order[1], order[2],
            cost[0], cost[1], cost[2], joint);
    assert_true(rel(cost[0] + cost[1] + cost[2], joint) < 1e-8);
    assert_true(tu_rel_err(Wg, Wj, OUT * D) < 1e-5);
    layer_hessian_free(&h);
    free(X);
}

// Bad input fails with a message: block not dividing d, no rows, negative damping, channels out
// of range or repeated, too many greedy picks, a singular H without damping, unsupported nodes.
static void test_layer_bad_input(void **state) {
    (void)state;
    enum { D = 6, OUT = 2, NR = 40 };
    double *X = xmalloc(D * NR * sizeof(double));
    float W[OUT * D];
    random_layer(X, D, NR, W, OUT, 3);
    for (int c = 0; c < NR; c++) X[4 * NR + c] = 0;  // a dead input: H singular
    LayerHessian h = hessian_of(X, D, NR, 2);
    HpErr err;
    double s[6], p;
    int order[3], two[2] = {1, 1}, far = 3;
    assert_int_equal(layer_obs_scores(&h, W, OUT, 4, 0.01, s, &err), -1);
    assert_non_null(strstr(err.msg, "does not divide"));
    assert_int_equal(layer_obs_scores(&h, W, 0, 2, 0.01, s, &err), -1);
    assert_int_equal(layer_obs_scores(&h, W, OUT, 2, -1, s, &err), -1);
    assert_int_equal(layer_obs_remove(&h, W, OUT, 2, 0.01, &far, 1, true, &p, &err), -1);
    assert_non_null(strstr(err.msg, "out of range"));
    assert_int_equal(layer_obs_remove(&h, W, OUT, 2, 0.01, two, 2, true, &p, &err), -1);
    assert_non_null(strstr(err.msg, "twice"));
    assert_int_equal(layer_obs_greedy(&h, W, OUT, 2, 0.01, 4, order, s, &err), -1);
    assert_int_equal(layer_obs_scores(&h, W, OUT, 2, 0.0, s, &err), -1);
    assert_non_null(strstr(err.msg, "singular"));
    assert_int_equal(layer_obs_scores(&h, W, OUT, 2, 0.01, s, &err), 0);
    assert_true(s[0] > 0 && s[1] > 0 && s[2] > 0);
    layer_hessian_free(&h);
    free(X);
    Model m;
    int ids[4];
    net_small(&m, ids);
    Dataset d;
    make_data(&d, 3, 2, 5, 5, 3, 1);
    int idx[3] = {0, 1, 2};
    LayerHessian hs[1];
    assert_int_equal(layer_hessians(&m, &d, idx, 3, 2, &ids[1], 1, hs, &err), -1);
    assert_non_null(strstr(err.msg, "batchnorm2d"));
    assert_int_equal(layer_hessians(&m, &d, idx, 0, 2, &ids[0], 1, hs, &err), -1);
    idx[2] = 3;
    assert_int_equal(layer_hessians(&m, &d, idx, 3, 2, &ids[0], 1, hs, &err), -1);
    assert_non_null(strstr(err.msg, "out of range"));
    dataset_free(&d);
    model_free(&m);
}

int main(void) {
    omp_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_inverse_methods), cmocka_unit_test(test_blocks_independent),
        cmocka_unit_test(test_block_layout),          cmocka_unit_test(test_obs_optimal),
        cmocka_unit_test(test_obs_blocks_sum),        cmocka_unit_test(test_fisher_build),
        cmocka_unit_test(test_fisher_bad_input),      cmocka_unit_test(test_layer_remove_linear),
        cmocka_unit_test(test_layer_hessians_model),  cmocka_unit_test(test_layer_greedy),
        cmocka_unit_test(test_layer_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
