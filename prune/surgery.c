// surgery.c: the smaller dense model a channel selection describes (a new graph and new
// buffers, the source untouched), and the totals that say how much smaller it is.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"

// What survives of one node: its output features and, for a consumer, its input channels.
typedef struct {
    bool has_out, has_in;  // set by a producer or per-channel membership / a consumer membership
    const bool *out_keep;  // over the output group's channels; NULL: every output feature stays
    int out_spread;        // output features per channel of that group
    MemberRole out_role;   // MEMBER_PRODUCER or MEMBER_PERCHANNEL
    const bool *in_keep;   // over the input group's channels; NULL: every weight column stays
    int in_spread;         // weight columns per input channel
} NodePlan;

// Counts the true entries of keep[0..n) (all n when keep is NULL).
static int count_kept(const bool *keep, int n) {
    if (!keep) return n;
    int k = 0;
    for (int c = 0; c < n; c++) k += keep[c] ? 1 : 0;
    return k;
}

// Checks the selection: non-prunable groups keep every channel, prunable ones at least one.
// Returns 0, or -1 with err naming the group.
static int check_keep(const GroupSet *gs, bool *const *keep, HpErr *err) {
    for (int g = 0; keep && g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        int kept = count_kept(keep[g], grp->n_channels);
        if (!grp->prunable && kept != grp->n_channels)
            return hp_fail(err,
                           "group '%s' cannot be pruned (%s): it must keep all %d channels, the selection keeps %d",
                           grp->name, grp->why_not ? grp->why_not : "not prunable", grp->n_channels, kept);
        if (kept == 0)
            return hp_fail(err, "group '%s': the selection keeps none of its %d channels (keep at least 1)", grp->name,
                           grp->n_channels);
    }
    return 0;
}

// Checks that member mb of group g fits its node in src (op, channel count, spread).
// Returns 0, or -1 with err set (the groups were not made from this model).
static int check_member(const Model *src, const ChannelGroup *g, const GroupMember *mb, HpErr *err) {
    if (mb->node <= 0 || mb->node >= src->n_nodes || mb->spread < 1)
        return hp_fail(err, "group '%s': member node %d does not exist in this model", g->name, mb->node);
    const Node *n = &src->nodes[mb->node];
    size_t C = (size_t)g->n_channels * (size_t)mb->spread;
    bool fits = false;
    if (mb->role == MEMBER_PRODUCER)
        fits = (n->op == OP_CONV2D || n->op == OP_LINEAR) && (size_t)n->out_features == C && mb->spread == 1;
    else if (mb->role == MEMBER_PERCHANNEL)
        fits = (n->op == OP_BATCHNORM2D || (n->op == OP_CONV2D && n->groups > 1)) && (size_t)n->out.c == C;
    else if (mb->role == MEMBER_CONSUMER)
        fits = ((n->op == OP_CONV2D && n->groups == 1) || n->op == OP_LINEAR) &&
               n->w_len == (size_t)n->out_features * C;
    if (!fits)
        return hp_fail(err, "group '%s' does not match this model: node '%s' (%s) cannot be that member", g->name,
                       n->name, op_kind_name(n->op));
    return 0;
}

// Records member mb of group g (keeping keep_g) in plan. Returns 0 or -1 with err set.
static int plan_member(const Model *src, const ChannelGroup *g, const GroupMember *mb, const bool *keep_g,
                       NodePlan *plan, HpErr *err) {
    if (check_member(src, g, mb, err) < 0) return -1;
    NodePlan *p = &plan[mb->node];
    bool out = mb->role != MEMBER_CONSUMER;
    if (out ? p->has_out : p->has_in)
        return hp_fail(err, "group '%s': node '%s' is already in another group on that side", g->name,
                       src->nodes[mb->node].name);
    if (out) {
        p->has_out = true;
        p->out_keep = keep_g;
        p->out_spread = mb->spread;
        p->out_role = mb->role;
    } else {
        p->has_in = true;
        p->in_keep = keep_g;
        p->in_spread = mb->spread;
    }
    return 0;
}

// Fills plan[src->n_nodes] from every group's members and keep. Returns 0 or -1 with err set.
static int make_plan(const Model *src, const GroupSet *gs, bool *const *keep, NodePlan *plan, HpErr *err) {
    for (int g = 0; g < gs->n_groups; g++)
        for (int j = 0; j < gs->groups[g].n_members; j++)
            if (plan_member(src, &gs->groups[g], &gs->groups[g].members[j], keep ? keep[g] : NULL, plan, err) < 0)
                return -1;
    return 0;
}

// True if output feature f of the planned node survives.
static bool out_kept(const NodePlan *p, int f) { return !p->out_keep || p->out_keep[f / p->out_spread]; }

// Node i's spec in the pruned graph: fewer outputs for a producer, and for a depthwise conv
// fewer outputs and as many groups. Shapes and parameter views are left to model_add.
static Node pruned_spec(const Model *src, int i, const NodePlan *p) {
    Node s = src->nodes[i];
    if (!p->out_keep || (s.op != OP_CONV2D && s.op != OP_LINEAR)) return s;
    int C = s.out_features / p->out_spread;
    s.out_features = count_kept(p->out_keep, C) * p->out_spread;
    if (p->out_role == MEMBER_PERCHANNEL) s.groups = s.out_features;  // depthwise: one group per channel
    return s;
}

// Copies the kept rows (outputs) and kept column blocks (input channels) of conv or linear
// node i's (O, rowlen) weight, and its kept biases, from src into dst's smaller node i.
static void copy_dense(const Model *src, Model *dst, int i, const NodePlan *p) {
    const Node *sn = &src->nodes[i], *dn = &dst->nodes[i];
    size_t rowlen = sn->w_len / (size_t)sn->out_features, wk = 0, bk = 0;
    int n_in = p->in_keep ? (int)(rowlen / (size_t)p->in_spread) : 0;
    float *w = dst->params + dn->w_off, *b = dst->params + dn->b_off;
    for (int o = 0; o < sn->out_features; o++) {
        if (!out_kept(p, o)) continue;
        const float *row = src->params + sn->w_off + (size_t)o * rowlen;
        if (!p->in_keep) {
            memcpy(w + wk, row, rowlen * sizeof(float));
            wk += rowlen;
        }
        for (int c = 0; c < n_in; c++) {
            if (!p->in_keep[c]) continue;
            size_t sp = (size_t)p->in_spread;
            memcpy(w + wk, row + (size_t)c * sp, sp * sizeof(float));
            wk += sp;
        }
        if (sn->b_len) b[bk++] = src->params[sn->b_off + (size_t)o];
    }
    HP_ASSERT(wk == dn->w_len && bk == dn->b_len);
}

// Copies the kept features of batchnorm node i (gamma, beta, running mean and variance).
static void copy_bn(const Model *src, Model *dst, int i, const NodePlan *p) {
    const Node *sn = &src->nodes[i], *dn = &dst->nodes[i];
    size_t k = 0;
    for (int f = 0; f < sn->out.c; f++) {
        if (!out_kept(p, f)) continue;
        dst->params[dn->w_off + k] = src->params[sn->w_off + (size_t)f];
        dst->params[dn->b_off + k] = src->params[sn->b_off + (size_t)f];
        dst->buffers[dn->mean_off + k] = src->buffers[sn->mean_off + (size_t)f];
        dst->buffers[dn->var_off + k] = src->buffers[sn->var_off + (size_t)f];
        k++;
    }
    HP_ASSERT(k == (size_t)dn->out.c);
}

// Builds and finalizes dst's graph from src's with the planned sizes. Returns 0 or -1.
static int build_graph(const Model *src, const NodePlan *plan, Model *dst, HpErr *err) {
    model_init(dst, src->input, src->n_classes);
    for (int i = 0; i < src->n_nodes; i++) {
        Node s = pruned_spec(src, i, &plan[i]);
        if (model_add(dst, &s, err) < 0) return hp_prefix(err, "pruned graph");
    }
    if (model_finalize(dst, err) < 0) return hp_prefix(err, "pruned graph");
    return 0;
}

int prune_apply(const Model *src, const GroupSet *gs, bool *const *keep, Model *dst, HpErr *err) {
    memset(dst, 0, sizeof *dst);
    if (check_keep(gs, keep, err) < 0) return -1;
    NodePlan *plan = hp_zalloc((size_t)src->n_nodes, sizeof(NodePlan), err);
    if (!plan) return hp_prefix(err, "pruned model");
    if (make_plan(src, gs, keep, plan, err) < 0 || build_graph(src, plan, dst, err) < 0) {
        free(plan);
        model_free(dst);
        return -1;
    }
    for (int i = 0; i < src->n_nodes; i++) {
        OpKind op = src->nodes[i].op;
        if (op == OP_CONV2D || op == OP_LINEAR)
            copy_dense(src, dst, i, &plan[i]);
        else if (op == OP_BATCHNORM2D)
            copy_bn(src, dst, i, &plan[i]);
    }
    free(plan);
    memcpy(dst->arch, src->arch, sizeof dst->arch);
    memcpy(dst->norm_mean, src->norm_mean, sizeof dst->norm_mean);
    memcpy(dst->norm_std, src->norm_std, sizeof dst->norm_std);
    dst->provenance = src->provenance ? strdup(src->provenance) : NULL;
    if (src->provenance && !dst->provenance) {
        model_free(dst);
        return hp_fail(err, "out of memory: cannot copy the provenance");
    }
    return 0;
}

uint64_t model_macs(const Model *m) {
    uint64_t total = 0;
    for (int i = 0; i < m->n_nodes; i++) total += node_macs(m, i);
    return total;
}

size_t model_param_count(const Model *m) {
    size_t total = 0;
    for (int i = 0; i < m->n_nodes; i++) total += node_params(m, i);
    return total;
}
