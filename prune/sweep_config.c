// sweep_config.c: the sweep's INI file, read with inih through one key table. As in
// formats/config.c, the line reader counts lines and checks section headers, the key handler
// keeps the first error, and the result replaces the caller's config only when the whole file
// is good; every error names "file:line".
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "sweep.h"

typedef enum {
    SK_STR,      // char[size], not empty
    SK_DATASET,  // char[size]: fashion-mnist, mnist, cifar10
    SK_INT,      // int in [min, max]
    SK_DOUBLE,   // double in [min, max] or (min, max) per excl
    SK_FLOAT,    // float, the same
    SK_METHODS,  // comma list of criterion names
    SK_TARGETS,  // comma list of fractions in (0, 1)
    SK_SEEDS,    // comma list of non-negative integers
    SK_KIND,     // flops (macs), params, channels
    SK_BOOL,     // bool: true/false, yes/no, on/off, 1/0
} SweepKeyType;

typedef struct {
    const char *section, *key;
    SweepKeyType type;
    size_t off, size;
    double min, max;
    bool min_excl, max_excl;
} SweepKey;

#define SFIELD(member) offsetof(SweepConfig, member), sizeof(((SweepConfig *)0)->member)

static const char *const SECTIONS[] = {"sweep", "data", "finetune", NULL};
static const char *const DATASETS[] = {"fashion-mnist", "mnist", "cifar10", NULL};

// Every key a sweep config knows; the only place that does.
static const SweepKey KEYS[] = {
    {"sweep", "model", SK_STR, SFIELD(model), 0, 0, false, false},
    {"sweep", "out", SK_STR, SFIELD(out), 0, 0, false, false},
    {"sweep", "methods", SK_METHODS, SFIELD(methods), 0, 0, false, false},
    {"sweep", "target", SK_KIND, SFIELD(kind), 0, 0, false, false},
    {"sweep", "targets", SK_TARGETS, SFIELD(targets), 0, 1, true, true},
    {"sweep", "seeds", SK_SEEDS, SFIELD(seeds), 0, 0, false, false},
    {"sweep", "steps", SK_INT, SFIELD(steps), 1, 100, false, false},
    {"sweep", "max_layer_frac", SK_DOUBLE, SFIELD(max_layer_frac), 0, 1, true, true},
    {"sweep", "samples", SK_INT, SFIELD(samples), 1, 1 << 24, false, false},
    {"sweep", "probes", SK_INT, SFIELD(probes), 2, 100000, false, false},
    {"sweep", "threads", SK_INT, SFIELD(threads), 0, 1024, false, false},
    {"data", "dataset", SK_DATASET, SFIELD(dataset), 0, 0, false, false},
    {"data", "dir", SK_STR, SFIELD(data_dir), 0, 0, false, false},
    {"finetune", "epochs", SK_INT, SFIELD(finetune.epochs), 0, 10000, false, false},
    {"finetune", "lr", SK_FLOAT, SFIELD(finetune.lr), 0, 100, true, false},
    {"finetune", "batch_size", SK_INT, SFIELD(finetune.batch_size), 1, 65536, false, false},
    {"finetune", "val_split", SK_FLOAT, SFIELD(finetune.val_split), 0, 1, false, true},
    {"finetune", "weight_decay", SK_FLOAT, SFIELD(finetune.weight_decay), 0, 1, false, false},
    {"finetune", "crop_pad", SK_INT, SFIELD(finetune.augment.crop_pad), 0, 64, false, false},
    {"finetune", "hflip", SK_BOOL, SFIELD(finetune.augment.hflip), 0, 0, false, false},
};

#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

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

// ---- names ----

// Returns the index of s in the NULL-terminated list, or -1.
static int list_find(const char *const *list, const char *s) {
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0) return i;
    return -1;
}

// Returns the key's table entry, or NULL.
static const SweepKey *key_find(const char *section, const char *key) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].section, section) == 0 && strcmp(KEYS[i].key, key) == 0) return &KEYS[i];
    return NULL;
}

// Fails with "unknown section [s] (known: [sweep], [data], [finetune])".
static int fail_section(const char *s, int len, HpErr *err) {
    return hp_fail(err, "unknown section [%.*s] (known: [sweep], [data], [finetune])", len > 64 ? 64 : len, s);
}

// Fails naming an unknown key (and the keys its section knows) or an unknown section.
static int fail_key(const char *section, const char *key, HpErr *err) {
    if (list_find(SECTIONS, section) < 0) {
        if (!section[0]) return hp_fail(err, "key '%.64s' is outside any section", key);
        return fail_section(section, (int)strlen(section), err);
    }
    char known[256] = "";
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(KEYS[i].section, section) != 0) continue;
        size_t len = strlen(known);
        snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", KEYS[i].key);
    }
    return hp_fail(err, "unknown key '%.64s' in [%s] (known: %s)", key, section, known);
}

// Fails with "bad value '<v>' for '<key>': <what>".
static int fail_value(const SweepKey *k, const char *v, const char *what, HpErr *err) {
    return hp_fail(err, "bad value '%.80s%s' for '%s': %s", v, strlen(v) > 80 ? "..." : "", k->key, what);
}

// ---- values ----

// Parses a whole string as a finite number. Returns 0 or -1.
static int parse_number(const char *s, double *out) {
    if (!s[0] || strspn(s, "0123456789+-.eE") != strlen(s)) return -1;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

// Parses a whole string of decimal digits (optional sign) as an integer. Returns 0 or -1.
static int parse_integer(const char *s, long long *out) {
    const char *d = (s[0] == '-' || s[0] == '+') ? s + 1 : s;
    if (!isdigit((unsigned char)d[0])) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (*end || errno == ERANGE) return -1;
    *out = x;
    return 0;
}

// Checks x against the key's range; fails with "'<key>' must be in (0, 1)" and the like.
static int check_range(const SweepKey *k, double x, HpErr *err) {
    bool lo = k->min_excl ? x > k->min : x >= k->min;
    bool hi = k->max_excl ? x < k->max : x <= k->max;
    if (lo && hi) return 0;
    return hp_fail(err, "'%s' must be in %c%g, %g%c, got %.17g", k->key, k->min_excl ? '(' : '[', k->min, k->max,
                   k->max_excl ? ')' : ']', x);
}

// Copies the comma-separated token [p, q) without surrounding blanks into buf; returns its
// length, or -1 if it does not fit.
static int token(const char *p, const char *q, char *buf, size_t cap) {
    while (p < q && isspace((unsigned char)*p)) p++;
    while (q > p && isspace((unsigned char)q[-1])) q--;
    if ((size_t)(q - p) >= cap) return -1;
    memcpy(buf, p, (size_t)(q - p));
    buf[q - p] = '\0';
    return (int)(q - p);
}

// Splits v at commas into at most SWEEP_MAX_LIST tokens of toks (each < 64 bytes); returns the
// count, or -1 with err set (an empty entry, a too long entry, too many entries).
static int split_list(const SweepKey *k, const char *v, char toks[][64], HpErr *err) {
    int n = 0;
    for (const char *p = v;;) {
        const char *q = p + strcspn(p, ",");
        if (n == SWEEP_MAX_LIST) {
            char what[64];
            snprintf(what, sizeof what, "at most %d entries", SWEEP_MAX_LIST);
            return fail_value(k, v, what, err);
        }
        int len = token(p, q, toks[n], sizeof toks[n]);
        if (len <= 0)
            return fail_value(k, v, len == 0 ? "an empty entry in the comma list" : "an entry is too long", err);
        n++;
        if (!*q) return n;
        p = q + 1;
    }
}

// Fails if list entry i repeats an earlier one (by the same text after parsing).
static int check_repeat(const SweepKey *k, char toks[][64], const bool *same_as_earlier, int i, HpErr *err) {
    if (!same_as_earlier[i]) return 0;
    return hp_fail(err, "'%s' lists '%s' twice", k->key, toks[i]);
}

// Parses a methods list into c.
static int set_methods(SweepConfig *c, const SweepKey *k, const char *v, HpErr *err) {
    char toks[SWEEP_MAX_LIST][64];
    bool dup[SWEEP_MAX_LIST] = {0};
    Criterion m[SWEEP_MAX_LIST];
    int n = split_list(k, v, toks, err);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        m[i] = criterion_parse(toks[i]);
        if (m[i] == CRIT_COUNT) {
            char known[160] = "";
            for (int j = 0; j < CRIT_COUNT; j++) {
                size_t len = strlen(known);
                snprintf(known + len, sizeof known - len, "%s%s", j ? ", " : "", criterion_name((Criterion)j));
            }
            return hp_fail(err, "unknown method '%s' in 'methods' (known: %s)", toks[i], known);
        }
        for (int j = 0; j < i; j++) dup[i] |= m[j] == m[i];
        if (check_repeat(k, toks, dup, i, err) < 0) return -1;
    }
    memcpy(c->methods, m, (size_t)n * sizeof m[0]);
    c->n_methods = n;
    return 0;
}

// Parses a targets list (fractions in (0, 1)) into c.
static int set_targets(SweepConfig *c, const SweepKey *k, const char *v, HpErr *err) {
    char toks[SWEEP_MAX_LIST][64];
    bool dup[SWEEP_MAX_LIST] = {0};
    double t[SWEEP_MAX_LIST];
    int n = split_list(k, v, toks, err);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        if (parse_number(toks[i], &t[i]) < 0) return fail_value(k, v, "expected comma-separated numbers", err);
        if (!(t[i] > 0 && t[i] < 1))
            return hp_fail(err, "bad value '%s' in 'targets': a fraction to remove must be in (0, 1)", toks[i]);
        for (int j = 0; j < i; j++) dup[i] |= t[j] == t[i];
        if (check_repeat(k, toks, dup, i, err) < 0) return -1;
    }
    memcpy(c->targets, t, (size_t)n * sizeof t[0]);
    c->n_targets = n;
    return 0;
}

// Parses a seeds list (non-negative integers) into c.
static int set_seeds(SweepConfig *c, const SweepKey *k, const char *v, HpErr *err) {
    char toks[SWEEP_MAX_LIST][64];
    bool dup[SWEEP_MAX_LIST] = {0};
    uint64_t s[SWEEP_MAX_LIST];
    int n = split_list(k, v, toks, err);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        long long x;
        if (parse_integer(toks[i], &x) < 0 || x < 0)
            return fail_value(k, v, "expected comma-separated non-negative integers", err);
        s[i] = (uint64_t)x;
        for (int j = 0; j < i; j++) dup[i] |= s[j] == s[i];
        if (check_repeat(k, toks, dup, i, err) < 0) return -1;
    }
    memcpy(c->seeds, s, (size_t)n * sizeof s[0]);
    c->n_seeds = n;
    return 0;
}

// Parses the target kind.
static int set_kind(SweepConfig *c, const SweepKey *k, const char *v, HpErr *err) {
    if (strcmp(v, "flops") == 0 || strcmp(v, "macs") == 0)
        c->kind = TARGET_MACS;
    else if (strcmp(v, "params") == 0)
        c->kind = TARGET_PARAMS;
    else if (strcmp(v, "channels") == 0)
        c->kind = TARGET_CHANNELS;
    else
        return fail_value(k, v, "expected flops (or macs), params or channels", err);
    return 0;
}

// Parses a boolean word into dst.
static int set_bool(bool *dst, const SweepKey *k, const char *v, HpErr *err) {
    static const char *const yes[] = {"true", "yes", "on", "1", NULL}, *const no[] = {"false", "no", "off", "0", NULL};
    if (list_find(yes, v) >= 0)
        *dst = true;
    else if (list_find(no, v) >= 0)
        *dst = false;
    else
        return fail_value(k, v, "expected true or false", err);
    return 0;
}

// Stores a non-empty string (a dataset name must be a known one).
static int set_string(char *dst, const SweepKey *k, const char *v, HpErr *err) {
    if (!v[0]) return hp_fail(err, "'%s' must not be empty", k->key);
    if (strlen(v) >= k->size) return hp_fail(err, "'%s' is too long (at most %zu characters)", k->key, k->size - 1);
    if (k->type == SK_DATASET && list_find(DATASETS, v) < 0)
        return fail_value(k, v, "expected fashion-mnist, mnist or cifar10", err);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

// Parses v as key k's type, checks it and stores it in c (c unchanged on error).
static int set_value(SweepConfig *c, const SweepKey *k, const char *v, HpErr *err) {
    void *dst = (char *)c + k->off;
    double x;
    long long i;
    switch (k->type) {
    case SK_STR:
    case SK_DATASET: return set_string(dst, k, v, err);
    case SK_METHODS: return set_methods(c, k, v, err);
    case SK_TARGETS: return set_targets(c, k, v, err);
    case SK_SEEDS: return set_seeds(c, k, v, err);
    case SK_KIND: return set_kind(c, k, v, err);
    case SK_BOOL: HP_ASSERT(k->size == sizeof(bool)); return set_bool(dst, k, v, err);
    case SK_INT:
        if (parse_integer(v, &i) < 0) return fail_value(k, v, "expected an integer", err);
        HP_ASSERT(k->size == sizeof(int));
        if (check_range(k, (double)i, err) < 0) return -1;
        *(int *)dst = (int)i;
        return 0;
    case SK_DOUBLE:
    case SK_FLOAT:
        if (parse_number(v, &x) < 0) return fail_value(k, v, "expected a number", err);
        if (check_range(k, x, err) < 0) return -1;
        HP_ASSERT(k->size == (k->type == SK_FLOAT ? sizeof(float) : sizeof(double)));
        if (k->type == SK_FLOAT)
            *(float *)dst = (float)x;
        else
            *(double *)dst = x;
        return 0;
    }
    HP_ASSERT(0 && "unknown key type");
    return -1;
}

// ---- the file ----

// One sweep_config_load in progress.
typedef struct {
    SweepConfig cfg;
    FILE *f;
    int line;        // lines handed to inih so far
    int err_line;    // line of the first error (0: none)
    int read_errno;  // errno of a failed read (0: none)
    HpErr err;       // that error's message, without file and line
} SweepLoad;

// Keeps e as the error of the current line unless an earlier one is held.
static void record(SweepLoad *ld, const HpErr *e) {
    if (ld->err_line) return;
    ld->err_line = ld->line;
    ld->err = *e;
}

// Reports a section header naming an unknown section at its own line (even an empty one).
static void check_header(SweepLoad *ld, const char *s) {
    if (ld->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3;
    while (isspace((unsigned char)*s)) s++;
    const char *close = *s == '[' ? strchr(s, ']') : NULL;
    if (!close) return;
    int len = (int)(close - s - 1);
    char name[32];
    if (len < (int)sizeof name) {
        memcpy(name, s + 1, (size_t)len);
        name[len] = '\0';
        if (list_find(SECTIONS, name) >= 0) return;
    }
    HpErr e;
    fail_section(s + 1, len, &e);
    record(ld, &e);
}

// inih's line reader: counts lines, refuses lines too long for inih, checks headers.
static char *read_line(char *str, int num, void *stream) {
    SweepLoad *ld = stream;
    if (!fgets(str, num, ld->f)) {
        if (ferror(ld->f)) ld->read_errno = errno ? errno : EIO;
        return NULL;
    }
    ld->line++;
    size_t len = strlen(str);
    if (len > 0 && str[len - 1] != '\n' && getc(ld->f) != EOF) {
        HpErr e;
        hp_fail(&e, "line too long (at most %d characters)", num - 2);
        record(ld, &e);
        return NULL;
    }
    check_header(ld, str);
    return str;
}

// inih's key handler: applies one key; 1 on success, 0 on error.
static int on_key(void *user, const char *section, const char *name, const char *value) {
    SweepLoad *ld = user;
    HpErr e;
    const SweepKey *k = key_find(section, name);
    int rc = k ? set_value(&ld->cfg, k, value, &e) : fail_key(section, name, &e);
    if (rc < 0) {
        record(ld, &e);
        return 0;
    }
    if (k->type == SK_TARGETS) ld->cfg.targets_line = ld->line;
    return 1;
}

int sweep_config_load(SweepConfig *c, const char *path, HpErr *err) {
    FILE *f = fopen(path, "r");
    if (!f) return hp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    SweepLoad ld = {.cfg = *c, .f = f};
    int ret = ini_parse_stream(read_line, &ld, on_key, &ld);
    fclose(f);
    if (ld.read_errno) return hp_fail(err, "%s: cannot read: %s", path, strerror(ld.read_errno));
    if (ret > 0 && (ld.err_line == 0 || ret < ld.err_line))
        return hp_fail(err, "%s:%d: syntax error (expected [section], key = value or a comment)", path, ret);
    if (ld.err_line) return hp_fail(err, "%s:%d: %s", path, ld.err_line, ld.err.msg);
    if (ret < 0) return hp_fail(err, "%s: cannot parse (inih error %d)", path, ret);
    if (!ld.cfg.model[0])
        return hp_fail(err, "%s: [sweep] model is required (a trained model file, e.g. from hprune train)", path);
    if (strlen(path) >= sizeof ld.cfg.path) return hp_fail(err, "%s: path too long", path);
    snprintf(ld.cfg.path, sizeof ld.cfg.path, "%s", path);
    *c = ld.cfg;
    return 0;
}
