// sweep_config.c: the sweep's INI file, read through one key table by formats/ini_table.c. The
// result replaces the caller's config only when the whole file is good; every error names
// "file:line".
#include <stdio.h>
#include <string.h>

#include "../formats/ini_table.h"
#include "sweep.h"

void sweep_config_default(SweepConfig *c) {
    memset(c, 0, sizeof *c);
    PruneJob j = prune_job_defaults();
    c->methods[0] = CRIT_L1;
    c->n_methods = 1;
    c->targets[0] = 0.5;
    c->n_targets = 1;
    c->seeds[0] = 1;
    c->n_seeds = 1;
    c->kind = TARGET_MACS;
    c->max_layer_frac = j.target.max_layer_frac;
    c->steps = 1;
    c->samples = j.crit.samples;
    c->probes = j.crit.probes;
    c->finetune = j.finetune;
    c->finetune.epochs = 0;
}

// ---- comma lists ----

// Parses one list entry tok (of the whole value v) into *out; returns 0, or -1 with err set.
typedef int (*EntryFn)(const IniSet *s, const char *v, const char *tok, void *out);

// Parses the comma list v into vals (entries of elem bytes) and *n, refusing an empty or too long
// entry, too many entries and repeated values; vals and *n are untouched on error.
static int set_list(const IniSet *s, const char *v, EntryFn parse, void *vals, size_t elem, int *n) {
    char toks[SWEEP_MAX_LIST][INI_TOKEN], what[64];
    unsigned char x[SWEEP_MAX_LIST][sizeof(double)];  // the parsed entries (a seed or a target at most)
    HP_ASSERT(elem <= sizeof x[0]);
    int count = ini_split(v, toks, SWEEP_MAX_LIST);
    snprintf(what, sizeof what, "at most %d entries", SWEEP_MAX_LIST);
    if (count == INI_SPLIT_EMPTY) return ini_bad_value(s, v, "an empty entry in the comma list");
    if (count == INI_SPLIT_LONG) return ini_bad_value(s, v, "an entry is too long");
    if (count == INI_SPLIT_MANY) return ini_bad_value(s, v, what);
    for (int i = 0; i < count; i++) {
        if (parse(s, v, toks[i], x[i]) != 0) return -1;
        for (int j = 0; j < i; j++)  // equal values have equal bytes here (no zeros, no NaNs)
            if (memcmp(x[j], x[i], elem) == 0) return hp_fail(s->err, "'%s' lists '%s' twice", s->key->key, toks[i]);
    }
    for (int i = 0; i < count; i++) memcpy((char *)vals + (size_t)i * elem, x[i], elem);
    *n = count;
    return 0;
}

// EntryFn of methods: a criterion name.
static int method_entry(const IniSet *s, const char *v, const char *tok, void *out) {
    (void)v;
    Criterion m = criterion_parse(tok);
    if (m != CRIT_COUNT) return memcpy(out, &m, sizeof m), 0;
    char known[160] = "";
    for (int j = 0; j < CRIT_COUNT; j++) {
        size_t len = strlen(known);
        snprintf(known + len, sizeof known - len, "%s%s", j ? ", " : "", criterion_name((Criterion)j));
    }
    return hp_fail(s->err, "unknown method '%s' in 'methods' (known: %s)", tok, known);
}

// EntryFn of targets: a fraction to remove, in (0, 1).
static int target_entry(const IniSet *s, const char *v, const char *tok, void *out) {
    double t;
    if (ini_number(tok, &t) != 0) return ini_bad_value(s, v, "expected comma-separated numbers");
    if (!(t > 0 && t < 1)) return hp_fail(s->err, "bad value '%s' in 'targets': a fraction to remove must be in (0, 1)", tok);
    return memcpy(out, &t, sizeof t), 0;
}

// EntryFn of seeds: a non-negative integer.
static int seed_entry(const IniSet *s, const char *v, const char *tok, void *out) {
    uint64_t x;
    if (ini_u64(tok, &x) != 0) return ini_bad_value(s, v, "expected comma-separated non-negative integers");
    return memcpy(out, &x, sizeof x), 0;
}

// [sweep] methods.
static int set_methods(void *cfg, const IniSet *s, const char *v) {
    SweepConfig *c = cfg;
    return set_list(s, v, method_entry, c->methods, sizeof c->methods[0], &c->n_methods);
}

// [sweep] targets; remembers their line for later messages.
static int set_targets(void *cfg, const IniSet *s, const char *v) {
    SweepConfig *c = cfg;
    if (set_list(s, v, target_entry, c->targets, sizeof c->targets[0], &c->n_targets) != 0) return -1;
    c->targets_line = s->line;
    return 0;
}

// [sweep] seeds.
static int set_seeds(void *cfg, const IniSet *s, const char *v) {
    SweepConfig *c = cfg;
    return set_list(s, v, seed_entry, c->seeds, sizeof c->seeds[0], &c->n_seeds);
}

// [sweep] target: flops (or macs), params, channels.
static int set_kind(void *cfg, const IniSet *s, const char *v) {
    SweepConfig *c = cfg;
    if (strcmp(v, "flops") == 0 || strcmp(v, "macs") == 0)
        c->kind = TARGET_MACS;
    else if (strcmp(v, "params") == 0)
        c->kind = TARGET_PARAMS;
    else if (strcmp(v, "channels") == 0)
        c->kind = TARGET_CHANNELS;
    else
        return ini_bad_value(s, v, "expected flops (or macs), params or channels");
    return 0;
}

// ---- the table ----

static const char *const SECTIONS[] = {"sweep", "data", "finetune", NULL};
static const char *const DATASETS[] = {"fashion-mnist", "mnist", "cifar10", NULL};

// Returns the dataset names a sweep accepts.
static const char *const *dataset_names(void) { return DATASETS; }

#define FIELD(member) INI_FIELD(SweepConfig, member)

// Every key a sweep config knows; the only place that does.
static const IniKey KEYS[] = {
    {"sweep", "model", IK_STR, FIELD(model), 0, 0, IK_NONEMPTY},
    {"sweep", "out", IK_STR, FIELD(out), 0, 0, IK_NONEMPTY},
    {"sweep", "methods", IK_CUSTOM, FIELD(methods), .set = set_methods},
    {"sweep", "target", IK_CUSTOM, FIELD(kind), .set = set_kind},
    {"sweep", "targets", IK_CUSTOM, FIELD(targets), .set = set_targets},
    {"sweep", "seeds", IK_CUSTOM, FIELD(seeds), .set = set_seeds},
    {"sweep", "steps", IK_INT, FIELD(steps), 1, 100, IK_RANGE},
    {"sweep", "max_layer_frac", IK_DOUBLE, FIELD(max_layer_frac), 0, 1, IK_RANGE | IK_MIN_EXCL | IK_MAX_EXCL},
    {"sweep", "samples", IK_INT, FIELD(samples), 1, 1 << 24, IK_RANGE},
    {"sweep", "probes", IK_INT, FIELD(probes), 2, 100000, IK_RANGE},
    {"sweep", "threads", IK_INT, FIELD(threads), 0, 1024, IK_RANGE},
    {"data", "dataset", IK_NAME, FIELD(dataset), .flags = IK_NONEMPTY, .choices = dataset_names,
     .expect = "fashion-mnist, mnist or cifar10"},
    {"data", "dir", IK_STR, FIELD(data_dir), 0, 0, IK_NONEMPTY},
    {"finetune", "epochs", IK_INT, FIELD(finetune.epochs), 0, 10000, IK_RANGE},
    {"finetune", "lr", IK_FLOAT, FIELD(finetune.lr), 0, 100, IK_RANGE | IK_MIN_EXCL},
    {"finetune", "batch_size", IK_INT, FIELD(finetune.batch_size), 1, 65536, IK_RANGE},
    {"finetune", "val_split", IK_FLOAT, FIELD(finetune.val_split), 0, 1, IK_RANGE | IK_MAX_EXCL},
    {"finetune", "weight_decay", IK_FLOAT, FIELD(finetune.weight_decay), 0, 1, IK_RANGE},
    {"finetune", "crop_pad", IK_INT, FIELD(finetune.augment.crop_pad), 0, 64, IK_RANGE},
    {"finetune", "hflip", IK_BOOL, FIELD(finetune.augment.hflip)},
};

static const IniTable TABLE = {SECTIONS, KEYS, sizeof KEYS / sizeof KEYS[0], true};

int sweep_config_load(SweepConfig *c, const char *path, HpErr *err) {
    SweepConfig tmp = *c;
    if (ini_table_load(&TABLE, &tmp, path, err) != 0) return -1;
    if (!tmp.model[0])
        return hp_fail(err, "%s: [sweep] model is required (a trained model file, e.g. from hprune train)", path);
    if (strlen(path) >= sizeof tmp.path) return hp_fail(err, "%s: path too long", path);
    snprintf(tmp.path, sizeof tmp.path, "%s", path);
    *c = tmp;
    return 0;
}
