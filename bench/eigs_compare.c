// eigs_compare.c: Hessian-vector products that Lanczos and power iteration need for the top
// eigenvalue of a trained model's loss Hessian to 1e-3 relative accuracy.
//
//   build/bench/eigs_compare MODEL [--samples N] [--data DIR] [--threads T]
//
// The reference is a Lanczos run to a residual of 1e-6. Lanczos is then run with budgets of s
// steps from the same seeded start (a run with budget s repeats the first s steps of a longer
// one, and its largest Ritz value never decreases with s), and the smallest s whose top Ritz
// value is within 1e-3 of the reference is found by doubling and bisection. Power iteration
// (v <- Hv / ||Hv||, Rayleigh quotient v'Hv) is run step by step until it is within 1e-3.
//
// Then both as a user runs them, each stopping by its own rule, for the top 1 and top 5
// eigenvalues: Lanczos until every wanted Ritz residual is under 1e-3 of its value; power
// iteration with deflation (as PyHessian computes top-k) until successive Rayleigh quotients
// agree to 1e-3, at most 100 iterations per eigenvalue (PyHessian's defaults). Printed: the
// products each used and its largest relative error against a Lanczos reference (residual 1e-6).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/formats.h"
#include "hessian/estimators.h"
#include "hessian/hvp.h"
#include "nn/train.h"

// Top eigenvalue by Lanczos with at most `steps` products (no early stop).
static double lanczos_top(LinOp *op, int steps, HpErr *err) {
    LanczosOpts lo = lanczos_defaults();
    lo.max_steps = steps;
    lo.tol = 1e-12;
    double value = NAN;
    LanczosOut out = {.values = &value};
    Rng rng;
    rng_seed(&rng, 1, 1);
    if (lanczos_eigs(op, &lo, &rng, &out, err) < 0) return NAN;
    return value;
}

// Power iteration from a seeded normal start: products until the Rayleigh quotient is within
// 1e-3 of ref (at most cap), or -1; *got is the last quotient.
static int power_needed(LinOp *op, double ref, int cap, double *got, HpErr *err) {
    size_t n = op->n;
    float *v = malloc(n * sizeof(float)), *hv = malloc(n * sizeof(float));
    Rng rng;
    rng_seed(&rng, 1, 1);
    double norm = 0;
    for (size_t j = 0; j < n; j++) {
        v[j] = rng_normal(&rng);
        norm += (double)v[j] * v[j];
    }
    for (size_t j = 0; j < n; j++) v[j] = (float)(v[j] / sqrt(norm));
    int found = -1;
    for (int s = 1; s <= cap && found < 0; s++) {
        if (linop_apply(op, v, hv, err) < 0) break;
        double q = 0, hn = 0;
        for (size_t j = 0; j < n; j++) {
            q += (double)v[j] * hv[j];
            hn += (double)hv[j] * hv[j];
        }
        *got = q;
        if (fabs(q - ref) <= 1e-3 * fabs(ref)) found = s;
        for (size_t j = 0; j < n; j++) v[j] = (float)(hv[j] / sqrt(hn));
    }
    free(v);
    free(hv);
    return found;
}

// Smallest Lanczos budget s <= cap whose top Ritz value is within 1e-3 of ref, or -1.
static int lanczos_needed(LinOp *op, double ref, int cap, double *got, HpErr *err) {
    int lo = 0, hi = 1;  // invariant: budget lo is not enough; hi is being tried
    for (;;) {  // doubling
        *got = lanczos_top(op, hi, err);
        if (isnan(*got)) return -1;
        if (fabs(*got - ref) <= 1e-3 * fabs(ref)) break;
        if (hi >= cap) return -1;
        lo = hi;
        hi = hi * 2 > cap ? cap : hi * 2;
    }
    while (hi - lo > 1) {  // bisection
        int mid = (lo + hi) / 2;
        double v = lanczos_top(op, mid, err);
        if (fabs(v - ref) <= 1e-3 * fabs(ref)) {
            hi = mid;
            *got = v;
        } else {
            lo = mid;
        }
    }
    return hi;
}

// Largest relative error of got[0..k) against ref[0..k), both by decreasing value (got is
// sorted so first: power iteration finds its pairs by decreasing magnitude, in the order of
// deflation).
static double max_rel_err(double *got, const double *ref, int k) {
    for (int i = 1; i < k; i++)  // insertion sort, decreasing
        for (int j = i; j > 0 && got[j] > got[j - 1]; j--) {
            double t = got[j];
            got[j] = got[j - 1];
            got[j - 1] = t;
        }
    double e = 0;
    for (int i = 0; i < k; i++) {
        double r = fabs(got[i] - ref[i]) / fabs(ref[i]);
        if (r > e) e = r;
    }
    return e;
}

// Prints the products and errors of Lanczos and power iteration with their own stopping rules
// at 1e-3 for the top k eigenvalues; 0, or -1 with err set.
static int own_rules(LinOp *op, int k, HpErr *err) {
    double ref[8], lz[8], pw[8];
    LanczosOpts lo = lanczos_defaults();
    lo.k = k, lo.tol = 1e-6, lo.max_steps = 300;
    LanczosOut lref = {.values = ref};
    Rng rng;
    rng_seed(&rng, 7, 7);
    if (lanczos_eigs(op, &lo, &rng, &lref, err) < 0) return -1;
    lo.tol = 1e-3;
    LanczosOut lout = {.values = lz};
    rng_seed(&rng, 1, 1);
    if (lanczos_eigs(op, &lo, &rng, &lout, err) < 0) return -1;
    PowerOpts po = power_defaults();
    po.k = k, po.tol = 1e-3, po.max_iters = 100;
    PowerOut pout = {.values = pw};
    rng_seed(&rng, 1, 1);
    if (power_eigs(op, &po, &rng, &pout, err) < 0) return -1;
    printf("top %d, own stopping rules at 1e-3: Lanczos %d products (largest error %.1e%s), power iteration %ld "
           "(%.1e, %d of %d converged); ratio %.2f\n",
           k, lout.steps, max_rel_err(lz, ref, k), lout.converged ? "" : ", NOT converged", pout.products,
           max_rel_err(pw, ref, k), pout.converged, k, (double)lout.steps / (double)pout.products);
    return 0;
}

int main(int argc, char **argv) {
    const char *path = NULL, *dir = "/usr/share/datasets/fashion-mnist";
    int samples = 128, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc)
            samples = atoi(argv[++i]);
        else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!path && argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "usage: eigs_compare MODEL [--samples N] [--data DIR] [--threads T]\n");
            return 2;
        }
    }
    if (!path || samples < 1) {
        fprintf(stderr, "usage: eigs_compare MODEL [--samples N] [--data DIR] [--threads T]\n");
        return 2;
    }
    hp_set_threads(threads);
    Model m;
    Dataset train, test;
    HpErr err;
    if (model_load(&m, path, NULL, NULL, &err) < 0 || dataset_load("fashion-mnist", dir, &train, &test, &err) < 0) {
        fprintf(stderr, "eigs_compare: %s\n", err.msg);
        return 1;
    }
    int *idx = malloc((size_t)samples * sizeof(int));
    for (int i = 0; i < samples; i++) idx[i] = i;
    Curvature c;
    if (curv_init(&c, &m, &train, idx, samples, samples, MODE_EVAL, CURV_HESSIAN, &err) < 0) {
        fprintf(stderr, "eigs_compare: %s\n", err.msg);
        return 1;
    }
    LinOp op = curv_linop(&c);
    LanczosOpts lo = lanczos_defaults();
    lo.tol = 1e-6;
    lo.max_steps = 200;
    double ref = NAN;
    LanczosOut out = {.values = &ref};
    Rng rng;
    rng_seed(&rng, 7, 7);
    if (lanczos_eigs(&op, &lo, &rng, &out, &err) < 0) {
        fprintf(stderr, "eigs_compare: %s\n", err.msg);
        return 1;
    }
    double lz = NAN, pw = NAN;
    int n_lz = lanczos_needed(&op, ref, 256, &lz, &err);
    int n_pw = power_needed(&op, ref, 300, &pw, &err);
    printf("%s (%s, %d samples): top eigenvalue %.6g (reference: Lanczos, %d steps, residual 1e-6)\n", path, m.arch,
           samples, ref, out.steps);
    printf("products to 1e-3 relative: Lanczos %d (%.6g), power iteration %d (%.6g); ratio %.2f\n", n_lz, lz, n_pw, pw,
           n_lz > 0 && n_pw > 0 ? (double)n_lz / n_pw : NAN);
    for (int k = 1; k <= 5; k += 4)
        if (own_rules(&op, k, &err) < 0) {
            fprintf(stderr, "eigs_compare: %s\n", err.msg);
            return 1;
        }
    free(idx);
    curv_free(&c);
    dataset_free(&train);
    dataset_free(&test);
    model_free(&m);
    return 0;
}
