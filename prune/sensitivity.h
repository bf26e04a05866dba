// sensitivity.h: how much each layer (prunable channel group) matters. Each group is pruned
// alone at each of a range of ratios (its lowest-scoring channels by a criterion, on a copy of
// the model, with the criterion's compensating update for obs and obs-layer) and the test
// accuracy is measured without fine-tuning. Beside it, each group's Hessian trace: a Hutchinson
// diagonal of the loss Hessian summed over every parameter the group's channels touch, so one
// can see whether curvature predicts the sensitive layers.
#ifndef HP_SENSITIVITY_H
#define HP_SENSITIVITY_H

#include "criteria.h"

typedef struct {
    CritOpts crit;          // criterion and calibration (crit.data: the training set); crit.samples,
                            // crit.batch, crit.probes and crit.seed also drive the trace
    const double *ratios;   // fractions of a group's channels to remove, each in (0, 1)
    int n_ratios;
    // hooks (may be NULL); the library never prints
    void (*phase)(void *user, const char *name);  // "trace", "scoring", "pruning" as each starts
    ProgressFn progress;                          // (done, total, unit) within the phase
    void *user;
} SensOpts;

// One prunable group's results.
typedef struct {
    char name[HP_MAX_NAME + 16];
    int channels;
    size_t params;   // distinct parameters its channels touch (producers, batchnorms, consumers)
    double trace;    // Hutchinson estimate of the sum of the Hessian's diagonal over them
    int *removed;    // [n_ratios] channels removed at each ratio (round(ratio x channels), at
                     // most channels - 1)
    double *acc;     // [n_ratios] test accuracy with only this group pruned
} SensGroup;

typedef struct {
    SensGroup *groups;  // prunable groups, in model order
    int n_groups, n_ratios;
    double acc_orig;    // test accuracy of the unpruned model
    int probes;         // Hutchinson probes of the traces
} SensResult;

// What can be checked of an analysis before any data is read or work done: every ratio in
// (0, 1), a prunable group in m, a criterion that can score m's groups (crit_check: bn needs a
// batchnorm in each), obs's Fisher within its memory budget. Returns 0, or -1 with err set.
int sensitivity_check(const SensOpts *o, const Model *m, HpErr *err);
// Runs the analysis on m (left unchanged) with accuracy on test. Returns 0, or -1 with err set
// (before any work when sensitivity_check fails, or obs's Fisher needs more training images
// than crit.data has).
int sensitivity_run(const SensOpts *o, Model *m, const Dataset *test, SensResult *r, HpErr *err);
void sensresult_free(SensResult *r);
// The accuracy drops of group g over the ratios (acc_orig - acc, negative where pruning raised
// the accuracy): their mean into *mean and their largest into *max (the same with one ratio).
void sens_drops(const SensResult *r, int g, double *mean, double *max);

// Parses "a:b:step" (a <= b, step > 0: a, a + step, ... up to b) or a comma list; every ratio
// must be in (0, 1), at most max of them. Returns the count (ratios[] filled), or -1 with err.
int parse_ratios(const char *s, double *ratios, int max, HpErr *err);

// Spearman rank correlation of x and y (n >= 2; ties get their mean rank) into *rho; NAN if
// either is constant or n < 2. Returns 0, or -1 with err set.
int spearman(const double *x, const double *y, int n, double *rho, HpErr *err);

#endif
