// pipeline.c: one pruning job: measure, score, select, compensate, cut, fine-tune, measure.
#include "pipeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

PruneJob prune_job_defaults(void) {
    PruneJob j;
    memset(&j, 0, sizeof j);
    j.crit = crit_defaults();
    j.target = (PruneTarget){.kind = TARGET_MACS, .ratio = 0.5, .max_layer_frac = 0.9, .round_to = 1};
    j.steps = 1;
    train_config_default(&j.finetune);
    j.finetune.epochs = 0;
    j.finetune.lr = 0.01f;
    j.finetune.nesterov = true;
    j.finetune.val_split = 0.05f;
    j.bn_samples = 1024;
    j.latency_batch = 64;
    j.latency_reps = 9;
    j.latency_round_s = 0.02;
    return j;
}

// Seconds on a monotonic clock.
static double clock_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Sends a formatted line to the job's log hook, if any.
static void job_log(const PruneJob *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_log(const PruneJob *job, const char *fmt, ...) {
    if (!job->log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    job->log(job->user, line);
}

int model_test(Model *m, const Dataset *test, double *acc, double *loss, HpErr *err) {
    Workspace ws;
    if (ws_init(&ws, m, 256, 0, err) < 0) return -1;
    float a, l;
    int rc = evaluate(m, &ws, test, &l, &a, err);
    ws_free(&ws);
    if (rc < 0) return -1;
    *acc = a, *loss = l;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The median of v[0..n) (n > 0); sorts v.
static double median_of(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int model_latency(Model *m, const Dataset *d, int batch, int reps, double min_s, double *ms, double *ips,
                  HpErr *err) {
    enum { MAX_PASSES = 4096 };
    const int cap = reps > MAX_PASSES ? reps : MAX_PASSES;
    Workspace ws;
    if (ws_init(&ws, m, batch, 0, err) < 0) return -1;
    float *x = hp_alloc((size_t)batch * shape_numel(m->input), sizeof(float), err);
    int *y = x ? hp_alloc((size_t)batch, sizeof(int), err) : NULL;
    int *idx = y ? hp_alloc((size_t)batch, sizeof(int), err) : NULL;
    double *t = idx ? hp_alloc((size_t)cap, sizeof(double), err) : NULL;
    if (!t) {
        free(idx), free(y), free(x);
        ws_free(&ws);
        return -1;
    }
    for (int i = 0; i < batch; i++) idx[i] = i % d->n;
    data_batch(d, idx, batch, m->norm_mean, m->norm_std, NULL, NULL, x, y);
    for (int r = 0; r < 2; r++) model_forward(m, &ws, x, batch, MODE_INFER, NULL);  // warm-up
    int n = 0;
    for (double spent = 0.0; n < cap && (n < reps || spent < min_s); n++) {
        double t0 = clock_s();
        model_forward(m, &ws, x, batch, MODE_INFER, NULL);
        t[n] = clock_s() - t0;
        spent += t[n];
    }
    double med = median_of(t, n);
    *ips = batch / med;
    *ms = med * 1e3;
    free(t), free(idx), free(y), free(x);
    ws_free(&ws);
    return 0;
}

// ---- fine-tuning ----

// The best epoch so far: by validation accuracy, else the last.
typedef struct {
    const PruneJob *job;
    Model best;
    bool have_best;
    float best_val;
    int best_epoch;
} BestKeeper;

// Checkpoint hook: keeps a copy of the model after an epoch that improved validation accuracy
// (after every epoch when there is no validation split).
static int keep_best(const Model *m, const TrainState *s, void *user, HpErr *err) {
    BestKeeper *k = user;
    bool no_val = k->job->finetune.val_split <= 0;
    if (!k->have_best || no_val || s->best_val_acc > k->best_val) {
        if (k->have_best) model_free(&k->best);
        k->have_best = false;
        if (model_copy(&k->best, m, err) < 0) return hp_prefix(err, "keeping the best epoch");
        k->have_best = true;
        k->best_val = s->best_val_acc;
        k->best_epoch = s->next_epoch;
    }
    return 0;
}

// Forwards the trainer's progress to the job's hook.
static void forward_progress(const TrainProgress *p, void *user) {
    const BestKeeper *k = user;
    if (k->job->train_progress) k->job->train_progress(p, k->job->train_user);
}

// Fine-tunes *m for `epochs` epochs with the job's settings and replaces it by its best epoch;
// *best_epoch gets that epoch (1-based). Returns 0, or -1 with err set.
static int finetune(const PruneJob *job, Model *m, const Dataset *all, const Dataset *test, int epochs,
                    int *best_epoch, HpErr *err) {
    TrainConfig c = job->finetune;
    c.epochs = epochs;
    Dataset tr, val;
    if (dataset_split(all, c.val_split, c.seed, &tr, &val, err) < 0) return hp_prefix(err, "fine-tuning");
    job_log(job, "fine-tuning %d epoch%s (lr %g, %d train, %d validation images)", epochs, epochs > 1 ? "s" : "",
            (double)c.lr, tr.n, val.n);
    BestKeeper k = {.job = job};
    TrainState st = {0};
    st.momentum = hp_zalloc(m->n_params, sizeof(float), err);
    if (!st.momentum) {
        dataset_free(&tr), dataset_free(&val);
        return hp_prefix(err, "fine-tuning");
    }
    int rc = train(m, &c, &tr, &val, test, &st, forward_progress, keep_best, &k, err);
    free(st.momentum);
    dataset_free(&tr), dataset_free(&val);
    if (rc < 0 || !k.have_best) {
        if (k.have_best) model_free(&k.best);
        return rc < 0 ? -1 : hp_fail(err, "fine-tuning ran no epoch");
    }
    model_free(m);
    *m = k.best;
    *best_epoch = k.best_epoch;
    return 0;
}

// ---- pruning ----

// Score rows and keep masks for every group of gs (freed by free_masks).
typedef struct {
    bool **keep;
    double **scores;
    int n;
} Masks;

static void free_masks(Masks *mk) {
    for (int g = 0; g < mk->n; g++) free(mk->keep[g]), free(mk->scores[g]);
    free(mk->keep), free(mk->scores);
}

// Allocates zeroed masks for gs. Returns 0, or -1 with err set (nothing is then allocated).
static int alloc_masks(const GroupSet *gs, Masks *mk, HpErr *err) {
    mk->n = 0;
    mk->keep = hp_zalloc((size_t)gs->n_groups + 1, sizeof(bool *), err);
    mk->scores = mk->keep ? hp_zalloc((size_t)gs->n_groups + 1, sizeof(double *), err) : NULL;
    if (!mk->scores) {
        free(mk->keep);
        return -1;
    }
    mk->n = gs->n_groups;
    for (int g = 0; g < gs->n_groups; g++) {
        mk->keep[g] = hp_zalloc((size_t)gs->groups[g].n_channels, sizeof(bool), err);
        mk->scores[g] = mk->keep[g] ? hp_zalloc((size_t)gs->groups[g].n_channels, sizeof(double), err) : NULL;
        if (!mk->scores[g]) {
            free_masks(mk);
            return -1;
        }
    }
    return 0;
}

// Fails unless the target can be met at all (scores do not matter for that).
static int check_reachable(const PruneJob *job, const Model *m, const GroupSet *gs, const PruneRef *ref, HpErr *err) {
    Masks mk;
    if (alloc_masks(gs, &mk, err) < 0) return -1;
    int rc = prune_select(m, gs, mk.scores, &job->target, ref, mk.keep, err);
    free_masks(&mk);
    return rc;
}

// Logs how many prunable channels scored below zero, when any did: the selection removes them
// first. For hap and obd on the Hutchinson diagonal a negative score is a curvature estimate
// below zero, which at few probes is mostly noise (on a trained ResNet-20, 135 of 448 channels
// at 32 probes, nearly half the MACs: docs/pruning_resnet20.md).
static void log_negative(const PruneJob *job, const GroupSet *gs, double *const *scores) {
    int neg = 0, all = 0;
    for (int g = 0; g < gs->n_groups; g++) {
        if (!gs->groups[g].prunable) continue;
        for (int c = 0; c < gs->groups[g].n_channels; c++, all++) neg += scores[g][c] < 0;
    }
    if (neg == 0) return;
    const Criterion method = job->crit.method;
    const bool estimate = (method == CRIT_HAP || method == CRIT_OBD) && !job->crit.ggn;
    job_log(job, "%s: %d of %d channels score below zero and go first%s", criterion_name(method), neg, all,
            estimate ? " (negative curvature estimates, mostly noise at this many probes: more --probes, or --ggn,"
                       " whose diagonal is never negative)"
                     : "");
}

// Scores, selects and compensates on m, then builds the smaller model into *slim.
static int cut(const PruneJob *job, Model *m, const GroupSet *gs, const Dataset *train, const PruneRef *ref,
               double ratio, Model *slim, HpErr *err) {
    Masks mk;
    if (alloc_masks(gs, &mk, err) < 0) return -1;
    CritOpts co = job->crit;
    co.data = train;
    co.progress = job->score_progress;
    co.user = job->user;
    Scorer sc;
    PruneTarget t = job->target;
    t.ratio = ratio;
    int rc = scorer_run(&sc, &co, m, gs, mk.scores, err);
    if (rc == 0) log_negative(job, gs, mk.scores);
    if (rc == 0) rc = prune_select(m, gs, mk.scores, &t, ref, mk.keep, err);
    if (rc == 0) rc = scorer_compensate(&sc, m, gs, mk.keep, err);
    if (rc == 0) rc = prune_apply(m, gs, mk.keep, slim, err);
    scorer_free(&sc);
    free_masks(&mk);
    return rc;
}

// One step: replaces *m by its pruned version at `ratio` of the reference's cost removed.
static int prune_step(const PruneJob *job, Model *m, const Dataset *train, const PruneRef *ref, double ratio,
                      int step, PruneOutcome *out, HpErr *err) {
    GroupSet gs;
    if (prune_groups(m, &gs, err) < 0) return -1;
    if (gs.n_groups != ref->n_groups) {
        groupset_free(&gs);
        return hp_fail(err, "step %d: the pruned model has %d channel groups, the original %d", step, gs.n_groups, ref->n_groups);
    }
    double t0 = clock_s();
    Model slim;
    int rc = cut(job, m, &gs, train, ref, ratio, &slim, err);
    out->score_s += clock_s() - t0;
    groupset_free(&gs);
    if (rc < 0) return -1;
    model_free(m);
    *m = slim;
    uint64_t macs = model_macs(m);
    job_log(job, "step %d/%d: %s, %.1f%% of the MACs removed (%.3fM left), %zu parameters", step, job->steps,
            criterion_name(job->crit.method), 100.0 * (1.0 - (double)macs / (double)ref->macs), macs / 1e6,
            model_param_count(m));
    return 0;
}

// The index of the median of v[0..n) (n odd): the entry with as many below it as above it.
static int median_index(const double *v, int n) {
    for (int i = 0; i < n; i++) {
        int below = 0, equal = 0;
        for (int j = 0; j < n; j++) below += v[j] < v[i], equal += v[j] == v[i];
        if (below <= n / 2 && below + equal > n / 2) return i;
    }
    return 0;  // not reached: some entry holds the median
}

// Times the original and the pruned model's forward passes in LATENCY_ROUNDS rounds, each model
// at least latency_reps passes and latency_round_s seconds a round (their median), the order
// alternating between rounds; fills the latency fields of out from the round whose ratio of the
// two times is the median of the rounds' ratios, so that a slow spell of the machine falls on
// both sides of a ratio and the times shown divide to the speed-up shown. Returns 0, or -1 with
// err set.
enum { LATENCY_ROUNDS = 7 };  // odd: the median is one round's
static int latency_pair(const PruneJob *job, Model *orig, Model *pruned, const Dataset *test, PruneOutcome *out,
                        HpErr *err) {
    double t[2][LATENCY_ROUNDS], ratio[LATENCY_ROUNDS], ips;  // ips: unused (recomputed from the times)
    Model *models[2] = {orig, pruned};
    for (int r = 0; r < LATENCY_ROUNDS; r++) {
        for (int i = 0; i < 2; i++) {
            const int k = (r + i) % 2;  // even rounds the original first, odd rounds the pruned model
            if (model_latency(models[k], test, job->latency_batch, job->latency_reps, job->latency_round_s,
                              &t[k][r], &ips, err) < 0)
                return hp_prefix(err, "latency");
        }
        ratio[r] = t[0][r] / t[1][r];
    }
    int mid = median_index(ratio, LATENCY_ROUNDS);
    out->lat_orig_ms = t[0][mid];
    out->lat_pruned_ms = t[1][mid];
    out->speedup = ratio[mid];
    out->ips_orig = job->latency_batch / (out->lat_orig_ms * 1e-3);
    out->ips_pruned = job->latency_batch / (out->lat_pruned_ms * 1e-3);
    return 0;
}

// Measures the model before pruning. Returns 0, or -1 with err set.
static int measure_before(const PruneJob *job, Model *m, const Dataset *test, PruneOutcome *out, HpErr *err) {
    if (model_test(m, test, &out->acc_orig, &out->loss_orig, err) < 0) return -1;
    out->macs_orig = model_macs(m);
    out->params_orig = model_param_count(m);
    job_log(job, "original: %zu parameters, %.3fM MACs, test accuracy %.2f%%", out->params_orig, out->macs_orig / 1e6,
            100 * out->acc_orig);
    return 0;
}

// True if m has a batchnorm.
static bool has_bn(const Model *m) {
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].op == OP_BATCHNORM2D) return true;
    return false;
}

// Re-estimates m's batchnorm statistics on job->bn_samples training images of a seeded
// permutation; *done gets whether it did. Returns 0, or -1 with err set.
static int recalibrate(const PruneJob *job, Model *m, const Dataset *train, bool *done, HpErr *err) {
    *done = false;
    if (job->bn_samples <= 0 || !has_bn(m)) return 0;
    int *perm = hp_alloc((size_t)train->n, sizeof(int), err);
    if (!perm) return hp_prefix(err, "batchnorm recalibration");
    for (int i = 0; i < train->n; i++) perm[i] = i;
    Rng rng;
    rng_seed(&rng, job->crit.seed, 502);
    rng_shuffle(&rng, perm, train->n);
    int n = job->bn_samples < train->n ? job->bn_samples : train->n;
    int rc = bn_recalibrate(m, train, perm, n, 128, job->crit.seed, err);
    free(perm);
    if (rc < 0) return hp_prefix(err, "batchnorm recalibration");
    *done = true;
    return 0;
}

// Runs every step (with fine-tuning between them), then measures the one-shot result.
static int run_steps(const PruneJob *job, Model *m, const Dataset *train, const Dataset *test, const PruneRef *ref,
                     PruneOutcome *out, HpErr *err) {
    for (int s = 1; s <= job->steps; s++) {
        if (prune_step(job, m, train, ref, job->target.ratio * s / job->steps, s, out, err) < 0) return -1;
        if (s == job->steps) {
            if (model_test(m, test, &out->acc_oneshot, &out->loss_oneshot, err) < 0) return -1;
            job_log(job, "pruned: test accuracy %.2f%%", 100 * out->acc_oneshot);
        }
        bool recal;
        if (recalibrate(job, m, train, &recal, err) < 0) return -1;
        if (s == job->steps) {
            out->acc_recal = out->acc_oneshot, out->loss_recal = out->loss_oneshot;
            if (recal) {
                out->recal_samples = job->bn_samples < train->n ? job->bn_samples : train->n;
                if (model_test(m, test, &out->acc_recal, &out->loss_recal, err) < 0) return -1;
                job_log(job, "batchnorm statistics re-estimated on %d images: test accuracy %.2f%%",
                        out->recal_samples, 100 * out->acc_recal);
            }
        }
        if (s < job->steps && job->between_epochs > 0) {
            double t0 = clock_s();
            int best;
            if (finetune(job, m, train, test, job->between_epochs, &best, err) < 0) return -1;
            out->finetune_s += clock_s() - t0;
            out->between_epochs = job->between_epochs;
        }
    }
    return 0;
}

int prune_run(const PruneJob *job, Model *m, const Dataset *train, const Dataset *test, PruneOutcome *out, HpErr *err) {
    memset(out, 0, sizeof *out);
    if (job->steps < 1) return hp_fail(err, "steps must be at least 1, got %d", job->steps);
    double t_start = clock_s();
    GroupSet gs;
    if (prune_groups(m, &gs, err) < 0) return -1;
    PruneRef ref;
    int rc = pruneref_init(&ref, m, &gs, err);
    if (rc == 0) rc = check_reachable(job, m, &gs, &ref, err);
    if (rc == 0) rc = crit_check(job->crit.method, m, &gs, err);
    if (rc == 0 && job->crit.method == CRIT_OBS) rc = fisher_check(m, &job->crit.fisher, err);
    if (rc == 0 && job->crit.method == CRIT_OBS) rc = fisher_check_data(m, train, &job->crit.fisher, err);
    groupset_free(&gs);
    Model orig = {0};  // kept for the latency comparison at the end
    if (rc == 0) rc = measure_before(job, m, test, out, err);
    if (rc == 0 && job->latency_batch > 0) rc = model_copy(&orig, m, err);
    if (rc == 0) rc = run_steps(job, m, train, test, &ref, out, err);
    pruneref_free(&ref);
    if (rc < 0) {
        model_free(&orig);
        return -1;
    }
    out->acc_final = out->acc_recal, out->loss_final = out->loss_recal;
    if (job->finetune.epochs > 0) {
        double t0 = clock_s();
        if (finetune(job, m, train, test, job->finetune.epochs, &out->best_epoch, err) < 0) {
            model_free(&orig);
            return -1;
        }
        out->finetune_s += clock_s() - t0;
        out->finetune_epochs = job->finetune.epochs;
        if (model_test(m, test, &out->acc_final, &out->loss_final, err) < 0) {
            model_free(&orig);
            return -1;
        }
        job_log(job, "fine-tuned: test accuracy %.2f%% (epoch %d of %d kept)", 100 * out->acc_final, out->best_epoch,
                out->finetune_epochs);
    }
    out->macs_pruned = model_macs(m);
    out->params_pruned = model_param_count(m);
    if (job->latency_batch > 0 && latency_pair(job, &orig, m, test, out, err) < 0) {
        model_free(&orig);
        return -1;
    }
    model_free(&orig);
    out->total_s = clock_s() - t_start;
    return 0;
}
