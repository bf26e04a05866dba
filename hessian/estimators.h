// estimators.h: operator-agnostic curvature estimators over a LinOp (linop.h): Hutchinson trace
// (per group, with standard errors) and diagonal, Hutch++ trace, Lanczos eigenpairs with full
// reorthogonalisation, power iteration with deflation, and the spectral density by stochastic
// Lanczos quadrature (SLQ, Ghorbani et al. 2019) with derived figures.
//
// Vectors in the interface are float[n] (the LinOp's); sums, Lanczos bases and tridiagonal
// matrices are kept in double. Every function returns 0, or -1 with err set (bad arguments, out of
// memory, or the operator's own error, prefixed with the estimator's name). A ProgressFn, if
// given, is called after each operator product with (products done in this call, planned total,
// "products"); the total is a cap where an estimator may stop early (Hutchinson's tolerance,
// Lanczos's convergence).
// Randomness comes only from the Rng passed in, which is advanced.
#ifndef HP_ESTIMATORS_H
#define HP_ESTIMATORS_H

#include <stddef.h>
#include <stdint.h>

#include "linop.h"

// ---------------------------------------------------------------------------------------------
// Hutchinson trace, per group.

typedef struct {
    int min_probes;       // probes before the stopping rule may stop (>= 2; 0 means 8)
    int max_probes;       // hard limit (>= 2); min_probes = max_probes gives a fixed budget
    double tol;           // stop when total's SE <= tol * |total estimate| (> 0)
    ProgressFn progress;  // may be NULL
    void *user;           // passed to progress
} HutchOpts;

// Outputs of hutchinson_trace. The arrays are the caller's (NULL where not wanted).
typedef struct {
    double trace;         // estimate of tr(A): exactly the sum of group_trace in index order
    double trace_se;      // its standard error: sample std of per-probe totals / sqrt(probes)
    double *group_trace;  // [n_groups] or NULL: mean over probes of sum_{i in g} z_i (Az)_i
    double *group_se;     // [n_groups] or NULL: sample std over probes / sqrt(probes)
    float *diag;          // [n] or NULL: Hutchinson diagonal, mean over probes of z .* Az
    int probes;           // probes (= operator products) used
    int converged;        // 1 if the standard error met tol, 0 if max_probes ran out first
} HutchOut;

// Defaults: min_probes 8, max_probes 100, tol 1e-2, no progress.
HutchOpts hutch_defaults(void);

// Hutchinson estimate of tr(A) and of every group's diagonal sum with Rademacher probes z:
// per probe, the values z_i (Az)_i are summed (in double, coordinate order) into their group
// group_of[i] (< n_groups), or into one group when group_of is NULL (n_groups must then be
// 0 or 1). Stops by opts' rule. Unbiased for any symmetric A.
int hutchinson_trace(LinOp *op, const uint32_t *group_of, size_t n_groups, const HutchOpts *opts,
                     Rng *rng, HutchOut *out, HpErr *err);

// ---------------------------------------------------------------------------------------------
// Hutch++ (Meyer, Musco, Musco, Woodruff 2021).

typedef struct {
    double trace;         // tr(Q^T A Q) + Hutchinson estimate of tr((I-QQ^T) A (I-QQ^T))
    double trace_lowrank; // the first part, tr(Q^T A Q)
    double se;            // standard error of the residual Hutchinson part (sample std / sqrt)
    int rank;             // columns of Q (= products / 3, rounded down)
    int probes;           // residual Hutchinson probes (products - 2 * rank)
    long products;        // operator products used (= the budget m)
} HutchppOut;

// Hutch++ trace of a PSD operator with a budget of m >= 6 products: S is an n x (m/3) random
// sign matrix, Q = orth(AS) by Householder QR in double (LAPACKE), the low-rank part
// tr(Q^T A Q) takes m/3 products and the deflated remainder the other m - 2(m/3) Rademacher
// probes. Unbiased for any symmetric A; the variance gain needs A PSD with decaying spectrum.
// Memory: n x (m/3) doubles.
int hutchpp_trace(LinOp *op, int m, Rng *rng, ProgressFn progress, void *user, HutchppOut *out,
                  HpErr *err);

// ---------------------------------------------------------------------------------------------
// Lanczos eigenpairs.

typedef enum {
    EIG_LARGEST = 0,   // largest algebraic eigenvalues (most positive first)
    EIG_SMALLEST = 1,  // smallest algebraic eigenvalues (most negative first)
} EigWhich;

typedef struct {
    int k;                // eigenpairs wanted (1 <= k <= min(n, max_steps))
    EigWhich which;
    int max_steps;        // Lanczos steps (= products) at most (>= 1; capped at n)
    double tol;           // stop when every wanted Ritz residual <= tol * max(|theta|, tiny),
                          // tiny = FLT_EPSILON * ||T|| (> 0)
    ProgressFn progress;  // may be NULL
    void *user;
} LanczosOpts;

// Outputs of lanczos_eigs; arrays are the caller's (NULL where not wanted, except values).
typedef struct {
    double *values;       // [k] Ritz values, in the order asked for (see EigWhich)
    float *vectors;       // [k * n] or NULL: Ritz vector i (unit norm) at vectors + i * n
    double *residuals;    // [k] or NULL: Ritz residual norms |beta_j s_{j,i}| (estimates of
                          // ||Av - theta v|| in the Lanczos basis' arithmetic)
    int steps;            // Lanczos steps taken (= products)
    int converged;        // 1 if all k residuals met tol (or the Krylov space became invariant)
} LanczosOut;

// Defaults: k 1, EIG_LARGEST, max_steps 100, tol 1e-5, no progress.
LanczosOpts lanczos_defaults(void);

// Top-k eigenpairs at one end of the spectrum by Lanczos from a random normal unit start:
// full reorthogonalisation (two classical Gram-Schmidt passes against the whole basis, in
// double), Ritz pairs of the tridiagonal T_j by LAPACKE_dstev after every step from k on.
// Stops when the k wanted residuals meet tol, at max_steps, or when beta falls below the float
// interface's resolution (8 FLT_EPSILON ||T||): then the Ritz values are exact up to that
// resolution; if fewer than k are known the run restarts from a random vector orthogonal to
// the basis. A single-vector Krylov space holds one copy of a repeated eigenvalue, so exact
// multiplicities show up late or not at all. Memory: min(n, max_steps) x n doubles.
int lanczos_eigs(LinOp *op, const LanczosOpts *opts, Rng *rng, LanczosOut *out, HpErr *err);

// ---------------------------------------------------------------------------------------------
// Power iteration with deflation (a reference for Lanczos).

typedef struct {
    int k;                // eigenpairs wanted (1 <= k <= n)
    int max_iters;        // iterations (= products) per eigenpair at most (>= 1)
    double tol;           // stop a pair when |lambda_new - lambda_old| <= tol * |lambda_new| (> 0)
    ProgressFn progress;
    void *user;
} PowerOpts;

typedef struct {
    double *values;       // [k] eigenvalues by decreasing MAGNITUDE (signs kept)
    float *vectors;       // [k * n] or NULL: unit eigenvectors
    long products;        // operator products used in total
    int converged;        // number of pairs that met tol within max_iters
} PowerOut;

// Defaults: k 1, max_iters 1000, tol 1e-6, no progress.
PowerOpts power_defaults(void);

// The k eigenvalues of largest MAGNITUDE (not algebraic value) by power iteration on the
// deflated operator A - sum_i lambda_i v_i v_i^T (previous pairs), Rayleigh quotients in
// double, from random normal starts orthogonalised against the previous vectors.
int power_eigs(LinOp *op, const PowerOpts *opts, Rng *rng, PowerOut *out, HpErr *err);

// ---------------------------------------------------------------------------------------------
// Spectral density by stochastic Lanczos quadrature.

typedef struct {
    int n_probes;         // independent Lanczos runs (>= 1)
    int steps;            // Lanczos steps per run (>= 1; capped at n)
    int gaussian;         // 0: Rademacher start vectors, 1: Gaussian (both normalised)
    double sigma2_frac;   // Gaussian kernel variance / (lambda_max - lambda_min)^2 (0 means 1e-5)
    int grid_points;      // density grid size (>= 2; 0: automatic, spacing <= sigma / 4, at
                          // least 1001 and at most 200001 points)
    double t_min, t_max;  // grid range; both 0: automatic, nodes' range padded by 8 sigma
    ProgressFn progress;
    void *user;
} SlqOpts;

// Result of slq_density; its arrays are owned by it (free with slq_free).
typedef struct {
    int n_probes, steps;  // steps = the row stride of nodes/weights (min(opts.steps, n))
    int *n_nodes;         // [n_probes] nodes found by each run (< steps after a breakdown)
    double *nodes;        // [n_probes * steps] Ritz values of run p at nodes + p * steps
    double *weights;      // same layout: squared first components of T's eigenvectors (sum 1)
    int grid_points;
    double *grid;         // [grid_points] uniformly spaced t
    double *density;      // [grid_points] smoothed density (integrates to 1 over the auto grid)
    double sigma2;        // kernel variance used
    double lambda_min, lambda_max;  // smallest and largest node over all runs
    long products;
} SlqResult;

// Defaults: 10 probes, 90 steps, Rademacher, sigma2_frac 1e-5, automatic grid, no progress.
SlqOpts slq_defaults(void);

// SLQ: for each probe a Lanczos run of opts->steps (full reorthogonalisation, in double; a run
// ends early when the Krylov space becomes invariant, its quadrature then being exact) from a
// random unit vector; nodes theta_i = eigenvalues of T, weights tau_i = (e_1^T s_i)^2. The
// density is the probe average of sum_i tau_i N(t; theta_i, sigma2) on the grid.
// On failure res holds nothing to free.
int slq_density(LinOp *op, const SlqOpts *opts, Rng *rng, SlqResult *res, HpErr *err);

// Frees what slq_density allocated and zeroes res (NULL-safe).
void slq_free(SlqResult *res);

// Figures derived from an SLQ result.
typedef struct {
    double lambda_max;      // largest node
    double lambda_min;      // smallest node (may be negative)
    double lambda_min_pos;  // smallest node > rel_floor * lambda_max (NAN if none)
    double condition;       // lambda_max / lambda_min_pos: condition of the positive part (NAN
                            // if lambda_max <= 0 or no such node)
    double neg_mass;        // probe average of sum_{theta<0} |theta| tau
    double pos_mass;        // probe average of sum_{theta>0} theta tau
    double neg_pos_ratio;   // neg_mass / pos_mass: ratio of the probe-averaged masses (NAN if
                            // pos_mass == 0)
} SpectrumFigures;

// Fills fig from res. Nodes at or below rel_floor * lambda_max (rel_floor in [0, 1); 0 means
// 1e-6) count as the null/negative part for the condition number. Interior SLQ nodes are
// quadrature nodes, not converged eigenvalues: lambda_min_pos is only an estimate.
int slq_figures(const SlqResult *res, double rel_floor, SpectrumFigures *fig, HpErr *err);

#endif
