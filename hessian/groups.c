// groups.c: per-layer and per-channel partitions of the parameter vector.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "groups.h"

// Output channels of node n and the parameters each owns in its weight (bias and batchnorm
// beta add one more each).
static int node_channels(const Node *n, size_t *per_channel) {
    int C = n->op == OP_BATCHNORM2D ? n->out.c : n->out_features;
    *per_channel = C ? n->w_len / (size_t)C : 0;
    return C;
}

// Appends a group description; returns its id, or -1 with err set (out of memory).
static int add_group(GroupInfo **info, int *count, int *cap, const char *name, int node, int channel, HpErr *err) {
    if (*count == *cap) {
        int grown_cap = *cap ? 2 * *cap : 64;
        GroupInfo *grown = hp_alloc((size_t)grown_cap, sizeof **info, err);
        if (!grown) return hp_prefix(err, "the parameter groups");
        if (*count) memcpy(grown, *info, (size_t)*count * sizeof **info);
        free(*info);
        *info = grown;
        *cap = grown_cap;
    }
    GroupInfo *g = &(*info)[*count];
    memset(g, 0, sizeof *g);
    if (channel >= 0)
        snprintf(g->name, sizeof g->name, "%s[%d]", name, channel);
    else
        snprintf(g->name, sizeof g->name, "%s", name);
    g->node = node;
    g->channel = channel;
    return (*count)++;
}

int param_groups(const Model *m, GroupLevel level, uint32_t *group_of, GroupInfo **info, HpErr *err) {
    int count = 0, cap = 0;
    *info = NULL;
    if (level == GROUP_MODEL) {
        if (add_group(info, &count, &cap, "model", -1, -1, err) < 0) return -1;
        (*info)[0].n_params = m->n_params;
        memset(group_of, 0, m->n_params * sizeof *group_of);
        return count;
    }
    int g = 0;  // the last group's id, or -1 once one could not be added
    for (int i = 0; i < m->n_nodes && g >= 0; i++) {
        const Node *n = &m->nodes[i];
        if (n->w_len + n->b_len == 0) continue;
        if (level == GROUP_LAYER) {
            g = add_group(info, &count, &cap, n->name, i, -1, err);
            if (g < 0) break;
            for (size_t j = 0; j < n->w_len + n->b_len; j++) group_of[n->w_off + j] = (uint32_t)g;  // bias follows
            (*info)[g].n_params = n->w_len + n->b_len;
            continue;
        }
        size_t per;
        int C = node_channels(n, &per);
        for (int c = 0; c < C; c++) {
            g = add_group(info, &count, &cap, n->name, i, c, err);
            if (g < 0) break;
            for (size_t j = 0; j < per; j++) group_of[n->w_off + (size_t)c * per + j] = (uint32_t)g;
            if (n->b_len) group_of[n->b_off + (size_t)c] = (uint32_t)g;
            (*info)[g].n_params = per + (n->b_len ? 1 : 0);
        }
    }
    if (g < 0) {
        free(*info);
        *info = NULL;
        return -1;
    }
    return count;
}

int group_level_parse(const char *s) {
    if (strcmp(s, "model") == 0) return GROUP_MODEL;
    if (strcmp(s, "layer") == 0) return GROUP_LAYER;
    if (strcmp(s, "channel") == 0) return GROUP_CHANNEL;
    return -1;
}

const char *group_level_name(GroupLevel level) {
    return level == GROUP_MODEL ? "model" : level == GROUP_LAYER ? "layer" : "channel";
}
