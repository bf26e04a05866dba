// pipeline.h: one pruning job from a trained model to a slim, fine-tuned one: measure the
// original, score and remove channels to the target (in one or more steps), fine-tune with the
// engine's trainer keeping the best epoch, measure again. The `prune` command runs one job, a
// sweep runs many.
#ifndef HP_PIPELINE_H
#define HP_PIPELINE_H

#include "../nn/train.h"
#include "criteria.h"

typedef struct {
    CritOpts crit;           // criterion and its options (crit.data is set by prune_run)
    PruneTarget target;
    int steps;               // reach the target in this many steps, re-scoring in between (>= 1)
    int between_epochs;      // fine-tuning epochs after each intermediate step (0: none)
    TrainConfig finetune;    // fine-tuning after the last step (epochs 0: none); val_split picks
                             // the best epoch (0: the last epoch is kept)
    int bn_samples;          // after each step, batchnorm statistics re-estimated on this many
                             // training images (no weight changes; 0: off)
    int latency_batch;       // batch of the latency measurement (0: not measured)
    int latency_reps;        // timed forward passes of each model a round, at least (median reported)
    double latency_round_s;  // and at least these seconds of them a round
    // hooks (all may be NULL); the library never prints
    ProgressFn score_progress;  // scoring: the criterion's products, images, gradients, ...
    TrainCallback train_progress;  // fine-tuning (user is train_user)
    void *user, *train_user;
    void (*log)(void *user, const char *line);  // one line per milestone ("step 1/2: ...")
} PruneJob;

// Defaults: l1, 50% MACs, cap 0.9, one step, batchnorm recalibration on 1024 images, no
// fine-tuning (lr 0.01 cosine Nesterov, 5% validation split when enabled), latency batch 64
// over at least 9 runs and 0.02 s a round.
PruneJob prune_job_defaults(void);

typedef struct {
    double acc_orig, loss_orig;        // test set, before pruning
    double acc_oneshot, loss_oneshot;  // after pruning, before fine-tuning (statistics as they were)
    double acc_recal, loss_recal;      // after pruning and batchnorm recalibration (= one-shot
                                       // when bn_samples is 0 or the model has no batchnorm)
    double acc_final, loss_final;      // after fine-tuning (= one-shot without it)
    uint64_t macs_orig, macs_pruned;
    size_t params_orig, params_pruned;
    double lat_orig_ms, lat_pruned_ms;  // ms per forward pass of latency_batch images (each the median
                                        // of its passes) in the timing round whose ratio is the median
    double ips_orig, ips_pruned;        // the matching images per second
    double speedup;                     // that round's ratio: lat_orig_ms / lat_pruned_ms
    double score_s, finetune_s, total_s;
    int finetune_epochs, best_epoch;    // best_epoch: 1-based epoch kept
    int between_epochs;                 // fine-tuning epochs run after each step but the last (0: none)
    int recal_samples;                  // images the last step's statistics were re-estimated on (0: not)
} PruneOutcome;

// Runs the job on *m (trained; replaced by the slim model), with calibration and fine-tuning
// images from train and accuracy on test. Fails before any work if the target is out of reach, or
// if obs's Fisher does not fit m, its memory budget or the training images.
// Returns 0, or -1 with err set (*m is then unchanged or a valid intermediate model).
int prune_run(const PruneJob *job, Model *m, const Dataset *train, const Dataset *test, PruneOutcome *out, HpErr *err);

// Test-set accuracy and mean loss of m (eval mode). Returns 0, or -1 with err set.
int model_test(Model *m, const Dataset *test, double *acc, double *loss, HpErr *err);

// Median ms of eval-mode forward passes of `batch` images of d (after two warm-ups), at least
// `reps` of them and as many more as fill min_s seconds (up to 4096, or `reps` if more), into
// *ms; *ips gets the matching images per second. Returns 0, or -1 with err set.
int model_latency(Model *m, const Dataset *d, int batch, int reps, double min_s, double *ms, double *ips,
                  HpErr *err);

#endif
