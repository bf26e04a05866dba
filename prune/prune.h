// prune.h: structured channel pruning over the model graph. Channel groups say which tensor
// slices go together when one channel is removed; surgery builds the smaller dense model.
// (Criteria and selection are in criteria.h.)
#ifndef HP_PRUNE_H
#define HP_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../nn/nn.h"

// How a node touches channel c of a group.
typedef enum {
    MEMBER_PRODUCER,    // conv (groups 1) or linear whose output channel c it is: weight row c, bias c
    MEMBER_PERCHANNEL,  // batchnorm: gamma c, beta c, running statistics c; depthwise conv: filter c, bias c
    MEMBER_CONSUMER,    // conv (groups 1) or linear reading channel c: weight[:, c] (k*k columns for a
                        // conv, `spread` consecutive input features for a linear after a flatten)
} MemberRole;

typedef struct {
    int node;
    MemberRole role;
    int spread;  // consumer: weight columns per channel (conv: kernel*kernel; linear: H*W of the
                 // flattened map, 1 when it reads features directly); producer/perchannel: 1
                 // (perchannel after a flatten: the features per channel, gamma[c*spread..])
} GroupMember;

// A set of channels removed together: channel c of the group is channel c of every member.
// The channels that meet at a residual Add are one group.
typedef struct {
    char name[HP_MAX_NAME + 16];  // first producer's name ("layer1.0.conv1"); a residual group
                                  // gets its first producer's name too
    int n_channels;               // channel count (the same for every member)
    GroupMember *members;
    int n_members;
    bool prunable;                // false if the group reaches the input or the network's output,
                                  // or passes through an op whose channels cannot be removed
    const char *why_not;          // static text saying why, when not prunable ("network output")
} ChannelGroup;

typedef struct {
    ChannelGroup *groups;
    int n_groups;
} GroupSet;

// Dependency analysis over m's graph: one group per independent channel space (a conv's or a
// linear's outputs followed through batchnorm, activations, pooling, dropout, flatten and
// depthwise convs to their consumers, merged across residual Adds). Groups are listed in the
// order of their first producer. Returns 0, or -1 with err set.
int prune_groups(const Model *m, GroupSet *gs, HpErr *err);
void groupset_free(GroupSet *gs);

// Indices into m->params of every parameter channel c of g touches (producer rows and biases,
// batchnorm gamma and beta, depthwise filters, consumer columns), ascending. idx may be NULL to
// only count. Returns the count.
size_t group_channel_params(const Model *m, const ChannelGroup *g, int c, size_t *idx);

// Indices into m->params of what member mb alone touches for channel c (a producer's row and
// bias, a per-channel member's slice, a consumer's columns), ascending; idx may be NULL to
// only count. Returns the count.
size_t member_channel_params(const Model *m, const GroupMember *mb, int c, size_t *idx);

// Sets every parameter and running statistic of channel c of g that feeds forward to zero
// (producer rows and biases, batchnorm gamma and beta, depthwise filters and biases), so the
// channel carries exact zeros everywhere in eval mode: the function surgery computes.
void group_zero_channel(Model *m, const ChannelGroup *g, int c);

// Surgery: builds dst, a new dense model (graph and buffers) in which group g keeps exactly the
// channels c with keep[g][c] (keep[g] NULL: all kept). Non-prunable groups must keep all; every
// prunable group must keep at least one channel. dst is overwritten, not freed first; its arch is
// src's. Returns 0, or -1 with err set.
int prune_apply(const Model *src, const GroupSet *gs, bool *const *keep, Model *dst, HpErr *err);

// Totals over the graph: multiply-accumulates of one sample's forward pass and parameter count.
uint64_t model_macs(const Model *m);
size_t model_param_count(const Model *m);

#endif
