// config.c: INI configuration files and command-line overrides, validated through one key table.
//
// inih reports only the line of its first error, so the details travel beside it: the line
// reader counts lines and checks section headers, the key handler keeps the first message,
// and config_load joins the two. A file is applied to a copy of the config, which replaces
// the caller's only when the whole file is good.
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

// ---- the key table ----

typedef enum {
    K_INT,         // int, decimal
    K_U64,         // uint64_t, decimal digits only
    K_FLOAT,       // float, finite
    K_BOOL,        // bool: true/false, yes/no, on/off, 1/0
    K_STR,         // char[size]
    K_NAME,        // char[size], one of choices()
    K_SCHEDULE,    // Schedule: constant, step, cosine
    K_MILESTONES,  // int[HP_MAX_MILESTONES] plus the count n_milestones
} KeyType;

enum {
    HAS_MIN = 1,   // value >= min (or > min with MIN_EXCL)
    HAS_MAX = 2,   // value <= max (or < max with MAX_EXCL)
    MIN_EXCL = 4,
    MAX_EXCL = 8,
    NONEMPTY = 16, // strings: the empty string is refused
};

typedef struct {
    const char *section;
    const char *key;
    KeyType type;
    size_t off, size;                     // the field inside Config
    double min, max;                      // numeric range, per flags
    unsigned flags;
    const char *const *(*choices)(void);  // K_NAME: NULL-terminated list of accepted values
} KeySpec;

static const char *const DATASET_NAMES[] = {"fashion-mnist", "mnist", "cifar10", NULL};
static const char *const SCHEDULE_NAMES[] = {"constant", "step", "cosine", NULL};  // Schedule order
static const char *const SECTION_NAMES[] = {"model", "data", "train", NULL};

// Returns the dataset names a config accepts.
static const char *const *dataset_names(void) { return DATASET_NAMES; }

#define FIELD(member) offsetof(Config, member), sizeof(((Config *)0)->member)

// Every key a config knows; the only place that does.
static const KeySpec KEYS[] = {
    {"model", "arch", K_NAME, FIELD(arch), 0, 0, 0, arch_names},
    {"data", "dataset", K_NAME, FIELD(dataset), 0, 0, 0, dataset_names},
    {"data", "dir", K_STR, FIELD(data_dir), 0, 0, NONEMPTY, NULL},
    {"data", "val_split", K_FLOAT, FIELD(train.val_split), 0, 1, HAS_MIN | HAS_MAX | MAX_EXCL, NULL},
    {"data", "crop_pad", K_INT, FIELD(train.augment.crop_pad), 0, 0, HAS_MIN, NULL},
    {"data", "hflip", K_BOOL, FIELD(train.augment.hflip), 0, 0, 0, NULL},
    {"train", "epochs", K_INT, FIELD(train.epochs), 1, 0, HAS_MIN, NULL},
    {"train", "batch_size", K_INT, FIELD(train.batch_size), 1, 0, HAS_MIN, NULL},
    {"train", "lr", K_FLOAT, FIELD(train.lr), 0, 0, HAS_MIN | MIN_EXCL, NULL},
    {"train", "momentum", K_FLOAT, FIELD(train.momentum), 0, 1, HAS_MIN | HAS_MAX | MAX_EXCL, NULL},
    {"train", "nesterov", K_BOOL, FIELD(train.nesterov), 0, 0, 0, NULL},
    {"train", "weight_decay", K_FLOAT, FIELD(train.weight_decay), 0, 0, HAS_MIN, NULL},
    {"train", "schedule", K_SCHEDULE, FIELD(train.schedule), 0, 0, 0, NULL},
    {"train", "milestones", K_MILESTONES, FIELD(train.milestones), 1, 0, HAS_MIN, NULL},
    {"train", "gamma", K_FLOAT, FIELD(train.gamma), 0, 0, HAS_MIN | MIN_EXCL, NULL},
    {"train", "warmup_epochs", K_INT, FIELD(train.warmup_epochs), 0, 0, HAS_MIN, NULL},
    {"train", "label_smoothing", K_FLOAT, FIELD(train.label_smoothing), 0, 1, HAS_MIN | HAS_MAX | MAX_EXCL, NULL},
    {"train", "seed", K_U64, FIELD(train.seed), 0, 0, 0, NULL},
    {"train", "threads", K_INT, FIELD(train.threads), 0, 0, HAS_MIN, NULL},
    {"train", "output", K_STR, FIELD(output), 0, 0, NONEMPTY, NULL},
};

#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

// Returns true if name is one of the sections a config has.
static bool section_known(const char *name) {
    for (int i = 0; SECTION_NAMES[i]; i++)
        if (strcmp(name, SECTION_NAMES[i]) == 0) return true;
    return false;
}

// Returns the table entry for [section] key, or NULL.
static const KeySpec *key_find(const char *section, const char *key) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].section, section) == 0 && strcmp(KEYS[i].key, key) == 0) return &KEYS[i];
    return NULL;
}

// Appends to buf (of size cap, already holding a string) with truncation; never overflows.
static void append(char *buf, size_t cap, const char *s) {
    size_t len = strlen(buf);
    if (len + 1 < cap) snprintf(buf + len, cap - len, "%s", s);
}

// Writes "a, b, c" (the NULL-terminated list) into buf.
static void join_list(char *buf, size_t cap, const char *const *list) {
    buf[0] = '\0';
    for (int i = 0; list[i]; i++) {
        if (i) append(buf, cap, ", ");
        append(buf, cap, list[i]);
    }
}

// Fails with "unknown section [name] (known: [model], ...)"; name is the first len bytes of s.
static int fail_section(const char *s, size_t len, HpErr *err) {
    char known[128] = "";
    for (int i = 0; SECTION_NAMES[i]; i++) {
        if (i) append(known, sizeof known, ", ");
        append(known, sizeof known, "[");
        append(known, sizeof known, SECTION_NAMES[i]);
        append(known, sizeof known, "]");
    }
    return hp_fail(err, "unknown section [%.*s] (known: %s)", (int)(len > 64 ? 64 : len), s, known);
}

// Fails with "unknown section [s] ..." or "unknown key 'k' in [s] (known: ...)".
static int fail_unknown(const char *section, const char *key, HpErr *err) {
    char known[256] = "";
    if (!section_known(section)) {
        if (section[0] == '\0') return hp_fail(err, "key '%.64s' is outside any section", key);
        return fail_section(section, strlen(section), err);
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(KEYS[i].section, section) != 0) continue;
        if (known[0]) append(known, sizeof known, ", ");
        append(known, sizeof known, KEYS[i].key);
    }
    return hp_fail(err, "unknown key '%.64s' in [%s] (known: %s)", key, section, known);
}

// ---- values ----

// One assignment in progress: the key, how errors name it, where they go.
typedef struct {
    const KeySpec *k;
    bool name_key;  // files: "bad value 'x' for 'lr': ..."; overrides name the key already
    HpErr *err;
} SetCtx;

_Static_assert(SCHED_CONSTANT == 0 && SCHED_STEP == 1 && SCHED_COSINE == 2, "SCHEDULE_NAMES order");

// Fails with "bad value '<value>'[ for '<key>']: <what>", long values shortened.
static int fail_value(const SetCtx *s, const char *value, const char *what) {
    const char *dots = strlen(value) > 80 ? "..." : "";
    if (s->name_key) return hp_fail(s->err, "bad value '%.80s%s' for '%s': %s", value, dots, s->k->key, what);
    return hp_fail(s->err, "bad value '%.80s%s': %s", value, dots, what);
}

// Checks v against the key's range; fails with "'<key>' must be at least 1" and the like.
static int check_range(const SetCtx *s, double v) {
    const KeySpec *k = s->k;
    bool min_x = k->flags & MIN_EXCL, max_x = k->flags & MAX_EXCL;
    if ((k->flags & HAS_MIN) && (min_x ? !(v > k->min) : !(v >= k->min)))
        return hp_fail(s->err, "'%s' must be %s %g", k->key, min_x ? "greater than" : "at least", k->min);
    if ((k->flags & HAS_MAX) && (max_x ? !(v < k->max) : !(v <= k->max)))
        return hp_fail(s->err, "'%s' must be %s %g", k->key, max_x ? "less than" : "at most", k->max);
    return 0;
}

// Parses a whole string as a decimal int (optional sign, no spaces or junk). Returns 0, -1 if
// it is not an integer, -2 if it does not fit an int.
static int parse_int(const char *v, int *out) {
    const char *d = (v[0] == '-' || v[0] == '+') ? v + 1 : v;
    if (!isdigit((unsigned char)d[0])) return -1;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*end != '\0') return -1;
    if (errno == ERANGE || x < INT_MIN || x > INT_MAX) return -2;
    *out = (int)x;
    return 0;
}

// Parses a whole string of decimal digits as a u64. Returns 0, -1 if malformed, -2 if too big.
static int parse_u64(const char *v, uint64_t *out) {
    if (!isdigit((unsigned char)v[0])) return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end != '\0') return -1;
    if (errno == ERANGE || x > UINT64_MAX) return -2;
    *out = (uint64_t)x;
    return 0;
}

// Parses a whole string as a finite decimal number that fits a float (no hex, inf or nan).
// Returns 0, -1 if malformed, -2 if out of float range.
static int parse_float(const char *v, float *out) {
    if (v[0] == '\0' || strspn(v, "0123456789+-.eE") != strlen(v)) return -1;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0') return -1;
    if (errno == ERANGE || !isfinite(x) || fabs(x) > FLT_MAX || (x != 0 && (float)x == 0)) return -2;
    *out = (float)x;
    return 0;
}

// Parses true/false, yes/no, on/off, 1/0 (any case). Returns 0 or -1.
static int parse_bool(const char *v, bool *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return *out = true, 0;
        if (strcasecmp(v, no[i]) == 0) return *out = false, 0;
    }
    return -1;
}

// Returns the index of v in the NULL-terminated list, or -1.
static int list_index(const char *const *list, const char *v) {
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], v) == 0) return i;
    return -1;
}

// Stores a string of at most size-1 characters at dst.
static int set_string(const SetCtx *s, char *dst, const char *v) {
    size_t len = strlen(v);
    if (len == 0 && (s->k->flags & NONEMPTY)) return hp_fail(s->err, "'%s' must not be empty", s->k->key);
    if (len >= s->k->size) return hp_fail(s->err, "'%s' is too long (at most %zu characters)", s->k->key, s->k->size - 1);
    memcpy(dst, v, len + 1);
    return 0;
}

// Stores one of a list of names (the key's choices) at dst.
static int set_name(const SetCtx *s, char *dst, const char *v) {
    const char *const *names = s->k->choices();
    if (list_index(names, v) < 0) {
        char what[256] = "expected one of ";
        char list[200];
        join_list(list, sizeof list, names);
        append(what, sizeof what, list);
        return fail_value(s, v, what);
    }
    return set_string(s, dst, v);
}

// Copies the token [p, q) without surrounding spaces into buf; returns its length, or -1 if it
// does not fit.
static int trim_token(const char *p, const char *q, char *buf, size_t cap) {
    while (p < q && isspace((unsigned char)*p)) p++;
    while (q > p && isspace((unsigned char)q[-1])) q--;
    if ((size_t)(q - p) >= cap) return -1;
    memcpy(buf, p, (size_t)(q - p));
    buf[q - p] = '\0';
    return (int)(q - p);
}

// Parses "30, 60, 90" (ascending epochs, at most HP_MAX_MILESTONES; "" for none) into c.
static int set_milestones(const SetCtx *s, TrainConfig *c, const char *v) {
    static const char *what = "expected comma-separated epochs in ascending order";
    int ms[HP_MAX_MILESTONES], n = 0;
    char tok[32];
    if (trim_token(v, v + strlen(v), tok, sizeof tok) == 0) {  // empty: no milestones
        c->n_milestones = 0;
        return 0;
    }
    for (const char *p = v;;) {
        const char *q = p + strcspn(p, ",");
        int x, len = trim_token(p, q, tok, sizeof tok);
        int rc = len > 0 ? parse_int(tok, &x) : -1;
        if (rc == -2) return fail_value(s, v, "integer out of range");
        if (rc != 0) return fail_value(s, v, what);
        if (n == HP_MAX_MILESTONES) {
            char msg[64];
            snprintf(msg, sizeof msg, "at most %d milestones", HP_MAX_MILESTONES);
            return fail_value(s, v, msg);
        }
        if (check_range(s, x) != 0) return -1;
        if (n > 0 && x <= ms[n - 1]) return fail_value(s, v, what);
        ms[n++] = x;
        if (*q == '\0') break;
        p = q + 1;
    }
    memcpy(c->milestones, ms, (size_t)n * sizeof ms[0]);
    c->n_milestones = n;
    return 0;
}

// Parses v as the key's type, checks its range and stores it in c; c is untouched on error.
static int set_value(Config *c, const KeySpec *k, const char *v, bool name_key, HpErr *err) {
    SetCtx s = {k, name_key, err};
    void *dst = (char *)c + k->off;
    int rc;
    switch (k->type) {
    case K_INT: {
        int x;
        HP_ASSERT(k->size == sizeof x);
        if ((rc = parse_int(v, &x)) != 0) return fail_value(&s, v, rc == -2 ? "integer out of range" : "expected an integer");
        if (check_range(&s, x) != 0) return -1;
        memcpy(dst, &x, sizeof x);
        return 0;
    }
    case K_U64: {
        uint64_t x;
        HP_ASSERT(k->size == sizeof x);
        if ((rc = parse_u64(v, &x)) != 0)
            return fail_value(&s, v, rc == -2 ? "integer out of range" : "expected a non-negative integer");
        memcpy(dst, &x, sizeof x);
        return 0;
    }
    case K_FLOAT: {
        float x;
        HP_ASSERT(k->size == sizeof x);
        if ((rc = parse_float(v, &x)) != 0) return fail_value(&s, v, rc == -2 ? "number out of range" : "expected a number");
        if (check_range(&s, x) != 0) return -1;
        memcpy(dst, &x, sizeof x);
        return 0;
    }
    case K_BOOL: {
        bool x;
        HP_ASSERT(k->size == sizeof x);
        if (parse_bool(v, &x) != 0) return fail_value(&s, v, "expected true or false");
        memcpy(dst, &x, sizeof x);
        return 0;
    }
    case K_STR: return set_string(&s, dst, v);
    case K_NAME: return set_name(&s, dst, v);
    case K_SCHEDULE: {
        int i = list_index(SCHEDULE_NAMES, v);
        HP_ASSERT(k->size == sizeof(Schedule));
        if (i < 0) return fail_value(&s, v, "expected constant, step or cosine");
        Schedule x = (Schedule)i;
        memcpy(dst, &x, sizeof x);
        return 0;
    }
    case K_MILESTONES:
        HP_ASSERT(k->off == offsetof(Config, train.milestones));
        return set_milestones(&s, &c->train, v);
    }
    HP_ASSERT(0 && "unknown key type");
    return -1;
}

// ---- public ----

void config_default(Config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "%s", "lenet5");
    snprintf(c->dataset, sizeof c->dataset, "%s", "fashion-mnist");
    snprintf(c->data_dir, sizeof c->data_dir, "%s", "/usr/share/datasets/fashion-mnist");
    train_config_default(&c->train);
    snprintf(c->output, sizeof c->output, "%s", "runs/model.safetensors");
}

int config_set(Config *c, const char *section, const char *key, const char *value, const char *where, HpErr *err) {
    HP_ASSERT(section && key && value);
    char src[160];
    if (!where) {
        snprintf(src, sizeof src, "[%s] %s", section, key);
        where = src;
    }
    const KeySpec *k = key_find(section, key);
    int rc = k ? set_value(c, k, value, false, err) : fail_unknown(section, key, err);
    return rc == 0 ? 0 : hp_prefix(err, where);
}

// ---- files ----

// The state of one config_load: the config being built, the line reader's position and the
// first error found by the reader or the key handler.
typedef struct {
    Config cfg;
    FILE *f;
    int line;        // lines handed to inih so far: the current line while it parses one
    int err_line;    // line of the first error recorded here (0: none)
    int read_errno;  // errno of a failed read (0: none)
    HpErr err;       // message of that error, without file and line
} LoadCtx;

// Records e as the error at the current line unless an earlier one is already held.
static void record_error(LoadCtx *ctx, const HpErr *e) {
    if (ctx->err_line) return;
    ctx->err_line = ctx->line;
    ctx->err = *e;
}

// Checks that a section header line ("[name]" after optional spaces and, on line 1, a UTF-8
// byte-order mark) names a known section, so even an empty unknown section is reported at
// its own line. inih takes the name between the brackets as it is, spaces included.
static void check_header(LoadCtx *ctx, const char *s) {
    if (ctx->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3;
    while (isspace((unsigned char)*s)) s++;
    if (*s != '[') return;
    const char *close = strchr(s, ']');
    if (!close) return;  // inih reports it as a syntax error
    size_t len = (size_t)(close - s - 1);
    char name[32];
    if (len < sizeof name) {
        memcpy(name, s + 1, len);
        name[len] = '\0';
        if (section_known(name)) return;
    }
    HpErr e;
    fail_section(s + 1, len, &e);
    record_error(ctx, &e);
}

// inih's line reader (fgets-like): counts lines, refuses lines longer than inih's buffer
// (stopping the parse there) and checks section headers.
static char *read_line(char *str, int num, void *stream) {
    LoadCtx *ctx = stream;
    if (!fgets(str, num, ctx->f)) {
        if (ferror(ctx->f)) ctx->read_errno = errno ? errno : EIO;
        return NULL;
    }
    ctx->line++;
    size_t len = strlen(str);
    if (len > 0 && str[len - 1] != '\n') {
        int ch = getc(ctx->f);
        if (ch != EOF) {
            HpErr e;
            hp_fail(&e, "line too long (at most %d characters)", num - 2);
            record_error(ctx, &e);
            return NULL;
        }
    }
    check_header(ctx, str);
    return str;
}

// inih's key handler: validates and applies one key; returns 1 on success, 0 on error.
static int on_key(void *user, const char *section, const char *name, const char *value) {
    LoadCtx *ctx = user;
    HpErr e;
    const KeySpec *k = key_find(section, name);
    int rc = k ? set_value(&ctx->cfg, k, value, true, &e) : fail_unknown(section, name, &e);
    if (rc == 0) return 1;
    record_error(ctx, &e);
    return 0;
}

int config_load(Config *c, const char *path, HpErr *err) {
    FILE *f = fopen(path, "r");
    if (!f) return hp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    LoadCtx ctx = {.cfg = *c, .f = f};
    int ret = ini_parse_stream(read_line, &ctx, on_key, &ctx);
    fclose(f);
    if (ctx.read_errno) return hp_fail(err, "%s: cannot read: %s", path, strerror(ctx.read_errno));
    if (ret > 0 && (ctx.err_line == 0 || ret < ctx.err_line))
        return hp_fail(err, "%s:%d: syntax error (expected [section], key = value or a comment)", path, ret);
    if (ctx.err_line) return hp_fail(err, "%s:%d: %s", path, ctx.err_line, ctx.err.msg);
    if (ret < 0) return hp_fail(err, "%s: cannot parse (inih error %d)", path, ret);
    *c = ctx.cfg;
    return 0;
}
