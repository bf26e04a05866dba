// criteria.c: channel scores. Every criterion reduces to a number per (group, channel) from
// the channel's parameter indices (scored_params: every slice, or its consumers' columns), plus,
// for the curvature criteria, a per-parameter quantity computed once (a Hutchinson diagonal, a
// gradient, an inverse Fisher, layer Hessians).
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../hessian/estimators.h"
#include "../hessian/hvp.h"
#include "criteria.h"

static const char *const CRIT_NAMES[CRIT_COUNT] = {"random", "l1",     "l2",  "bn",  "taylor",
                                                   "hap",    "obd",    "fisher", "obs", "obs-layer"};
static const char *const NORM_NAMES[] = {"auto", "mean", "max", "size", "none"};  // Normalize order

const char *criterion_name(Criterion c) { return (c >= 0 && c < CRIT_COUNT) ? CRIT_NAMES[c] : "?"; }

Criterion criterion_parse(const char *s) {
    for (int c = 0; c < CRIT_COUNT; c++)
        if (strcmp(s, CRIT_NAMES[c]) == 0) return (Criterion)c;
    return CRIT_COUNT;
}

const char *normalize_name(Normalize n) {
    return ((int)n >= 0 && (size_t)n < sizeof NORM_NAMES / sizeof NORM_NAMES[0]) ? NORM_NAMES[n] : "?";
}

int normalize_parse(const char *s) {
    for (size_t i = 0; i < sizeof NORM_NAMES / sizeof NORM_NAMES[0]; i++)
        if (strcmp(s, NORM_NAMES[i]) == 0) return (int)i;
    return -1;
}

bool criterion_compensates(Criterion c) { return c == CRIT_OBS || c == CRIT_OBS_LAYER; }

CritOpts crit_defaults(void) {
    CritOpts o = {0};
    o.method = CRIT_L1;
    o.normalize = NORM_AUTO;
    o.samples = 512;
    o.batch = 128;
    o.probes = 32;
    o.fisher = fisher_defaults();
    // obs prunes in small, heavily damped blocks: with N = 1000 gradients and blocks of 2000, the
    // rest of a block can match every gradient, so a channel's OBS score falls to the order of the
    // damping and the joint update at damp 1e-5 ruins ResNet-20 (docs/pruning_resnet20.md, "OBS in
    // small, damped blocks"); blocks of 100 with damp 1e-2 (about 7 times that Fisher's mean
    // diagonal) do not
    o.fisher.block_size = 100;
    o.fisher.damp = 1e-2;
    o.damp_rel = 0.01;
    o.compensate = true;
    o.seed = 1;
    return o;
}

// NORM_AUTO stands for none for the criteria that estimate a change of the loss (comparable
// across layers as they are), mean for the others.
Normalize crit_normalize(const CritOpts *o) {
    if (o->normalize != NORM_AUTO) return o->normalize;
    switch (o->method) {
    case CRIT_TAYLOR:
    case CRIT_HAP:
    case CRIT_OBD:
    case CRIT_FISHER:
    case CRIT_OBS: return NORM_NONE;
    default: return NORM_MEAN;
    }
}

// ---- shared machinery ----

// Calls f(ctx, w, idx, count) for channel c of group g and returns its value: the loop every
// per-parameter criterion shares. idx is scratch of at least the group's largest channel.
typedef double (*ChannelFn)(const void *ctx, const float *w, const size_t *idx, size_t count);

// Largest parameter count of any channel of g.
static size_t group_max_channel(const Model *m, const ChannelGroup *g) {
    size_t most = 0;
    for (int c = 0; c < g->n_channels; c++) {
        size_t k = group_channel_params(m, g, c, NULL);
        if (k > most) most = k;
    }
    return most;
}

bool criterion_takes_slices(Criterion c) {
    return c == CRIT_L1 || c == CRIT_L2 || c == CRIT_TAYLOR || c == CRIT_HAP || c == CRIT_OBD || c == CRIT_FISHER;
}

bool criterion_reads_samples(Criterion c) {
    return c == CRIT_TAYLOR || c == CRIT_HAP || c == CRIT_OBD || c == CRIT_FISHER || c == CRIT_OBS_LAYER;
}

// True for every criterion (criteria_names' filter).
static bool any_criterion(Criterion c) {
    (void)c;
    return true;
}

// Writes the names of the criteria `which` accepts into buf, separated by ", " and the last by
// last_sep; truncated to cap bytes.
static void list_criteria(char *buf, size_t cap, bool (*which)(Criterion), const char *last_sep) {
    int n = 0, total = 0;
    for (int c = 0; c < CRIT_COUNT; c++) total += which((Criterion)c);
    size_t at = 0;
    buf[0] = 0;
    for (int c = 0; c < CRIT_COUNT && at < cap; c++) {
        if (!which((Criterion)c)) continue;
        const char *sep = n == 0 ? "" : n == total - 1 ? last_sep : ", ";
        int w = snprintf(buf + at, cap - at, "%s%s", sep, criterion_name((Criterion)c));
        at += w > 0 ? (size_t)w : 0;
        n++;
    }
}

void criteria_taking_slices(char *buf, size_t cap) { list_criteria(buf, cap, criterion_takes_slices, " and "); }

void criteria_names(char *buf, size_t cap) { list_criteria(buf, cap, any_criterion, ", "); }

// True for hap and obd (the diagonal's options).
static bool uses_diag(Criterion c) { return c == CRIT_HAP || c == CRIT_OBD; }
// True for obs (its Fisher's options).
static bool uses_fisher(Criterion c) { return c == CRIT_OBS; }
// True for obs-layer (its damping).
static bool uses_layer_damp(Criterion c) { return c == CRIT_OBS_LAYER; }

// The options only some criteria use, by key, and which criteria.
static const struct {
    const char *key;
    bool (*applies)(Criterion);
} ONLY_FOR[] = {
    {"slices", criterion_takes_slices},  {"ggn", uses_diag},           {"probes", uses_diag},
    {"samples", criterion_reads_samples}, {"fisher_grads", uses_fisher}, {"fisher_batch", uses_fisher},
    {"block_size", uses_fisher},         {"damp", uses_fisher},        {"memory_budget", uses_fisher},
    {"layer_damp", uses_layer_damp},     {"compensate", criterion_compensates},
};

bool criterion_option_applies(const char *key, Criterion c, char *users, size_t cap) {
    for (size_t i = 0; i < sizeof ONLY_FOR / sizeof ONLY_FOR[0]; i++) {
        if (strcmp(ONLY_FOR[i].key, key) != 0) continue;
        if (users) list_criteria(users, cap, ONLY_FOR[i].applies, " and ");
        return ONLY_FOR[i].applies(c);
    }
    HP_ASSERT(0 && "a key of ONLY_FOR");
    return true;
}

// true if member mb of g takes part in a channel's score: every member, or with consumers_only
// the consumers (and every member of a group without one).
static bool member_scored(const ChannelGroup *g, const GroupMember *mb, bool consumers_only) {
    if (!consumers_only || mb->role == MEMBER_CONSUMER) return true;
    for (int j = 0; j < g->n_members; j++)
        if (g->members[j].role == MEMBER_CONSUMER) return false;
    return true;
}

// Indices into m->params of what channel c of g is scored on (idx may be NULL to count): every
// slice it touches (group_channel_params), or with consumers_only its consumers' input columns,
// whose zeroing alone removes the channel from the function exactly.
static size_t scored_params(const Model *m, const ChannelGroup *g, int c, bool consumers_only, size_t *idx) {
    if (!consumers_only) return group_channel_params(m, g, c, idx);
    size_t k = 0;
    for (int j = 0; j < g->n_members; j++)
        if (member_scored(g, &g->members[j], true))
            k += member_channel_params(m, &g->members[j], c, idx ? idx + k : NULL);
    return k;
}

// scores[g][c] = f over channel c's scored parameters, for every prunable group. Returns 0, or
// -1 with err set.
static int score_by_params(const Model *m, const GroupSet *gs, bool consumers_only, ChannelFn f, const void *ctx,
                           double **scores, HpErr *err) {
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        if (!grp->prunable) continue;
        size_t *idx = hp_alloc(group_max_channel(m, grp) + 1, sizeof(size_t), err);
        if (!idx) return -1;
        for (int c = 0; c < grp->n_channels; c++) {
            size_t k = scored_params(m, grp, c, consumers_only, idx);
            scores[g][c] = f(ctx, m->params, idx, k);
        }
        free(idx);
    }
    return 0;
}

// Sum of |w_i|.
static double f_l1(const void *ctx, const float *w, const size_t *idx, size_t k) {
    (void)ctx;
    double s = 0;
    for (size_t i = 0; i < k; i++) s += fabs((double)w[idx[i]]);
    return s;
}

// Sum of w_i^2.
static double f_l2(const void *ctx, const float *w, const size_t *idx, size_t k) {
    (void)ctx;
    double s = 0;
    for (size_t i = 0; i < k; i++) s += (double)w[idx[i]] * w[idx[i]];
    return s;
}

// HAP: mean of the diagonal over the channel times its squared norm. ctx is the diagonal.
static double f_hap(const void *ctx, const float *w, const size_t *idx, size_t k) {
    const float *diag = ctx;
    double tr = 0, norm2 = 0;
    for (size_t i = 0; i < k; i++) tr += diag[idx[i]], norm2 += (double)w[idx[i]] * w[idx[i]];
    return k ? tr / (double)k * norm2 : 0;
}

// OBD: 1/2 sum diag_i w_i^2. ctx is the diagonal.
static double f_obd(const void *ctx, const float *w, const size_t *idx, size_t k) {
    const float *diag = ctx;
    double s = 0;
    for (size_t i = 0; i < k; i++) s += 0.5 * diag[idx[i]] * w[idx[i]] * w[idx[i]];
    return s;
}

int *crit_calibration(const CritOpts *o, int *n, HpErr *err) {
    int total = o->data->n;
    int *perm = hp_alloc((size_t)total, sizeof(int), err);
    if (!perm) return NULL;
    for (int i = 0; i < total; i++) perm[i] = i;
    Rng rng;
    rng_seed(&rng, o->seed, 401);
    rng_shuffle(&rng, perm, total);
    *n = o->samples < total ? o->samples : total;
    return perm;
}

// Checks the options a data-driven criterion needs.
static int check_data(const CritOpts *o, const Model *m, HpErr *err) {
    if (!o->data || o->data->n == 0) return hp_fail(err, "criterion %s needs calibration data", criterion_name(o->method));
    if (o->samples < 1 || o->batch < 1) return hp_fail(err, "criterion %s: samples and batch must be at least 1", criterion_name(o->method));
    if (o->data->c != m->input.c || o->data->h != m->input.h || o->data->w != m->input.w)
        return hp_fail(err, "calibration images are %dx%dx%d, the model takes %dx%dx%d", o->data->c, o->data->h,
                       o->data->w, m->input.c, m->input.h, m->input.w);
    return 0;
}

// ---- criteria ----

// Uniform random scores from the seed.
static void score_random(const CritOpts *o, const GroupSet *gs, double **scores) {
    Rng rng;
    rng_seed(&rng, o->seed, 402);
    for (int g = 0; g < gs->n_groups; g++)
        if (gs->groups[g].prunable)
            for (int c = 0; c < gs->groups[g].n_channels; c++) scores[g][c] = rng_uniform(&rng);
}

int crit_check(Criterion method, const Model *m, const GroupSet *gs, HpErr *err) {
    if (method != CRIT_BN) return 0;
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        bool has_bn = false;
        for (int k = 0; k < grp->n_members && !has_bn; k++)
            has_bn = m->nodes[grp->members[k].node].op == OP_BATCHNORM2D;
        if (grp->prunable && !has_bn)
            return hp_fail(err, "criterion bn: channel group '%s' has no batchnorm (use l1, taylor or a Hessian "
                                "criterion)", grp->name);
    }
    return 0;
}

// Sum of |gamma_c| over the group's batchnorms; fails for a group without one (crit_check).
static int score_bn(const Model *m, const GroupSet *gs, double **scores, HpErr *err) {
    if (crit_check(CRIT_BN, m, gs, err) < 0) return -1;
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        if (!grp->prunable) continue;
        for (int c = 0; c < grp->n_channels; c++) scores[g][c] = 0;
        for (int k = 0; k < grp->n_members; k++) {
            const Node *nd = &m->nodes[grp->members[k].node];
            if (nd->op != OP_BATCHNORM2D) continue;
            for (int c = 0; c < grp->n_channels; c++) scores[g][c] += fabsf(m->params[nd->w_off + (size_t)c]);
        }
    }
    return 0;
}

// Taylor: per calibration batch, the gradient g (eval mode); scores[g][c] += (sum w.g)^2,
// then divided by the batch count.
static int score_taylor(const CritOpts *o, Model *m, const GroupSet *gs, double **scores, HpErr *err) {
    int n;
    int *idx = crit_calibration(o, &n, err);
    if (!idx) return -1;
    int batch = o->batch < n ? o->batch : n, n_batches = (n + batch - 1) / batch;
    Workspace ws;
    if (ws_init(&ws, m, batch, 0, err) < 0) {
        free(idx);
        return -1;
    }
    float *x = hp_alloc((size_t)batch * shape_numel(m->input), sizeof(float), err);
    float *dlogits = x ? hp_alloc((size_t)batch * (size_t)m->n_classes, sizeof(float), err) : NULL;
    int *y = dlogits ? hp_alloc((size_t)batch, sizeof(int), err) : NULL;
    float *grad = y ? hp_alloc(m->n_params, sizeof(float), err) : NULL;
    int rc = grad ? 0 : -1;
    for (int g = 0; g < gs->n_groups && rc == 0; g++)
        if (gs->groups[g].prunable) memset(scores[g], 0, (size_t)gs->groups[g].n_channels * sizeof(double));
    for (int b = 0; b < n_batches && rc == 0; b++) {
        int count = (b + 1) * batch <= n ? batch : n - b * batch;
        data_batch(o->data, idx + b * batch, count, m->norm_mean, m->norm_std, NULL, NULL, x, y);
        const float *logits = model_forward(m, &ws, x, count, MODE_EVAL, NULL);
        softmax_xent(logits, y, count, m->n_classes, 0, dlogits, NULL);
        memset(grad, 0, m->n_params * sizeof(float));
        model_backward(m, &ws, dlogits, grad, NULL);
        for (int g = 0; g < gs->n_groups && rc == 0; g++) {
            const ChannelGroup *grp = &gs->groups[g];
            if (!grp->prunable) continue;
            size_t *pi = hp_alloc(group_max_channel(m, grp) + 1, sizeof(size_t), err);
            if (!pi) {
                rc = -1;
                break;
            }
            for (int c = 0; c < grp->n_channels; c++) {
                size_t k = scored_params(m, grp, c, o->consumers_only, pi);
                double s = 0;
                for (size_t i = 0; i < k; i++) s += (double)m->params[pi[i]] * grad[pi[i]];
                scores[g][c] += s * s / n_batches;
            }
            free(pi);
        }
        if (rc == 0 && o->progress) o->progress(b + 1, n_batches, "batches", o->user);
    }
    free(grad), free(y), free(dlogits), free(x), free(idx);
    ws_free(&ws);
    return rc;
}

// Sets up eval-mode curvature products of the given kind over o's calibration images, in batches
// of o->batch (or one image each if per_image: the exact Gauss-Newton passes). 0, or -1 with err.
static int calibration_curv(const CritOpts *o, Model *m, CurvKind kind, bool per_image, Curvature *cv, HpErr *err) {
    int n;
    int *idx = crit_calibration(o, &n, err);
    if (!idx) {
        memset(cv, 0, sizeof *cv);  // empty, as curv_init leaves it on failure
        return -1;
    }
    int batch = per_image ? 1 : o->batch < n ? o->batch : n;
    int rc = curv_init(cv, m, o->data, idx, n, batch, MODE_EVAL, kind, err);
    free(idx);
    return rc;
}

int crit_hutchinson_diag(const CritOpts *o, Model *m, bool ggn, float *diag, int *probes, HpErr *err) {
    Curvature cv;
    if (calibration_curv(o, m, ggn ? CURV_GGN : CURV_HESSIAN, false, &cv, err) < 0) return -1;
    LinOp op = curv_linop(&cv);
    HutchOpts ho = hutch_defaults();
    ho.min_probes = ho.max_probes = o->probes < 2 ? 2 : o->probes;
    ho.progress = o->progress;
    ho.user = o->user;
    HutchOut out = {0};
    out.diag = diag;
    Rng rng;
    rng_seed(&rng, o->seed, 403);
    int rc = hutchinson_trace(&op, NULL, 1, &ho, &rng, &out, err);
    curv_free(&cv);
    if (probes) *probes = out.probes;
    return rc;
}

// HAP summed over the group's members: for each tensor slice channel c touches, the mean of
// the diagonal over the slice times the slice's squared norm (Tr(H_c)/n_c * ||W_c||^2 of that
// member), so a large consumer slice does not dilute a producer's curvature. Returns 0, or -1
// with err set.
static int score_hap(const Model *m, const GroupSet *gs, bool consumers_only, const float *diag, double **scores,
                     HpErr *err) {
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        if (!grp->prunable) continue;
        size_t *idx = hp_alloc(group_max_channel(m, grp) + 1, sizeof(size_t), err);
        if (!idx) return -1;
        for (int c = 0; c < grp->n_channels; c++) {
            scores[g][c] = 0;
            for (int j = 0; j < grp->n_members; j++) {
                if (!member_scored(grp, &grp->members[j], consumers_only)) continue;
                size_t k = member_channel_params(m, &grp->members[j], c, idx);
                scores[g][c] += f_hap(diag, m->params, idx, k);
            }
        }
        free(idx);
    }
    return 0;
}

int crit_ggn_diag(const CritOpts *o, Model *m, float *diag, HpErr *err) {
    Curvature cv;
    if (calibration_curv(o, m, CURV_GGN, true, &cv, err) < 0) return -1;
    int rc = curv_ggn_diag(&cv, diag, o->progress, o->user, err);
    curv_free(&cv);
    return rc;
}

// HAP or OBD from the Hutchinson diagonal of the Hessian, or the exact Gauss-Newton diagonal.
static int score_diag(const CritOpts *o, Model *m, const GroupSet *gs, double **scores, HpErr *err) {
    float *diag = hp_alloc(m->n_params, sizeof(float), err);
    if (!diag) return -1;
    int rc = o->ggn ? crit_ggn_diag(o, m, diag, err) : crit_hutchinson_diag(o, m, false, diag, NULL, err);
    if (rc == 0 && o->method == CRIT_HAP) rc = score_hap(m, gs, o->consumers_only, diag, scores, err);
    if (rc == 0 && o->method == CRIT_OBD) rc = score_by_params(m, gs, o->consumers_only, f_obd, diag, scores, err);
    free(diag);
    return rc;
}

// Every prunable channel's parameter indices, channel after channel, for the Fisher criterion.
typedef struct {
    const float *w;  // the model's parameters
    size_t *idx;     // all channels' indices
    size_t *start;   // [n_ch + 1]: channel j's are idx[start[j] .. start[j + 1])
    size_t n_ch;
    double *acc;     // [threads][n_ch]: sums of (w_Q . g)^2
} ChannelQuads;

// acc[t][j] += (w_Qj . g)^2 for every channel j.
static void add_channel_quads(void *ctx, int t, const float *g) {
    ChannelQuads *q = ctx;
    double *acc = q->acc + (size_t)t * q->n_ch;
    for (size_t j = 0; j < q->n_ch; j++) {
        double dot = 0;
        for (size_t i = q->start[j]; i < q->start[j + 1]; i++) dot += (double)q->w[q->idx[i]] * g[q->idx[i]];
        acc[j] += dot * dot;
    }
}

// Fills q's channel index lists: every prunable channel of gs, group after group. Returns 0, or
// -1 with err set (q->idx and q->start then NULL).
static int channel_lists(const Model *m, const GroupSet *gs, bool consumers_only, ChannelQuads *q, HpErr *err) {
    size_t total = 0, j = 0, at = 0;
    for (int g = 0; g < gs->n_groups; g++)
        for (int c = 0; gs->groups[g].prunable && c < gs->groups[g].n_channels; c++)
            q->n_ch++, total += scored_params(m, &gs->groups[g], c, consumers_only, NULL);
    q->idx = hp_alloc(total + 1, sizeof(size_t), err);
    q->start = q->idx ? hp_alloc(q->n_ch + 1, sizeof(size_t), err) : NULL;
    if (!q->start) {
        free(q->idx);
        q->idx = NULL;
        return -1;
    }
    for (int g = 0; g < gs->n_groups; g++)
        for (int c = 0; gs->groups[g].prunable && c < gs->groups[g].n_channels; c++) {
            q->start[j++] = at;
            at += scored_params(m, &gs->groups[g], c, consumers_only, q->idx + at);
        }
    q->start[j] = at;
    return 0;
}

// Fisher: scores[g][c] = 1/2 w_Q^T G w_Q = 1/2 mean over images of sum_k (w_Q . J^T a_k)^2 for
// channel c's parameters Q, from the exact Gauss-Newton factor gradients (no probes).
static int score_fisher(const CritOpts *o, Model *m, const GroupSet *gs, double **scores, HpErr *err) {
    ChannelQuads q = {.w = m->params};
    if (channel_lists(m, gs, o->consumers_only, &q, err) < 0) return -1;
    int T = omp_get_max_threads(), n = 0;
    q.acc = hp_zalloc((size_t)T * q.n_ch + 1, sizeof(double), err);
    if (!q.acc) {
        free(q.idx), free(q.start);
        return -1;
    }
    Curvature cv;
    int rc = calibration_curv(o, m, CURV_GGN, true, &cv, err);
    if (rc == 0) {
        n = cv.n;
        rc = curv_ggn_grads(&cv, T, add_channel_quads, &q, o->progress, o->user, err);
        curv_free(&cv);
    }
    size_t j = 0;
    for (int g = 0; g < gs->n_groups && rc == 0; g++)
        for (int c = 0; gs->groups[g].prunable && c < gs->groups[g].n_channels; c++, j++) {
            double sum = 0;
            for (int t = 0; t < T; t++) sum += q.acc[(size_t)t * q.n_ch + j];
            scores[g][c] = 0.5 * sum / n;
        }
    free(q.idx), free(q.start), free(q.acc);
    return rc;
}

// Group OBS scores from the WoodFisher inverse (kept in s for the update).
static int score_obs(Scorer *s, Model *m, const GroupSet *gs, double **scores, HpErr *err) {
    Rng rng;
    rng_seed(&rng, s->o.seed, 404);
    if (fisher_build(m, s->o.data, &s->o.fisher, &rng, s->o.progress, s->o.user, &s->fisher, err) < 0) return -1;
    s->has_fisher = true;
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        if (!grp->prunable) continue;
        size_t *idx = hp_alloc(group_max_channel(m, grp) + 1, sizeof(size_t), err);
        if (!idx) return -1;
        int rc = 0;
        for (int c = 0; c < grp->n_channels && rc == 0; c++) {
            size_t k = group_channel_params(m, grp, c, idx);
            rc = obs_score(&s->fisher, m->params, idx, k, &scores[g][c], err);
        }
        free(idx);
        if (rc < 0) return -1;
    }
    return 0;
}

// Lists the consumer nodes of prunable groups (conv with groups 1, linear) once each, with the
// group and column block each reads; returns the count.
static int consumer_nodes(const GroupSet *gs, int *nodes, int *group, int *block, int cap) {
    int n = 0;
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        if (!grp->prunable) continue;
        for (int k = 0; k < grp->n_members; k++) {
            if (grp->members[k].role != MEMBER_CONSUMER || n >= cap) continue;
            nodes[n] = grp->members[k].node, group[n] = g, block[n] = grp->members[k].spread, n++;
        }
    }
    return n;
}

// Layer-wise OBS: scores[g][c] = sum over g's consumers of the cost of removing input channel
// c there (with compensation of the consumer's other columns).
static int score_obs_layer(Scorer *s, Model *m, const GroupSet *gs, double **scores, HpErr *err) {
    int cap = m->n_nodes, *nodes = hp_alloc((size_t)cap * 3, sizeof(int), err);
    if (!nodes) return -1;
    int *group = nodes + cap, *block = nodes + 2 * cap;
    int nc = consumer_nodes(gs, nodes, group, block, cap), n;
    int *idx = crit_calibration(&s->o, &n, err);
    s->layers = idx ? hp_zalloc((size_t)nc, sizeof(LayerHessian), err) : NULL;
    s->layer_of_node = s->layers ? hp_alloc((size_t)m->n_nodes, sizeof(int), err) : NULL;
    if (!s->layer_of_node) {
        free(s->layers), free(idx), free(nodes);
        s->layers = NULL;
        return -1;
    }
    int rc = nc ? layer_hessians(m, s->o.data, idx, n, s->o.batch < n ? s->o.batch : n, nodes, nc, s->layers, err) : 0;
    free(idx);
    if (rc == 0) s->n_layers = nc;
    for (int i = 0; i < m->n_nodes; i++) s->layer_of_node[i] = -1;
    for (int g = 0; g < gs->n_groups; g++)
        if (gs->groups[g].prunable) memset(scores[g], 0, (size_t)gs->groups[g].n_channels * sizeof(double));
    for (int l = 0; l < nc && rc == 0; l++) {
        const Node *nd = &m->nodes[nodes[l]];
        s->layer_of_node[nodes[l]] = l;
        int n_ch = gs->groups[group[l]].n_channels;
        double *sc = hp_alloc((size_t)n_ch, sizeof(double), err);
        if (!sc) {
            rc = -1;
            break;
        }
        rc = layer_obs_scores(&s->layers[l], m->params + nd->w_off, nd->out_features, block[l], s->o.damp_rel, sc, err);
        for (int c = 0; c < n_ch && rc == 0; c++) scores[group[l]][c] += sc[c];
        free(sc);
    }
    free(nodes);
    return rc;
}

// Divides each prunable group's scores by its normaliser.
static void normalise(const Model *m, const GroupSet *gs, Normalize how, bool consumers_only, double **scores) {
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        if (!grp->prunable || how == NORM_NONE) continue;
        double sum = 0, most = 0;
        for (int c = 0; c < grp->n_channels; c++) {
            double a = fabs(scores[g][c]);
            sum += a;
            if (a > most) most = a;
        }
        for (int c = 0; c < grp->n_channels; c++) {
            double d = how == NORM_MEAN ? sum / grp->n_channels
                     : how == NORM_MAX  ? most
                                        : (double)scored_params(m, grp, c, consumers_only, NULL);
            if (d > 0) scores[g][c] /= d;
        }
    }
}

int scores_finite(const GroupSet *gs, double *const *scores, HpErr *err) {
    for (int g = 0; g < gs->n_groups; g++)
        for (int c = 0; gs->groups[g].prunable && c < gs->groups[g].n_channels; c++)
            if (!isfinite(scores[g][c]))
                return hp_fail(err, "the scores are not finite (channel %d of %s: %s), so they cannot rank the channels",
                               c, gs->groups[g].name, isnan(scores[g][c]) ? "NaN" : scores[g][c] > 0 ? "+inf" : "-inf");
    return 0;
}

int scorer_run(Scorer *s, const CritOpts *o, Model *m, const GroupSet *gs, double **scores, HpErr *err) {
    memset(s, 0, sizeof *s);
    s->o = *o;
    if (o->consumers_only && !criterion_takes_slices(o->method)) {
        char names[128];
        criteria_taking_slices(names, sizeof names);
        return hp_fail(err, "scoring on the consumers' columns applies to %s, not %s", names, criterion_name(o->method));
    }
    bool needs_data = criterion_reads_samples(o->method) || o->method == CRIT_OBS;  // obs: its Fisher's gradients
    if (needs_data && check_data(o, m, err) < 0) return -1;
    int rc = 0;
    switch (o->method) {
    case CRIT_RANDOM: score_random(o, gs, scores); break;
    case CRIT_L1: rc = score_by_params(m, gs, o->consumers_only, f_l1, NULL, scores, err); break;
    case CRIT_L2: rc = score_by_params(m, gs, o->consumers_only, f_l2, NULL, scores, err); break;
    case CRIT_BN: rc = score_bn(m, gs, scores, err); break;
    case CRIT_TAYLOR: rc = score_taylor(o, m, gs, scores, err); break;
    case CRIT_HAP:
    case CRIT_OBD: rc = score_diag(o, m, gs, scores, err); break;
    case CRIT_FISHER: rc = score_fisher(o, m, gs, scores, err); break;
    case CRIT_OBS: rc = score_obs(s, m, gs, scores, err); break;
    case CRIT_OBS_LAYER: rc = score_obs_layer(s, m, gs, scores, err); break;
    default: return hp_fail(err, "unknown criterion %d", (int)o->method);
    }
    if (rc == 0) normalise(m, gs, crit_normalize(o), o->consumers_only, scores);
    if (rc == 0 && scores_finite(gs, scores, err) < 0) {
        char who[64];
        snprintf(who, sizeof who, "criterion %s", criterion_name(o->method));
        rc = hp_prefix(err, who);
    }
    return rc;
}

// ---- compensation ----

static int size_cmp(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

// OBS: one joint update for every parameter of every removed channel (duplicates merged: a
// conv weight can belong to a removed output channel and a removed input channel).
static int compensate_obs(Scorer *s, Model *m, const GroupSet *gs, bool *const *keep, HpErr *err) {
    size_t q = 0;
    for (int g = 0; g < gs->n_groups; g++)
        for (int c = 0; c < gs->groups[g].n_channels; c++)
            if (!keep[g][c]) q += group_channel_params(m, &gs->groups[g], c, NULL);
    if (q == 0) return 0;
    size_t *Q = hp_alloc(q, sizeof(size_t), err), at = 0;
    if (!Q) return -1;
    for (int g = 0; g < gs->n_groups; g++)
        for (int c = 0; c < gs->groups[g].n_channels; c++)
            if (!keep[g][c]) at += group_channel_params(m, &gs->groups[g], c, Q + at);
    qsort(Q, q, sizeof(size_t), size_cmp);
    size_t u = 0;
    for (size_t i = 0; i < q; i++)
        if (u == 0 || Q[i] != Q[u - 1]) Q[u++] = Q[i];
    float *delta = hp_zalloc(m->n_params, sizeof(float), err);
    if (!delta) {
        free(Q);
        return -1;
    }
    int rc = obs_update(&s->fisher, m->params, Q, u, delta, err);
    if (rc == 0) {
        for (size_t i = 0; i < m->n_params; i++) m->params[i] += delta[i];
        for (size_t i = 0; i < u; i++) m->params[Q[i]] = 0;
    }
    free(delta), free(Q);
    return rc;
}

// Layer-wise OBS: at every consumer, the removed input channels go jointly with the optimal
// update of the kept columns.
static int compensate_obs_layer(Scorer *s, Model *m, const GroupSet *gs, bool *const *keep, HpErr *err) {
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        int *ch = hp_alloc((size_t)grp->n_channels, sizeof(int), err), k = 0;
        if (!ch) return -1;
        for (int c = 0; c < grp->n_channels; c++)
            if (!keep[g][c]) ch[k++] = c;
        for (int j = 0; j < grp->n_members && k > 0; j++) {
            const GroupMember *mb = &grp->members[j];
            int l = mb->role == MEMBER_CONSUMER ? s->layer_of_node[mb->node] : -1;
            if (l < 0) continue;
            const Node *nd = &m->nodes[mb->node];
            double pred;
            if (layer_obs_remove(&s->layers[l], m->params + nd->w_off, nd->out_features, mb->spread, s->o.damp_rel,
                                 ch, k, true, &pred, err) < 0) {
                free(ch);
                return -1;
            }
        }
        free(ch);
    }
    return 0;
}

int scorer_compensate(Scorer *s, Model *m, const GroupSet *gs, bool *const *keep, HpErr *err) {
    if (!s->o.compensate) return 0;
    if (s->o.method == CRIT_OBS && s->has_fisher) return compensate_obs(s, m, gs, keep, err);
    if (s->o.method == CRIT_OBS_LAYER && s->layer_of_node) return compensate_obs_layer(s, m, gs, keep, err);
    return 0;
}

void scorer_free(Scorer *s) {
    if (s->has_fisher) fisher_free(&s->fisher);
    for (int l = 0; l < s->n_layers; l++) layer_hessian_free(&s->layers[l]);
    free(s->layers);
    free(s->layer_of_node);
    memset(s, 0, sizeof *s);
}
