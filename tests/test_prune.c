// test_prune.c: channel groups and surgery. For every built-in architecture and a custom graph
// (depthwise conv, grouped conv, a conv that reads and writes one residual space, flatten into
// a linear): zeroing the removed channels of a copy and cutting them out give the same logits;
// the groups of ResNet-20, LeNet-5 and the custom graph are exactly the known coupled sets;
// group_channel_params lists exactly the parameters surgery removes; bad selections are refused
// with the group's name; a pruned model survives model_save/model_load.
#include <omp.h>

#include "testutil.h"

#include "formats/formats.h"
#include "nn/nn.h"
#include "prune/prune.h"

#define N_THREADS 2
#define EQ_REL 1e-5  // zeroed copy vs pruned model: relative error of the logits

// ---- helpers ----

// Gives every batchnorm non-trivial affine parameters and running statistics, and every bias a
// non-zero value, so a wrongly kept or dropped slice shows in the logits.
static void perturb(Model *m, Rng *rng) {
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        if (n->op != OP_BATCHNORM2D) {
            tu_fill_uniform(m->params + n->b_off, n->b_len, -0.2f, 0.2f, rng);
            continue;
        }
        for (int c = 0; c < n->out.c; c++) {
            m->params[n->w_off + c] = 0.6f + 0.8f * rng_uniform(rng);
            m->params[n->b_off + c] = 0.4f * rng_uniform(rng) - 0.2f;
            m->buffers[n->mean_off + c] = 0.6f * rng_uniform(rng) - 0.3f;
            m->buffers[n->var_off + c] = 0.5f + 1.5f * rng_uniform(rng);
        }
    }
}

// Builds arch for `in`, 10 classes, with random parameters and running statistics.
static void build_random(Model *m, const char *arch, Shape in, uint64_t seed) {
    HpErr err = {{0}};
    tu_expect_ok(arch_build(m, arch, in, 10, &err), &err);
    Rng rng;
    rng_seed(&rng, seed, 1);
    model_init_params(m, &rng);
    perturb(m, &rng);
}

// A custom graph on 3x8x8 with 5 classes (every op the analysis knows, except global pooling):
//   c1 conv 8 (bias) - b1 - r1 - dw depthwise conv (bias) - b2 - add1(r1, b2) - r2
//   loop conv 8 reading r2, add2(r2, loop)          (loop produces and consumes one space)
//   c2 conv 1x1 6 - g grouped conv (2 groups) 6 - b3 - r3
//   c3 conv 4 (bias) - b4 - r4 - pool 2 (4x4x4) - flatten (64) - fc1 20 - relu - drop - fc 5
static void build_custom(Model *m, uint64_t seed) {
    HpErr err = {{0}};
    model_init(m, (Shape){3, 8, 8}, 5);
    int x = mb_input(m, &err);
    int c1 = mb_conv(m, "c1", x, 8, 3, 1, 1, 1, true, &err);
    int r1 = mb_relu(m, "r1", mb_bn(m, "b1", c1, &err), &err);
    int b2 = mb_bn(m, "b2", mb_conv(m, "dw", r1, 8, 3, 1, 1, 8, true, &err), &err);
    int r2 = mb_relu(m, "r2", mb_add(m, "add1", r1, b2, &err), &err);
    int a2 = mb_add(m, "add2", r2, mb_conv(m, "loop", r2, 8, 3, 1, 1, 1, false, &err), &err);
    int g = mb_conv(m, "g", mb_conv(m, "c2", a2, 6, 1, 1, 0, 1, false, &err), 6, 3, 1, 1, 2, false, &err);
    int r3 = mb_relu(m, "r3", mb_bn(m, "b3", g, &err), &err);
    int r4 = mb_relu(m, "r4", mb_bn(m, "b4", mb_conv(m, "c3", r3, 4, 3, 1, 1, 1, true, &err), &err), &err);
    int f = mb_flatten(m, "flatten", mb_maxpool(m, "pool", r4, 2, 2, 0, &err), &err);
    int d = mb_dropout(m, "drop", mb_relu(m, "r5", mb_linear(m, "fc1", f, 20, true, &err), &err), 0.3f, &err);
    tu_expect_ok(mb_linear(m, "fc", d, 5, true, &err), &err);
    tu_expect_ok(model_finalize(m, &err), &err);
    Rng rng;
    rng_seed(&rng, seed, 1);
    model_init_params(m, &rng);
    perturb(m, &rng);
}

// A graph whose channels are spread by a flatten before their per-channel ops, on 2x4x4 with
// 3 classes: c conv 3 - relu - flatten (48) - bnf batchnorm - dwf depthwise 1x1 conv - fc1 8 -
// fc 3; and (gap) a second producer a conv 5 - global average pool - fc 3 (no flatten).
static void build_flat(Model *m, bool gap, uint64_t seed) {
    HpErr err = {{0}};
    model_init(m, (Shape){2, 4, 4}, 3);
    int x = mb_input(m, &err);
    if (gap) {
        x = mb_gap(m, "gap", mb_conv(m, "a", x, 5, 3, 1, 1, 1, true, &err), &err);
    } else {
        x = mb_flatten(m, "flatten", mb_relu(m, "r", mb_conv(m, "c", x, 3, 3, 1, 1, 1, false, &err), &err), &err);
        x = mb_conv(m, "dwf", mb_bn(m, "bnf", x, &err), 48, 1, 1, 0, 48, true, &err);
        x = mb_linear(m, "fc1", x, 8, true, &err);
    }
    tu_expect_ok(mb_linear(m, "fc", x, 3, true, &err), &err);
    tu_expect_ok(model_finalize(m, &err), &err);
    Rng rng;
    rng_seed(&rng, seed, 1);
    model_init_params(m, &rng);
    perturb(m, &rng);
}

// Returns the group named name, failing the test if there is none.
static const ChannelGroup *find_group(const GroupSet *gs, const char *name) {
    for (int g = 0; g < gs->n_groups; g++)
        if (strcmp(gs->groups[g].name, name) == 0) return &gs->groups[g];
    fprintf(stderr, "no group '%s'\n", name);
    fail();
    return NULL;
}

// One expected member: node name, role, spread.
typedef struct {
    const char *node;
    MemberRole role;
    int spread;
} Want;

// Asserts that g has n_channels channels, the given prunability and exactly the members want[n].
static void expect_group(const Model *m, const ChannelGroup *g, int n_channels, bool prunable, const Want *want,
                         int n) {
    if (g->n_members != n || g->n_channels != n_channels || g->prunable != prunable)
        fprintf(stderr, "group '%s': %d members, %d channels, prunable %d; expected %d, %d, %d\n", g->name,
                g->n_members, g->n_channels, g->prunable, n, n_channels, prunable);
    assert_int_equal(g->n_channels, n_channels);
    assert_int_equal(g->prunable, prunable);
    assert_int_equal(g->n_members, n);
    for (int k = 0; k < n; k++) {
        int id = tu_node_id(m, want[k].node), found = 0;
        for (int j = 0; j < g->n_members; j++)
            found += g->members[j].node == id && g->members[j].role == want[k].role &&
                     g->members[j].spread == want[k].spread;
        if (found != 1)
            fprintf(stderr, "group '%s': member %s (role %d, spread %d) found %d times\n", g->name, want[k].node,
                    (int)want[k].role, want[k].spread, found);
        assert_int_equal(found, 1);
    }
    for (int j = 1; j < g->n_members; j++)  // sorted by (node, role)
        assert_true(g->members[j - 1].node < g->members[j].node ||
                    (g->members[j - 1].node == g->members[j].node && g->members[j - 1].role < g->members[j].role));
}

// Asserts that group_channel_params(g, c) gives `want` indices, ascending and distinct.
static void expect_channel_count(const Model *m, const ChannelGroup *g, int c, size_t want) {
    size_t n = group_channel_params(m, g, c, NULL);
    if (n != want) fprintf(stderr, "group '%s' channel %d: %zu parameters, expected %zu\n", g->name, c, n, want);
    assert_int_equal(n, want);
    size_t *idx = xmalloc(n * sizeof(size_t));
    assert_int_equal(group_channel_params(m, g, c, idx), n);
    for (size_t j = 1; j < n; j++) assert_true(idx[j - 1] < idx[j]);
    assert_true(idx[n - 1] < m->n_params);
    free(idx);
}

// A selection: keep[g] for every group, NULL for the non-prunable ones.
typedef struct {
    bool **keep;
    int n;
} Keep;

// Draws a random selection: each channel of a prunable group kept with probability 0.6, at
// least one kept and (for groups of 2 or more) at least one removed.
static Keep random_keep(const GroupSet *gs, Rng *rng) {
    Keep k = {xcalloc((size_t)gs->n_groups, sizeof(bool *)), gs->n_groups};
    for (int g = 0; g < gs->n_groups; g++) {
        int C = gs->groups[g].n_channels;
        if (!gs->groups[g].prunable) continue;
        k.keep[g] = xmalloc((size_t)C * sizeof(bool));
        int kept = 0;
        for (int c = 0; c < C; c++) kept += (k.keep[g][c] = rng_uniform(rng) < 0.6f);
        if (kept == 0) k.keep[g][rng_below(rng, (uint64_t)C)] = true;
        if (kept == C && C > 1) k.keep[g][rng_below(rng, (uint64_t)C)] = false;
    }
    return k;
}

// A selection that keeps only the first kept[g] channels of the prunable groups (all of the
// others); kept[g] < 0 keeps all.
static Keep first_keep(const GroupSet *gs, const int *kept) {
    Keep k = {xcalloc((size_t)gs->n_groups, sizeof(bool *)), gs->n_groups};
    for (int g = 0; g < gs->n_groups; g++) {
        if (kept[g] < 0) continue;
        k.keep[g] = xmalloc((size_t)gs->groups[g].n_channels * sizeof(bool));
        for (int c = 0; c < gs->groups[g].n_channels; c++) k.keep[g][c] = c < kept[g];
    }
    return k;
}

static void keep_free(Keep *k) {
    for (int g = 0; g < k->n; g++) free(k->keep[g]);
    free(k->keep);
}

// Zeroes in m every channel the selection removes.
static void zero_removed(Model *m, const GroupSet *gs, const Keep *k) {
    for (int g = 0; g < gs->n_groups; g++)
        for (int c = 0; k->keep[g] && c < gs->groups[g].n_channels; c++)
            if (!k->keep[g][c]) group_zero_channel(m, &gs->groups[g], c);
}

// The core property on model src: for a random selection, a copy with the removed channels
// zeroed and the pruned model give the same eval-mode logits on N random inputs; the pruned
// model is smaller, and it round-trips through a model file.
static void check_equivalence(Model *src, int N, uint64_t seed) {
    GroupSet gs;
    HpErr err = {{0}};
    tu_expect_ok(prune_groups(src, &gs, &err), &err);
    Rng rng;
    rng_seed(&rng, seed, 2);
    Keep k = random_keep(&gs, &rng);
    Model zeroed, pruned;
    assert_int_equal(model_copy(&zeroed, src, NULL), 0);
    zero_removed(&zeroed, &gs, &k);
    tu_expect_ok(prune_apply(src, &gs, k.keep, &pruned, &err), &err);

    size_t numel = shape_numel(src->input) * (size_t)N;
    float *x = xmalloc(numel * sizeof(float));
    tu_fill_uniform(x, numel, -2, 2, &rng);
    float *z0 = tu_logits(src, x, N, N_THREADS), *zz = tu_logits(&zeroed, x, N, N_THREADS),
          *zp = tu_logits(&pruned, x, N, N_THREADS);
    size_t nz = (size_t)N * (size_t)src->n_classes;
    double rel = tu_rel_err(zp, zz, nz), moved = tu_rel_err(zz, z0, nz);
    fprintf(stderr, "%s: %zu -> %zu params, %llu -> %llu MACs; pruned vs zeroed %.2e (zeroing moved the logits %.2e)\n",
            src->arch, model_param_count(src), model_param_count(&pruned), (unsigned long long)model_macs(src),
            (unsigned long long)model_macs(&pruned), rel, moved);
    assert_true(rel < EQ_REL);
    assert_true(moved > 1e-3);  // the selection did remove something that mattered
    assert_true(model_param_count(&pruned) < model_param_count(src));
    assert_int_equal(model_param_count(&pruned), pruned.n_params);
    assert_true(model_macs(&pruned) < model_macs(src));
    assert_string_equal(pruned.arch, src->arch);
    tu_expect_round_trip(&pruned, x, N);

    free(x);
    free(z0);
    free(zz);
    free(zp);
    keep_free(&k);
    model_free(&zeroed);
    model_free(&pruned);
    groupset_free(&gs);
}

// check_equivalence on a fresh random arch model.
static void check_arch(const char *arch, Shape in, int N, uint64_t seed) {
    Model m;
    build_random(&m, arch, in, seed);
    check_equivalence(&m, N, seed);
    model_free(&m);
}

// ---- (a) zeroed copy and surgery compute the same function ----

static void test_equiv_lenet5(void **state) {
    (void)state;
    check_arch("lenet5", (Shape){1, 28, 28}, 3, 11);
}

static void test_equiv_vgg11(void **state) {
    (void)state;
    check_arch("vgg11", (Shape){3, 16, 16}, 2, 12);
}

static void test_equiv_resnet20(void **state) {
    (void)state;
    check_arch("resnet20", (Shape){3, 32, 32}, 2, 13);
}

static void test_equiv_resnet32(void **state) {
    (void)state;
    check_arch("resnet32", (Shape){1, 16, 16}, 2, 14);
}

static void test_equiv_resnet56(void **state) {
    (void)state;
    check_arch("resnet56", (Shape){1, 16, 16}, 2, 15);
}

static void test_equiv_custom(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        Model m;
        build_custom(&m, seed);
        check_equivalence(&m, 3, 100 + seed);
        model_free(&m);
    }
}

static void test_equiv_flat(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        Model m;
        build_flat(&m, false, seed);
        check_equivalence(&m, 3, 200 + seed);
        model_free(&m);
        build_flat(&m, true, seed);
        check_equivalence(&m, 3, 300 + seed);
        model_free(&m);
    }
}

// LeNet-5 keeping 4 of 6, 10 of 16, 100 of 120 and 50 of 84 channels, counted by hand.
static void test_counts_pruned_lenet5(void **state) {
    (void)state;
    Model m, p;
    build_random(&m, "lenet5", (Shape){1, 28, 28}, 21);
    GroupSet gs;
    HpErr err = {{0}};
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    assert_int_equal(gs.n_groups, 6);  // input, conv1, conv2, fc1, fc2, fc3
    const int kept[6] = {-1, 4, 10, 100, 50, -1};
    Keep k = first_keep(&gs, kept);
    tu_expect_ok(prune_apply(&m, &gs, k.keep, &p, &err), &err);
    size_t params = (4 * 25 + 4) + (10 * 4 * 25 + 10) + (250 * 100 + 100) + (100 * 50 + 50) + (50 * 10 + 10);
    uint64_t macs = 4 * 28 * 28 * 25 + 10 * 10 * 10 * (4 * 25) + 250 * 100 + 100 * 50 + 50 * 10;
    assert_int_equal(model_param_count(&p), params);
    assert_int_equal(p.n_params, params);
    assert_int_equal(model_macs(&p), macs);
    assert_int_equal(model_param_count(&m), 61706);
    assert_int_equal(model_macs(&m), 416520);
    assert_int_equal(p.nodes[tu_node_id(&p, "fc1")].out.c, 100);
    assert_int_equal((int)(p.nodes[tu_node_id(&p, "fc1")].w_len / 100), 250);
    keep_free(&k);
    groupset_free(&gs);
    model_free(&p);
    model_free(&m);
}

// ---- (b) ResNet-20's groups ----

// Asserts the group of block prefix ("layer2.0"): producer conv1, per-channel bn1, consumer conv2.
static void expect_block_group(const Model *m, const GroupSet *gs, const char *prefix, int planes) {
    char c1[32], b1[32], c2[32];
    snprintf(c1, sizeof c1, "%s.conv1", prefix);
    snprintf(b1, sizeof b1, "%s.bn1", prefix);
    snprintf(c2, sizeof c2, "%s.conv2", prefix);
    const Want want[] = {{c1, MEMBER_PRODUCER, 1}, {b1, MEMBER_PERCHANNEL, 1}, {c2, MEMBER_CONSUMER, 9}};
    expect_group(m, find_group(gs, c1), planes, true, want, 3);
}

static void test_groups_resnet20(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    tu_expect_ok(arch_build(&m, "resnet20", (Shape){3, 32, 32}, 10, &err), &err);
    GroupSet gs;
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    static const char *const order[] = {
        "input",          "conv1",          "layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1",
        "layer2.0.conv1", "layer2.0.conv2", "layer2.1.conv1", "layer2.2.conv1", "layer3.0.conv1",
        "layer3.0.conv2", "layer3.1.conv1", "layer3.2.conv1", "fc"};
    assert_int_equal(gs.n_groups, 14);
    int prunable = 0;
    for (int g = 0; g < gs.n_groups; g++) {
        assert_string_equal(gs.groups[g].name, order[g]);
        prunable += gs.groups[g].prunable;
    }
    assert_int_equal(prunable, 12);  // 9 block-inner groups and 3 residual groups
    static const char *const stages[3] = {"layer1", "layer2", "layer3"};
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < 3; b++) {
            char prefix[16];
            snprintf(prefix, sizeof prefix, "%s.%d", stages[s], b);
            expect_block_group(&m, &gs, prefix, 16 << s);
        }
    const Want stem[] = {
        {"conv1", MEMBER_PRODUCER, 1},          {"bn1", MEMBER_PERCHANNEL, 1},
        {"layer1.0.conv2", MEMBER_PRODUCER, 1}, {"layer1.0.bn2", MEMBER_PERCHANNEL, 1},
        {"layer1.1.conv2", MEMBER_PRODUCER, 1}, {"layer1.1.bn2", MEMBER_PERCHANNEL, 1},
        {"layer1.2.conv2", MEMBER_PRODUCER, 1}, {"layer1.2.bn2", MEMBER_PERCHANNEL, 1},
        {"layer1.0.conv1", MEMBER_CONSUMER, 9}, {"layer1.1.conv1", MEMBER_CONSUMER, 9},
        {"layer1.2.conv1", MEMBER_CONSUMER, 9}, {"layer2.0.conv1", MEMBER_CONSUMER, 9},
        {"layer2.0.shortcut.0", MEMBER_CONSUMER, 1}};
    expect_group(&m, find_group(&gs, "conv1"), 16, true, stem, 13);
    const Want res2[] = {
        {"layer2.0.conv2", MEMBER_PRODUCER, 1},      {"layer2.0.bn2", MEMBER_PERCHANNEL, 1},
        {"layer2.0.shortcut.0", MEMBER_PRODUCER, 1}, {"layer2.0.shortcut.1", MEMBER_PERCHANNEL, 1},
        {"layer2.1.conv2", MEMBER_PRODUCER, 1},      {"layer2.1.bn2", MEMBER_PERCHANNEL, 1},
        {"layer2.2.conv2", MEMBER_PRODUCER, 1},      {"layer2.2.bn2", MEMBER_PERCHANNEL, 1},
        {"layer2.1.conv1", MEMBER_CONSUMER, 9},      {"layer2.2.conv1", MEMBER_CONSUMER, 9},
        {"layer3.0.conv1", MEMBER_CONSUMER, 9},      {"layer3.0.shortcut.0", MEMBER_CONSUMER, 1}};
    expect_group(&m, find_group(&gs, "layer2.0.conv2"), 32, true, res2, 12);
    const Want res3[] = {
        {"layer3.0.conv2", MEMBER_PRODUCER, 1},      {"layer3.0.bn2", MEMBER_PERCHANNEL, 1},
        {"layer3.0.shortcut.0", MEMBER_PRODUCER, 1}, {"layer3.0.shortcut.1", MEMBER_PERCHANNEL, 1},
        {"layer3.1.conv2", MEMBER_PRODUCER, 1},      {"layer3.1.bn2", MEMBER_PERCHANNEL, 1},
        {"layer3.2.conv2", MEMBER_PRODUCER, 1},      {"layer3.2.bn2", MEMBER_PERCHANNEL, 1},
        {"layer3.1.conv1", MEMBER_CONSUMER, 9},      {"layer3.2.conv1", MEMBER_CONSUMER, 9},
        {"fc", MEMBER_CONSUMER, 1}};
    expect_group(&m, find_group(&gs, "layer3.0.conv2"), 64, true, res3, 11);
    const Want out[] = {{"fc", MEMBER_PRODUCER, 1}};
    const ChannelGroup *fc = find_group(&gs, "fc");
    expect_group(&m, fc, 10, false, out, 1);
    assert_string_equal(fc->why_not, "network output");
    const Want input[] = {{"conv1", MEMBER_CONSUMER, 9}};
    const ChannelGroup *in = find_group(&gs, "input");
    expect_group(&m, in, 3, false, input, 1);
    assert_string_equal(in->why_not, "network input");
    groupset_free(&gs);
    model_free(&m);
}

// The deeper ResNets: 3n inner groups and 3 residual groups prunable, plus input and output.
static void test_groups_resnet32_56(void **state) {
    (void)state;
    static const struct {
        const char *arch;
        int blocks;
    } cases[] = {{"resnet32", 5}, {"resnet56", 9}};
    for (size_t t = 0; t < 2; t++) {
        Model m;
        HpErr err = {{0}};
        tu_expect_ok(arch_build(&m, cases[t].arch, (Shape){3, 32, 32}, 10, &err), &err);
        GroupSet gs;
        tu_expect_ok(prune_groups(&m, &gs, &err), &err);
        int prunable = 0;
        for (int g = 0; g < gs.n_groups; g++) prunable += gs.groups[g].prunable;
        assert_int_equal(gs.n_groups, 3 * cases[t].blocks + 5);
        assert_int_equal(prunable, 3 * cases[t].blocks + 3);
        // the layer1 residual group: stem, every layer1 block's conv2 and bn2, every conv1 reading it
        assert_int_equal(find_group(&gs, "conv1")->n_members, 2 + 2 * cases[t].blocks + cases[t].blocks + 2);
        groupset_free(&gs);
        model_free(&m);
    }
}

// VGG-11: one group per conv (conv, bn, the next conv or the classifier), input and output.
static void test_groups_vgg11(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    tu_expect_ok(arch_build(&m, "vgg11", (Shape){3, 32, 32}, 10, &err), &err);
    GroupSet gs;
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    assert_int_equal(gs.n_groups, 10);  // input, 8 convs, classifier
    for (int g = 1; g <= 8; g++) {
        assert_true(gs.groups[g].prunable);
        assert_int_equal(gs.groups[g].n_members, 3);
    }
    const ChannelGroup *last = &gs.groups[8];  // the last conv feeds the classifier through gap, flatten
    assert_int_equal(last->n_channels, 512);
    assert_int_equal(last->members[2].node, tu_node_id(&m, "classifier"));
    assert_int_equal(last->members[2].spread, 1);
    groupset_free(&gs);
    model_free(&m);
}

// The custom graph: depthwise convs and batchnorms ride along, a grouped conv blocks both of
// its spaces, a conv that reads and writes one space is both its producer and consumer.
static void test_groups_custom(void **state) {
    (void)state;
    Model m;
    build_custom(&m, 1);
    GroupSet gs;
    HpErr err = {{0}};
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    static const char *const order[] = {"input", "c1", "c2", "g", "c3", "fc1", "fc"};
    assert_int_equal(gs.n_groups, 7);
    for (int g = 0; g < gs.n_groups; g++) assert_string_equal(gs.groups[g].name, order[g]);
    const Want c1[] = {{"c1", MEMBER_PRODUCER, 1},   {"b1", MEMBER_PERCHANNEL, 1},  {"dw", MEMBER_PERCHANNEL, 1},
                       {"b2", MEMBER_PERCHANNEL, 1}, {"loop", MEMBER_PRODUCER, 1},  {"loop", MEMBER_CONSUMER, 9},
                       {"c2", MEMBER_CONSUMER, 1}};
    expect_group(&m, &gs.groups[1], 8, true, c1, 7);
    const Want c2[] = {{"c2", MEMBER_PRODUCER, 1}};
    expect_group(&m, &gs.groups[2], 6, false, c2, 1);
    assert_string_equal(gs.groups[2].why_not, "grouped convolution");
    const Want g[] = {{"g", MEMBER_PRODUCER, 1}, {"b3", MEMBER_PERCHANNEL, 1}, {"c3", MEMBER_CONSUMER, 9}};
    expect_group(&m, &gs.groups[3], 6, false, g, 3);
    assert_string_equal(gs.groups[3].why_not, "grouped convolution");
    const Want c3[] = {{"c3", MEMBER_PRODUCER, 1}, {"b4", MEMBER_PERCHANNEL, 1}, {"fc1", MEMBER_CONSUMER, 16}};
    expect_group(&m, &gs.groups[4], 4, true, c3, 3);
    const Want fc1[] = {{"fc1", MEMBER_PRODUCER, 1}, {"fc", MEMBER_CONSUMER, 1}};
    expect_group(&m, &gs.groups[5], 20, true, fc1, 2);
    assert_false(gs.groups[6].prunable);
    groupset_free(&gs);
    model_free(&m);
}

// After a flatten, a batchnorm and a depthwise conv hold `spread` features per channel; a
// global average pool feeds a linear with spread 1.
static void test_groups_flat(void **state) {
    (void)state;
    Model m;
    build_flat(&m, false, 1);
    GroupSet gs;
    HpErr err = {{0}};
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    const Want c[] = {{"c", MEMBER_PRODUCER, 1}, {"bnf", MEMBER_PERCHANNEL, 16}, {"dwf", MEMBER_PERCHANNEL, 16},
                      {"fc1", MEMBER_CONSUMER, 16}};
    expect_group(&m, find_group(&gs, "c"), 3, true, c, 4);
    // c row 18, bnf 2 x 16, dwf 16 filters of 1 and 16 biases, fc1 8 x 16 columns
    expect_channel_count(&m, find_group(&gs, "c"), 1, 18 + 32 + 32 + 128);
    groupset_free(&gs);
    model_free(&m);
    build_flat(&m, true, 1);
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    const Want a[] = {{"a", MEMBER_PRODUCER, 1}, {"fc", MEMBER_CONSUMER, 1}};
    expect_group(&m, find_group(&gs, "a"), 5, true, a, 2);
    groupset_free(&gs);
    model_free(&m);
}

// ---- (c) LeNet-5: the flatten spreads one channel over H*W features of fc1 ----

static void test_groups_lenet5(void **state) {
    (void)state;
    static const struct {
        int side, spread;
    } cases[] = {{28, 25}, {32, 36}};  // pool2 gives 16x5x5, or 16x6x6 on a 32x32 input
    for (size_t t = 0; t < 2; t++) {
        Model m;
        HpErr err = {{0}};
        tu_expect_ok(arch_build(&m, "lenet5", (Shape){1, cases[t].side, cases[t].side}, 10, &err), &err);
        GroupSet gs;
        tu_expect_ok(prune_groups(&m, &gs, &err), &err);
        const Want conv1[] = {{"conv1", MEMBER_PRODUCER, 1}, {"conv2", MEMBER_CONSUMER, 25}};
        expect_group(&m, find_group(&gs, "conv1"), 6, true, conv1, 2);
        const Want conv2[] = {{"conv2", MEMBER_PRODUCER, 1}, {"fc1", MEMBER_CONSUMER, cases[t].spread}};
        expect_group(&m, find_group(&gs, "conv2"), 16, true, conv2, 2);
        const Want fc1[] = {{"fc1", MEMBER_PRODUCER, 1}, {"fc2", MEMBER_CONSUMER, 1}};
        expect_group(&m, find_group(&gs, "fc1"), 120, true, fc1, 2);
        assert_false(find_group(&gs, "fc3")->prunable);
        groupset_free(&gs);
        model_free(&m);
    }
}

// ---- (d) the parameters of one channel ----

static void test_channel_params_counts(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    GroupSet gs;
    tu_expect_ok(arch_build(&m, "lenet5", (Shape){1, 28, 28}, 10, &err), &err);
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    expect_channel_count(&m, find_group(&gs, "input"), 0, 6 * 25);                 // conv1 columns
    expect_channel_count(&m, find_group(&gs, "conv1"), 5, 25 + 1 + 16 * 25);       // row, bias, conv2 columns
    expect_channel_count(&m, find_group(&gs, "conv2"), 3, 150 + 1 + 120 * 25);     // row, bias, fc1 features
    expect_channel_count(&m, find_group(&gs, "fc1"), 119, 400 + 1 + 84);
    expect_channel_count(&m, find_group(&gs, "fc2"), 0, 120 + 1 + 10);
    expect_channel_count(&m, find_group(&gs, "fc3"), 9, 84 + 1);
    groupset_free(&gs);
    model_free(&m);

    tu_expect_ok(arch_build(&m, "resnet20", (Shape){3, 32, 32}, 10, &err), &err);
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    // stem row 27, bn1 2, three layer1 conv2 rows and bn2s, three layer1 conv1 columns,
    // layer2.0.conv1 columns (32 x 9), layer2.0.shortcut.0 columns (32 x 1)
    expect_channel_count(&m, find_group(&gs, "conv1"), 7, 27 + 2 + 3 * (144 + 2) + 3 * 144 + 288 + 32);
    expect_channel_count(&m, find_group(&gs, "layer1.0.conv1"), 0, 144 + 2 + 144);
    expect_channel_count(&m, find_group(&gs, "layer2.0.conv1"), 31, 144 + 2 + 288);
    expect_channel_count(&m, find_group(&gs, "layer2.0.conv2"), 1, 3 * 288 + 16 + 4 * 2 + 2 * 288 + 576 + 64);
    expect_channel_count(&m, find_group(&gs, "layer3.0.conv2"), 63, 3 * 576 + 32 + 4 * 2 + 2 * 576 + 10);
    expect_channel_count(&m, find_group(&gs, "fc"), 0, 64 + 1);
    groupset_free(&gs);
    model_free(&m);

    build_custom(&m, 1);
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    // c1 row 27 + bias, b1, dw filter 9 + bias, b2, loop row 72 and its 8 x 9 columns sharing
    // 9 with the row, c2 columns 6 x 1
    expect_channel_count(&m, &gs.groups[1], 0, 28 + 2 + 10 + 2 + (72 + 72 - 9) + 6);
    expect_channel_count(&m, &gs.groups[1], 4, 28 + 2 + 10 + 2 + (72 + 72 - 9) + 6);
    expect_channel_count(&m, &gs.groups[1], 7, 28 + 2 + 10 + 2 + (72 + 72 - 9) + 6);
    expect_channel_count(&m, &gs.groups[4], 2, 54 + 1 + 2 + 20 * 16);
    groupset_free(&gs);
    model_free(&m);
}

// Removing one channel removes exactly the parameters group_channel_params lists: with every
// parameter 1 and the listed ones 0, the pruned model is all ones and smaller by the count.
static void check_listed_equals_removed(Model *m) {
    GroupSet gs;
    HpErr err = {{0}};
    tu_expect_ok(prune_groups(m, &gs, &err), &err);
    Rng rng;
    rng_seed(&rng, 5, 3);
    int *none = xmalloc((size_t)gs.n_groups * sizeof(int));
    for (int g = 0; g < gs.n_groups; g++) {
        if (!gs.groups[g].prunable || gs.groups[g].n_channels < 2) continue;
        int c = (int)rng_below(&rng, (uint64_t)gs.groups[g].n_channels);
        size_t n = group_channel_params(m, &gs.groups[g], c, NULL);
        size_t *idx = xmalloc(n * sizeof(size_t));
        group_channel_params(m, &gs.groups[g], c, idx);
        for (size_t j = 0; j < m->n_params; j++) m->params[j] = 1.0f;
        for (size_t j = 0; j < n; j++) m->params[idx[j]] = 0.0f;
        for (int h = 0; h < gs.n_groups; h++) none[h] = -1;
        Keep k = first_keep(&gs, none);
        k.keep[g] = xmalloc((size_t)gs.groups[g].n_channels * sizeof(bool));
        for (int j = 0; j < gs.groups[g].n_channels; j++) k.keep[g][j] = j != c;
        Model p;
        tu_expect_ok(prune_apply(m, &gs, k.keep, &p, &err), &err);
        assert_int_equal(p.n_params, m->n_params - n);
        size_t zeros = 0;
        for (size_t j = 0; j < p.n_params; j++) zeros += p.params[j] != 1.0f;
        if (zeros)
            fprintf(stderr, "group '%s' channel %d: %zu listed parameters survive\n", gs.groups[g].name, c, zeros);
        assert_int_equal(zeros, 0);
        model_free(&p);
        keep_free(&k);
        free(idx);
    }
    free(none);
    groupset_free(&gs);
}

static void test_listed_equals_removed(void **state) {
    (void)state;
    static const char *const archs[] = {"lenet5", "resnet20"};
    Model m;
    HpErr err = {{0}};
    for (size_t t = 0; t < 2; t++) {
        tu_expect_ok(arch_build(&m, archs[t], (Shape){1, 28, 28}, 10, &err), &err);
        check_listed_equals_removed(&m);
        model_free(&m);
    }
    build_custom(&m, 2);
    check_listed_equals_removed(&m);
    model_free(&m);
}

// group_zero_channel zeroes the producer's row and bias and the batchnorm's gamma and beta,
// and nothing else (consumer columns and running statistics stay).
static void test_zero_channel(void **state) {
    (void)state;
    Model m, ref;
    build_random(&m, "resnet20", (Shape){1, 16, 16}, 31);
    GroupSet gs;
    HpErr err = {{0}};
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    assert_int_equal(model_copy(&ref, &m, NULL), 0);
    const ChannelGroup *g = find_group(&gs, "layer2.1.conv1");
    group_zero_channel(&m, g, 5);
    const Node *conv = &m.nodes[tu_node_id(&m, "layer2.1.conv1")], *bn = &m.nodes[tu_node_id(&m, "layer2.1.bn1")];
    size_t changed = 0;
    for (size_t j = 0; j < m.n_params; j++) {
        bool in_row = j >= conv->w_off + 5 * 288 && j < conv->w_off + 6 * 288;
        bool in_bn = j == bn->w_off + 5 || j == bn->b_off + 5;
        if (in_row || in_bn)
            assert_true(m.params[j] == 0.0f);
        else
            changed += m.params[j] != ref.params[j];
    }
    assert_int_equal(changed, 0);
    assert_memory_equal(m.buffers, ref.buffers, m.n_buffers * sizeof(float));
    model_free(&ref);
    groupset_free(&gs);
    model_free(&m);
}

// ---- (e) selections surgery refuses ----

// Asserts prune_apply refuses k with a message holding both needles, leaving dst empty.
static void expect_refused(const Model *m, const GroupSet *gs, const Keep *k, const char *a, const char *b) {
    Model p;
    HpErr err = {{0}};
    int rc = prune_apply(m, gs, k->keep, &p, &err);
    fprintf(stderr, "refused: %s\n", err.msg);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, a));
    assert_non_null(strstr(err.msg, b));
    assert_int_equal(p.n_nodes, 0);
    assert_null(p.params);
}

static void test_refuse_bad_selection(void **state) {
    (void)state;
    Model m;
    HpErr err = {{0}};
    tu_expect_ok(arch_build(&m, "resnet20", (Shape){3, 32, 32}, 10, &err), &err);
    GroupSet gs;
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    int kept[14];
    for (int g = 0; g < 14; g++) kept[g] = -1;
    kept[6] = 0;  // layer2.0.conv2: the layer2 residual group, none kept
    Keep k = first_keep(&gs, kept);
    expect_refused(&m, &gs, &k, "'layer2.0.conv2'", "none of its 32 channels");
    keep_free(&k);
    kept[6] = -1;
    kept[13] = 9;  // fc: the network's output
    k = first_keep(&gs, kept);
    expect_refused(&m, &gs, &k, "'fc'", "cannot be pruned (network output)");
    keep_free(&k);
    kept[13] = -1;
    kept[0] = 2;  // the input's channels
    k = first_keep(&gs, kept);
    expect_refused(&m, &gs, &k, "'input'", "network input");
    keep_free(&k);
    kept[0] = 3;  // all kept of a non-prunable group is fine, as is keeping one channel
    kept[5] = 1;
    k = first_keep(&gs, kept);
    Model p;
    tu_expect_ok(prune_apply(&m, &gs, k.keep, &p, &err), &err);
    assert_int_equal(p.nodes[tu_node_id(&p, "layer2.0.conv1")].out_features, 1);
    model_free(&p);
    keep_free(&k);
    // groups made from another model
    Model other;
    tu_expect_ok(arch_build(&other, "lenet5", (Shape){1, 28, 28}, 10, &err), &err);
    int rc = prune_apply(&other, &gs, NULL, &p, &err);
    fprintf(stderr, "refused: %s\n", err.msg);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, "does not match this model"));
    model_free(&other);
    groupset_free(&gs);
    model_free(&m);
}

// prune_apply keeps the header: normalisation, classes, arch, provenance (a copy).
static void test_apply_keeps_header(void **state) {
    (void)state;
    Model m, p;
    build_random(&m, "lenet5", (Shape){1, 28, 28}, 41);
    m.norm_mean[0] = 0.28f;
    m.norm_std[0] = 0.35f;
    m.provenance = strdup("{\"tool\":\"hprune\"}");
    GroupSet gs;
    HpErr err = {{0}};
    tu_expect_ok(prune_groups(&m, &gs, &err), &err);
    tu_expect_ok(prune_apply(&m, &gs, NULL, &p, &err), &err);
    assert_string_equal(p.arch, "lenet5");
    assert_int_equal(p.n_classes, 10);
    assert_true(p.norm_mean[0] == 0.28f && p.norm_std[0] == 0.35f);
    assert_string_equal(p.provenance, m.provenance);
    assert_ptr_not_equal(p.provenance, m.provenance);
    assert_int_equal(p.n_params, m.n_params);  // nothing removed: the same model
    assert_memory_equal(p.params, m.params, m.n_params * sizeof(float));
    groupset_free(&gs);
    model_free(&p);
    model_free(&m);
}

int main(void) {
    omp_set_num_threads(N_THREADS);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equiv_lenet5),
        cmocka_unit_test(test_equiv_vgg11),
        cmocka_unit_test(test_equiv_resnet20),
        cmocka_unit_test(test_equiv_resnet32),
        cmocka_unit_test(test_equiv_resnet56),
        cmocka_unit_test(test_equiv_custom),
        cmocka_unit_test(test_equiv_flat),
        cmocka_unit_test(test_counts_pruned_lenet5),
        cmocka_unit_test(test_groups_resnet20),
        cmocka_unit_test(test_groups_resnet32_56),
        cmocka_unit_test(test_groups_vgg11),
        cmocka_unit_test(test_groups_custom),
        cmocka_unit_test(test_groups_flat),
        cmocka_unit_test(test_groups_lenet5),
        cmocka_unit_test(test_channel_params_counts),
        cmocka_unit_test(test_listed_equals_removed),
        cmocka_unit_test(test_zero_channel),
        cmocka_unit_test(test_refuse_bad_selection),
        cmocka_unit_test(test_apply_keeps_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
