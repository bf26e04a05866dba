// select.c: the cost of a narrowed model and the global choice of channels to remove.
//
// A node's MACs and parameters are products of its input and output widths (conv and linear)
// or proportional to its output width (everything else), so the cost of any set of group
// widths follows exactly from the unpruned model's per-node figures.
#include <math.h>
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

void widths_cost(const Model *m, const GroupSet *gs, const int *width, uint64_t *macs, size_t *params) {
    int *og = hp_malloc((size_t)m->n_nodes * sizeof(int));
    node_out_groups(m, gs, og);
    long double total_macs = 0, total_params = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *nd = &m->nodes[i];
        long double fo = width_ratio(gs, width, og[i]);
        bool dense = (nd->op == OP_CONV2D && nd->groups == 1) || nd->op == OP_LINEAR;
        long double fi = dense ? width_ratio(gs, width, og[nd->in[0]]) : 1.0L;
        total_macs += (long double)node_macs(m, i) * fo * fi;
        total_params += (long double)nd->w_len * fo * fi + (long double)nd->b_len * fo;
    }
    free(og);
    *macs = (uint64_t)llroundl(total_macs);
    *params = (size_t)llroundl(total_params);
}

void pruneref_init(PruneRef *r, const Model *m, const GroupSet *gs) {
    r->n_groups = gs->n_groups;
    r->channels = hp_malloc((size_t)(gs->n_groups > 0 ? gs->n_groups : 1) * sizeof(int));
    for (int g = 0; g < gs->n_groups; g++) r->channels[g] = gs->groups[g].n_channels;
    widths_cost(m, gs, r->channels, &r->macs, &r->params);
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
    widths_cost(s->m, s->gs, s->width, &macs, &params);
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

// Channels group g removes next: the remainder down to a multiple of round_to, else round_to
// (1 when the group is no wider than round_to).
static int next_unit(const Selection *s, int g) {
    int w = s->width[g], r = s->t->round_to > 1 ? s->t->round_to : 1;
    if (w <= r) return 1;
    return (w % r) ? (w % r) : r;
}

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

// Fills order[g] with group g's channels by ascending score (NaN scores last).
static void sort_group(const Selection *s, int g) {
    int n = s->gs->groups[g].n_channels;
    Ranked *r = hp_malloc((size_t)n * sizeof(Ranked));
    for (int c = 0; c < n; c++) {
        double v = s->scores[g][c];
        r[c] = (Ranked){isnan(v) ? INFINITY : v, c};
    }
    qsort(r, (size_t)n, sizeof(Ranked), ranked_cmp);
    s->order[g] = hp_malloc((size_t)n * sizeof(int));
    for (int c = 0; c < n; c++) s->order[g][c] = r[c].channel;
    free(r);
}

// Fewest channels group g may keep: the cap on the reference width, at least one channel, and
// at least round_to where the group is wider than that.
static int group_min_keep(const Selection *s, int g) {
    int ref_c = s->ref->channels[g], r = s->t->round_to > 1 ? s->t->round_to : 1;
    int keep = (int)ceil((double)ref_c * (1.0 - s->t->max_layer_frac) - 1e-9);
    if (keep < 1) keep = 1;
    if (s->gs->groups[g].n_channels > r && keep < r) keep = r;
    return keep;
}

// Fails with the most the caps allow to remove.
static int fail_unreachable(Selection *s, double goal_frac, HpErr *err) {
    for (int g = 0; g < s->gs->n_groups; g++)
        if (s->gs->groups[g].prunable) s->width[g] = s->min_keep[g];
    double best = 1.0 - sel_cost(s) / ref_cost(s);
    return hp_fail(err,
                   "target: removing %.1f%% of %s is out of reach: with at most %.0f%% of each layer's channels "
                   "removed (--max-layer-frac %g)%s, at most %.1f%% can be removed; the layers that cannot be "
                   "pruned and the kept channels bind",
                   100 * goal_frac, target_kind_name(s->t->kind), 100 * s->t->max_layer_frac, s->t->max_layer_frac,
                   s->t->round_to > 1 ? " and widths rounded to multiples" : "", 100 * best);
}

// Removes units, lowest score first, until the cost meets the goal, then gives back the last
// removed units (latest first) that the goal does not need: the greedy's last step can remove a
// wide unit when a narrower earlier one would have sufficed. Returns 0, or -1 if the caps run
// out first.
static int select_greedy(Selection *s, double goal, HpErr *err) {
    int cap = 0, n = 0;
    for (int g = 0; g < s->gs->n_groups; g++) cap += s->gs->groups[g].n_channels;
    int *hist_g = hp_malloc((size_t)(cap + 1) * 2 * sizeof(int)), *hist_u = hist_g + cap + 1;
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
            free(hist_g);
            return fail_unreachable(s, 1.0 - goal / ref_cost(s), err);
        }
        s->removed[best_g] += best_unit;
        s->width[best_g] -= best_unit;
        hist_g[n] = best_g, hist_u[n++] = best_unit;
        cost = sel_cost(s);
    }
    bool *blocked = calloc((size_t)s->gs->n_groups + 1, 1);  // a later unit of the group stays removed
    HP_ASSERT(blocked);
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

// Uniform selection: each prunable group removes round(ratio x reference width) channels (at
// least one kept), lowest scores first.
static void select_uniform(Selection *s) {
    for (int g = 0; g < s->gs->n_groups; g++) {
        if (!s->gs->groups[g].prunable) continue;
        int want = s->gs->groups[g].n_channels - (int)lround((1.0 - s->t->ratio) * s->ref->channels[g]);
        if (want > s->gs->groups[g].n_channels - 1) want = s->gs->groups[g].n_channels - 1;
        s->removed[g] = want > 0 ? want : 0;
    }
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
    size_t ng = (size_t)gs->n_groups;
    Selection s = {m, gs, scores, t, ref, hp_malloc(ng * sizeof(int)), hp_malloc(ng * sizeof(int)),
                   calloc(ng, sizeof(int *)), calloc(ng, sizeof(int)), hp_malloc(ng * sizeof(double))};
    HP_ASSERT(s.order && s.removed);
    for (int g = 0; g < gs->n_groups; g++) {
        s.width[g] = gs->groups[g].n_channels;
        s.min_keep[g] = group_min_keep(&s, g);
        if (gs->groups[g].prunable) sort_group(&s, g);
    }
    unit_costs(&s);
    int rc = 0;
    if (t->uniform)
        select_uniform(&s);
    else
        rc = select_greedy(&s, (1.0 - t->ratio) * ref_cost(&s), err);
    for (int g = 0; g < gs->n_groups && rc == 0; g++) {
        for (int c = 0; c < gs->groups[g].n_channels; c++) keep[g][c] = true;
        for (int k = 0; k < s.removed[g]; k++) keep[g][s.order[g][k]] = false;
    }
    for (int g = 0; g < gs->n_groups; g++) free(s.order[g]);
    free(s.order), free(s.removed), free(s.width), free(s.min_keep), free(s.unit_cost);
    return rc;
}
