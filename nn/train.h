// train.h: SGD with momentum, learning-rate schedules and the training loop.
#ifndef HP_TRAIN_H
#define HP_TRAIN_H

#include "data.h"
#include "nn.h"

typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE } Schedule;

#define HP_MAX_MILESTONES 8
#define HP_MAX_THREADS 1024  // largest thread count a config key or --threads accepts

// Everything that decides a training run. Defaults come from train_config_default().
typedef struct {
    int epochs;
    int batch_size;
    float lr;
    float momentum;
    bool nesterov;
    float weight_decay;
    Schedule schedule;
    int milestones[HP_MAX_MILESTONES];  // step schedule: epochs at which lr *= gamma
    int n_milestones;
    float gamma;
    int warmup_epochs;  // linear warm-up from lr/warmup... over this many epochs (0: none)
    float label_smoothing;
    Augment augment;
    float val_split;     // fraction of the training set held out for validation
    uint64_t seed;
    int threads;         // 0: all cores; at most HP_MAX_THREADS
} TrainConfig;

void train_config_default(TrainConfig *c);
// Learning rate at fractional epoch t (epoch index + step/steps_per_epoch).
float lr_at(const TrainConfig *c, double t);

// SGD step (PyTorch semantics): g += wd * w; buf = momentum * buf + g;
// g = nesterov ? g + momentum * buf : buf; w -= lr * g. n floats each.
void sgd_step(float *w, const float *g, float *buf, size_t n, float lr, float momentum, float wd, bool nesterov);

// Progress reported by the trainer to its caller (the library never prints).
typedef struct {
    int epoch, epochs;       // 0-based epoch index and total
    int step, steps;         // step within the epoch and steps per epoch
    float loss, acc;         // running means over this epoch's steps so far
    double images_per_s;     // training throughput so far in this epoch
    double eta_s;            // estimated seconds left in the whole run
    bool epoch_done;         // true once per epoch, after evaluation
    float val_acc, val_loss; // on the validation split (epoch_done only; -1 when no split)
    float test_acc, test_loss;  // on the test set (epoch_done only)
    double epoch_s;          // wall time of the epoch (epoch_done only)
} TrainProgress;

typedef void (*TrainCallback)(const TrainProgress *p, void *user);

// Evaluates the model (MODE_EVAL) on a dataset; writes mean loss and accuracy. Returns 0, or
// -1 with err set (out of memory).
int evaluate(Model *m, Workspace *ws, const Dataset *d, float *loss, float *acc, HpErr *err);
// Bytes evaluate() allocates with a workspace for batches of `batch` (its batch of inputs and
// labels; the workspace is the caller's). SIZE_MAX if that overflows.
size_t evaluate_bytes(const Model *m, int batch);

// Re-estimates every batchnorm's running statistics as the plain average over batches of
// `batch` images idx[0..n) of d (no augmentation; the k-th batch enters with momentum 1/k, as
// PyTorch's momentum=None), so they match the current weights. Trainable parameters are not
// changed; dropout masks (if any) are drawn from a stream of seed. Returns 0, or -1 with err set
// (out of memory; the statistics are then unchanged).
int bn_recalibrate(Model *m, const Dataset *d, const int *idx, int n, int batch, uint64_t seed, HpErr *err);

// A training run's state that a checkpoint must hold to resume exactly.
typedef struct {
    int next_epoch;     // first epoch still to run
    float *momentum;    // n_params
    float best_val_acc;
} TrainState;

// Trains m on train (validating on val when val->n > 0, testing on test each epoch),
// starting from state (next_epoch 0 for a fresh run). After each epoch, if checkpoint
// is not NULL it is called with the state (to save it atomically); a non-zero return
// stops training with that status. Returns 0 or -1 with err set (also for a training set smaller
// than one batch, or a crop_pad outside [0, HP_MAX_CROP_PAD]).
typedef int (*CheckpointFn)(const Model *m, const TrainState *s, void *user, HpErr *err);
int train(Model *m, const TrainConfig *c, const Dataset *train, const Dataset *val, const Dataset *test,
          TrainState *state, TrainCallback progress, CheckpointFn checkpoint, void *user, HpErr *err);
// Bytes train() allocates at its peak for batches of `batch` out of n_train training images on
// n_threads threads (0: all, as train's workspace): the workspace (ws_bytes), the batch buffers,
// the gradient, the shuffle order and evaluate's buffers; not the model, the momentum or the
// data, which the caller holds. SIZE_MAX if that overflows.
size_t train_bytes(const Model *m, int batch, int n_train, int n_threads);

// Sets OpenMP and OpenBLAS thread counts (0: all cores); returns the count in use.
int hp_set_threads(int n);

#endif
