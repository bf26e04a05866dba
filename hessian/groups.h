// groups.h: partitions of the parameter vector for per-layer and per-channel curvature:
// a layer is a node with parameters; a channel is one output channel of a conv (its filter
// and bias), one feature of a batchnorm (gamma_c, beta_c) or one output row of a linear.
#ifndef HP_GROUPS_H
#define HP_GROUPS_H

#include <stdint.h>

#include "../nn/nn.h"

typedef enum { GROUP_MODEL, GROUP_LAYER, GROUP_CHANNEL } GroupLevel;

typedef struct {
    char name[HP_MAX_NAME + 16];  // "layer1.0.conv1" or "layer1.0.conv1[3]"
    int node;                     // owning node id (-1 for the whole model)
    int channel;                  // output channel (-1 for a layer or the model)
    size_t n_params;
} GroupInfo;

// Assigns every parameter to a group at the given level: group_of (n_params entries) gets the
// group ids; returns the group count and *info (malloc'd, one entry per group), or -1 with err
// set (out of memory) and *info NULL.
int param_groups(const Model *m, GroupLevel level, uint32_t *group_of, GroupInfo **info, HpErr *err);
// Parses "model", "layer" or "channel"; returns -1 if it is none of them.
int group_level_parse(const char *s);
const char *group_level_name(GroupLevel level);

#endif
