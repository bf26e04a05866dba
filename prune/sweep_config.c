// sweep_config.c: the sweep's INI file, read through key tables by formats/ini_table.c (one for
// [sweep], [data] and [finetune], one for the [method NAME] sections). The result replaces the
// caller's config only when the whole file is good; every error names "file:line".
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/ini_table.h"
#include "sweep.h"

// A method named name, of criterion crit (CRIT_COUNT: not yet known), with prune's defaults.
static SweepMethod method_default(const char *name, Criterion crit) {
    SweepMethod m = {.criterion = crit};
    CritOpts k = crit_defaults();
    snprintf(m.name, sizeof m.name, "%s", name);
    m.normalize = k.normalize;
    m.ggn = k.ggn;
    m.consumers_only = k.consumers_only;
    m.fisher_grads = k.fisher.n_grads;
    m.fisher_batch = k.fisher.grad_batch;
    m.block_size = (int)k.fisher.block_size;
    m.damp = k.fisher.damp;
    m.layer_damp = k.damp_rel;
    m.compensate = k.compensate;
    return m;
}

void sweep_config_default(SweepConfig *c) {
    memset(c, 0, sizeof *c);
    PruneJob j = prune_job_defaults();
    c->methods[0] = method_default("l1", CRIT_L1);
    snprintf(c->method_names[0], sizeof c->method_names[0], "l1");
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
    unsigned char x[SWEEP_MAX_LIST][SWEEP_NAME];  // the parsed entries (a name, a seed or a target)
    HP_ASSERT(elem <= sizeof x[0]);
    int count = ini_split(v, toks, SWEEP_MAX_LIST);
    snprintf(what, sizeof what, "at most %d entries", SWEEP_MAX_LIST);
    if (count == INI_SPLIT_EMPTY) return ini_bad_value(s, v, "an empty entry in the comma list");
    if (count == INI_SPLIT_LONG) return ini_bad_value(s, v, "an entry is too long");
    if (count == INI_SPLIT_MANY) return ini_bad_value(s, v, what);
    for (int i = 0; i < count; i++) {
        if (parse(s, v, toks[i], x[i]) != 0) return -1;
        for (int j = 0; j < i; j++)  // equal values have equal bytes here (no zeros, no NaNs, names zero-padded)
            if (memcmp(x[j], x[i], elem) == 0) return hp_fail(s->err, "'%s' lists '%s' twice", s->key->key, toks[i]);
    }
    for (int i = 0; i < count; i++) memcpy((char *)vals + (size_t)i * elem, x[i], elem);
    *n = count;
    return 0;
}

// Fails unless name can name a method: 1 to SWEEP_NAME - 1 of [A-Za-z0-9._+-], starting with a
// letter or digit (it goes into file names, and collect skips names starting with a dot).
static int check_method_name(const char *name, HpErr *err) {
    size_t n = strlen(name);
    if (n == 0) return hp_fail(err, "a method needs a name");
    if (n >= SWEEP_NAME) return hp_fail(err, "method name '%.40s...' is too long (at most %d characters)", name, SWEEP_NAME - 1);
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("._+-", name[i]))
            return hp_fail(err, "method name '%s': only letters, digits and . _ + - are allowed", name);
    if (!isalnum((unsigned char)name[0])) return hp_fail(err, "method name '%s' must start with a letter or a digit", name);
    return 0;
}

bool sweep_method_name_ok(const char *name) {
    HpErr e;
    return check_method_name(name, &e) == 0;
}

// EntryFn of methods: a method's name (resolved once the whole file is read).
static int method_entry(const IniSet *s, const char *v, const char *tok, void *out) {
    (void)v;
    if (check_method_name(tok, s->err) != 0) return -1;
    memset(out, 0, SWEEP_NAME);
    memcpy(out, tok, strlen(tok));
    return 0;
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

// [sweep] methods: names, resolved to methods after the whole file is read.
static int set_methods(void *cfg, const IniSet *s, const char *v) {
    SweepConfig *c = cfg;
    if (set_list(s, v, method_entry, c->method_names, sizeof c->method_names[0], &c->n_methods) != 0) return -1;
    c->methods_line = s->line;
    return 0;
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

// ---- [method NAME] sections ----

// [method] criterion.
static int set_criterion(void *cfg, const IniSet *s, const char *v) {
    SweepMethod *m = cfg;
    Criterion k = criterion_parse(v);
    char known[160], what[200];
    criteria_names(known, sizeof known);
    snprintf(what, sizeof what, "expected one of %s", known);
    if (k == CRIT_COUNT) return ini_bad_value(s, v, what);
    m->criterion = k;
    return 0;
}

// [method] rank: score or per-cost.
static int set_rank(void *cfg, const IniSet *s, const char *v) {
    SweepMethod *m = cfg;
    if (strcmp(v, "score") != 0 && strcmp(v, "per-cost") != 0) return ini_bad_value(s, v, "expected score or per-cost");
    m->per_cost = strcmp(v, "per-cost") == 0;
    return 0;
}

// [method] slices: all or consumers.
static int set_slices(void *cfg, const IniSet *s, const char *v) {
    SweepMethod *m = cfg;
    if (strcmp(v, "all") != 0 && strcmp(v, "consumers") != 0) return ini_bad_value(s, v, "expected all or consumers");
    m->consumers_only = strcmp(v, "consumers") == 0;
    return 0;
}

// [method] normalize: auto, mean, max, size or none.
static int set_normalize(void *cfg, const IniSet *s, const char *v) {
    SweepMethod *m = cfg;
    int n = normalize_parse(v);
    if (n < 0) return ini_bad_value(s, v, "expected auto, mean, max, size or none");
    m->normalize = (Normalize)n;
    return 0;
}

#define MFIELD(member) INI_FIELD(SweepMethod, member)

// Every key a [method NAME] section knows; their order indexes SweepMethod.key_line.
static const IniKey METHOD_KEYS[] = {
    {"method", "criterion", IK_CUSTOM, MFIELD(criterion), .set = set_criterion},
    {"method", "rank", IK_CUSTOM, MFIELD(per_cost), .set = set_rank},
    {"method", "slices", IK_CUSTOM, MFIELD(consumers_only), .set = set_slices},
    {"method", "normalize", IK_CUSTOM, MFIELD(normalize), .set = set_normalize},
    {"method", "ggn", IK_BOOL, MFIELD(ggn)},
    {"method", "steps", IK_INT, MFIELD(steps), 1, 100, IK_RANGE},
    {"method", "samples", IK_INT, MFIELD(samples), 1, 1 << 24, IK_RANGE},
    {"method", "probes", IK_INT, MFIELD(probes), 2, 100000, IK_RANGE},
    {"method", "fisher_grads", IK_INT, MFIELD(fisher_grads), 1, 1 << 24, IK_RANGE},
    {"method", "fisher_batch", IK_INT, MFIELD(fisher_batch), 1, 65536, IK_RANGE},
    {"method", "block_size", IK_INT, MFIELD(block_size), 1, 1 << 30, IK_RANGE},
    {"method", "damp", IK_DOUBLE, MFIELD(damp), HP_DAMP_MIN, HP_DAMP_MAX, IK_RANGE},
    {"method", "layer_damp", IK_DOUBLE, MFIELD(layer_damp), HP_DAMP_MIN, HP_DAMP_MAX, IK_RANGE},
    {"method", "compensate", IK_BOOL, MFIELD(compensate)},
};
#define N_METHOD_KEYS (sizeof METHOD_KEYS / sizeof METHOD_KEYS[0])
_Static_assert(N_METHOD_KEYS <= SWEEP_METHOD_KEYS, "SweepMethod.key_line has a line for every key");

static const char *const METHOD_SECTIONS[] = {"method", NULL};
static const IniTable METHOD_TABLE = {.sections = METHOD_SECTIONS, .keys = METHOD_KEYS, .n_keys = N_METHOD_KEYS,
                                      .spans = true};

// IniTable.family_open: a new [method NAME] section, refused if NAME is bad or already defined.
static void *open_method(void *cfg, const char *name, int line, HpErr *err) {
    SweepConfig *c = cfg;
    if (check_method_name(name, err) != 0) return NULL;
    for (int i = 0; i < c->n_defined; i++)
        if (strcmp(c->defined[i].name, name) == 0)
            return hp_fail(err, "[method %s] is defined twice (first at line %d)", name, c->defined[i].line), NULL;
    if (c->n_defined == SWEEP_MAX_LIST) return hp_fail(err, "at most %d [method NAME] sections", SWEEP_MAX_LIST), NULL;
    SweepMethod *m = &c->defined[c->n_defined++];
    *m = method_default(name, criterion_parse(name));
    m->line = line;
    return m;
}

// IniTable.family_seen: remembers the line of a [method NAME] key.
static void saw_method_key(void *sub, const char *key, int line) {
    SweepMethod *m = sub;
    for (size_t i = 0; i < N_METHOD_KEYS; i++)
        if (strcmp(METHOD_KEYS[i].key, key) == 0) m->key_line[i] = line;
}

// The line where m set key (0: not set).
static int key_line(const SweepMethod *m, const char *key) {
    for (size_t i = 0; i < N_METHOD_KEYS; i++)
        if (strcmp(METHOD_KEYS[i].key, key) == 0) return m->key_line[i];
    HP_ASSERT(0 && "a key of METHOD_KEYS");
    return 0;
}

// The [method NAME] keys that only some criteria use (criterion_option_applies says which).
static const char *const ONLY_FOR[] = {"slices",       "ggn",   "probes", "samples",    "fisher_grads",
                                       "fisher_batch", "block_size", "damp", "layer_damp", "compensate"};

// Checks a [method NAME] section of the file path: it has a criterion (the one NAME names, if
// NAME is a criterion), and sets no option its criterion does not use, nor probes with ggn.
// The first offending key in the file is named. Returns 0, or -1 with err naming "path:line".
static int check_method(const SweepMethod *m, const char *path, HpErr *err) {
    char names[160];
    Criterion named = criterion_parse(m->name);
    if (m->criterion == CRIT_COUNT) {
        criteria_names(names, sizeof names);
        return hp_fail(err, "%s:%d: [method %s] needs 'criterion = NAME' (one of %s)", path, m->line, m->name, names);
    }
    if (named != CRIT_COUNT && m->criterion != named)
        return hp_fail(err, "%s:%d: [method %s] changes %s's defaults: its criterion cannot be %s (name the section "
                            "otherwise)", path, key_line(m, "criterion"), m->name, m->name, criterion_name(m->criterion));
    int first = -1, first_line = 0;  // the offending key that comes first in the file
    for (int i = 0; i < (int)(sizeof ONLY_FOR / sizeof ONLY_FOR[0]); i++) {
        int line = key_line(m, ONLY_FOR[i]);
        if (line && !criterion_option_applies(ONLY_FOR[i], m->criterion, NULL, 0) && (first < 0 || line < first_line))
            first = i, first_line = line;
    }
    if (first >= 0) {
        criterion_option_applies(ONLY_FOR[first], m->criterion, names, sizeof names);
        return hp_fail(err, "%s:%d: '%s' applies to %s, not %s (in [method %s])", path, first_line, ONLY_FOR[first],
                       names, criterion_name(m->criterion), m->name);
    }
    int probes = key_line(m, "probes"), ggn = key_line(m, "ggn");
    if (probes && ggn && m->ggn)
        return hp_fail(err, "%s:%d: 'probes' does not apply with 'ggn = true' (the exact Gauss-Newton diagonal has no "
                            "probes; in [method %s])", path, probes > ggn ? probes : ggn, m->name);
    return 0;
}

// Resolves c->method_names into c->methods: a [method NAME] section of that name, else the
// criterion of that name with prune's defaults. Returns 0, or -1 naming the line of `methods`.
static int resolve_methods(SweepConfig *c, const char *path, HpErr *err) {
    for (int i = 0; i < c->n_defined; i++)
        if (check_method(&c->defined[i], path, err) != 0) return -1;
    for (int i = 0; i < c->n_methods; i++) {
        const char *name = c->method_names[i];
        const SweepMethod *def = NULL;
        for (int j = 0; j < c->n_defined && !def; j++)
            if (strcmp(c->defined[j].name, name) == 0) def = &c->defined[j];
        if (def) {
            c->methods[i] = *def;
            continue;
        }
        Criterion k = criterion_parse(name);
        if (k == CRIT_COUNT) {
            char known[160];
            criteria_names(known, sizeof known);
            return hp_fail(err, "%s:%d: unknown method '%s' in 'methods' (criteria: %s; or define it in a [method %s] "
                                "section)", path, c->methods_line, name, known, name);
        }
        c->methods[i] = method_default(name, k);
    }
    for (int i = 0; i < c->n_methods; i++)
        if (c->methods[i].per_cost && c->kind == TARGET_CHANNELS)
            return hp_fail(err, "%s:%d: 'rank = per-cost' with a channel target ranks as 'score' (every channel costs "
                                "one): drop it (in [method %s])", path, key_line(&c->methods[i], "rank"),
                           c->methods[i].name);
    return 0;
}

int sweep_method_line(const SweepConfig *c, const SweepMethod *m) {
    if (m->line) return key_line(m, "criterion") ? key_line(m, "criterion") : m->line;
    return c->methods_line;
}

bool sweep_method_listed(const SweepConfig *c, int i) {
    HP_ASSERT(i >= 0 && i < c->n_defined);
    for (int j = 0; j < c->n_methods; j++)
        if (strcmp(c->method_names[j], c->defined[i].name) == 0) return true;
    return false;
}

// ---- the table ----

static const char *const SECTIONS[] = {"sweep", "data", "finetune", NULL};
static const char *const DATASETS[] = {"fashion-mnist", "mnist", "cifar10", NULL};

// Returns the dataset names a sweep accepts.
static const char *const *dataset_names(void) { return DATASETS; }

#define FIELD(member) INI_FIELD(SweepConfig, member)

// The keys whose lines later messages name, read as these types (set_located keeps the lines):
// those naming files (the model, the data), so that an error found in the file a key names points
// at the key, and the fine-tuning's epochs and batch size, which its memory check names.
static const IniKey LOCATED_KEYS[] = {
    {"sweep", "model", IK_STR, FIELD(model), 0, 0, IK_NONEMPTY},
    {"data", "dataset", IK_NAME, FIELD(dataset), .flags = IK_NONEMPTY, .choices = dataset_names,
     .expect = "fashion-mnist, mnist or cifar10"},
    {"data", "dir", IK_STR, FIELD(data_dir), 0, 0, IK_NONEMPTY},
    {"finetune", "epochs", IK_INT, FIELD(finetune.epochs), 0, 10000, IK_RANGE},
    {"finetune", "batch_size", IK_INT, FIELD(finetune.batch_size), 1, 65536, IK_RANGE},
};
static const IniTable LOCATED_TABLE = {.sections = SECTIONS, .keys = LOCATED_KEYS,
                                       .n_keys = sizeof LOCATED_KEYS / sizeof LOCATED_KEYS[0], .spans = true};

// The field of c that keeps the line of LOCATED_KEYS' key `key`.
static int *located_line(SweepConfig *c, const char *key) {
    if (strcmp(key, "model") == 0) return &c->model_line;
    if (strcmp(key, "dataset") == 0) return &c->dataset_line;
    if (strcmp(key, "dir") == 0) return &c->data_dir_line;
    if (strcmp(key, "epochs") == 0) return &c->finetune_epochs_line;
    HP_ASSERT(strcmp(key, "batch_size") == 0);
    return &c->finetune_batch_line;
}

// A key of LOCATED_KEYS: the value as that table reads it, and its line.
static int set_located(void *cfg, const IniSet *s, const char *v) {
    if (ini_table_set(&LOCATED_TABLE, cfg, s->key->section, s->key->key, v, s->line, s->err) != 0) return -1;
    *located_line(cfg, s->key->key) = s->line;
    return 0;
}

// Every key of [sweep], [data] and [finetune]; the only place that lists them.
static const IniKey KEYS[] = {
    {"sweep", "model", IK_CUSTOM, FIELD(model), .set = set_located},
    {"sweep", "out", IK_STR, FIELD(out), 0, 0, IK_NONEMPTY | IK_OUTPUT},
    {"sweep", "methods", IK_CUSTOM, FIELD(method_names), .set = set_methods},
    {"sweep", "target", IK_CUSTOM, FIELD(kind), .set = set_kind},
    {"sweep", "targets", IK_CUSTOM, FIELD(targets), .set = set_targets},
    {"sweep", "seeds", IK_CUSTOM, FIELD(seeds), .set = set_seeds},
    {"sweep", "steps", IK_INT, FIELD(steps), 1, 100, IK_RANGE},
    {"sweep", "max_layer_frac", IK_DOUBLE, FIELD(max_layer_frac), 0, 1, IK_RANGE | IK_MIN_EXCL | IK_MAX_EXCL},
    {"sweep", "samples", IK_INT, FIELD(samples), 1, 1 << 24, IK_RANGE},
    {"sweep", "probes", IK_INT, FIELD(probes), 2, 100000, IK_RANGE},
    {"sweep", "threads", IK_INT, FIELD(threads), 0, HP_MAX_THREADS, IK_RANGE},
    {"data", "dataset", IK_CUSTOM, FIELD(dataset), .set = set_located},
    {"data", "dir", IK_CUSTOM, FIELD(data_dir), .set = set_located},
    {"finetune", "epochs", IK_CUSTOM, FIELD(finetune.epochs), .set = set_located},
    {"finetune", "lr", IK_FLOAT, FIELD(finetune.lr), 0, 100, IK_RANGE | IK_MIN_EXCL},
    {"finetune", "batch_size", IK_CUSTOM, FIELD(finetune.batch_size), .set = set_located},
    {"finetune", "val_split", IK_FLOAT, FIELD(finetune.val_split), 0, 1, IK_RANGE | IK_MAX_EXCL},
    {"finetune", "weight_decay", IK_FLOAT, FIELD(finetune.weight_decay), 0, 1, IK_RANGE},
    {"finetune", "crop_pad", IK_INT, FIELD(finetune.augment.crop_pad), 0, HP_MAX_CROP_PAD, IK_RANGE},
    {"finetune", "hflip", IK_BOOL, FIELD(finetune.augment.hflip)},
};

static const IniTable TABLE = {.sections = SECTIONS, .keys = KEYS, .n_keys = sizeof KEYS / sizeof KEYS[0],
                               .spans = true, .family = "method", .family_table = &METHOD_TABLE, .family_open = open_method,
                               .family_seen = saw_method_key};

int sweep_config_load(SweepConfig *c, const char *path, HpErr *err) {
    SweepConfig *tmp = hp_alloc(1, sizeof *tmp, err);  // tens of kB: not on the stack
    if (!tmp) return hp_prefix(err, path);
    *tmp = *c;
    tmp->n_defined = 0;
    int rc = ini_table_load(&TABLE, tmp, path, err);
    if (rc == 0) rc = resolve_methods(tmp, path, err);
    if (rc == 0 && !tmp->model[0])
        rc = hp_fail(err, "%s: [sweep] model is required (a trained model file, e.g. from hprune train)", path);
    if (rc == 0 && strlen(path) >= sizeof tmp->path) rc = hp_fail(err, "%s: path too long", path);
    if (rc == 0) {
        snprintf(tmp->path, sizeof tmp->path, "%s", path);
        *c = *tmp;
    }
    free(tmp);
    return rc;
}

// Appends ", " (unless buf is empty) and the formatted text to buf (cap bytes, NUL-terminated;
// cut short when full).
__attribute__((format(printf, 3, 4))) static void add_option(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len && len + 2 < cap) memcpy(buf + len, ", ", 3), len += 2;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

void sweep_method_options(const SweepMethod *m, char *buf, size_t cap) {
    SweepMethod d = method_default(m->name, m->criterion);
    HP_ASSERT(cap > 0);
    buf[0] = '\0';
    if (m->per_cost != d.per_cost) add_option(buf, cap, "rank %s", m->per_cost ? "per-cost" : "score");
    if (m->consumers_only != d.consumers_only)
        add_option(buf, cap, "slices %s", m->consumers_only ? "consumers" : "all");
    if (m->normalize != d.normalize) add_option(buf, cap, "normalize %s", normalize_name(m->normalize));
    if (m->ggn != d.ggn) add_option(buf, cap, "%s", m->ggn ? "ggn" : "no ggn");
    if (m->steps) add_option(buf, cap, "%d step%s", m->steps, m->steps > 1 ? "s" : "");
    if (m->samples) add_option(buf, cap, "%d samples", m->samples);
    if (m->probes) add_option(buf, cap, "%d probes", m->probes);
    if (m->fisher_grads != d.fisher_grads) add_option(buf, cap, "%d Fisher gradients", m->fisher_grads);
    if (m->fisher_batch != d.fisher_batch) add_option(buf, cap, "Fisher batch %d", m->fisher_batch);
    if (m->block_size != d.block_size) add_option(buf, cap, "Fisher blocks of %d", m->block_size);
    if (m->damp != d.damp) add_option(buf, cap, "damp %g", m->damp);
    if (m->layer_damp != d.layer_damp) add_option(buf, cap, "layer damp %g", m->layer_damp);
    if (m->compensate != d.compensate) add_option(buf, cap, "%s", m->compensate ? "compensate" : "no compensation");
}
