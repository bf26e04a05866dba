// test_pipeline.c: the pruning job (prune_run, what `hprune prune` runs) end to end on a small
// residual network: scoring, selection, compensation and surgery give a model that round-trips
// through its file, removes the channels that meet at the residual Add together and meets the
// MACs target; the OBS criteria's compensation changes the kept consumer weights, and
// obs-layer's lowers its layer's reconstruction error against no compensation. Fine-tuning keeps
// the epoch of the best validation accuracy, not the last.
#include "testutil.h"

#include "formats/formats.h"
#include "prune/pipeline.h"

// ---- fixtures ----

// A residual net on 1x8x8 with 3 classes (3x3 convs, padding 1, no bias):
//   stem 8 - bn_s - relu_s --+-- conv_a 8 - bn_a - relu_a - conv_b 8 - bn_b --+-- add - relu - pool (global) - fc 3
//                            +-------------------------------------------------+
// Two prunable groups: the residual space (stem, bn_s, conv_b, bn_b; read by conv_a and fc) and
// conv_a's (bn_a; read by conv_b). MACs: stem 4608, conv_a and conv_b 36864 each, fc 24.
static void build_residual(Model *m, uint64_t seed) {
    HpErr err = {{0}};
    model_init(m, (Shape){1, 8, 8}, 3);
    int x = mb_input(m, &err);
    int s = mb_relu(m, "relu_s", mb_bn(m, "bn_s", mb_conv(m, "stem", x, 8, 3, 1, 1, 1, false, &err), &err), &err);
    int a = mb_relu(m, "relu_a", mb_bn(m, "bn_a", mb_conv(m, "conv_a", s, 8, 3, 1, 1, 1, false, &err), &err), &err);
    int b = mb_bn(m, "bn_b", mb_conv(m, "conv_b", a, 8, 3, 1, 1, 1, false, &err), &err);
    int r = mb_relu(m, "relu", mb_add(m, "add", s, b, &err), &err);
    int y = mb_linear(m, "fc", mb_gap(m, "pool", r, &err), 3, true, &err);
    if (y < 0) fail_msg("%s", err.msg);
    tu_expect_ok(model_finalize(m, &err), &err);
    Rng rng;
    rng_seed(&rng, seed, 1);
    model_init_params(m, &rng);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f * rng_normal(&rng);  // batchnorms not the identity
    for (int i = 0; i < m->n_nodes; i++) {  // running statistics of a live network
        const Node *nd = &m->nodes[i];
        for (int c = 0; nd->op == OP_BATCHNORM2D && c < nd->out.c; c++) {
            m->buffers[nd->mean_off + (size_t)c] = 0.1f * rng_normal(&rng);
            m->buffers[nd->var_off + (size_t)c] = 0.5f + 0.5f * rng_uniform(&rng);
        }
    }
}

// n images 1x8x8 of 3 classes that convolutions can tell apart: noise in [0, 64) and, at a random
// place, a bright bar of 4 pixels, horizontal (class 0), vertical (1) or diagonal (2).
static void bar_data(Dataset *d, int n, Rng *rng) {
    assert_int_equal(dataset_alloc(d, n, 1, 8, 8, 3, NULL), 0);
    for (int i = 0; i < n; i++) {
        uint8_t *im = d->images + (size_t)i * 64;
        for (int k = 0; k < 64; k++) im[k] = (uint8_t)rng_below(rng, 64);
        int cls = (int)rng_below(rng, 3), r = (int)rng_below(rng, 5), c = (int)rng_below(rng, 5);
        for (int t = 0; t < 4; t++) {
            int y = cls == 0 ? r : r + t, x = cls == 1 ? c : c + t;
            im[y * 8 + x] = 255;
        }
        d->labels[i] = (uint8_t)cls;
    }
}

// A job on the fixture: method, a MACs target of 60% with a per-layer cap of 50% (the inner group
// alone can then remove at most 47% of the MACs, so the residual group must lose channels too),
// every training image for calibration, no batchnorm re-estimation, fine-tuning or latency.
static PruneJob residual_job(Criterion method, bool compensate) {
    PruneJob job = prune_job_defaults();
    job.crit.method = method;
    job.crit.samples = 1 << 20;
    job.crit.batch = 32;
    job.crit.probes = 4;
    job.crit.fisher.n_grads = 64;
    job.crit.compensate = compensate;
    job.target = (PruneTarget){.kind = TARGET_MACS, .ratio = 0.6, .max_layer_frac = 0.5, .round_to = 1};
    job.bn_samples = 0;
    job.latency_batch = 0;
    return job;
}

// Runs job on a copy of base into *slim (with train as calibration set and test set).
static void run_job(const PruneJob *job, const Model *base, const Dataset *train, Model *slim, PruneOutcome *out) {
    HpErr err = {{0}};
    tu_expect_ok(model_copy(slim, base, &err), &err);
    tu_expect_ok(prune_run(job, slim, train, train, out, &err), &err);
}

// All of d's images, normalised as m's inputs, into a malloc'd array (d->n x m's input size).
static float *inputs(const Model *m, const Dataset *d) {
    float *x = xmalloc((size_t)d->n * shape_numel(m->input) * sizeof(float));
    int *y = xmalloc((size_t)d->n * sizeof(int)), *idx = xmalloc((size_t)d->n * sizeof(int));
    for (int i = 0; i < d->n; i++) idx[i] = i;
    data_batch(d, idx, d->n, m->norm_mean, m->norm_std, NULL, NULL, x, y);
    free(y), free(idx);
    return x;
}

// Eval-mode activations of node `node` of m on all of d's images into a malloc'd array
// (d->n x the node's per-sample size).
static float *activations(Model *m, const Dataset *d, int node) {
    Workspace ws;
    assert_int_equal(ws_init(&ws, m, d->n, 0, NULL), 0);
    size_t len = (size_t)d->n * shape_numel(m->nodes[node].out);
    float *x = inputs(m, d), *out = xmalloc(len * sizeof(float));
    model_forward(m, &ws, x, d->n, MODE_EVAL, NULL);
    memcpy(out, ws.act[node], len * sizeof(float));
    free(x);
    ws_free(&ws);
    return out;
}

// ---- the pipeline on a residual network ----

// Saves m, loads it back and asserts the same model (tu_expect_round_trip) on d's images.
static void expect_round_trip(Model *m, const Dataset *d) {
    float *x = inputs(m, d);
    tu_expect_round_trip(m, x, d->n);
    free(x);
}

// Asserts what every run on the residual net gives: a model that loads back, both sides of the
// Add (stem and conv_b, their batchnorms, the Add itself) narrowed together below 8 channels,
// conv_a narrowed to at least half, the MACs at most 40% of the original's (as reported).
static void expect_residual_cut(Model *slim, const Model *base, const PruneOutcome *out, const Dataset *d) {
    expect_round_trip(slim, d);
    const Node *n = slim->nodes;
    int w = n[tu_node_id(slim, "stem")].out_features;
    assert_true(w >= 4 && w < 8);  // the cap keeps 4 of 8; the target needs at most 6
    assert_int_equal(n[tu_node_id(slim, "bn_s")].out.c, w);
    assert_int_equal(n[tu_node_id(slim, "conv_b")].out_features, w);
    assert_int_equal(n[tu_node_id(slim, "bn_b")].out.c, w);
    assert_int_equal(n[tu_node_id(slim, "add")].out.c, w);
    assert_int_equal(n[tu_node_id(slim, "fc")].out_features, 3);
    int inner = n[tu_node_id(slim, "conv_a")].out_features;
    assert_true(inner >= 4 && inner <= 8);
    assert_int_equal(out->macs_orig, model_macs(base));
    assert_int_equal(out->macs_pruned, model_macs(slim));
    assert_true((double)out->macs_pruned <= 0.4 * (double)out->macs_orig);
}

// Sum of squared differences of the parameters of node `name` (weights and bias) in two models
// of the same shape.
static double node_change(const Model *a, const Model *b, const char *name) {
    const Node *na = &a->nodes[tu_node_id(a, name)], *nb = &b->nodes[tu_node_id(b, name)];
    assert_true(na->w_len == nb->w_len && na->b_len == nb->b_len);
    double s = 0;
    for (size_t i = 0; i < na->w_len; i++) s += pow((double)a->params[na->w_off + i] - b->params[nb->w_off + i], 2);
    for (size_t i = 0; i < na->b_len; i++) s += pow((double)a->params[na->b_off + i] - b->params[nb->b_off + i], 2);
    return s;
}

// The channel of `base`'s batchnorm `bn` that channel c of `slim`'s is (the one with the same
// gamma and beta: surgery copies them, compensation never changes a batchnorm of obs-layer and
// nothing changes them without compensation); fails if there is none.
static int kept_channel(const Model *base, const Model *slim, const char *bn, int c) {
    const Node *a = &base->nodes[tu_node_id(base, bn)], *b = &slim->nodes[tu_node_id(slim, bn)];
    for (int k = 0; k < a->out.c; k++)
        if (base->params[a->w_off + (size_t)k] == slim->params[b->w_off + (size_t)c] &&
            base->params[a->b_off + (size_t)k] == slim->params[b->b_off + (size_t)c])
            return k;
    fail_msg("channel %d of %s is none of the original's", c, bn);
    return -1;
}

// ||conv_a(X) - conv_a'(X_kept)||^2 over the kept output channels and all of d's images: the
// reconstruction error of the slim model's conv_a against the original's. conv_a reads the
// stem's kept channels, which obs-layer's compensation leaves as they were (it changes only
// consumers), so its input in slim is the original's restricted to them.
static double conv_a_error(Model *base, Model *slim, const Dataset *d) {
    int node = tu_node_id(base, "conv_a"), hw = 64, wide = base->nodes[node].out.c, narrow = slim->nodes[node].out.c;
    float *za = activations(base, d, node), *zb = activations(slim, d, node);
    double e = 0;
    for (int c = 0; c < narrow; c++) {
        int k = kept_channel(base, slim, "bn_a", c);
        for (int i = 0; i < d->n; i++)
            for (int p = 0; p < hw; p++)
                e += pow((double)za[((size_t)i * wide + k) * hw + p] - zb[((size_t)i * narrow + c) * hw + p], 2);
    }
    free(za), free(zb);
    return e;
}

// prune_run on the residual net for l1, hap (4 probes), obs and obs-layer: each result loads
// back, narrows the two sides of the Add together and meets the MACs target. obs and obs-layer,
// run again without compensation, select the same channels (the scores do not depend on it) and
// differ in the kept consumer weights (conv_a, conv_b, fc); obs-layer's update leaves every
// other tensor as it was and lowers conv_a's reconstruction error on the calibration images: the
// update minimises the damped error, sum_r dw_r (H + damp I) dw_r^T / 2, whose value at no
// update is that of plain removal, so the undamped error can only be lower (strictly, as the
// update is not zero).
static void test_residual_pipeline(void **state) {
    (void)state;
    Model base;
    build_residual(&base, 3);
    Rng rng;
    rng_seed(&rng, 4, 0);
    Dataset train;
    bar_data(&train, 128, &rng);
    const Criterion methods[] = {CRIT_L1, CRIT_HAP, CRIT_OBS, CRIT_OBS_LAYER};
    for (size_t q = 0; q < sizeof methods / sizeof methods[0]; q++) {
        Criterion method = methods[q];
        PruneJob job = residual_job(method, true);
        Model slim, plain;
        PruneOutcome out, out_plain;
        run_job(&job, &base, &train, &slim, &out);
        expect_residual_cut(&slim, &base, &out, &train);
        if (!criterion_compensates(method)) {
            model_free(&slim);
            continue;
        }
        job = residual_job(method, false);
        run_job(&job, &base, &train, &plain, &out_plain);
        expect_residual_cut(&plain, &base, &out_plain, &train);
        assert_int_equal(plain.n_params, slim.n_params);
        for (int i = 0; i < slim.n_nodes; i++) assert_int_equal(plain.nodes[i].out.c, slim.nodes[i].out.c);
        const char *consumers[] = {"conv_a", "conv_b", "fc"};
        for (int k = 0; k < 3; k++)
            if (!(node_change(&slim, &plain, consumers[k]) > 0))
                fail_msg("%s: the update left %s's kept weights as they were", criterion_name(method), consumers[k]);
        if (method == CRIT_OBS_LAYER) {
            const char *others[] = {"stem", "bn_s", "bn_a", "bn_b"};
            for (int k = 0; k < 4; k++) assert_true(node_change(&slim, &plain, others[k]) == 0);
            double e_comp = conv_a_error(&base, &slim, &train), e_plain = conv_a_error(&base, &plain, &train);
            if (!(e_comp < e_plain)) fail_msg("obs-layer: conv_a's error %g with the update, %g without", e_comp, e_plain);
        }
        model_free(&slim), model_free(&plain);
    }
    dataset_free(&train);
    model_free(&base);
}

// ---- fine-tuning keeps the best epoch ----

// Each finished epoch's validation and test accuracy, as the trainer reports them.
typedef struct {
    float val[8], test[8];
    int n;
} EpochLog;

// Train progress hook: records an epoch's accuracies once it is done.
static void log_epoch(const TrainProgress *p, void *user) {
    EpochLog *log = user;
    if (!p->epoch_done) return;
    assert_true(p->epoch == log->n && log->n < 8);
    log->val[log->n] = p->val_acc, log->test[log->n] = p->test_acc;
    log->n++;
}

// Accuracy of m on d as the trainer evaluates it (eval mode, batches of `batch`).
static float accuracy(Model *m, const Dataset *d, int batch) {
    Workspace ws;
    HpErr err = {{0}};
    tu_expect_ok(ws_init(&ws, m, batch, 0, &err), &err);
    float loss, acc;
    tu_expect_ok(evaluate(m, &ws, d, &loss, &acc, &err), &err);
    ws_free(&ws);
    return acc;
}

// prune_run fine-tunes for 4 epochs on 75% of 512 training images, validating on the rest, and
// keeps the epoch of the best validation accuracy (the first of equals), not the last. A step
// schedule with gamma = -1 at epoch 2 makes epochs 3 and 4 gradient ascent on the training loss
// (no momentum or weight decay to carry over), so they end worse than the best of the first two,
// which here is epoch 2 (asserted, so that keeping the last or the first epoch fails). The model prune_run returns has exactly that epoch's
// validation and test accuracy (evaluated as the trainer does, in batches of its batch size, on
// the validation split dataset_split draws from the same seed), and its reported best epoch and
// final accuracy are that epoch's.
static void test_keeps_best_epoch(void **state) {
    (void)state;
    Model m;
    build_residual(&m, 5);
    Rng rng;
    rng_seed(&rng, 6, 0);
    Dataset train, test;
    bar_data(&train, 512, &rng);
    bar_data(&test, 96, &rng);
    PruneJob job = prune_job_defaults();
    job.target = (PruneTarget){.kind = TARGET_CHANNELS, .ratio = 0.25, .max_layer_frac = 0.5, .round_to = 1};
    job.bn_samples = 0, job.latency_batch = 0;
    TrainConfig *ft = &job.finetune;
    ft->epochs = 4, ft->batch_size = 16, ft->lr = 0.1f, ft->momentum = 0, ft->nesterov = false;
    ft->weight_decay = 0, ft->val_split = 0.25f, ft->seed = 3;
    ft->schedule = SCHED_STEP, ft->n_milestones = 1, ft->milestones[0] = 2, ft->gamma = -1;
    EpochLog log = {0};
    job.train_progress = log_epoch, job.train_user = &log;
    PruneOutcome out;
    HpErr err = {{0}};
    tu_expect_ok(prune_run(&job, &m, &train, &test, &out, &err), &err);
    assert_int_equal(log.n, 4);
    int best = 0;
    for (int e = 1; e < 4; e++)
        if (log.val[e] > log.val[best]) best = e;
    if (best == 0 || !(log.val[3] < log.val[best]))  // the best is neither the first nor the last
        fail_msg("epoch %d of 4 is the best: validation accuracy %g %g %g %g", best + 1, log.val[0], log.val[1],
                 log.val[2], log.val[3]);
    assert_int_equal(out.finetune_epochs, 4);
    assert_int_equal(out.best_epoch, best + 1);
    Dataset tr, val;
    tu_expect_ok(dataset_split(&train, ft->val_split, ft->seed, &tr, &val, &err), &err);
    assert_int_equal(val.n, 128);
    assert_true(accuracy(&m, &val, ft->batch_size) == log.val[best]);
    assert_true(accuracy(&m, &test, ft->batch_size) == log.test[best]);
    assert_float_equal(out.acc_final, log.test[best], 1e-6);
    dataset_free(&tr), dataset_free(&val);
    dataset_free(&train), dataset_free(&test);
    model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_residual_pipeline),
        cmocka_unit_test(test_keeps_best_epoch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
