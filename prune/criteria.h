// criteria.h: channel importance scores over channel groups (one interface for every
// criterion), their normalisation, the global selection of channels to remove under a target
// (MACs, parameters or channels) with per-layer caps, and the compensating weight updates of
// the OBS criteria.
#ifndef HP_CRITERIA_H
#define HP_CRITERIA_H

#include "../hessian/layer_obs.h"
#include "../hessian/linop.h"
#include "../hessian/obs.h"
#include "../nn/data.h"
#include "prune.h"

// A channel's scored parameters are every tensor slice it touches, or with consumers_only its
// consumers' input columns alone.
typedef enum {
    CRIT_RANDOM,     // uniform random scores (a baseline that knows nothing)
    CRIT_L1,         // sum of |w| over the channel's scored parameters (Li et al. 2017)
    CRIT_L2,         // sum of w^2 over the channel's scored parameters
    CRIT_BN,         // |gamma| of the channel's batchnorms (network slimming)
    CRIT_TAYLOR,     // first-order Taylor: mean over mini-batches of (sum w.g)^2 (Molchanov 2019)
    CRIT_HAP,        // Tr(H_c) / n_c * ||w_c||^2, Hutchinson diagonal of H (HAP, Yu et al. 2022)
    CRIT_OBD,        // 1/2 sum diag(A)_i w_i^2: Hutchinson diagonal of H, or the exact Gauss-Newton one
    CRIT_FISHER,     // 1/2 w_Q^T G_QQ w_Q, G the exact Gauss-Newton matrix (the Fisher of the
                     // model's own predictive distribution): every term within the channel
    CRIT_OBS,        // 1/2 w_Q^T ([F^-1]_QQ)^-1 w_Q with the WoodFisher inverse; update applied
    CRIT_OBS_LAYER,  // layer-wise OBS at the channel's consumers, with their compensation
    CRIT_COUNT
} Criterion;

typedef enum {
    NORM_AUTO,  // none for the loss-change criteria (taylor, hap, obd, fisher, obs), mean for the others
    NORM_MEAN,  // each group's scores divided by their mean (groups of different sizes compare fairly)
    NORM_MAX,   // divided by their maximum
    NORM_SIZE,  // divided by the channel's scored parameter count (a per-parameter score)
    NORM_NONE,  // raw scores
} Normalize;

// Returns the criterion's name ("l1", "obs-layer", ...), or parses one (CRIT_COUNT if unknown).
const char *criterion_name(Criterion c);
Criterion criterion_parse(const char *s);
const char *normalize_name(Normalize n);
// True if criterion c can score on its consumers' columns alone (CritOpts.consumers_only).
bool criterion_takes_slices(Criterion c);
// Writes the names of the criteria criterion_takes_slices accepts into buf ("l1, l2, ... and fisher").
void criteria_taking_slices(char *buf, size_t cap);
// Writes the names of every criterion into buf ("random, l1, ..., obs-layer").
void criteria_names(char *buf, size_t cap);
// True for the criteria that score on CritOpts.samples calibration images: taylor, hap, obd,
// fisher, obs-layer (obs reads its Fisher's fisher.n_grads images instead).
bool criterion_reads_samples(Criterion c);
int normalize_parse(const char *s);  // -1 if unknown
// True if the option key, one that only some criteria use, applies to criterion c. Keys (a
// sweep config's names): slices, ggn, probes, samples, fisher_grads, fisher_batch, block_size,
// damp, memory_budget, layer_damp, compensate; any other is a programming error. users (cap
// bytes; may be NULL) gets the criteria it applies to ("hap and obd").
bool criterion_option_applies(const char *key, Criterion c, char *users, size_t cap);
// Fails naming a channel of a prunable group whose score is not a finite number (no ranking can
// order it); 0 when every one is finite.
int scores_finite(const GroupSet *gs, double *const *scores, HpErr *err);
// true for the criteria that change the remaining weights (obs, obs-layer) unless disabled.
bool criterion_compensates(Criterion c);

// What a criterion needs besides the model.
typedef struct {
    Criterion method;
    Normalize normalize;
    const Dataset *data;   // calibration images (the training set); not used by random/l1/l2/bn
    int samples;           // calibration images taken from the start of a seeded permutation
    int batch;             // batch size of the calibration passes
    int probes;            // Hutchinson probes (hap, obd)
    bool ggn;              // hap, obd: the exact Gauss-Newton diagonal (PSD, no probes) instead
                           // of the Hessian's Hutchinson estimate
    FisherOpts fisher;     // obs
    double damp_rel;       // obs-layer: damping relative to the mean diagonal of each layer's H
    bool compensate;       // obs, obs-layer: apply the optimal update to the remaining weights
    bool consumers_only;   // l1, l2, taylor, hap, obd, fisher: score a channel on its consumers'
                           // input columns alone (zeroing them is the channel's removal) instead
                           // of every tensor slice it touches
    uint64_t seed;
    ProgressFn progress;   // called with (done, total, unit) per unit of work; may be NULL
    void *user;
} CritOpts;

// Fails (with the reason) when method cannot score m's groups gs, before any work: bn needs a
// batchnorm in every prunable group. Returns 0 otherwise.
int crit_check(Criterion method, const Model *m, const GroupSet *gs, HpErr *err);

// The normalisation scorer_run applies for o: o->normalize, or for NORM_AUTO the one it stands
// for with o->method (none for taylor, hap, obd, fisher and obs; mean for the others).
Normalize crit_normalize(const CritOpts *o);

// Defaults: l1, mean normalisation, 512 samples, batch 128, 32 probes, Hessian diagonal,
// fisher_defaults() but for blocks of 100 and damp 1e-2 (obs), obs-layer damping 1%,
// compensation on, seed 1.
CritOpts crit_defaults(void);

// The calibration images: a permutation of o->data's indices seeded by o->seed (malloc'd, all
// o->data->n of them) whose first *n = min(o->samples, o->data->n) are the ones used. NULL with
// err set if out of memory.
int *crit_calibration(const CritOpts *o, int *n, HpErr *err);
// Hutchinson diagonal (o->probes probes, at least 2) of the Hessian, or of the Gauss-Newton
// matrix if ggn, of the mean loss over the calibration images in batches of o->batch
// (eval-mode batchnorm) into diag (n_params floats); *probes (may be NULL) gets the count used.
int crit_hutchinson_diag(const CritOpts *o, Model *m, bool ggn, float *diag, int *probes, HpErr *err);
// The exact diagonal of the Gauss-Newton matrix of the same loss (no probes: one forward and
// one backward per class for each calibration image) into diag (n_params floats).
int crit_ggn_diag(const CritOpts *o, Model *m, float *diag, HpErr *err);

// A scoring run, kept between scoring and compensation (the OBS criteria need their inverses).
typedef struct {
    CritOpts o;
    FisherInv fisher;       // obs
    bool has_fisher;
    LayerHessian *layers;   // obs-layer: one per consumer node
    int n_layers;
    int *layer_of_node;     // [n_nodes]: index into layers, or -1
} Scorer;

// Scores every channel of every prunable group of m: scores[g] (gs->groups[g].n_channels
// doubles) is filled for prunable groups (lower = less important) and left untouched for the
// others; raw scores are normalised per group by o->normalize. Returns 0, or -1 with err set
// (naming the criterion and a channel if a score is not finite).
int scorer_run(Scorer *s, const CritOpts *o, Model *m, const GroupSet *gs, double **scores, HpErr *err);
// Applies the criterion's compensating update for removing the channels not in keep (obs,
// obs-layer with compensation on; nothing for the others) to m's parameters. Call before
// prune_apply, on the model scorer_run saw. Returns 0, or -1 with err set.
int scorer_compensate(Scorer *s, Model *m, const GroupSet *gs, bool *const *keep, HpErr *err);
void scorer_free(Scorer *s);

// ---- selection ----

typedef enum { TARGET_MACS, TARGET_PARAMS, TARGET_CHANNELS } TargetKind;

typedef struct {
    TargetKind kind;
    double ratio;          // fraction to remove, in (0, 1), of the reference model's total
    double max_layer_frac; // at most this fraction of a group's reference channels removed (0.9)
    int round_to;          // kept channels a multiple of this where the group is wider (1: off)
    bool per_cost;         // rank by score per unit of cost a channel's removal saves (MACs or
                           // parameters of the unpruned widths; 1 per channel for a channel target)
    bool uniform;          // TARGET_CHANNELS only: every prunable group keeps round((1 - ratio) x
                           // its reference width) channels, its highest scores (local, not
                           // global), that count rounded to the nearest multiple of round_to and
                           // raised to what the cap keeps; a ratio above the cap is out of reach
} PruneTarget;

const char *target_kind_name(TargetKind k);

// Channel widths of the reference (unpruned) model's groups, so that caps and targets of an
// iterative run refer to the original model. ref_channels[g] for every group of gs;
// ref_macs and ref_params of the reference model.
typedef struct {
    int *channels;
    uint64_t macs;
    size_t params;
    int n_groups;
} PruneRef;

// Returns 0, or -1 with err set (r is then empty).
int pruneref_init(PruneRef *r, const Model *m, const GroupSet *gs, HpErr *err);
void pruneref_free(PruneRef *r);

// MACs and parameters m would have with group g narrowed to width[g] channels (exact: both are
// sums of terms linear in a node's input and output widths). Returns 0, or -1 with err set.
int widths_cost(const Model *m, const GroupSet *gs, const int *width, uint64_t *macs, size_t *params, HpErr *err);

// Chooses the channels to remove: globally lowest scores (divided by each group's cost per
// channel when t->per_cost) first (in units of round_to channels
// within a group once its width is a multiple), never more than the cap of a group nor its
// last channel, until m's cost is at most (1 - ratio) of the reference's (t->uniform: see
// PruneTarget). keep[g] (n_channels bools for every group, all true for non-prunable ones) gets
// the result. Fails if a prunable group's score is not finite, or if the target is out of reach,
// saying the most that can be removed and which limit binds (the per-layer cap, the rounding,
// both, or the layers that cannot be pruned and the channel each keeps).
int prune_select(const Model *m, const GroupSet *gs, double *const *scores, const PruneTarget *t,
                 const PruneRef *ref, bool **keep, HpErr *err);

#endif
