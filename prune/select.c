// select.c: the cost of a narrowed model and the global choice of channels to remove.
//
// A node's MACs and parameters are products of its input and output widths (conv and linear)
// or proportional to its output width (everything else), so the cost of any set of group
// widths follows exactly from the unpruned model's per-node figures.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "criteria.h"

const char *target_kind_name(TargetKind k) {
    switch (k) {
    case TARGET_MACS: return "MACs";
    case TARGET_PARAMS: return "parameters";
    case TARGET_CHANNELS: return "channels";
    }
    return "?";
}

// Fills out_group[i] (m->n_nodes) with the group whose channels node i outputs, or -1.
static void node_out_groups(const Model *m, const GroupSet *gs, int *out_group) {
    for (int i = 0; i < m->n_nodes; i++) out_group[i] = -2;  // -2: not yet known
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        for (int k = 0; k < grp->n_members; k++)
            if (grp->members[k].role != MEMBER_CONSUMER) out_group[grp->members[k].node] = g;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        if (out_group[i] != -2) continue;
        const Node *nd = &m->nodes[i];
        bool makes_channels = nd->op == OP_INPUT || nd->op == OP_CONV2D || nd->op == OP_LINEAR;
        out_group[i] = (makes_channels || nd->n_in == 0) ? -1 : out_group[nd->in[0]];
    }
}

// Ratio of group g's width to its channel count in m (1 for g < 0).
static long double width_ratio(const GroupSet *gs, const int *width, int g) {
    if (g < 0) return 1.0L;
    return (long double)width[g] / (long double)gs->groups[g].n_channels;
}

// widths_cost with og (m->n_nodes) from node_out_groups.
static void cost_of_widths(const Model *m, const GroupSet *gs, const int *og, const int *width, uint64_t *macs,
                           size_t *params) {
    long double total_macs = 0, total_params = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *nd = &m->nodes[i];
        long double fo = width_ratio(gs, width, og[i]);
        bool dense = (nd->op == OP_CONV2D && nd->groups == 1) || nd->op == OP_LINEAR;
        long double fi = dense ? width_ratio(gs, width, og[nd->in[0]]) : 1.0L;
        total_macs += (long double)node_macs(m, i) * fo * fi;
        total_params += (long double)nd->w_len * fo * fi + (long double)nd->b_len * fo;
    }
    *macs = (uint64_t)llroundl(total_macs);
    *params = (size_t)llroundl(total_params);
}

int widths_cost(const Model *m, const GroupSet *gs, const int *width, uint64_t *macs, size_t *params, HpErr *err) {
    int *og = hp_alloc((size_t)m->n_nodes, sizeof(int), err);
    if (!og) return -1;
    node_out_groups(m, gs, og);
    cost_of_widths(m, gs, og, width, macs, params);
    free(og);
    return 0;
}

int pruneref_init(PruneRef *r, const Model *m, const GroupSet *gs, HpErr *err) {
    memset(r, 0, sizeof *r);
    r->channels = hp_alloc((size_t)gs->n_groups, sizeof(int), err);
    if (!r->channels) return -1;
    r->n_groups = gs->n_groups;
    for (int g = 0; g < gs->n_groups; g++) r->channels[g] = gs->groups[g].n_channels;
    if (widths_cost(m, gs, r->channels, &r->macs, &r->params, err) < 0) {
        pruneref_free(r);
        return -1;
    }
    return 0;
}

void pruneref_free(PruneRef *r) {
    free(r->channels);
    memset(r, 0, sizeof *r);
}

// ---- selection ----

// The state of one selection: widths, each group's channels in removal order, and the cost.
typedef struct {
    const Model *m;
    const GroupSet *gs;
    double *const *scores;
    const PruneTarget *t;
    const PruneRef *ref;
    int *width;      // [n_groups] current widths
    int *min_keep;   // [n_groups] fewest channels the caps allow
    int **order;     // [n_groups] prunable groups: channels by ascending score
    int *removed;    // [n_groups] how many of order[g] are removed
    double *unit_cost;  // [n_groups] cost one channel saves (per_cost), else 1
    int *out_group;     // [n_nodes] node_out_groups of m
} Selection;

// The cost the target counts for the given widths.
static double sel_cost(const Selection *s) {
    if (s->t->kind == TARGET_CHANNELS) {
        double c = 0;
        for (int g = 0; g < s->gs->n_groups; g++)
            if (s->gs->groups[g].prunable) c += s->width[g];
        return c;
    }
    uint64_t macs;
    size_t params;
    cost_of_widths(s->m, s->gs, s->out_group, s->width, &macs, &params);
    return s->t->kind == TARGET_MACS ? (double)macs : (double)params;
}

// The reference model's cost the target counts.
static double ref_cost(const Selection *s) {
    if (s->t->kind == TARGET_CHANNELS) {
        double c = 0;
        for (int g = 0; g < s->ref->n_groups; g++)
            if (s->gs->groups[g].prunable) c += s->ref->channels[g];
        return c;
    }
    return s->t->kind == TARGET_MACS ? (double)s->ref->macs : (double)s->ref->params;
}

// Channels a group of width w removes next when kept widths are rounded to multiples of r: the
// remainder down to a multiple of r, else r (1 when the group is no wider than r).
static int unit_at(int w, int r) {
    if (r < 1) r = 1;
    if (w <= r) return 1;
    return (w % r) ? (w % r) : r;
}

// Channels group g removes next under the target's rounding.
static int next_unit(const Selection *s, int g) { return unit_at(s->width[g], s->t->round_to); }

// Mean normalised score of group g's next unit (per unit of cost when asked); INFINITY if the
// caps forbid it.
static double unit_score(const Selection *s, int g, int unit) {
    if (!s->gs->groups[g].prunable || s->width[g] - unit < s->min_keep[g]) return INFINITY;
    double sum = 0;
    for (int k = 0; k < unit; k++) sum += s->scores[g][s->order[g][s->removed[g] + k]];
    return sum / unit / s->unit_cost[g];
}

// Cost one channel of each group saves at the starting widths (1 unless t->per_cost).
static void unit_costs(Selection *s) {
    double full = sel_cost(s);
    for (int g = 0; g < s->gs->n_groups; g++) {
        s->unit_cost[g] = 1;
        if (!s->t->per_cost || !s->gs->groups[g].prunable || s->width[g] < 2) continue;
        s->width[g]--;
        double saved = full - sel_cost(s);
        s->width[g]++;
        if (saved > 0) s->unit_cost[g] = saved;
    }
}

// Scores of one group, for qsort_r-free sorting of channel indices.
typedef struct {
    double score;
    int channel;
} Ranked;

static int ranked_cmp(const void *a, const void *b) {
    const Ranked *x = a, *y = b;
    if (x->score < y->score) return -1;
    if (x->score > y->score) return 1;
    return x->channel - y->channel;  // ties: lower channel first (deterministic)
}

// Fills order[g] with group g's channels by ascending score (finite: scores_finite). Returns 0,
// or -1 with err set (order[g] then NULL).
static int sort_group(const Selection *s, int g, HpErr *err) {
    int n = s->gs->groups[g].n_channels;
    Ranked *r = hp_alloc((size_t)n, sizeof(Ranked), err);
    if (!r) return -1;
    for (int c = 0; c < n; c++) {
        r[c] = (Ranked){s->scores[g][c], c};
    }
    qsort(r, (size_t)n, sizeof(Ranked), ranked_cmp);
    s->order[g] = hp_alloc((size_t)n, sizeof(int), err);
    for (int c = 0; c < n && s->order[g]; c++) s->order[g][c] = r[c].channel;
    free(r);
    return s->order[g] ? 0 : -1;
}

// Fewest channels group g may keep with at most frac of its reference channels removed (frac 1:
// no cap) and kept widths rounded to multiples of r: at least one channel, and at least r where
// the group is wider than that.
static int min_keep_with(const Selection *s, int g, double frac, int r) {
    int ref_c = s->ref->channels[g];
    int keep = (int)ceil((double)ref_c * (1.0 - frac) - 1e-9);
    if (keep < 1) keep = 1;
    if (r > 1 && s->gs->groups[g].n_channels > r && keep < r) keep = r;
    return keep;
}

// Fewest channels group g may keep under the target's cap and rounding.
static int group_min_keep(const Selection *s, int g) { return min_keep_with(s, g, s->t->max_layer_frac, s->t->round_to); }

// The cost the target counts when every prunable group is as narrow as the cap frac and the
// rounding r let the selection make it, from the widths it starts with (the greedy's end when
// it runs out of removable units). Leaves those widths in s->width.
static double floor_cost(Selection *s, double frac, int r) {
    for (int g = 0; g < s->gs->n_groups; g++) {
        int w = s->gs->groups[g].n_channels;
        if (s->gs->groups[g].prunable) {
            int keep = min_keep_with(s, g, frac, r);
            while (w - unit_at(w, r) >= keep) w -= unit_at(w, r);
        }
        s->width[g] = w;
    }
    return sel_cost(s);
}

// The per-layer cap as both the prune option and the sweep key name it.
#define CAP_NAME "--max-layer-frac; max_layer_frac in a sweep config"

// What the selection can reach (as the cost the target counts): as asked, without the cap,
// without the rounding, and without both.
typedef struct {
    double best, no_cap, no_round, neither;
} Reach;

// Writes into why (cap bytes) which limit keeps the cost above goal: the per-layer cap, the
// rounding of widths, both together, or neither (the layers that cannot be pruned and the
// channel every layer keeps), with what could be removed without the binding one.
static void binding_limit(const PruneTarget *t, const Reach *q, double goal, double ref, char *why, size_t cap) {
    double pct_cap = 100 * (1 - q->no_cap / ref), pct_round = 100 * (1 - q->no_round / ref);
    bool rounds = t->round_to > 1, cap_binds = q->no_cap <= goal, round_binds = rounds && q->no_round <= goal;
    if (cap_binds && round_binds)
        snprintf(why, cap, "the per-layer cap of %g (" CAP_NAME ") binds: without it %.1f%% could be removed; without "
                 "the rounding to multiples of %d, %.1f%%", t->max_layer_frac, pct_cap, t->round_to, pct_round);
    else if (cap_binds)
        snprintf(why, cap, "the per-layer cap of %g (" CAP_NAME ") binds: without it %.1f%% could be removed",
                 t->max_layer_frac, pct_cap);
    else if (round_binds)
        snprintf(why, cap, "the rounding of kept widths to multiples of %d binds: without it %.1f%% could be removed",
                 t->round_to, pct_round);
    else if (rounds && q->neither <= goal)
        snprintf(why, cap, "the per-layer cap of %g (" CAP_NAME ") and the rounding to multiples of %d bind together: "
                 "without both %.1f%% could be removed", t->max_layer_frac, t->round_to, 100 * (1 - q->neither / ref));
    else
        snprintf(why, cap, "the layers that cannot be pruned and the channel every layer keeps bind: even without the "
                 "per-layer cap%s at most %.1f%% could be removed", rounds ? " and the rounding" : "",
                 100 * (1 - q->neither / ref));
}

// Fails saying how much of the target's cost can be removed at most, and which limit binds.
static int fail_unreachable(Selection *s, double goal, HpErr *err) {
    const PruneTarget *t = s->t;
    int r = t->round_to > 1 ? t->round_to : 1;
    Reach q = {floor_cost(s, t->max_layer_frac, r), floor_cost(s, 1.0, r), floor_cost(s, t->max_layer_frac, 1),
               floor_cost(s, 1.0, 1)};
    double ref = ref_cost(s);
    char why[400];
    binding_limit(t, &q, goal, ref, why, sizeof why);
    return hp_fail(err, "target: removing %.1f%% of %s is out of reach: at most %.1f%% can be removed; %s",
                   100 * (1 - goal / ref), target_kind_name(t->kind), 100 * (1 - q.best / ref), why);
}

// Removes units, lowest score first, until the cost meets the goal, then gives back the last
// removed units (latest first) that the goal does not need: the greedy's last step can remove a
// wide unit when a narrower earlier one would have sufficed. Returns 0, or -1 with err set if the
// caps run out first (or memory does).
static int select_greedy(Selection *s, double goal, HpErr *err) {
    int cap = 0, n = 0;
    for (int g = 0; g < s->gs->n_groups; g++) cap += s->gs->groups[g].n_channels;
    int *hist_g = hp_alloc((size_t)(cap + 1) * 2, sizeof(int), err);
    bool *blocked = hist_g ? hp_zalloc((size_t)s->gs->n_groups + 1, 1, err) : NULL;  // a later unit stays removed
    if (!blocked) {
        free(hist_g);
        return -1;
    }
    int *hist_u = hist_g + cap + 1;
    double cost = sel_cost(s);
    while (cost > goal) {
        int best_g = -1, best_unit = 0;
        double best = INFINITY;
        for (int g = 0; g < s->gs->n_groups; g++) {
            int unit = next_unit(s, g);
            double v = unit_score(s, g, unit);
            if (v < best) best = v, best_g = g, best_unit = unit;
        }
        if (best_g < 0) {
            free(blocked), free(hist_g);
            return fail_unreachable(s, goal, err);
        }
        s->removed[best_g] += best_unit;
        s->width[best_g] -= best_unit;
        hist_g[n] = best_g, hist_u[n++] = best_unit;
        cost = sel_cost(s);
    }
    for (int k = n - 1; k >= 0; k--) {
        int g = hist_g[k];
        if (blocked[g]) continue;
        s->removed[g] -= hist_u[k], s->width[g] += hist_u[k];
        if (sel_cost(s) <= goal) continue;
        s->removed[g] += hist_u[k], s->width[g] -= hist_u[k];
        blocked[g] = true;
    }
    free(blocked);
    free(hist_g);
    return 0;
}

// Channels group g keeps under a uniform target: round((1 - ratio) x its reference width), to
// the nearest multiple of round_to where the group is wider than that, raised to what the cap
// keeps, at most its width.
static int uniform_keep(const Selection *s, int g) {
    int n = s->gs->groups[g].n_channels, r = s->t->round_to > 1 ? s->t->round_to : 1;
    int keep = (int)lround((1.0 - s->t->ratio) * s->ref->channels[g]);
    if (n > r) keep = r * (int)lround((double)keep / r);
    while (keep < s->min_keep[g]) keep += n > r ? r : 1;
    return keep < n ? keep : n;
}

// Uniform selection: each prunable group keeps uniform_keep channels, its highest scores; fails
// if the fraction itself is above the per-layer cap.
static int select_uniform(Selection *s, HpErr *err) {
    const PruneTarget *t = s->t;
    if (t->ratio > t->max_layer_frac)
        return hp_fail(err, "target: removing %.1f%% of every layer's channels (uniform) is out of reach: the per-layer "
                            "cap of %g (" CAP_NAME ") binds: at most %.1f%% of a layer's channels can be removed",
                       100 * t->ratio, t->max_layer_frac, 100 * t->max_layer_frac);
    for (int g = 0; g < s->gs->n_groups; g++)
        if (s->gs->groups[g].prunable) s->removed[g] = s->gs->groups[g].n_channels - uniform_keep(s, g);
    return 0;
}

// Checks the target's fields.
static int check_target(const PruneTarget *t, HpErr *err) {
    if (!(t->ratio > 0 && t->ratio < 1)) return hp_fail(err, "target: the fraction to remove must be in (0, 1), got %g", t->ratio);
    if (!(t->max_layer_frac > 0 && t->max_layer_frac < 1))
        return hp_fail(err, "target: the per-layer cap must be in (0, 1), got %g", t->max_layer_frac);
    if (t->round_to < 1) return hp_fail(err, "target: round_to must be at least 1, got %d", t->round_to);
    if (t->uniform && t->kind != TARGET_CHANNELS)
        return hp_fail(err, "target: a uniform fraction per layer needs a channel target, not %s", target_kind_name(t->kind));
    return 0;
}

int prune_select(const Model *m, const GroupSet *gs, double *const *scores, const PruneTarget *t,
                 const PruneRef *ref, bool **keep, HpErr *err) {
    if (check_target(t, err) < 0) return -1;
    if (ref->n_groups != gs->n_groups) return hp_fail(err, "target: the reference model has %d channel groups, this one %d", ref->n_groups, gs->n_groups);
    int n_prunable = 0;
    for (int g = 0; g < gs->n_groups; g++) n_prunable += gs->groups[g].prunable;
    if (n_prunable == 0) return hp_fail(err, "the model has no prunable channels (every channel reaches the input or the output)");
    if (scores_finite(gs, scores, err) < 0) return -1;
    size_t ng = (size_t)gs->n_groups;
    Selection s = {.m = m, .gs = gs, .scores = scores, .t = t, .ref = ref};
    s.width = hp_alloc(ng, sizeof(int), err);
    s.min_keep = s.width ? hp_alloc(ng, sizeof(int), err) : NULL;
    s.order = s.min_keep ? hp_zalloc(ng, sizeof(int *), err) : NULL;
    s.removed = s.order ? hp_zalloc(ng, sizeof(int), err) : NULL;
    s.unit_cost = s.removed ? hp_alloc(ng, sizeof(double), err) : NULL;
    s.out_group = s.unit_cost ? hp_alloc((size_t)m->n_nodes, sizeof(int), err) : NULL;
    int rc = s.out_group ? 0 : -1;
    if (rc == 0) node_out_groups(m, gs, s.out_group);
    for (int g = 0; g < gs->n_groups && rc == 0; g++) {
        s.width[g] = gs->groups[g].n_channels;
        s.min_keep[g] = group_min_keep(&s, g);
        if (gs->groups[g].prunable) rc = sort_group(&s, g, err);
    }
    if (rc == 0) {
        unit_costs(&s);
        if (t->uniform)
            rc = select_uniform(&s, err);
        else
            rc = select_greedy(&s, (1.0 - t->ratio) * ref_cost(&s), err);
    }
    for (int g = 0; g < gs->n_groups && rc == 0; g++) {
        for (int c = 0; c < gs->groups[g].n_channels; c++) keep[g][c] = true;
        for (int k = 0; k < s.removed[g]; k++) keep[g][s.order[g][k]] = false;
    }
    for (int g = 0; s.order && g < gs->n_groups; g++) free(s.order[g]);
    free(s.order), free(s.removed), free(s.width), free(s.min_keep), free(s.unit_cost), free(s.out_group);
    return rc;
}
