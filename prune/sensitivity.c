// sensitivity.c: per-group pruning sensitivity and per-group Hessian traces (see sensitivity.h).
#include "sensitivity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/ini_table.h"
#include "pipeline.h"

// Tells the caller a phase starts.
static void phase(const SensOpts *o, const char *name) {
    if (o->phase) o->phase(o->user, name);
}

// ---- traces ----

// Hutchinson diagonal of the Hessian (eval-mode batchnorm) over crit.samples images of a
// seeded permutation of crit.data, crit.probes probes, into diag (n_params).
static int hessian_diag(const SensOpts *o, Model *m, float *diag, int *probes, HpErr *err) {
    if (!o->crit.data || o->crit.data->n == 0) return hp_fail(err, "the trace needs training images");
    CritOpts c = o->crit;
    c.progress = o->progress;
    c.user = o->user;
    return crit_hutchinson_diag(&c, m, false, diag, probes, err);
}

// Sums diag over the distinct parameters of group g's channels into s->trace and s->params.
// mark (n_params, all false) is scratch, left all false. Returns 0, or -1 with err set.
static int group_trace(const Model *m, const ChannelGroup *g, const float *diag, bool *mark, SensGroup *s,
                       HpErr *err) {
    size_t total = 0;
    for (int c = 0; c < g->n_channels; c++) total += group_channel_params(m, g, c, NULL);
    size_t *idx = hp_alloc(total, sizeof(size_t), err), at = 0;
    if (!idx) return -1;
    for (int c = 0; c < g->n_channels; c++) at += group_channel_params(m, g, c, idx + at);
    s->trace = 0;
    s->params = 0;
    for (size_t i = 0; i < at; i++) {
        if (mark[idx[i]]) continue;
        mark[idx[i]] = true;
        s->trace += diag[idx[i]];
        s->params++;
    }
    for (size_t i = 0; i < at; i++) mark[idx[i]] = false;
    free(idx);
    return 0;
}

// ---- pruning one group ----

// Channel c's score, for sorting a group's channel indices (ties: lower channel first).
typedef struct {
    double score;
    int channel;
} Ranked;

// qsort order of Ranked: ascending score, then channel.
static int ranked_cmp(const void *pa, const void *pb) {
    const Ranked *a = pa, *b = pb;
    if (a->score != b->score) return a->score < b->score ? -1 : 1;
    return (a->channel > b->channel) - (a->channel < b->channel);
}

// Channels removed from a group of n at `ratio`: round(ratio n), at most n - 1.
static int channels_removed(double ratio, int n) {
    int k = (int)floor(ratio * n + 0.5);
    return k > n - 1 ? n - 1 : k;
}

// Accuracy of m with the k lowest channels (order[0..k)) of group g removed: on a copy, the
// criterion's compensation for that removal alone, then the channels zeroed (in eval mode the
// function surgery computes). keep is scratch in gs's shape, all true, left all true.
static int accuracy_without(Scorer *sc, const Model *m, const GroupSet *gs, int g, const int *order, int k,
                            bool **keep, const Dataset *test, double *acc, HpErr *err) {
    Model copy;
    if (model_copy(&copy, m, err) < 0) return -1;
    for (int i = 0; i < k; i++) keep[g][order[i]] = false;
    int rc = scorer_compensate(sc, &copy, gs, keep, err);
    for (int i = 0; i < k; i++) keep[g][order[i]] = true;
    if (rc == 0) {
        for (int i = 0; i < k; i++) group_zero_channel(&copy, &gs->groups[g], order[i]);
        double loss;
        rc = model_test(&copy, test, acc, &loss, err);
    }
    model_free(&copy);
    return rc;
}

// Prunes every prunable group alone at every ratio and fills the groups' accuracies.
static int prune_each(const SensOpts *o, Scorer *sc, Model *m, const GroupSet *gs, double **scores,
                      const Dataset *test, SensResult *r, HpErr *err) {
    bool **keep = hp_zalloc((size_t)gs->n_groups + 1, sizeof(bool *), err);
    if (!keep) return -1;
    int rc = 0;
    for (int g = 0; g < gs->n_groups && rc == 0; g++) {
        keep[g] = hp_alloc((size_t)gs->groups[g].n_channels, sizeof(bool), err);
        if (!keep[g]) rc = -1;
        for (int c = 0; c < gs->groups[g].n_channels && rc == 0; c++) keep[g][c] = true;
    }
    long done = 0, total = (long)r->n_groups * r->n_ratios;
    for (int g = 0, s = 0; g < gs->n_groups && rc == 0; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        if (!grp->prunable) continue;
        Ranked *rk = hp_alloc((size_t)grp->n_channels, sizeof *rk, err);
        int *order = rk ? hp_alloc((size_t)grp->n_channels, sizeof(int), err) : NULL;
        if (!order) {
            free(rk);
            rc = -1;
            break;
        }
        for (int c = 0; c < grp->n_channels; c++) rk[c] = (Ranked){scores[g][c], c};
        qsort(rk, (size_t)grp->n_channels, sizeof *rk, ranked_cmp);
        for (int c = 0; c < grp->n_channels; c++) order[c] = rk[c].channel;
        SensGroup *sg = &r->groups[s++];
        for (int i = 0; i < r->n_ratios && rc == 0; i++) {
            int k = channels_removed(o->ratios[i], grp->n_channels);
            sg->removed[i] = k;
            sg->acc[i] = r->acc_orig;
            if (k > 0) rc = accuracy_without(sc, m, gs, g, order, k, keep, test, &sg->acc[i], err);
            if (o->progress) o->progress(++done, total, "evaluations", o->user);
        }
        free(order), free(rk);
    }
    for (int g = 0; g < gs->n_groups; g++) free(keep[g]);
    free(keep);
    return rc;
}

// ---- the analysis ----

// Allocates r's groups (the prunable ones of gs) with their names and channel counts. Returns 0,
// or -1 with err set (r is then empty).
static int alloc_result(const GroupSet *gs, int n_ratios, SensResult *r, HpErr *err) {
    memset(r, 0, sizeof *r);
    for (int g = 0; g < gs->n_groups; g++) r->n_groups += gs->groups[g].prunable;
    if (r->n_groups == 0) return hp_fail(err, "the model has no prunable channel group");
    r->n_ratios = n_ratios;
    r->groups = hp_zalloc((size_t)r->n_groups, sizeof *r->groups, err);
    if (!r->groups) {
        memset(r, 0, sizeof *r);
        return -1;
    }
    for (int g = 0, s = 0; g < gs->n_groups; g++) {
        if (!gs->groups[g].prunable) continue;
        SensGroup *sg = &r->groups[s++];
        snprintf(sg->name, sizeof sg->name, "%s", gs->groups[g].name);
        sg->channels = gs->groups[g].n_channels;
        sg->removed = hp_zalloc((size_t)n_ratios, sizeof(int), err);
        sg->acc = sg->removed ? hp_zalloc((size_t)n_ratios, sizeof(double), err) : NULL;
        if (!sg->acc) {
            sensresult_free(r);
            return -1;
        }
    }
    return 0;
}

// Fills every group's trace from a Hutchinson diagonal.
static int traces(const SensOpts *o, Model *m, const GroupSet *gs, SensResult *r, HpErr *err) {
    float *diag = hp_alloc(m->n_params, sizeof(float), err);
    if (!diag) return -1;
    int rc = hessian_diag(o, m, diag, &r->probes, err);
    bool *mark = rc == 0 ? hp_zalloc(m->n_params, sizeof(bool), err) : NULL;
    if (!mark) rc = -1;
    for (int g = 0, s = 0; g < gs->n_groups && rc == 0; g++)
        if (gs->groups[g].prunable) rc = group_trace(m, &gs->groups[g], diag, mark, &r->groups[s++], err);
    free(mark), free(diag);
    return rc;
}

int sensitivity_check(const SensOpts *o, const Model *m, HpErr *err) {
    if (o->n_ratios < 1) return hp_fail(err, "no ratios");
    for (int i = 0; i < o->n_ratios; i++)
        if (!(o->ratios[i] > 0 && o->ratios[i] < 1)) return hp_fail(err, "ratio %g is not in (0, 1)", o->ratios[i]);
    GroupSet gs;
    if (prune_groups(m, &gs, err) < 0) return -1;
    int prunable = 0;
    for (int g = 0; g < gs.n_groups; g++) prunable += gs.groups[g].prunable;
    int rc = prunable > 0 ? crit_check(o->crit.method, m, &gs, err)
                          : hp_fail(err, "the model has no prunable channel group");
    groupset_free(&gs);
    if (rc == 0 && o->crit.method == CRIT_OBS) rc = fisher_check(m, &o->crit.fisher, err);
    return rc;
}

int sensitivity_run(const SensOpts *o, Model *m, const Dataset *test, SensResult *r, HpErr *err) {
    memset(r, 0, sizeof *r);
    if (sensitivity_check(o, m, err) < 0) return -1;  // before the accuracy and the traces, not after
    if (o->crit.method == CRIT_OBS && o->crit.data && fisher_check_data(m, o->crit.data, &o->crit.fisher, err) < 0)
        return -1;
    GroupSet gs;
    if (prune_groups(m, &gs, err) < 0) return -1;
    if (alloc_result(&gs, o->n_ratios, r, err) < 0) {
        groupset_free(&gs);
        return -1;
    }
    double loss;
    int rc = model_test(m, test, &r->acc_orig, &loss, err);
    if (rc == 0) phase(o, "trace");
    if (rc == 0) rc = traces(o, m, &gs, r, err);
    double **scores = rc == 0 ? hp_zalloc((size_t)gs.n_groups + 1, sizeof(double *), err) : NULL;
    if (!scores) rc = -1;
    for (int g = 0; g < gs.n_groups && rc == 0; g++) {
        scores[g] = hp_zalloc((size_t)gs.groups[g].n_channels, sizeof(double), err);
        if (!scores[g]) rc = -1;
    }
    Scorer sc = {0};
    CritOpts co = o->crit;
    co.progress = o->progress;
    co.user = o->user;
    if (rc == 0) phase(o, "scoring");
    if (rc == 0) rc = scorer_run(&sc, &co, m, &gs, scores, err);
    if (rc == 0) phase(o, "pruning");
    if (rc == 0) rc = prune_each(o, &sc, m, &gs, scores, test, r, err);
    scorer_free(&sc);
    for (int g = 0; scores && g < gs.n_groups; g++) free(scores[g]);
    free(scores);
    groupset_free(&gs);
    if (rc < 0) sensresult_free(r);
    return rc;
}

void sens_drops(const SensResult *r, int g, double *mean, double *max) {
    double sum = 0, worst = -INFINITY;
    for (int i = 0; i < r->n_ratios; i++) {
        double d = r->acc_orig - r->groups[g].acc[i];
        sum += d;
        worst = fmax(worst, d);
    }
    *mean = r->n_ratios > 0 ? sum / r->n_ratios : 0;
    *max = r->n_ratios > 0 ? worst : 0;
}

void sensresult_free(SensResult *r) {
    for (int g = 0; g < r->n_groups; g++) free(r->groups[g].removed), free(r->groups[g].acc);
    free(r->groups);
    memset(r, 0, sizeof *r);
}

// ---- helpers ----

// Parses "a:b:step" into ratios. Returns the count or -1.
static int parse_range(const char *s, double *ratios, int max, HpErr *err) {
    char buf[3][64];
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        size_t len = strcspn(p, ":");
        if (len >= sizeof buf[i] || (i < 2 && p[len] != ':') || (i == 2 && p[len] != '\0'))
            return hp_fail(err, "'%s' is not a:b:step", s);
        memcpy(buf[i], p, len);
        buf[i][len] = '\0';
        p += len + 1;
    }
    double a, b, step;
    // ini_number: the INI reader's grammar (plain decimal, finite; no blanks, '+', hex, inf or nan)
    if (ini_number(buf[0], &a) != 0 || ini_number(buf[1], &b) != 0 || ini_number(buf[2], &step) != 0)
        return hp_fail(err, "'%s' is not a:b:step (three numbers)", s);
    if (!(step > 0)) return hp_fail(err, "'%s': the step must be greater than 0", s);
    if (a > b) return hp_fail(err, "'%s': the start is above the end", s);
    double count = floor((b - a) / step + 1e-9) + 1;
    if (count > max) return hp_fail(err, "'%s' gives %.0f ratios, at most %d", s, count, max);
    for (int i = 0; i < (int)count; i++) ratios[i] = round((a + i * step) * 1e9) / 1e9;
    return (int)count;
}

// Parses a comma list into ratios. Returns the count or -1.
static int parse_list(const char *s, double *ratios, int max, HpErr *err) {
    int n = 0;
    for (const char *p = s;;) {
        size_t len = strcspn(p, ",");
        char tok[64];
        if (len == 0 || len >= sizeof tok) return hp_fail(err, "'%s' is not a comma list of ratios", s);
        memcpy(tok, p, len);
        tok[len] = '\0';
        if (n == max) return hp_fail(err, "'%s': at most %d ratios", s, max);
        if (ini_number(tok, &ratios[n++]) != 0) {
            if (strcmp(tok, s) == 0)  // a list of one
                return hp_fail(err, "'%s' is not a number in (0, 1): a fraction, e.g. 0.5 for 50%%", s);
            return hp_fail(err, "'%s': '%s' is not a number in (0, 1): a fraction, e.g. 0.5 for 50%%", s, tok);
        }
        if (!p[len]) return n;
        p += len + 1;
    }
}

int parse_ratios(const char *s, double *ratios, int max, HpErr *err) {
    int n = strchr(s, ':') ? parse_range(s, ratios, max, err) : parse_list(s, ratios, max, err);
    for (int i = 0; i < n; i++)
        if (!(ratios[i] > 0 && ratios[i] < 1)) return hp_fail(err, "'%s': ratio %g is not in (0, 1)", s, ratios[i]);
    for (int i = 1; i < n; i++)
        for (int j = 0; j < i; j++)
            if (ratios[i] == ratios[j]) return hp_fail(err, "'%s': ratio %g is given twice", s, ratios[i]);
    return n;
}

// Index and value, for ranking.
typedef struct {
    double v;
    int i;
} Valued;

// qsort order of Valued: ascending value.
static int valued_cmp(const void *pa, const void *pb) {
    const Valued *a = pa, *b = pb;
    return (a->v > b->v) - (a->v < b->v);
}

// Fills rank[i] (1-based, ties averaged) of x[0..n). Returns 0, or -1 with err set.
static int ranks(const double *x, int n, double *rank, HpErr *err) {
    Valued *v = hp_alloc((size_t)n, sizeof *v, err);
    if (!v) return -1;
    for (int i = 0; i < n; i++) v[i] = (Valued){x[i], i};
    qsort(v, (size_t)n, sizeof *v, valued_cmp);
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && v[j].v == v[i].v) j++;
        for (int k = i; k < j; k++) rank[v[k].i] = (i + j + 1) / 2.0;
        i = j;
    }
    free(v);
    return 0;
}

int spearman(const double *x, const double *y, int n, double *rho, HpErr *err) {
    *rho = NAN;
    if (n < 2) return 0;
    double *rx = hp_alloc((size_t)n, sizeof(double), err);
    double *ry = rx ? hp_alloc((size_t)n, sizeof(double), err) : NULL;
    if (!ry || ranks(x, n, rx, err) < 0 || ranks(y, n, ry, err) < 0) {
        free(rx), free(ry);
        return -1;
    }
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) mx += rx[i] / n, my += ry[i] / n;
    for (int i = 0; i < n; i++) {
        sxy += (rx[i] - mx) * (ry[i] - my);
        sxx += (rx[i] - mx) * (rx[i] - mx);
        syy += (ry[i] - my) * (ry[i] - my);
    }
    free(rx), free(ry);
    *rho = sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
    return 0;
}
