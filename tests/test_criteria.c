// test_criteria.c: channel criteria rank constructed channels in their known order, the cost of
// a set of widths is exact, and the global selection meets targets, caps and rounding.
#include "testutil.h"

#include "hessian/hvp.h"
#include "nn/nn.h"
#include "nn/train.h"
#include "prune/criteria.h"

// Random images with labels from a fixed rule (so that gradients are informative).
static void small_data(Dataset *d, int n, Rng *rng) {
    assert_int_equal(dataset_alloc(d, n, 1, 8, 8, 3, NULL), 0);
    for (size_t i = 0; i < (size_t)n * 64; i++) d->images[i] = (uint8_t)rng_below(rng, 256);
    for (int i = 0; i < n; i++) {
        int s = 0;
        for (int k = 0; k < 64; k++) s += d->images[(size_t)i * 64 + k] > 127;
        d->labels[i] = (uint8_t)(s % 3);
    }
}

// Group index by first producer name.
static int group_id(const GroupSet *gs, const char *name) {
    for (int g = 0; g < gs->n_groups; g++)
        if (strcmp(gs->groups[g].name, name) == 0) return g;
    fail_msg("no group %s", name);
    return -1;
}

// Makes channel c of conv1's group exactly zero in every tensor it touches.
static void zero_whole_channel(Model *m, const GroupSet *gs, int g, int c) {
    size_t k = group_channel_params(m, &gs->groups[g], c, NULL);
    size_t *idx = malloc(k * sizeof(size_t));
    group_channel_params(m, &gs->groups[g], c, idx);
    for (size_t i = 0; i < k; i++) m->params[idx[i]] = 0;
    free(idx);
}

// |w_Q|^2: the sum of squares of every parameter of channel c of group g (group_channel_params).
static double channel_norm2(const Model *m, const ChannelGroup *g, int c) {
    size_t *idx = malloc(m->n_params * sizeof(size_t));
    size_t k = group_channel_params(m, g, c, idx);
    double norm2 = 0;
    for (size_t i = 0; i < k; i++) norm2 += (double)m->params[idx[i]] * m->params[idx[i]];
    free(idx);
    return norm2;
}

// Makes conv1's channel dst a copy of channel src (filter, bias, batchnorm, running stats).
static void duplicate_channel(Model *m, int src, int dst) {
    const Node *c1 = &m->nodes[tu_node_id(m, "conv1")], *b1 = &m->nodes[tu_node_id(m, "bn1")];
    memcpy(m->params + c1->w_off + (size_t)dst * 9, m->params + c1->w_off + (size_t)src * 9, 9 * sizeof(float));
    m->params[c1->b_off + (size_t)dst] = m->params[c1->b_off + (size_t)src];
    m->params[b1->w_off + (size_t)dst] = m->params[b1->w_off + (size_t)src];
    m->params[b1->b_off + (size_t)dst] = m->params[b1->b_off + (size_t)src];
    m->buffers[b1->mean_off + (size_t)dst] = m->buffers[b1->mean_off + (size_t)src];
    m->buffers[b1->var_off + (size_t)dst] = m->buffers[b1->var_off + (size_t)src];
}

// Runs a criterion with raw scores (hap and obd on the exact Gauss-Newton diagonal if ggn);
// scores[g] sized per group.
static void run_criterion_ggn(Model *m, const GroupSet *gs, Criterion c, const Dataset *d, bool ggn, double **scores) {
    CritOpts o = crit_defaults();
    o.method = c;
    o.ggn = ggn;
    o.normalize = NORM_NONE;
    o.data = d;
    o.samples = d->n;
    o.batch = 32;
    o.probes = 400;
    o.fisher.n_grads = d->n < 64 ? d->n : 64;  // distinct images, one per gradient
    o.fisher.block_size = 50;
    o.fisher.damp = 1e-4;
    o.damp_rel = 1e-6;
    Scorer s;
    HpErr err;
    int rc = scorer_run(&s, &o, m, gs, scores, &err);
    if (rc != 0) fail_msg("%s: %s", criterion_name(c), err.msg);
    scorer_free(&s);
}

// As run_criterion_ggn, with the Hessian's Hutchinson diagonal for hap and obd.
static void run_criterion(Model *m, const GroupSet *gs, Criterion c, const Dataset *d, double **scores) {
    run_criterion_ggn(m, gs, c, d, false, scores);
}

// A small net to score: the model, calibration images, channel groups and a score array per group.
typedef struct {
    Model m;
    Dataset d;
    GroupSet gs;
    double *scores[8];
} Fixture;

// Builds tu_small_net (with or without batchnorms) and n_images of small_data from seed, the
// groups and zeroed scores.
static void fixture_build(Fixture *f, uint64_t seed, int n_images, bool with_bn) {
    memset(f, 0, sizeof *f);
    Rng rng;
    rng_seed(&rng, seed, 0);
    tu_small_net(&f->m, &rng, with_bn);
    small_data(&f->d, n_images, &rng);
    HpErr err;
    assert_int_equal(prune_groups(&f->m, &f->gs, &err), 0);
    assert_true(f->gs.n_groups <= 8);
    for (int g = 0; g < f->gs.n_groups; g++) f->scores[g] = calloc((size_t)f->gs.groups[g].n_channels, sizeof(double));
}

// fixture_build with batchnorms.
static void fixture_init(Fixture *f, uint64_t seed, int n_images) { fixture_build(f, seed, n_images, true); }

static void fixture_free(Fixture *f) {
    for (int g = 0; g < f->gs.n_groups; g++) free(f->scores[g]);
    groupset_free(&f->gs);
    dataset_free(&f->d);
    model_free(&f->m);
}

// Fails unless channel `first` of scores[0..n) is exactly 0 and every other channel scores
// above zero (so it ranks first, alone). who names the criterion in the message.
static void expect_zero_first(const double *scores, int n, int first, const char *who) {
    for (int c = 0; c < n; c++) {
        double v = scores[c];
        if (c == first) {
            if (fabs(v) > 1e-12) fail_msg("%s: channel %d scores %g, not 0", who, c, v);
        } else if (!(v > 1e-9))
            fail_msg("%s: channel %d scores %g, not above channel %d's 0", who, c, v, first);
    }
}

// Fails unless channel `first` of scores[0..n) scores strictly below every other channel.
static void expect_lowest(const double *scores, int n, int first, const char *who) {
    for (int c = 0; c < n; c++)
        if (c != first && !(scores[c] > scores[first]))
            fail_msg("%s: channel %d scores %g, not above channel %d's %g", who, c, scores[c], first, scores[first]);
}

// Asserts that hap's or obd's Hutchinson scores est[0..4) of conv1's live channels (all but
// `dead`) are within a factor 2 of the exact ones (--ggn): the probes resolve every live channel.
static void expect_resolved(const double *est, const double *exact, int dead, const char *who) {
    for (int c = 0; c < 4; c++)
        if (c != dead && !(est[c] >= 0.5 * exact[c] && est[c] <= 2 * exact[c]))
            fail_msg("%s: channel %d's estimate %g, the exact value %g", who, c, est[c], exact[c]);
}

// The seed of the fixtures of the zero and the dead channel. On the Hutchinson diagonal of the
// Hessian (hap, obd), the channel whose derivatives vanish scores exactly 0 at any probe count,
// but whether every live channel's estimate lies above it depends on the probes: each weight of
// tu_small_net enters the logits piecewise linearly (ReLU, eval-mode batchnorm, pooling, linear
// layers; no weight used twice), so the exact diagonal of the Hessian equals the Gauss-Newton
// one and is never negative; the estimate is that value plus probe noise from the off-diagonal
// entries (whose squares sum to about 6 times the diagonal's on such a fixture), which shrinks as
// 1/sqrt(probes) but can dwarf the value of a channel of little curvature: on many seeds such a
// channel's estimate at 400 probes is negative, or tens of times its value. This seed was chosen
// because with run_criterion's 400 probes on 32 images each live channel of conv1 is estimated
// within 30% of its exact value (also at 200, 800 and 1600 probes within a factor 4);
// expect_resolved asserts a factor 2, so a change that leaves a live channel unresolved fails
// the test instead of letting it pass by chance.
enum { ORDER_SEED = 46, ORDER_IMAGES = 32 };

// hap and obd, on the Hutchinson diagonal and on the exact Gauss-Newton one (--ggn), score
// channel `dead` of group g exactly 0, first, every live channel's estimate resolved.
static void expect_diag_first(Fixture *f, int g, int dead) {
    double est[4];
    for (int k = 0; k < 2; k++) {
        Criterion c = k == 0 ? CRIT_HAP : CRIT_OBD;
        run_criterion(&f->m, &f->gs, c, &f->d, f->scores);
        expect_zero_first(f->scores[g], 4, dead, criterion_name(c));
        memcpy(est, f->scores[g], sizeof est);
        run_criterion_ggn(&f->m, &f->gs, c, &f->d, true, f->scores);
        char who[32];
        snprintf(who, sizeof who, "%s --ggn", criterion_name(c));
        expect_zero_first(f->scores[g], 4, dead, who);
        expect_resolved(est, f->scores[g], dead, criterion_name(c));
    }
}

// Every criterion but random scores an all-zero channel (filter, bias, batchnorm and consumer
// columns) exactly 0, below every other channel: its weights are all zero. For hap and obd on
// the Hutchinson diagonal, every live channel's estimate is positive (see ORDER_SEED).
static void test_zero_channel_first(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, ORDER_SEED, ORDER_IMAGES);
    HpErr check_err;
    assert_int_equal(crit_check(CRIT_BN, &f.m, &f.gs, &check_err), 0);  // every group has its batchnorm
    int g1 = group_id(&f.gs, "conv1");
    zero_whole_channel(&f.m, &f.gs, g1, 2);
    const Criterion crits[] = {CRIT_L1,  CRIT_L2,    CRIT_BN,  CRIT_TAYLOR,   CRIT_HAP,
                               CRIT_OBD, CRIT_FISHER, CRIT_OBS, CRIT_OBS_LAYER};
    for (size_t k = 0; k < sizeof crits / sizeof crits[0]; k++) {
        run_criterion(&f.m, &f.gs, crits[k], &f.d, f.scores);
        expect_zero_first(f.scores[g1], 4, 2, criterion_name(crits[k]));
    }
    expect_diag_first(&f, g1, 2);
    fixture_free(&f);
}

// A dead channel: conv1's filter, bias and batchnorm gamma and beta of channel 2 zero
// (group_zero_channel), its consumer columns in conv2 left as they are. Its output is exactly 0
// on every image and ReLU passes no gradient at 0, so every derivative the curvature criteria
// read through it vanishes: its gradient, its rows of the Hessian, of the Gauss-Newton matrix
// and of the Fisher (consumer weight gradients are (dL/dz) x activation = 0; the channel's own
// weights sit behind gamma = 0 and a closed ReLU). Hence bn (|gamma|), taylor, hap and obd
// (Hutchinson: v_i (Hv)_i = 0 exactly; and --ggn), fisher score it exactly 0, first. obs: its
// block of F = damp I + (1/N) sum g g^T is damp I, uncoupled, so its score is exactly
// 1/2 damp ||w_Q||^2 (the consumer columns), the lowest here (a live channel pays its Fisher
// term on top of its own damping term). obs-layer: its rows of conv2's
// input are zero, so it pays only the damping (run_criterion's 1e-6 of the mean diagonal) while
// the live channels pay their curvature: the lowest. l1 and l2 still count its live consumer
// columns (test_zero_channel_first zeroes those too).
static void test_dead_channel_first(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, ORDER_SEED, ORDER_IMAGES);
    int g1 = group_id(&f.gs, "conv1");
    group_zero_channel(&f.m, &f.gs.groups[g1], 2);
    const Criterion exact[] = {CRIT_BN, CRIT_TAYLOR, CRIT_FISHER};
    for (size_t k = 0; k < sizeof exact / sizeof exact[0]; k++) {
        run_criterion(&f.m, &f.gs, exact[k], &f.d, f.scores);
        expect_zero_first(f.scores[g1], 4, 2, criterion_name(exact[k]));
    }
    expect_diag_first(&f, g1, 2);
    run_criterion(&f.m, &f.gs, CRIT_OBS, &f.d, f.scores);
    double norm2 = channel_norm2(&f.m, &f.gs.groups[g1], 2);
    assert_true(norm2 > 0);  // the consumer columns are live
    double want = 0.5 * 1e-4 * norm2;  // run_criterion's fisher.damp
    if (fabs(f.scores[g1][2] - want) > 1e-3 * want) fail_msg("obs: dead channel %.8g, 1/2 damp |w|^2 %.8g", f.scores[g1][2], want);
    expect_lowest(f.scores[g1], 4, 2, "obs");
    run_criterion(&f.m, &f.gs, CRIT_OBS_LAYER, &f.d, f.scores);
    expect_lowest(f.scores[g1], 4, 2, "obs-layer");
    fixture_free(&f);
}

// random: a score per channel in [0, 1), no two equal (a strict order, so a permutation of the
// channels), the same for the same seed whatever the weights, different for another seed.
static void test_random_scores(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, 14, 4);
    double *again[8] = {0};
    for (int g = 0; g < f.gs.n_groups; g++) again[g] = calloc((size_t)f.gs.groups[g].n_channels, sizeof(double));
    CritOpts o = crit_defaults();
    o.method = CRIT_RANDOM, o.normalize = NORM_NONE, o.seed = 5;
    Scorer s;
    HpErr err;
    assert_int_equal(scorer_run(&s, &o, &f.m, &f.gs, f.scores, &err), 0);
    scorer_free(&s);
    int checked = 0;
    for (int g = 0; g < f.gs.n_groups; g++)
        for (int c = 0; f.gs.groups[g].prunable && c < f.gs.groups[g].n_channels; c++, checked++) {
            double v = f.scores[g][c];
            assert_true(v >= 0 && v < 1);
            for (int e = 0; e < c; e++) assert_true(f.scores[g][e] != v);
        }
    assert_int_equal(checked, 10);
    zero_whole_channel(&f.m, &f.gs, group_id(&f.gs, "conv1"), 1);  // weights do not matter
    assert_int_equal(scorer_run(&s, &o, &f.m, &f.gs, again, &err), 0);
    scorer_free(&s);
    for (int g = 0; g < f.gs.n_groups; g++)
        if (f.gs.groups[g].prunable)
            assert_memory_equal(again[g], f.scores[g], (size_t)f.gs.groups[g].n_channels * sizeof(double));
    o.seed = 6;
    assert_int_equal(scorer_run(&s, &o, &f.m, &f.gs, again, &err), 0);
    scorer_free(&s);
    int same = 0;
    for (int g = 0; g < f.gs.n_groups; g++)
        for (int c = 0; f.gs.groups[g].prunable && c < f.gs.groups[g].n_channels; c++) same += again[g][c] == f.scores[g][c];
    assert_int_equal(same, 0);
    for (int g = 0; g < f.gs.n_groups; g++) free(again[g]);
    fixture_free(&f);
}

// bn scores a channel by |gamma| of its batchnorm: conv1's gammas {0.5, -2, 0, 1} score exactly
// {0.5, 2, 0, 1} (the zero scale first, the negative one by its magnitude last).
static void test_bn_scale_order(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, 15, 4);
    int g1 = group_id(&f.gs, "conv1");
    const float gamma[4] = {0.5f, -2.0f, 0.0f, 1.0f};
    memcpy(f.m.params + f.m.nodes[tu_node_id(&f.m, "bn1")].w_off, gamma, sizeof gamma);
    run_criterion(&f.m, &f.gs, CRIT_BN, &f.d, f.scores);
    const double want[4] = {0.5, 2, 0, 1};
    for (int c = 0; c < 4; c++) assert_true(f.scores[g1][c] == want[c]);
    fixture_free(&f);
}

// 1/2 w_Q^T (G w_Q) for the parameters idx[0..k) of m, G by Gauss-Newton products of cv.
static double masked_quadratic(Curvature *cv, const Model *m, const size_t *idx, size_t k, float *wq, float *Gw) {
    HpErr err;
    memset(wq, 0, m->n_params * sizeof(float));
    for (size_t i = 0; i < k; i++) wq[idx[i]] = m->params[idx[i]];
    assert_int_equal(curv_apply(cv, wq, Gw, &err), 0);
    double q = 0;
    for (size_t i = 0; i < m->n_params; i++) q += 0.5 * (double)wq[i] * Gw[i];
    return q;
}

// Fisher scores are 1/2 w_Q^T G w_Q with G the Gauss-Newton matrix of the calibration images,
// checked against Gauss-Newton products (R-operator) with each channel's parameters masked.
static void test_fisher_quadratic_form(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, 9, 40);
    run_criterion(&f.m, &f.gs, CRIT_FISHER, &f.d, f.scores);
    int *all = malloc((size_t)f.d.n * sizeof(int));
    for (int i = 0; i < f.d.n; i++) all[i] = i;
    Curvature cv;
    HpErr err;
    assert_int_equal(curv_init(&cv, &f.m, &f.d, all, f.d.n, 16, MODE_EVAL, CURV_GGN, &err), 0);
    size_t P = f.m.n_params, *idx = malloc(P * sizeof(size_t));
    float *wq = malloc(P * sizeof(float)), *Gw = malloc(P * sizeof(float));
    int checked = 0;
    for (int g = 0; g < f.gs.n_groups; g++) {
        const ChannelGroup *grp = &f.gs.groups[g];
        for (int c = 0; grp->prunable && c < grp->n_channels; c++, checked++) {
            size_t k = group_channel_params(&f.m, grp, c, idx);
            double want = masked_quadratic(&cv, &f.m, idx, k, wq, Gw), got = f.scores[g][c];
            if (!(want > 0) || fabs(got - want) > 1e-4 * want)
                fail_msg("group %s channel %d: fisher %.8g, 1/2 w'Gw %.8g", grp->name, c, got, want);
        }
    }
    assert_int_equal(checked, 10);  // conv1's 4 channels and conv2's 6
    free(idx), free(wq), free(Gw), free(all);
    curv_free(&cv);
    fixture_free(&f);
}

// Mean loss over all of d's images (eval mode).
static double mean_loss(Model *m, const Dataset *d) {
    Workspace ws;
    assert_int_equal(ws_init(&ws, m, d->n, 0, NULL), 0);
    size_t per_image = (size_t)m->input.c * m->input.h * m->input.w;
    float *x = malloc((size_t)d->n * per_image * sizeof(float));
    int *y = malloc((size_t)d->n * sizeof(int)), *all = malloc((size_t)d->n * sizeof(int));
    for (int i = 0; i < d->n; i++) all[i] = i;
    data_batch(d, all, d->n, m->norm_mean, m->norm_std, NULL, NULL, x, y);
    const float *logits = model_forward(m, &ws, x, d->n, MODE_EVAL, NULL);
    double loss = softmax_xent(logits, y, d->n, m->n_classes, 0, NULL, NULL);
    free(x), free(y), free(all);
    ws_free(&ws);
    return loss;
}

// Indices of the consumer columns of tu_small_net's groups, from the layer shapes alone: conv2's
// weight[:, c] (6 x 3x3) for conv1's channel c, fc's weight[:, c] (3) for conv2's.
static size_t consumer_columns(const Model *m, bool of_conv1, int c, size_t *idx) {
    size_t k = 0;
    if (of_conv1) {
        const Node *c2 = &m->nodes[tu_node_id(m, "conv2")];
        for (size_t o = 0; o < 6; o++)
            for (size_t t = 0; t < 9; t++) idx[k++] = c2->w_off + (o * 4 + (size_t)c) * 9 + t;
    } else {
        const Node *fc = &m->nodes[tu_node_id(m, "fc")];
        for (size_t o = 0; o < 3; o++) idx[k++] = fc->w_off + o * 6 + (size_t)c;
    }
    return k;
}

// The score of one channel from its consumer columns idx[0..k), computed independently of
// prune/: fisher 1/2 w_C^T G w_C and the Gauss-Newton diagonal by masked Gauss-Newton products,
// taylor the square of the derivative of the loss as the columns are scaled to zero (central
// differences; only where the loss is smooth in the scale), l1 and l2 their absolute and squared
// sums, hap mean(diag) * ||w_C||^2 (one consumer per group here), obd 1/2 sum diag w^2.
static double consumer_score(Criterion crit, Model *m, const Dataset *d, Curvature *cv, const size_t *idx, size_t k,
                             float *wq, float *Gw, float *saved) {
    size_t P = m->n_params;
    double l1 = 0, l2 = 0, trace = 0, obd = 0, h = 1e-2;
    for (size_t i = 0; i < k; i++) {
        double w = m->params[idx[i]];
        l1 += fabs(w), l2 += w * w;
        if (crit == CRIT_HAP || crit == CRIT_OBD) {  // G_ii = 2 q(w_i e_i) / w_i^2
            double q = masked_quadratic(cv, m, idx + i, 1, wq, Gw);
            trace += 2 * q / (w * w), obd += q;
        }
    }
    switch (crit) {
    case CRIT_FISHER: return masked_quadratic(cv, m, idx, k, wq, Gw);
    case CRIT_L1: return l1;
    case CRIT_L2: return l2;
    case CRIT_HAP: return trace / (double)k * l2;
    case CRIT_OBD: return obd;
    case CRIT_TAYLOR: {  // d/dt L(columns * t) at t = 1
        memcpy(saved, m->params, P * sizeof(float));
        for (size_t i = 0; i < k; i++) m->params[idx[i]] = (float)(saved[idx[i]] * (1 + h));
        double up = mean_loss(m, d);
        for (size_t i = 0; i < k; i++) m->params[idx[i]] = (float)(saved[idx[i]] * (1 - h));
        double down = mean_loss(m, d);
        memcpy(m->params, saved, P * sizeof(float));
        return pow((up - down) / (2 * h), 2);
    }
    default: fail_msg("no independent score for %s", criterion_name(crit));
    }
    return 0;
}

// With consumers_only, every criterion that accepts it scores a channel on its consumers' input
// columns alone (consumer_score), normalised by their count with NORM_SIZE; a channel whose
// consumer columns are zero scores 0 even with a live filter; the criteria that do not accept
// it refuse it.
static void test_consumer_slices(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, 12, 48);
    int g1 = group_id(&f.gs, "conv1"), g2 = group_id(&f.gs, "conv2");
    CritOpts o = crit_defaults();
    o.normalize = NORM_NONE, o.data = &f.d, o.samples = f.d.n, o.batch = f.d.n, o.consumers_only = true;
    o.ggn = true;  // hap and obd on the exact Gauss-Newton diagonal: no probe noise
    Scorer s;
    HpErr err;
    size_t P = f.m.n_params, *idx = malloc(P * sizeof(size_t));
    float *wq = malloc(P * sizeof(float)), *Gw = malloc(P * sizeof(float)), *saved = malloc(P * sizeof(float));
    int *all = malloc((size_t)f.d.n * sizeof(int));
    for (int i = 0; i < f.d.n; i++) all[i] = i;
    Curvature cv;
    assert_int_equal(curv_init(&cv, &f.m, &f.d, all, f.d.n, 16, MODE_EVAL, CURV_GGN, &err), 0);
    const Criterion crits[] = {CRIT_FISHER, CRIT_TAYLOR, CRIT_L1, CRIT_L2, CRIT_HAP, CRIT_OBD, CRIT_L1};
    const size_t n_crits = sizeof crits / sizeof crits[0];
    for (size_t q = 0; q < n_crits; q++) {
        o.method = crits[q];
        o.normalize = q == n_crits - 1 ? NORM_SIZE : NORM_NONE;  // the last: l1 per scored parameter
        if (scorer_run(&s, &o, &f.m, &f.gs, f.scores, &err) != 0) fail_msg("%s: %s", criterion_name(o.method), err.msg);
        scorer_free(&s);
        for (int g = 0; g < 2; g++)
            for (int c = 0; c < f.gs.groups[g == 0 ? g1 : g2].n_channels; c++) {
                if (crits[q] == CRIT_TAYLOR && g == 0) continue;  // conv2's columns: L(t) has ReLU kinks
                size_t k = consumer_columns(&f.m, g == 0, c, idx);
                double want = consumer_score(crits[q], &f.m, &f.d, &cv, idx, k, wq, Gw, saved);
                if (o.normalize == NORM_SIZE) want /= (double)k;
                double got = f.scores[g == 0 ? g1 : g2][c];
                double tol = crits[q] == CRIT_TAYLOR ? 2e-2 * want + 1e-9 : 1e-4 * want;
                if (!(want > 0) || fabs(got - want) > tol)
                    fail_msg("%s, group %d channel %d: %.8g, want %.8g", criterion_name(o.method), g, c, got, want);
            }
    }
    // conv1's channel 1 with its consumer columns zeroed: removed from the function, scored 0
    size_t k = consumer_columns(&f.m, true, 1, idx);
    for (size_t i = 0; i < k; i++) f.m.params[idx[i]] = 0;
    o.normalize = NORM_NONE;
    for (size_t q = 0; q < n_crits - 1; q++) {
        o.method = crits[q];
        assert_int_equal(scorer_run(&s, &o, &f.m, &f.gs, f.scores, &err), 0);
        scorer_free(&s);
        assert_true(fabs(f.scores[g1][1]) < 1e-12 && f.scores[g1][0] > 1e-9);
    }
    const Criterion refused[] = {CRIT_RANDOM, CRIT_BN, CRIT_OBS, CRIT_OBS_LAYER};
    for (size_t q = 0; q < 4; q++) {
        o.method = refused[q];
        assert_int_equal(scorer_run(&s, &o, &f.m, &f.gs, f.scores, &err), -1);
        char want[96];
        snprintf(want, sizeof want, "applies to l1, l2, taylor, hap, obd and fisher, not %s", criterion_name(o.method));
        assert_non_null(strstr(err.msg, want));
        scorer_free(&s);
    }
    char names[16];  // too small: the list is cut, never overrun
    criteria_taking_slices(names, sizeof names);
    assert_string_equal(names, "l1, l2, taylor,");
    char every[160];  // every criterion, in the order criterion_name numbers them
    criteria_names(every, sizeof every);
    assert_string_equal(every, "random, l1, l2, bn, taylor, hap, obd, fisher, obs, obs-layer");
    for (int c = 0; c < CRIT_COUNT; c++) {  // the criteria that read o.samples calibration images
        bool reads = c == CRIT_TAYLOR || c == CRIT_HAP || c == CRIT_OBD || c == CRIT_FISHER || c == CRIT_OBS_LAYER;
        assert_int_equal(criterion_reads_samples((Criterion)c), reads);
    }
    curv_free(&cv);
    free(idx), free(wq), free(Gw), free(saved), free(all);
    fixture_free(&f);
}

// Without batchnorm, a channel's output (ReLU, then linear pooling) scales with its filter and
// bias, so to first order scaling them moves the loss as scaling its consumer columns does: the
// all-slice Taylor and Fisher scores are exactly 4 times the consumers-only ones.
static void test_slices_without_batchnorm(void **state) {
    (void)state;
    Fixture f;
    fixture_build(&f, 5, 40, false);
    HpErr check_err;  // bn is refused before any work; the others apply
    assert_int_equal(crit_check(CRIT_BN, &f.m, &f.gs, &check_err), -1);
    assert_non_null(strstr(check_err.msg, "criterion bn: channel group 'conv1' has no batchnorm"));
    assert_int_equal(crit_check(CRIT_L1, &f.m, &f.gs, &check_err), 0);
    double *cons[8] = {0};
    for (int g = 0; g < f.gs.n_groups; g++) cons[g] = calloc((size_t)f.gs.groups[g].n_channels, sizeof(double));
    CritOpts o = crit_defaults();
    o.normalize = NORM_NONE, o.data = &f.d, o.samples = f.d.n, o.batch = 20;
    const Criterion crits[] = {CRIT_TAYLOR, CRIT_FISHER};
    for (size_t q = 0; q < 2; q++) {
        Scorer s;
        HpErr err;
        o.method = crits[q];
        o.consumers_only = false;
        assert_int_equal(scorer_run(&s, &o, &f.m, &f.gs, f.scores, &err), 0);
        scorer_free(&s);
        o.consumers_only = true;
        assert_int_equal(scorer_run(&s, &o, &f.m, &f.gs, cons, &err), 0);
        scorer_free(&s);
        int checked = 0;
        for (int g = 0; g < f.gs.n_groups; g++)
            for (int c = 0; f.gs.groups[g].prunable && c < f.gs.groups[g].n_channels; c++, checked++)
                if (!(cons[g][c] > 0) || fabs(f.scores[g][c] - 4 * cons[g][c]) > 1e-3 * 4 * cons[g][c])
                    fail_msg("%s, group %d channel %d: all slices %.8g, consumers %.8g", criterion_name(crits[q]), g,
                             c, f.scores[g][c], cons[g][c]);
        assert_int_equal(checked, 10);
    }
    for (int g = 0; g < f.gs.n_groups; g++) free(cons[g]);
    fixture_free(&f);
}

// Layer-wise OBS sees that a duplicated channel costs (almost) nothing: its consumer's columns
// can move onto the copy. Magnitude criteria order channels by their norms.
static void test_duplicate_and_magnitude(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, 8, 128);
    duplicate_channel(&f.m, 1, 3);
    int g1 = group_id(&f.gs, "conv1");
    double *const *scores = f.scores;
    run_criterion(&f.m, &f.gs, CRIT_OBS_LAYER, &f.d, f.scores);
    double others = fmin(scores[g1][0], scores[g1][2]);
    assert_true(scores[g1][1] < 1e-3 * others);
    assert_true(scores[g1][3] < 1e-3 * others);
    // l1 and l2: scale every slice of channel 0 up by 100, it ranks last; every slice of channel
    // 3 down by 1e-3, first (by itself it has the largest l1 of conv1: ranking it first is the
    // scaling's doing); its score scales exactly by 1e-3 (l1) and 1e-6 (l2)
    const Criterion mags[2] = {CRIT_L1, CRIT_L2};
    double before[2];
    for (int q = 0; q < 2; q++) {
        run_criterion(&f.m, &f.gs, mags[q], &f.d, f.scores);
        before[q] = scores[g1][3];
    }
    size_t *idx = malloc(f.m.n_params * sizeof(size_t));
    for (int c = 0; c <= 3; c += 3) {
        size_t k = group_channel_params(&f.m, &f.gs.groups[g1], c, idx);
        for (size_t i = 0; i < k; i++) f.m.params[idx[i]] *= c == 0 ? 100.0f : 1e-3f;
    }
    free(idx);
    for (int q = 0; q < 2; q++) {
        run_criterion(&f.m, &f.gs, mags[q], &f.d, f.scores);
        for (int c = 0; c < 4; c++) {
            if (c != 0 && !(scores[g1][c] < scores[g1][0])) fail_msg("%s: channel %d above 0", criterion_name(mags[q]), c);
            if (c != 3 && !(scores[g1][c] > scores[g1][3])) fail_msg("%s: channel %d below 3", criterion_name(mags[q]), c);
        }
        double want = before[q] * (q == 0 ? 1e-3 : 1e-6);
        assert_float_equal(scores[g1][3], want, 1e-5 * want);
    }
    fixture_free(&f);
}

// Makes conv1's channel 3 a full copy of channel 1: duplicate_channel and also its consumer
// columns in conv2 (weight[:, 3] = weight[:, 1]).
static void duplicate_with_consumers(Model *m) {
    duplicate_channel(m, 1, 3);
    const Node *c2 = &m->nodes[tu_node_id(m, "conv2")];
    for (size_t o = 0; o < 6; o++)
        memcpy(m->params + c2->w_off + (o * 4 + 3) * 9, m->params + c2->w_off + (o * 4 + 1) * 9, 9 * sizeof(float));
}

// obs (WoodFisher) sees that a channel with a full copy costs (almost) nothing. With channels 1
// and 3 of conv1 identical in every slice (filter, bias, batchnorm, consumer columns), every
// per-sample gradient is the same on the two channels' parameters, so moving channel 3's weights
// onto channel 1's (delta = -w on 3, +w on 1; the function is unchanged) is orthogonal to every
// gradient and costs only the damping: with F = damp I + (1/N) sum g g^T in blocks that each
// hold both copies' slices, score(3) <= 1/2 delta^T F delta = damp ||w_3||^2, and the same for
// channel 1. Blocks of 40 aligned to layers are conv1 (40 weights), bn1, and conv2 cut into its
// 6 output rows (36 each: every row holds both copies' columns). A distinct channel pays its
// Fisher term: N = 256 gradients outnumber every block's parameters, so the rest of a block
// cannot absorb them. The copy is no idle channel: its loss change without the update, the
// fisher criterion's 1/2 w^T G w, is far above its obs score. (Seed 34: every channel of conv1
// carries a fisher score of at least 2e-3, so the distinct ones are live too.)
static void test_obs_duplicate_first(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, 34, 256);
    duplicate_with_consumers(&f.m);
    int g1 = group_id(&f.gs, "conv1");
    CritOpts o = crit_defaults();
    o.method = CRIT_OBS, o.normalize = NORM_NONE, o.data = &f.d, o.samples = f.d.n, o.batch = 64;
    o.fisher.n_grads = 256, o.fisher.block_size = 40, o.fisher.damp = 1e-8;
    Scorer s;
    HpErr err;
    if (scorer_run(&s, &o, &f.m, &f.gs, f.scores, &err) != 0) fail_msg("obs: %s", err.msg);
    scorer_free(&s);
    double obs[4], *fisher = f.scores[g1];
    memcpy(obs, f.scores[g1], sizeof obs);
    o.method = CRIT_FISHER;
    assert_int_equal(scorer_run(&s, &o, &f.m, &f.gs, f.scores, &err), 0);
    scorer_free(&s);
    double norm2 = channel_norm2(&f.m, &f.gs.groups[g1], 3);
    double bound = o.fisher.damp * norm2, others = fmin(obs[0], obs[2]);
    for (int c = 1; c <= 3; c += 2)
        if (!(obs[c] <= bound * (1 + 1e-3)) || !(obs[c] < 0.01 * others) || !(fisher[c] > 100 * obs[c]))
            fail_msg("obs: copy %d scores %g (bound damp |w|^2 %g; fisher %g), the distinct channels %g", c, obs[c],
                     bound, fisher[c], others);
    fixture_free(&f);
}

// widths_cost equals the MACs and parameters of the model surgery builds, on resnet20.
static void test_widths_cost_exact(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 9, 0);
    Model m, slim;
    HpErr err;
    assert_int_equal(arch_build(&m, "resnet20", (Shape){1, 12, 12}, 10, &err), 0);
    model_init_params(&m, &rng);
    GroupSet gs;
    assert_int_equal(prune_groups(&m, &gs, &err), 0);
    bool *keep[64] = {0};
    int width[64];
    assert_true(gs.n_groups <= 64);
    for (int g = 0; g < gs.n_groups; g++) {
        int n = gs.groups[g].n_channels;
        keep[g] = malloc((size_t)n);
        width[g] = 0;
        for (int c = 0; c < n; c++) {
            keep[g][c] = !gs.groups[g].prunable || c == 0 || rng_uniform(&rng) < 0.6f;
            width[g] += keep[g][c];
        }
    }
    assert_int_equal(prune_apply(&m, &gs, keep, &slim, &err), 0);
    uint64_t macs;
    size_t params;
    assert_int_equal(widths_cost(&m, &gs, width, &macs, &params, &err), 0);
    assert_int_equal(macs, model_macs(&slim));
    assert_int_equal(params, model_param_count(&slim));
    for (int g = 0; g < gs.n_groups; g++) free(keep[g]);
    groupset_free(&gs);
    model_free(&slim);
    model_free(&m);
}

// Allocates keep masks and fills scores with c + 10 g (a known global order), or given values.
static void alloc_sel(const GroupSet *gs, bool **keep, double **scores) {
    for (int g = 0; g < gs->n_groups; g++) {
        keep[g] = calloc((size_t)gs->groups[g].n_channels, 1);
        scores[g] = calloc((size_t)gs->groups[g].n_channels, sizeof(double));
    }
}

// Channel targets remove the globally lowest scores; caps and rounding hold; a bad target is
// refused.
static void test_select(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 10, 0);
    Model m;
    tu_small_net(&m, &rng, true);
    GroupSet gs;
    HpErr err;
    assert_int_equal(prune_groups(&m, &gs, &err), 0);
    int g1 = group_id(&gs, "conv1"), g2 = group_id(&gs, "conv2");
    bool *keep[8];
    double *scores[8];
    alloc_sel(&gs, keep, scores);
    const double s1[4] = {0.5, 0.1, 0.9, 0.3}, s2[6] = {0.2, 0.8, 0.05, 0.7, 0.6, 0.4};
    memcpy(scores[g1], s1, sizeof s1);
    memcpy(scores[g2], s2, sizeof s2);
    PruneRef ref;
    assert_int_equal(pruneref_init(&ref, &m, &gs, &err), 0);
    PruneTarget t = {.kind = TARGET_CHANNELS, .ratio = 0.5, .max_layer_frac = 0.9, .round_to = 1};
    assert_int_equal(prune_select(&m, &gs, scores, &t, &ref, keep, &err), 0);
    // the five lowest: 0.05 (g2,2), 0.1 (g1,1), 0.2 (g2,0), 0.3 (g1,3), 0.4 (g2,5)
    const bool k1[4] = {1, 0, 1, 0}, k2[6] = {0, 1, 0, 1, 1, 0};
    for (int c = 0; c < 4; c++) assert_int_equal(keep[g1][c], k1[c]);
    for (int c = 0; c < 6; c++) assert_int_equal(keep[g2][c], k2[c]);
    // a cap of 50%: conv1 loses at most 2, conv2 at most 3
    t.max_layer_frac = 0.5;
    t.ratio = 0.5;
    assert_int_equal(prune_select(&m, &gs, scores, &t, &ref, keep, &err), 0);
    int kept1 = 0, kept2 = 0;
    for (int c = 0; c < 4; c++) kept1 += keep[g1][c];
    for (int c = 0; c < 6; c++) kept2 += keep[g2][c];
    assert_true(kept1 >= 2 && kept2 >= 3 && kept1 + kept2 == 5);
    // rounding to 2: every kept width even
    t = (PruneTarget){.kind = TARGET_MACS, .ratio = 0.4, .max_layer_frac = 0.9, .round_to = 2};
    assert_int_equal(prune_select(&m, &gs, scores, &t, &ref, keep, &err), 0);
    int w[8] = {0};
    for (int g = 0; g < gs.n_groups; g++)
        for (int c = 0; c < gs.groups[g].n_channels; c++) w[g] += keep[g][c];
    assert_int_equal(w[g1] % 2, 0);
    assert_int_equal(w[g2] % 2, 0);
    uint64_t macs;
    size_t params;
    assert_int_equal(widths_cost(&m, &gs, w, &macs, &params, &err), 0);
    assert_true((double)macs <= 0.6 * (double)ref.macs);
    // uniform: every group loses half of its own channels, its lowest
    t = (PruneTarget){.kind = TARGET_CHANNELS, .ratio = 0.5, .max_layer_frac = 0.9, .round_to = 1, .uniform = true};
    assert_int_equal(prune_select(&m, &gs, scores, &t, &ref, keep, &err), 0);
    const bool u1[4] = {1, 0, 1, 0}, u2[6] = {0, 1, 0, 1, 1, 0};
    for (int c = 0; c < 4; c++) assert_int_equal(keep[g1][c], u1[c]);
    for (int c = 0; c < 6; c++) assert_int_equal(keep[g2][c], u2[c]);
    t.kind = TARGET_MACS;
    assert_int_equal(prune_select(&m, &gs, scores, &t, &ref, keep, &err), -1);
    assert_non_null(strstr(err.msg, "channel target"));
    t.ratio = 1.0;
    assert_int_equal(prune_select(&m, &gs, scores, &t, &ref, keep, &err), -1);
    assert_non_null(strstr(err.msg, "(0, 1)"));
    for (int g = 0; g < gs.n_groups; g++) free(keep[g]), free(scores[g]);
    pruneref_free(&ref);
    groupset_free(&gs);
    model_free(&m);
}

// Kept widths of keep for tu_small_net's two groups.
static void kept_widths(const GroupSet *gs, bool **keep, int g1, int g2, int *w1, int *w2) {
    *w1 = *w2 = 0;
    for (int c = 0; c < gs->groups[g1].n_channels; c++) *w1 += keep[g1][c];
    for (int c = 0; c < gs->groups[g2].n_channels; c++) *w2 += keep[g2][c];
}

// Asserts that prune_select fails on t with a message containing every one of the n texts.
static void expect_select_error(const Model *m, const GroupSet *gs, double **scores, const PruneTarget *t,
                                const PruneRef *ref, bool **keep, int n, ...) {
    HpErr err = {{0}};
    assert_int_equal(prune_select(m, gs, scores, t, ref, keep, &err), -1);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *want = va_arg(ap, const char *);
        if (!strstr(err.msg, want)) fail_msg("'%s' not in: %s", want, err.msg);
    }
    va_end(ap);
}

// --uniform honours the per-layer cap and the rounding: a fraction above the cap is out of
// reach naming the cap; a layer the cap holds keeps what the cap keeps; kept widths are the
// nearest multiples of round_to (conv1 4 -> 2, conv2 6 -> 3 -> 4 at 2).
static void test_select_uniform_limits(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, 10, 4);
    int g1 = group_id(&f.gs, "conv1"), g2 = group_id(&f.gs, "conv2"), w1, w2;
    bool *keep[8];
    double *sc[8];
    alloc_sel(&f.gs, keep, sc);
    PruneRef ref;
    HpErr err;
    assert_int_equal(pruneref_init(&ref, &f.m, &f.gs, &err), 0);
    PruneTarget t = {.kind = TARGET_CHANNELS, .ratio = 0.95, .max_layer_frac = 0.9, .round_to = 1, .uniform = true};
    expect_select_error(&f.m, &f.gs, sc, &t, &ref, keep, 3, "out of reach", "per-layer cap of 0.9", "max_layer_frac");
    t.ratio = 0.6, t.max_layer_frac = 0.5;
    expect_select_error(&f.m, &f.gs, sc, &t, &ref, keep, 2, "out of reach", "per-layer cap of 0.5");
    t.ratio = 0.6, t.max_layer_frac = 0.6;  // conv2: round(0.4 x 6) = 2, the cap keeps ceil(2.4) = 3
    assert_int_equal(prune_select(&f.m, &f.gs, sc, &t, &ref, keep, &err), 0);
    kept_widths(&f.gs, keep, g1, g2, &w1, &w2);
    assert_int_equal(w1, 2);
    assert_int_equal(w2, 3);
    t = (PruneTarget){.kind = TARGET_CHANNELS, .ratio = 0.5, .max_layer_frac = 0.9, .round_to = 4, .uniform = true};
    assert_int_equal(prune_select(&f.m, &f.gs, sc, &t, &ref, keep, &err), 0);
    kept_widths(&f.gs, keep, g1, g2, &w1, &w2);
    assert_int_equal(w1, 2);  // no wider than 4: not rounded
    assert_int_equal(w2, 4);  // 3 -> the nearest multiple of 4
    t.round_to = 2;
    assert_int_equal(prune_select(&f.m, &f.gs, sc, &t, &ref, keep, &err), 0);
    kept_widths(&f.gs, keep, g1, g2, &w1, &w2);
    assert_int_equal(w1, 2);
    assert_int_equal(w2, 4);  // 3 -> 4 (1.5 rounds up)
    for (int g = 0; g < f.gs.n_groups; g++) free(keep[g]), free(sc[g]);
    pruneref_free(&ref);
    fixture_free(&f);
}

// An impossible target names the limit that binds and what could be removed without it; on
// the two groups of 4 and 6 channels (10 in all), a channel target: with a cap of 0.5 the
// floors are 2 + 3 (50%), rounding to 4 keeps conv2 at 4 (1 + 4: 50%), both 2 + 4 (40%),
// neither 1 + 1 (80%). Scores that are not finite are refused, naming the channel.
static void test_select_binding_limit(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, 11, 4);
    bool *keep[8];
    double *sc[8];
    alloc_sel(&f.gs, keep, sc);
    PruneRef ref;
    HpErr err;
    assert_int_equal(pruneref_init(&ref, &f.m, &f.gs, &err), 0);
    PruneTarget t = {.kind = TARGET_CHANNELS, .ratio = 0.7, .max_layer_frac = 0.5, .round_to = 1};
    expect_select_error(&f.m, &f.gs, sc, &t, &ref, keep, 4, "removing 70.0% of channels is out of reach",
                        "at most 50.0% can be removed", "the per-layer cap of 0.5 (--max-layer-frac; max_layer_frac",
                        "binds: without it 80.0% could be removed");
    t = (PruneTarget){.kind = TARGET_CHANNELS, .ratio = 0.7, .max_layer_frac = 0.9, .round_to = 4};
    expect_select_error(&f.m, &f.gs, sc, &t, &ref, keep, 2, "at most 50.0% can be removed",
                        "the rounding of kept widths to multiples of 4 binds: without it 80.0% could be removed");
    t = (PruneTarget){.kind = TARGET_CHANNELS, .ratio = 0.6, .max_layer_frac = 0.5, .round_to = 4};
    expect_select_error(&f.m, &f.gs, sc, &t, &ref, keep, 2, "at most 40.0% can be removed",
                        "the rounding to multiples of 4 bind together: without both 80.0% could be removed");
    t.ratio = 0.45;  // either alone would do
    expect_select_error(&f.m, &f.gs, sc, &t, &ref, keep, 2, "cap of 0.5 (--max-layer-frac; max_layer_frac in a sweep "
                        "config) binds: without it 50.0% could be removed", "without the rounding to multiples of 4, 50.0%");
    t = (PruneTarget){.kind = TARGET_CHANNELS, .ratio = 0.85, .max_layer_frac = 0.9, .round_to = 1};
    expect_select_error(&f.m, &f.gs, sc, &t, &ref, keep, 2, "at most 80.0% can be removed",
                        "the layers that cannot be pruned and the channel every layer keeps bind");
    t.ratio = 0.5;
    sc[group_id(&f.gs, "conv2")][4] = NAN;
    expect_select_error(&f.m, &f.gs, sc, &t, &ref, keep, 2, "not finite", "channel 4 of conv2");
    for (int g = 0; g < f.gs.n_groups; g++) free(keep[g]), free(sc[g]);
    pruneref_free(&ref);
    fixture_free(&f);
}

// A criterion whose scores are not finite (l1 of a channel holding a NaN gamma) fails naming
// itself, the group and the channel, instead of leaving the selection to find no channel.
static void test_scores_not_finite(void **state) {
    (void)state;
    Fixture f;
    fixture_init(&f, 12, 4);
    f.m.params[f.m.nodes[tu_node_id(&f.m, "bn2")].w_off + 3] = NAN;  // gamma of conv2's channel 3 alone
    CritOpts o = crit_defaults();
    Scorer s;
    HpErr err = {{0}};
    assert_int_equal(scorer_run(&s, &o, &f.m, &f.gs, f.scores, &err), -1);
    scorer_free(&s);
    const char *want[] = {"criterion l1", "not finite", "channel 3 of conv2"};
    for (int i = 0; i < 3; i++)
        if (!strstr(err.msg, want[i])) fail_msg("'%s' not in: %s", want[i], err.msg);
    fixture_free(&f);
}

// The options only some criteria use apply to those criteria, named as a sweep's messages name
// them.
static void test_option_applies(void **state) {
    (void)state;
    char users[160];
    assert_true(criterion_option_applies("ggn", CRIT_HAP, users, sizeof users));
    assert_true(criterion_option_applies("probes", CRIT_OBD, NULL, 0));
    assert_false(criterion_option_applies("probes", CRIT_L1, users, sizeof users));
    assert_string_equal(users, "hap and obd");
    assert_false(criterion_option_applies("samples", CRIT_L1, users, sizeof users));
    assert_string_equal(users, "taylor, hap, obd, fisher and obs-layer");
    assert_false(criterion_option_applies("damp", CRIT_OBS_LAYER, users, sizeof users));
    assert_string_equal(users, "obs");
    assert_true(criterion_option_applies("memory_budget", CRIT_OBS, NULL, 0));
    assert_false(criterion_option_applies("layer_damp", CRIT_OBS, users, sizeof users));
    assert_string_equal(users, "obs-layer");
    assert_false(criterion_option_applies("compensate", CRIT_FISHER, users, sizeof users));
    assert_string_equal(users, "obs and obs-layer");
    assert_false(criterion_option_applies("slices", CRIT_BN, users, sizeof users));
    assert_string_equal(users, "l1, l2, taylor, hap, obd and fisher");
    for (int c = 0; c < CRIT_COUNT; c++)  // slices follows criterion_takes_slices
        assert_int_equal(criterion_option_applies("slices", (Criterion)c, NULL, 0), criterion_takes_slices((Criterion)c));
}

// crit_normalize: an explicit normalisation is the one applied; auto stands for none with the
// criteria that estimate a loss change (taylor, hap, obd, fisher, obs), mean with the others.
static void test_normalize_applied(void **state) {
    (void)state;
    CritOpts o = crit_defaults();
    assert_int_equal(o.normalize, NORM_AUTO);
    for (int c = 0; c < CRIT_COUNT; c++) {
        o.method = (Criterion)c;
        o.normalize = NORM_AUTO;
        bool loss = c == CRIT_TAYLOR || c == CRIT_HAP || c == CRIT_OBD || c == CRIT_FISHER || c == CRIT_OBS;
        assert_int_equal(crit_normalize(&o), loss ? NORM_NONE : NORM_MEAN);
        for (int n = NORM_MEAN; n <= NORM_NONE; n++) {
            o.normalize = (Normalize)n;
            assert_int_equal(crit_normalize(&o), n);
        }
    }
}

// After obs-layer compensation and surgery, the network's output is closer to the original's
// than after plain removal of the same channels.
static void test_obs_layer_compensation_helps(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 11, 0);
    Model m;
    tu_small_net(&m, &rng, true);
    Dataset d;
    small_data(&d, 256, &rng);
    GroupSet gs;
    HpErr err;
    assert_int_equal(prune_groups(&m, &gs, &err), 0);
    bool *keep[8];
    double *scores[8];
    alloc_sel(&gs, keep, scores);
    CritOpts o = crit_defaults();
    o.method = CRIT_OBS_LAYER;
    o.data = &d;
    o.samples = 256;
    o.batch = 64;
    Scorer s;
    assert_int_equal(scorer_run(&s, &o, &m, &gs, scores, &err), 0);
    PruneRef ref;
    assert_int_equal(pruneref_init(&ref, &m, &gs, &err), 0);
    PruneTarget t = {.kind = TARGET_CHANNELS, .ratio = 0.3, .max_layer_frac = 0.9, .round_to = 1};
    assert_int_equal(prune_select(&m, &gs, scores, &t, &ref, keep, &err), 0);
    Model comp, a, b;
    assert_int_equal(model_copy(&comp, &m, NULL), 0);
    assert_int_equal(scorer_compensate(&s, &comp, &gs, keep, &err), 0);
    assert_int_equal(prune_apply(&comp, &gs, keep, &a, &err), 0);
    assert_int_equal(prune_apply(&m, &gs, keep, &b, &err), 0);
    // logits distance to the original over the calibration images
    Workspace w0, w1, w2;
    assert_int_equal(ws_init(&w0, &m, 256, 0, NULL), 0);
    assert_int_equal(ws_init(&w1, &a, 256, 0, NULL), 0);
    assert_int_equal(ws_init(&w2, &b, 256, 0, NULL), 0);
    float *x = malloc(256 * 64 * sizeof(float));
    int *y = malloc(256 * sizeof(int)), idx[256];
    for (int i = 0; i < 256; i++) idx[i] = i;
    data_batch(&d, idx, 256, m.norm_mean, m.norm_std, NULL, NULL, x, y);
    const float *l0 = model_forward(&m, &w0, x, 256, MODE_EVAL, NULL);
    const float *l1 = model_forward(&a, &w1, x, 256, MODE_EVAL, NULL);
    const float *l2 = model_forward(&b, &w2, x, 256, MODE_EVAL, NULL);
    double e_comp = tu_rel_err(l1, l0, 256 * 3), e_plain = tu_rel_err(l2, l0, 256 * 3);
    assert_true(e_comp < e_plain);
    free(x), free(y);
    ws_free(&w0), ws_free(&w1), ws_free(&w2);
    model_free(&comp), model_free(&a), model_free(&b);
    for (int g = 0; g < gs.n_groups; g++) free(keep[g]), free(scores[g]);
    scorer_free(&s);
    pruneref_free(&ref);
    groupset_free(&gs);
    dataset_free(&d);
    model_free(&m);
}

// bn_recalibrate sets the running means to the calibration images' channel means (exactly the
// average of equal batches' means), leaves the parameters and the momenta as they were.
static void test_bn_recalibrate(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 12, 0);
    Model m, two;
    tu_small_net(&m, &rng, true);
    Dataset d;
    small_data(&d, 64, &rng);
    int idx[64];
    for (int i = 0; i < 64; i++) idx[i] = i;
    // conv1's output over all 64 images, by an eval-mode forward (it does not depend on the mode)
    Workspace ws;
    assert_int_equal(ws_init(&ws, &m, 64, 0, NULL), 0);
    float *x = malloc(64 * 64 * sizeof(float));
    int y[64];
    data_batch(&d, idx, 64, m.norm_mean, m.norm_std, NULL, NULL, x, y);
    model_forward(&m, &ws, x, 64, MODE_EVAL, NULL);
    const int c1 = tu_node_id(&m, "conv1"), b1 = tu_node_id(&m, "bn1");
    double mean[4] = {0};
    for (int n = 0; n < 64; n++)
        for (int c = 0; c < 4; c++)
            for (int k = 0; k < 64; k++) mean[c] += ws.act[c1][((size_t)n * 4 + c) * 64 + k] / (64.0 * 64.0);
    float *params = malloc(m.n_params * sizeof(float));
    memcpy(params, m.params, m.n_params * sizeof(float));
    float momentum = m.nodes[b1].momentum;
    assert_int_equal(model_copy(&two, &m, NULL), 0);
    assert_int_equal(bn_recalibrate(&m, &d, idx, 64, 64, 1, NULL), 0);
    assert_int_equal(bn_recalibrate(&two, &d, idx, 64, 32, 1, NULL), 0);
    for (int c = 0; c < 4; c++) {
        assert_float_equal(m.buffers[m.nodes[b1].mean_off + (size_t)c], mean[c], 1e-4 * (1 + fabs(mean[c])));
        assert_float_equal(two.buffers[two.nodes[b1].mean_off + (size_t)c], mean[c], 1e-4 * (1 + fabs(mean[c])));
    }
    assert_memory_equal(params, m.params, m.n_params * sizeof(float));
    assert_true(m.nodes[b1].momentum == momentum && two.nodes[b1].momentum == momentum);
    free(params), free(x);
    ws_free(&ws);
    model_free(&two), model_free(&m);
    dataset_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_channel_first),
        cmocka_unit_test(test_dead_channel_first),
        cmocka_unit_test(test_random_scores),
        cmocka_unit_test(test_bn_scale_order),
        cmocka_unit_test(test_duplicate_and_magnitude),
        cmocka_unit_test(test_obs_duplicate_first),
        cmocka_unit_test(test_fisher_quadratic_form),
        cmocka_unit_test(test_consumer_slices),
        cmocka_unit_test(test_slices_without_batchnorm),
        cmocka_unit_test(test_widths_cost_exact),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_select_uniform_limits),
        cmocka_unit_test(test_select_binding_limit),
        cmocka_unit_test(test_scores_not_finite),
        cmocka_unit_test(test_option_applies),
        cmocka_unit_test(test_normalize_applied),
        cmocka_unit_test(test_obs_layer_compensation_helps),
        cmocka_unit_test(test_bn_recalibrate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
