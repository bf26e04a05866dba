// groups.c: channel groups by dependency analysis over the model graph. Every node's output
// lies in a "channel space". A producer (conv with groups 1, linear) opens a new space for its
// outputs; ops that keep channels apart (batchnorm, relu, pooling, dropout, flatten, depthwise
// conv) pass their input's space on; an Add merges the spaces of its two inputs (union-find).
// Once the walk is done, every set of merged spaces is one group.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"

// One channel space while the graph is walked: a union-find element.
typedef struct {
    int parent;           // union-find parent (itself for a root)
    int origin;           // node that opened it; a root holds the smallest origin of its set
    int n_channels;
    const char *why_not;  // on a root: why the set is not prunable, NULL while it is
} Space;

// A membership found during the walk, resolved to its group at the end.
typedef struct {
    int space;
    GroupMember mb;
} RawMember;

// The state of one walk over the graph (all arrays sized by the node count).
typedef struct {
    Space *spaces;    // [n_nodes] at most one opened per node, in node order
    int n_spaces;
    int *space_of;    // [n_nodes] the space of node i's output
    int *mult;        // [n_nodes] features per channel in node i's output (1; H*W after a flatten)
    RawMember *raw;   // [2 n_nodes] a node is at most the producer of one space, consumer of another
    int n_raw;
} Walk;

// Root of e's set (path halving).
static int space_find(Walk *w, int e) {
    while (w->spaces[e].parent != e) {
        w->spaces[e].parent = w->spaces[w->spaces[e].parent].parent;
        e = w->spaces[e].parent;
    }
    return e;
}

// Opens a new space of n_channels channels for node's output; returns its id.
static int space_open(Walk *w, int node, int n_channels) {
    int e = w->n_spaces++;
    w->spaces[e] = (Space){.parent = e, .origin = node, .n_channels = n_channels, .why_not = NULL};
    return e;
}

// Marks e's set not prunable for `why` (the first reason given stays).
static void space_block(Walk *w, int e, const char *why) {
    Space *r = &w->spaces[space_find(w, e)];
    if (!r->why_not) r->why_not = why;
}

// Merges the sets of a and b at the Add `node` (the lower id, i.e. the earlier origin, becomes
// the root). Returns the root, or -1 with err set if their channel counts differ.
static int space_join(Walk *w, const Model *m, int node, int a, int b, HpErr *err) {
    int ra = space_find(w, a), rb = space_find(w, b);
    if (ra == rb) return ra;
    if (w->spaces[ra].n_channels != w->spaces[rb].n_channels)
        return hp_fail(err, "node '%s': adds the %d channels of '%s' to the %d channels of '%s'", m->nodes[node].name,
                       w->spaces[ra].n_channels, m->nodes[w->spaces[ra].origin].name, w->spaces[rb].n_channels,
                       m->nodes[w->spaces[rb].origin].name);
    if (rb < ra) {
        int t = ra;
        ra = rb;
        rb = t;
    }
    w->spaces[rb].parent = ra;
    if (!w->spaces[ra].why_not) w->spaces[ra].why_not = w->spaces[rb].why_not;
    return ra;
}

// Records that node is a member of space e in the given role.
static void add_member(Walk *w, int e, int node, MemberRole role, int spread) {
    w->raw[w->n_raw++] = (RawMember){.space = e, .mb = {.node = node, .role = role, .spread = spread}};
}

// True if node n (whose input has in_c channels) is a depthwise conv: one filter per channel.
static bool is_depthwise(const Node *n, int in_c) {
    return n->op == OP_CONV2D && n->groups > 1 && n->groups == in_c && n->out_features == in_c;
}

// Node i passes its input's space on, with `mult` features per channel.
static void pass_through(Walk *w, int i, int in, int mult) {
    w->space_of[i] = w->space_of[in];
    w->mult[i] = mult;
}

// Node i (a conv or a linear) opens a new space for its outputs, as their producer.
static void open_as_producer(Walk *w, const Model *m, int i) {
    w->space_of[i] = space_open(w, i, m->nodes[i].out_features);
    w->mult[i] = 1;
    add_member(w, w->space_of[i], i, MEMBER_PRODUCER, 1);
}

// Places node i's output in a space and records node i's memberships. Returns 0 or -1.
static int visit(Walk *w, const Model *m, int i, HpErr *err) {
    const Node *n = &m->nodes[i];
    int in = n->in[0];
    Shape s = in >= 0 ? m->nodes[in].out : m->input;
    switch (n->op) {
    case OP_INPUT:
        w->space_of[i] = space_open(w, i, m->input.c);
        w->mult[i] = 1;
        space_block(w, w->space_of[i], "network input");
        return 0;
    case OP_CONV2D:
        if (n->groups == 1) {  // producer first, then consumer: members stay sorted by (node, role)
            open_as_producer(w, m, i);
            add_member(w, w->space_of[in], i, MEMBER_CONSUMER, w->mult[in] * n->kernel * n->kernel);
        } else if (is_depthwise(n, s.c)) {
            pass_through(w, i, in, w->mult[in]);
            add_member(w, w->space_of[i], i, MEMBER_PERCHANNEL, w->mult[i]);
        } else {  // channel c of a group mixes with its group's other channels only
            space_block(w, w->space_of[in], "grouped convolution");
            open_as_producer(w, m, i);
            space_block(w, w->space_of[i], "grouped convolution");
        }
        return 0;
    case OP_LINEAR:
        open_as_producer(w, m, i);
        add_member(w, w->space_of[in], i, MEMBER_CONSUMER, w->mult[in]);
        return 0;
    case OP_BATCHNORM2D:
        pass_through(w, i, in, w->mult[in]);
        add_member(w, w->space_of[i], i, MEMBER_PERCHANNEL, w->mult[i]);
        return 0;
    case OP_FLATTEN:  // channel c becomes features [c*H*W, (c+1)*H*W) (times what it already spread to)
        pass_through(w, i, in, w->mult[in] * s.h * s.w);
        return 0;
    case OP_ADD:
        if (w->mult[in] != w->mult[n->in[1]])
            return hp_fail(err, "node '%s': adds a flattened map to one that is not (channel layouts differ)", n->name);
        if (space_join(w, m, i, w->space_of[in], w->space_of[n->in[1]], err) < 0) return -1;
        pass_through(w, i, in, w->mult[in]);
        return 0;
    case OP_RELU:
    case OP_MAXPOOL2D:
    case OP_AVGPOOL2D:
    case OP_GLOBAL_AVGPOOL:
    case OP_DROPOUT:
        pass_through(w, i, in, w->mult[in]);
        return 0;
    default:
        return hp_fail(err, "node '%s': op '%s' is not known to the channel analysis", n->name, op_kind_name(n->op));
    }
}

// Checks that every node's output is its space's channels times its spread, and that every
// member's weights split into the group's channels. Returns 0 or -1 with err set.
static int check_layout(Walk *w, const Model *m, HpErr *err) {
    for (int i = 0; i < m->n_nodes; i++) {
        const Space *r = &w->spaces[space_find(w, w->space_of[i])];
        if (m->nodes[i].out.c != r->n_channels * w->mult[i])
            return hp_fail(err, "node '%s': %d output features are not %d channels of '%s' times %d", m->nodes[i].name,
                           m->nodes[i].out.c, r->n_channels, m->nodes[r->origin].name, w->mult[i]);
    }
    for (int k = 0; k < w->n_raw; k++) {
        const RawMember *rm = &w->raw[k];
        const Node *n = &m->nodes[rm->mb.node];
        int C = w->spaces[space_find(w, rm->space)].n_channels;
        size_t rows = (size_t)(n->op == OP_BATCHNORM2D ? n->out.c : n->out_features);
        size_t per = rm->mb.role == MEMBER_CONSUMER ? n->w_len / rows : rows;  // weight columns, or features
        if (n->w_len == 0 || per != (size_t)C * (size_t)rm->mb.spread)
            return hp_fail(err, "node '%s': its weights (%zu values) do not split into %d channels of %d (is the model "
                                "finalized?)", n->name, n->w_len, C, rm->mb.spread);
    }
    return 0;
}

// Turns the walk's sets into gs->groups, ordered by their first producer (input first). Returns
// 0, or -1 with err set (gs is then empty).
static int collect_groups(Walk *w, const Model *m, GroupSet *gs, HpErr *err) {
    int *group_of = hp_alloc((size_t)w->n_spaces, sizeof(int), err);
    if (!group_of) return -1;
    gs->n_groups = 0;
    for (int e = 0; e < w->n_spaces; e++) group_of[e] = space_find(w, e) == e ? gs->n_groups++ : -1;
    gs->groups = hp_zalloc((size_t)gs->n_groups, sizeof(ChannelGroup), err);
    if (!gs->groups) {
        free(group_of);
        gs->n_groups = 0;
        return -1;
    }
    for (int e = 0; e < w->n_spaces; e++) {
        if (group_of[e] < 0) continue;
        ChannelGroup *g = &gs->groups[group_of[e]];
        snprintf(g->name, sizeof g->name, "%s", m->nodes[w->spaces[e].origin].name);
        g->n_channels = w->spaces[e].n_channels;
        g->why_not = w->spaces[e].why_not;
        g->prunable = g->why_not == NULL;
    }
    for (int k = 0; k < w->n_raw; k++) gs->groups[group_of[space_find(w, w->raw[k].space)]].n_members++;
    for (int g = 0; g < gs->n_groups; g++) {
        gs->groups[g].members = hp_alloc((size_t)gs->groups[g].n_members, sizeof(GroupMember), err);
        gs->groups[g].n_members = 0;
        if (!gs->groups[g].members) {
            free(group_of);
            groupset_free(gs);
            return -1;
        }
    }
    for (int k = 0; k < w->n_raw; k++) {  // raw members are in node order, so each group's are too
        ChannelGroup *g = &gs->groups[group_of[space_find(w, w->raw[k].space)]];
        g->members[g->n_members++] = w->raw[k].mb;
    }
    free(group_of);
    return 0;
}

int prune_groups(const Model *m, GroupSet *gs, HpErr *err) {
    memset(gs, 0, sizeof *gs);
    if (m->n_nodes < 2 || m->nodes[0].op != OP_INPUT) return hp_fail(err, "graph has no layers");
    size_t n = (size_t)m->n_nodes;
    Walk w = {.spaces = hp_alloc(n, sizeof(Space), err)};
    w.space_of = w.spaces ? hp_alloc(n, sizeof(int), err) : NULL;
    w.mult = w.space_of ? hp_alloc(n, sizeof(int), err) : NULL;
    w.raw = w.mult ? hp_alloc(2 * n, sizeof(RawMember), err) : NULL;
    int rc = w.raw ? 0 : -1;
    for (int i = 0; i < m->n_nodes && rc == 0; i++) rc = visit(&w, m, i, err);
    if (rc == 0) {
        space_block(&w, w.space_of[m->n_nodes - 1], "network output");
        rc = check_layout(&w, m, err);
    }
    if (rc == 0) rc = collect_groups(&w, m, gs, err);
    free(w.spaces);
    free(w.space_of);
    free(w.mult);
    free(w.raw);
    return rc;
}

void groupset_free(GroupSet *gs) {
    for (int g = 0; g < gs->n_groups; g++) free(gs->groups[g].members);
    free(gs->groups);
    memset(gs, 0, sizeof *gs);
}

// ---- the parameters of one channel ----

// The slices of node n's parameters that carry output channel c of a producer or per-channel
// member with `spread` features per channel: weights [*w0, *w0 + *wn), biases [*b0, *b0 + *bn).
static void out_slices(const Node *n, int spread, int c, size_t *w0, size_t *wn, size_t *b0, size_t *bn) {
    size_t feats = (size_t)(n->op == OP_BATCHNORM2D ? n->out.c : n->out_features);
    size_t per = n->w_len / feats;  // weights per output feature: a row, a filter, a gamma
    *w0 = n->w_off + (size_t)c * (size_t)spread * per;
    *wn = (size_t)spread * per;
    *b0 = n->b_off + (size_t)c * (size_t)spread;
    *bn = n->b_len ? (size_t)spread : 0;
}

// Writes (if idx is not NULL) start, start+1, ..., start+len-1 at idx[k]; returns k + len.
static size_t emit(size_t *idx, size_t k, size_t start, size_t len) {
    if (idx)
        for (size_t j = 0; j < len; j++) idx[k + j] = start + j;
    return k + len;
}

// Emits the columns consumer node n reads input channel c through, for output rows
// [o_begin, o_end): weight[o][c*spread .. (c+1)*spread) of the (O, rowlen) weight.
static size_t emit_consumer(const Node *n, int spread, int c, int o_begin, int o_end, size_t *idx, size_t k) {
    size_t rowlen = n->w_len / (size_t)n->out_features;
    for (int o = o_begin; o < o_end; o++)
        k = emit(idx, k, n->w_off + (size_t)o * rowlen + (size_t)c * (size_t)spread, (size_t)spread);
    return k;
}

// Emits, ascending, what member mb touches for channel c; when next (the same node as the
// consumer of the same group, so a node that reads and writes channel c) is not NULL, both.
static size_t emit_member(const Model *m, const GroupMember *mb, const GroupMember *next, int c, size_t *idx,
                          size_t k) {
    const Node *n = &m->nodes[mb->node];
    if (mb->role == MEMBER_CONSUMER) return emit_consumer(n, mb->spread, c, 0, n->out_features, idx, k);
    size_t w0, wn, b0, bn;
    out_slices(n, mb->spread, c, &w0, &wn, &b0, &bn);
    if (!next) return emit(idx, emit(idx, k, w0, wn), b0, bn);
    // rows before c, row c whole (it holds column block c), rows after c, then bias c
    k = emit_consumer(n, next->spread, c, 0, c, idx, k);
    k = emit(idx, k, w0, wn);
    k = emit_consumer(n, next->spread, c, c + 1, n->out_features, idx, k);
    return emit(idx, k, b0, bn);
}

size_t member_channel_params(const Model *m, const GroupMember *mb, int c, size_t *idx) {
    return emit_member(m, mb, NULL, c, idx, 0);
}

size_t group_channel_params(const Model *m, const ChannelGroup *g, int c, size_t *idx) {
    HP_ASSERT(c >= 0 && c < g->n_channels);
    size_t k = 0;
    for (int j = 0; j < g->n_members; j++) {
        const GroupMember *mb = &g->members[j];
        // members are sorted by (node, role): a producer directly followed by itself as consumer
        bool pair = j + 1 < g->n_members && g->members[j + 1].node == mb->node;
        k = emit_member(m, mb, pair ? &g->members[j + 1] : NULL, c, idx, k);
        if (pair) j++;
    }
    return k;
}

void group_zero_channel(Model *m, const ChannelGroup *g, int c) {
    HP_ASSERT(c >= 0 && c < g->n_channels);
    for (int j = 0; j < g->n_members; j++) {
        const GroupMember *mb = &g->members[j];
        if (mb->role == MEMBER_CONSUMER) continue;
        size_t w0, wn, b0, bn;
        out_slices(&m->nodes[mb->node], mb->spread, c, &w0, &wn, &b0, &bn);
        memset(m->params + w0, 0, wn * sizeof(float));
        memset(m->params + b0, 0, bn * sizeof(float));
    }
}
