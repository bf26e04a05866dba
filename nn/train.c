// train.c: the training loop (seeded shuffling, augmentation, SGD, per-epoch evaluation and
// checkpoints) and evaluation. Every random stream is derived from (seed, epoch), so a run
// resumed at an epoch boundary continues exactly as if it had never stopped.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "train.h"

// Stream ids of the per-epoch random streams.
enum { STREAM_SHUFFLE = 1, STREAM_AUGMENT = 2, STREAM_DROPOUT = 3 };

int bn_recalibrate(Model *m, const Dataset *d, const int *idx, int n, int batch, uint64_t seed, HpErr *err) {
    if (n <= 0 || batch <= 0) return 0;
    if (batch > n) batch = n;
    Workspace ws;
    if (ws_init(&ws, m, batch, 0, err) < 0) return -1;
    float *saved = hp_alloc((size_t)m->n_nodes, sizeof(float), err);
    float *x = saved ? hp_alloc((size_t)batch * shape_numel(m->input), sizeof(float), err) : NULL;  // (batch, C, H, W)
    int *y = x ? hp_alloc((size_t)batch, sizeof(int), err) : NULL;
    if (!y) {
        free(x), free(saved);
        ws_free(&ws);
        return -1;
    }
    for (int i = 0; i < m->n_nodes; i++) saved[i] = m->nodes[i].momentum;
    Rng rng;
    rng_seed(&rng, seed, 501);
    for (int k = 0; k * batch < n; k++) {
        int count = n - k * batch < batch ? n - k * batch : batch;
        for (int i = 0; i < m->n_nodes; i++)
            if (m->nodes[i].op == OP_BATCHNORM2D) m->nodes[i].momentum = 1.0f / (float)(k + 1);
        data_batch(d, idx + k * batch, count, m->norm_mean, m->norm_std, NULL, NULL, x, y);
        model_forward(m, &ws, x, count, MODE_TRAIN, &rng);
    }
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].momentum = saved[i];
    free(y), free(x), free(saved);
    ws_free(&ws);
    return 0;
}

int hp_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(1);  // BLAS runs inside our OpenMP threads, one thread each
    return n;
}

// Seconds on a monotonic clock.
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t evaluate_bytes(const Model *m, int batch) {
    size_t x = hp_size_mul(hp_size_mul((size_t)batch, shape_numel(m->input)), sizeof(float));
    return hp_size_add(x, hp_size_mul((size_t)batch, 2 * sizeof(int)));
}

int evaluate(Model *m, Workspace *ws, const Dataset *d, float *loss, float *acc, HpErr *err) {
    int B = ws->batch;
    size_t in_len = shape_numel(m->input);
    float *x = hp_alloc((size_t)B * in_len, sizeof(float), err);
    int *y = x ? hp_alloc((size_t)B, 2 * sizeof(int), err) : NULL, *idx = y ? y + B : NULL;  // labels, then indices
    if (!y) {
        free(x);
        return -1;
    }
    double total = 0.0;
    long hits = 0;
    for (int start = 0; start < d->n; start += B) {
        int count = d->n - start < B ? d->n - start : B;
        for (int j = 0; j < count; j++) idx[j] = start + j;
        data_batch(d, idx, count, m->norm_mean, m->norm_std, NULL, NULL, x, y);
        const float *logits = model_forward(m, ws, x, count, MODE_INFER, NULL);
        int correct = 0;
        total += (double)softmax_xent(logits, y, count, m->n_classes, 0.0f, NULL, &correct) * count;
        hits += correct;
    }
    *loss = d->n ? (float)(total / d->n) : 0.0f;
    *acc = d->n ? (float)hits / (float)d->n : 0.0f;
    free(x);
    free(y);
    return 0;
}

// Buffers one training run needs, allocated once (buffers_free frees what buffers_init got).
typedef struct {
    Workspace ws;
    float *x, *grad, *dlogits;
    int *y, *order;
} TrainBuffers;

// Allocates b for batches of `batch` out of n_train images. Returns 0, or -1 with err set (b
// is then empty).
static int buffers_init(TrainBuffers *b, const Model *m, int batch, int n_train, HpErr *err) {
    memset(b, 0, sizeof *b);
    if (ws_init(&b->ws, m, batch, 0, err) < 0) return -1;
    b->x = hp_alloc((size_t)batch * shape_numel(m->input), sizeof(float), err);
    b->grad = b->x ? hp_alloc(m->n_params, sizeof(float), err) : NULL;
    b->dlogits = b->grad ? hp_alloc((size_t)batch * m->n_classes, sizeof(float), err) : NULL;
    b->y = b->dlogits ? hp_alloc((size_t)batch, sizeof(int), err) : NULL;
    b->order = b->y ? hp_alloc((size_t)n_train, sizeof(int), err) : NULL;
    return b->order ? 0 : -1;
}

// Bytes buffers_init allocates, in its order (saturating at SIZE_MAX).
static size_t buffers_bytes(const Model *m, int batch, int n_train, int n_threads) {
    size_t B = (size_t)batch, bytes = ws_bytes(m, batch, n_threads);
    bytes = hp_size_add(bytes, hp_size_mul(hp_size_mul(B, shape_numel(m->input)), sizeof(float)));  // x
    bytes = hp_size_add(bytes, hp_size_mul(m->n_params, sizeof(float)));                            // grad
    bytes = hp_size_add(bytes, hp_size_mul(hp_size_mul(B, (size_t)m->n_classes), sizeof(float)));    // dlogits
    bytes = hp_size_add(bytes, hp_size_mul(B, sizeof(int)));                                          // y
    return hp_size_add(bytes, hp_size_mul((size_t)n_train, sizeof(int)));                            // order
}

size_t train_bytes(const Model *m, int batch, int n_train, int n_threads) {
    return hp_size_add(buffers_bytes(m, batch, n_train, n_threads), evaluate_bytes(m, batch));
}

static void buffers_free(TrainBuffers *b) {
    ws_free(&b->ws);
    free(b->x);
    free(b->grad);
    free(b->dlogits);
    free(b->y);
    free(b->order);
}

// Runs one epoch of SGD, reporting progress after every step; leaves the epoch's mean loss,
// accuracy, wall time and throughput in *pr. Fails at the first step whose loss is not finite.
static int train_epoch(Model *m, const TrainConfig *c, const Dataset *train, TrainBuffers *b, TrainState *s,
                        int epoch, double run_start, int epochs_before, TrainProgress *pr, TrainCallback progress,
                        void *user, HpErr *err) {
    Rng shuffle, augment, dropout;
    rng_seed(&shuffle, c->seed, (uint64_t)epoch * 16 + STREAM_SHUFFLE);
    rng_seed(&augment, c->seed, (uint64_t)epoch * 16 + STREAM_AUGMENT);
    rng_seed(&dropout, c->seed, (uint64_t)epoch * 16 + STREAM_DROPOUT);
    for (int i = 0; i < train->n; i++) b->order[i] = i;
    rng_shuffle(&shuffle, b->order, train->n);
    int B = c->batch_size, steps = train->n / B;  // the last partial batch is dropped
    bool augmenting = c->augment.crop_pad > 0 || c->augment.hflip;
    double t0 = now_s(), loss_sum = 0.0;
    long hits = 0;
    for (int step = 0; step < steps; step++) {
        data_batch(train, b->order + (size_t)step * B, B, m->norm_mean, m->norm_std, augmenting ? &c->augment : NULL,
                   &augment, b->x, b->y);
        const float *logits = model_forward(m, &b->ws, b->x, B, MODE_TRAIN, &dropout);
        int correct = 0;
        float loss = softmax_xent(logits, b->y, B, m->n_classes, c->label_smoothing, b->dlogits, &correct);
        float lr = lr_at(c, epoch + (double)step / steps);
        if (!isfinite(loss))
            return hp_fail(err, "training diverged: the loss is %g at step %d of epoch %d (learning rate %g)",
                           (double)fabsf(loss), step + 1, epoch + 1, (double)lr);
        loss_sum += loss;
        hits += correct;
        memset(b->grad, 0, m->n_params * sizeof(float));
        model_backward(m, &b->ws, b->dlogits, b->grad, NULL);
        sgd_step(m->params, b->grad, s->momentum, m->n_params, lr, c->momentum, c->weight_decay, c->nesterov);
        if (progress) {
            double el = now_s() - t0;
            double done = (epoch - epochs_before) + (double)(step + 1) / steps;
            double total_el = now_s() - run_start;
            *pr = (TrainProgress){.epoch = epoch, .epochs = c->epochs, .step = step + 1, .steps = steps};
            pr->loss = (float)(loss_sum / (step + 1));
            pr->acc = (float)hits / (float)((long)(step + 1) * B);
            pr->images_per_s = (double)(step + 1) * B / (el > 0 ? el : 1e-9);
            pr->eta_s = total_el / done * ((c->epochs - epochs_before) - done);
            progress(pr, user);
        }
    }
    pr->loss = steps ? (float)(loss_sum / steps) : 0.0f;
    pr->acc = steps ? (float)hits / (float)((long)steps * B) : 0.0f;
    pr->epoch_s = now_s() - t0;
    pr->images_per_s = (double)steps * B / (pr->epoch_s > 0 ? pr->epoch_s : 1e-9);
    return 0;
}

// Fails if a weight is not finite after epoch (0-based): the last step's update diverged
// (each step's loss is checked before its update).
static int check_weights(const Model *m, int epoch, HpErr *err) {
    for (size_t i = 0; i < m->n_params; i++)
        if (!isfinite(m->params[i]))
            return hp_fail(err, "training diverged: a weight is %g after epoch %d (its last update)",
                           (double)fabsf(m->params[i]), epoch + 1);
    return 0;
}

int train(Model *m, const TrainConfig *c, const Dataset *train, const Dataset *val, const Dataset *test,
          TrainState *state, TrainCallback progress, CheckpointFn checkpoint, void *user, HpErr *err) {
    if (train->n < c->batch_size)
        return hp_fail(err, "training set has %d images, fewer than one batch of %d", train->n, c->batch_size);
    if (c->augment.crop_pad < 0 || c->augment.crop_pad > HP_MAX_CROP_PAD)
        return hp_fail(err, "crop_pad %d is outside [0, %d]", c->augment.crop_pad, HP_MAX_CROP_PAD);
    TrainBuffers b;
    if (buffers_init(&b, m, c->batch_size, train->n, err) < 0) {
        buffers_free(&b);
        return -1;
    }
    double run_start = now_s();
    int first = state->next_epoch, rc = 0;
    for (int epoch = first; epoch < c->epochs && rc == 0; epoch++) {
        TrainProgress pr = {0};
        if (train_epoch(m, c, train, &b, state, epoch, run_start, first, &pr, progress, user, err) < 0 ||
            check_weights(m, epoch, err) < 0) {
            rc = -1;
            break;
        }
        pr.val_acc = pr.val_loss = -1.0f;
        pr.test_acc = pr.test_loss = -1.0f;
        if ((val && val->n > 0 && evaluate(m, &b.ws, val, &pr.val_loss, &pr.val_acc, err) < 0) ||
            (test && test->n > 0 && evaluate(m, &b.ws, test, &pr.test_loss, &pr.test_acc, err) < 0)) {
            rc = -1;
            break;
        }
        if (pr.val_acc > state->best_val_acc) state->best_val_acc = pr.val_acc;
        state->next_epoch = epoch + 1;
        pr.epoch = epoch;
        pr.epochs = c->epochs;
        pr.epoch_done = true;
        pr.eta_s = (now_s() - run_start) / (epoch + 1 - first) * (c->epochs - epoch - 1);
        if (progress) progress(&pr, user);
        if (!isfinite(pr.val_loss) || !isfinite(pr.test_loss)) {  // -1 when there is no such set
            rc = hp_fail(err, "training diverged: the %s loss is %g after epoch %d (its last updates)",
                         isfinite(pr.val_loss) ? "test" : "validation",
                         (double)fabsf(isfinite(pr.val_loss) ? pr.test_loss : pr.val_loss), epoch + 1);
            break;
        }
        if (checkpoint) rc = checkpoint(m, state, user, err);
    }
    buffers_free(&b);
    return rc;
}
