// ini_table.c: the table-driven INI reader.
//
// inih reports only the line of its first error, so the details travel beside it: the line
// reader counts lines and checks section headers, the key handler keeps the first message, and
// ini_table_load joins the two.
#include "ini_table.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

// ---- names and messages ----

// Appends to buf (of size cap, already holding a string) with truncation; never overflows.
static void append(char *buf, size_t cap, const char *s) {
    size_t len = strlen(buf);
    if (len + 1 < cap) snprintf(buf + len, cap - len, "%s", s);
}

// Returns the index of v in the NULL-terminated list, or -1.
static int list_index(const char *const *list, const char *v) {
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], v) == 0) return i;
    return -1;
}

// Returns the table entry for [section] key, or NULL.
static const IniKey *key_find(const IniTable *t, const char *section, const char *key) {
    for (size_t i = 0; i < t->n_keys; i++)
        if (strcmp(t->keys[i].section, section) == 0 && strcmp(t->keys[i].key, key) == 0) return &t->keys[i];
    return NULL;
}

// Fails with "unknown section [name] (known: [a], [b], [family NAME])"; name is the first len bytes of s.
static int fail_section(const IniTable *t, const char *s, size_t len, HpErr *err) {
    char known[128] = "";
    for (int i = 0; t->sections[i]; i++) {
        append(known, sizeof known, i ? ", [" : "[");
        append(known, sizeof known, t->sections[i]);
        append(known, sizeof known, "]");
    }
    if (t->family) {
        append(known, sizeof known, ", [");
        append(known, sizeof known, t->family);
        append(known, sizeof known, " NAME]");
    }
    return hp_fail(err, "unknown section [%.*s] (known: %s)", (int)(len > 64 ? 64 : len), s, known);
}

// The NAME of a "<family> NAME" section of t, or NULL if section is not one.
static const char *family_name(const IniTable *t, const char *section) {
    if (!t->family) return NULL;
    size_t n = strlen(t->family);
    return strncmp(section, t->family, n) == 0 && section[n] == ' ' ? section + n + 1 : NULL;
}

// Fails with "unknown section [s] ...", "key 'k' is outside any section" or "unknown key 'k' in
// [shown] (known: a, b)", shown being the section as the file names it.
static int fail_unknown(const IniTable *t, const char *section, const char *shown, const char *key, HpErr *err) {
    if (list_index(t->sections, section) < 0) {
        if (section[0] == '\0') return hp_fail(err, "key '%.64s' is outside any section", key);
        return fail_section(t, section, strlen(section), err);
    }
    char known[256] = "";
    for (size_t i = 0; i < t->n_keys; i++) {
        if (strcmp(t->keys[i].section, section) != 0) continue;
        if (known[0]) append(known, sizeof known, ", ");
        append(known, sizeof known, t->keys[i].key);
    }
    return hp_fail(err, "unknown key '%.64s' in [%.64s] (known: %s)", key, shown, known);
}

int ini_bad_value(const IniSet *s, const char *value, const char *what) {
    const char *dots = strlen(value) > 80 ? "..." : "";
    if (s->line > 0) return hp_fail(s->err, "bad value '%.80s%s' for '%s': %s", value, dots, s->key->key, what);
    return hp_fail(s->err, "bad value '%.80s%s': %s", value, dots, what);
}

// Formats a range bound into buf: a whole number in full ("16777216", not %g's "1.67772e+07").
static const char *bound_str(double v, char *buf, size_t cap) {
    snprintf(buf, cap, v == floor(v) && fabs(v) < 1e15 ? "%.0f" : "%g", v);
    return buf;
}

int ini_check_range(const IniSet *s, double v) {
    const IniKey *k = s->key;
    bool min_x = k->flags & IK_MIN_EXCL, max_x = k->flags & IK_MAX_EXCL;
    bool low = (k->flags & IK_MIN) && (min_x ? !(v > k->min) : !(v >= k->min));
    bool high = (k->flags & IK_MAX) && (max_x ? !(v < k->max) : !(v <= k->max));
    if (!low && !high) return 0;
    char lo[32], hi[32];
    bound_str(k->min, lo, sizeof lo);
    bound_str(k->max, hi, sizeof hi);
    if (s->table->spans && (k->flags & IK_MIN) && (k->flags & IK_MAX))
        return hp_fail(s->err, "'%s' must be in %c%s, %s%c, got %.17g", k->key, min_x ? '(' : '[', lo, hi,
                       max_x ? ')' : ']', v);
    if (low) return hp_fail(s->err, "'%s' must be %s %s", k->key, min_x ? "greater than" : "at least", lo);
    return hp_fail(s->err, "'%s' must be %s %s", k->key, max_x ? "less than" : "at most", hi);
}

// ---- values ----

// Length of the run of decimal digits at s.
static size_t digit_run(const char *s) { return strspn(s, "0123456789"); }

// Whether s is a plain decimal number: an optional '-', digits, and if real, an optional
// fraction and exponent ("-12", "0.5", ".5", "5.", "1e-3"); no blanks, no leading '+', no hex.
static bool decimal_form(const char *s, bool real) {
    if (*s == '-') s++;
    size_t whole = digit_run(s), frac = 0;
    s += whole;
    if (!real) return whole > 0 && *s == '\0';
    if (*s == '.') frac = digit_run(++s), s += frac;
    if (whole + frac == 0) return false;
    if (*s == 'e' || *s == 'E') {
        s += s[1] == '+' || s[1] == '-' ? 2 : 1;
        size_t exp = digit_run(s);
        if (exp == 0) return false;
        s += exp;
    }
    return *s == '\0';
}

int ini_long(const char *v, long *out) {
    if (!decimal_form(v, false)) return -1;
    errno = 0;
    long x = strtol(v, NULL, 10);
    if (errno == ERANGE) return -2;
    *out = x;
    return 0;
}

int ini_int(const char *v, int *out) {
    long x;
    int rc = ini_long(v, &x);
    if (rc == 0 && (x < INT_MIN || x > INT_MAX)) rc = -2;
    if (rc == 0) *out = (int)x;
    return rc;
}

int ini_u64(const char *v, uint64_t *out) {
    if (v[0] == '\0' || v[digit_run(v)] != '\0') return -1;
    errno = 0;
    unsigned long long x = strtoull(v, NULL, 10);
    if (errno == ERANGE || x > UINT64_MAX) return -2;
    *out = (uint64_t)x;
    return 0;
}

int ini_number(const char *v, double *out) {
    if (!decimal_form(v, true)) return -1;
    errno = 0;
    double x = strtod(v, NULL);
    if (errno == ERANGE || !isfinite(x)) return -2;
    *out = x;
    return 0;
}

int ini_split(const char *v, char (*toks)[INI_TOKEN], int max) {
    for (int n = 0;; n++) {
        const char *q = v + strcspn(v, ",");
        if (n == max) return INI_SPLIT_MANY;
        const char *p = v, *e = q;
        while (p < e && isspace((unsigned char)*p)) p++;
        while (e > p && isspace((unsigned char)e[-1])) e--;
        if (p == e) return INI_SPLIT_EMPTY;
        if (e - p >= INI_TOKEN) return INI_SPLIT_LONG;
        memcpy(toks[n], p, (size_t)(e - p));
        toks[n][e - p] = '\0';
        if (*q == '\0') return n + 1;
        v = q + 1;
    }
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

// Copies the n bytes at x into the key's field dst (which must be n bytes); returns 0.
static int store(const IniSet *s, void *dst, const void *x, size_t n) {
    HP_ASSERT(s->key->size == n);
    memcpy(dst, x, n);
    return 0;
}

// Stores a string of at most size-1 characters (not empty with IK_NONEMPTY, not "-" with
// IK_OUTPUT) at dst.
static int set_string(const IniSet *s, char *dst, const char *v) {
    size_t len = strlen(v);
    if (len == 0 && (s->key->flags & IK_NONEMPTY)) return hp_fail(s->err, "'%s' must not be empty", s->key->key);
    if ((s->key->flags & IK_OUTPUT) && strcmp(v, "-") == 0)
        return hp_fail(s->err, "'%s' = -: writing to standard output is not supported; name a path", s->key->key);
    if (len >= s->key->size) return hp_fail(s->err, "'%s' is too long (at most %zu characters)", s->key->key, s->key->size - 1);
    memcpy(dst, v, len + 1);
    return 0;
}

// Returns the index of v among the key's choices, or -1 with "bad value ...: expected ..." set.
static int choice_index(const IniSet *s, const char *v) {
    const char *const *names = s->key->choices();
    int i = list_index(names, v);
    if (i >= 0) return i;
    char what[256] = "expected ";
    if (s->key->expect)
        append(what, sizeof what, s->key->expect);
    else
        for (int j = 0; names[j]; j++) {
            append(what, sizeof what, j ? ", " : "one of ");
            append(what, sizeof what, names[j]);
        }
    return ini_bad_value(s, v, what);
}

// Parses v as a float or double (per the key's type), checks its range and stores it at dst.
static int set_real(const IniSet *s, void *dst, const char *v) {
    double x;
    int rc = ini_number(v, &x);
    if (rc == 0 && s->key->type == IK_FLOAT && (fabs(x) > FLT_MAX || (x != 0 && (float)x == 0))) rc = -2;
    if (rc != 0) return ini_bad_value(s, v, rc == -2 ? "number out of range" : "expected a number");
    if (ini_check_range(s, x) != 0) return -1;
    if (s->key->type == IK_DOUBLE) return store(s, dst, &x, sizeof x);
    float f = (float)x;  // checked again: rounding may reach an excluded bound
    return ini_check_range(s, f) != 0 ? -1 : store(s, dst, &f, sizeof f);
}

// Parses v as the key's type, checks it and stores it in cfg; cfg is untouched on error.
static int set_value(void *cfg, const IniSet *s, const char *v) {
    const IniKey *k = s->key;
    void *dst = (char *)cfg + k->off;
    int rc, i;
    uint64_t u;
    bool b;
    switch (k->type) {
    case IK_INT:
        if ((rc = ini_int(v, &i)) != 0) return ini_bad_value(s, v, rc == -2 ? "integer out of range" : "expected an integer");
        return ini_check_range(s, i) != 0 ? -1 : store(s, dst, &i, sizeof i);
    case IK_U64:
        if ((rc = ini_u64(v, &u)) != 0)
            return ini_bad_value(s, v, rc == -2 ? "integer out of range" : "expected a non-negative integer");
        return store(s, dst, &u, sizeof u);
    case IK_FLOAT:
    case IK_DOUBLE: return set_real(s, dst, v);
    case IK_BOOL:
        if (parse_bool(v, &b) != 0) return ini_bad_value(s, v, "expected true or false");
        return store(s, dst, &b, sizeof b);
    case IK_STR: return set_string(s, dst, v);
    case IK_NAME:  // with IK_NONEMPTY, "" is "must not be empty" rather than "expected ..."
        if ((v[0] || !(k->flags & IK_NONEMPTY)) && choice_index(s, v) < 0) return -1;
        return set_string(s, dst, v);
    case IK_ENUM: return (i = choice_index(s, v)) < 0 ? -1 : store(s, dst, &i, sizeof i);
    case IK_CUSTOM: return k->set(cfg, s, v);
    }
    HP_ASSERT(0 && "unknown key type");
    return -1;
}

// ini_table_set, with errors naming the section as `shown`.
static int table_set(const IniTable *t, void *cfg, const char *section, const char *shown, const char *key,
                     const char *value, int line, HpErr *err) {
    const IniKey *k = key_find(t, section, key);
    if (!k) return fail_unknown(t, section, shown, key, err);
    IniSet s = {t, k, line, err};
    return set_value(cfg, &s, value);
}

int ini_table_set(const IniTable *t, void *cfg, const char *section, const char *key, const char *value, int line,
                  HpErr *err) {
    return table_set(t, cfg, section, section, key, value, line, err);
}

// ---- files ----

// The state of one ini_table_load: the table, the config being written, the line reader's
// position and the first error found by the reader or the key handler.
typedef struct {
    const IniTable *t;
    void *cfg;
    void *sub;       // what the keys of the current "[<family> NAME]" section go into (NULL: none)
    bool after_key;  // a key has been read in this section: an indented line continues its value
    bool continued;  // the current line is such a continuation (refused: values are one line)
    int *key_line;   // [t->n_keys]: line where each key was set (0: not yet)
    int *sub_line;   // [family_table->n_keys]: the same for the current [<family> NAME] section
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

// Checks the text after a section header's "]": blanks, then nothing or a comment. Fails e with
// "text after the section header: 'epochs = 0' (...)" otherwise.
static int check_after_header(const char *rest, HpErr *e) {
    while (isspace((unsigned char)*rest)) rest++;
    if (*rest == '\0' || *rest == ';' || *rest == '#') return 0;
    size_t len = strcspn(rest, "\n");
    while (len > 0 && isspace((unsigned char)rest[len - 1])) len--;
    return hp_fail(e, "text after the section header: '%.*s%s' (each key goes on a line of its own; a comment "
                   "starts with ; or #)", (int)(len > 60 ? 60 : len), rest, len > 60 ? "..." : "");
}

// Checks that a section header line ("[name]" after optional spaces and, on line 1, a UTF-8
// byte-order mark) names a known section, so even an empty unknown section is reported at
// its own line, and opens a "[<family> NAME]" section. inih takes the name between the
// brackets as it is, spaces included, and drops whatever follows the "]": here only blanks and
// a comment (";" or "#") may.
static void check_header(LoadCtx *ctx, const char *s) {
    if (ctx->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3;
    const bool indented = isspace((unsigned char)*s);
    while (isspace((unsigned char)*s)) s++;
    ctx->continued = ctx->after_key && indented && *s && *s != ';' && *s != '#';
    if (ctx->continued) return;  // inih hands it to the key handler under the key above
    const char *close = *s == '[' ? strchr(s, ']') : NULL;
    if (!close) return;  // not a header, or one inih reports as a syntax error
    ctx->after_key = false;
    ctx->sub = NULL;
    HpErr e;
    if (check_after_header(close + 1, &e) != 0) {
        record_error(ctx, &e);
        return;
    }
    size_t len = (size_t)(close - s - 1);
    char name[256];  // longer than any line the reader accepts
    if (len < sizeof name) {
        memcpy(name, s + 1, len);
        name[len] = '\0';
        if (list_index(ctx->t->sections, name) >= 0) return;
        const char *sub = family_name(ctx->t, name);
        if (sub) {
            ctx->sub = ctx->t->family_open(ctx->cfg, sub, ctx->line, &e);
            if (!ctx->sub) record_error(ctx, &e);
            memset(ctx->sub_line, 0, ctx->t->family_table->n_keys * sizeof(int));
            return;
        }
    }
    fail_section(ctx->t, s + 1, len, &e);
    record_error(ctx, &e);
}

// Records e as the error of the line being read (counting it) and returns NULL, which stops
// inih's parse.
static char *line_error(LoadCtx *ctx, const HpErr *e) {
    ctx->line++;
    record_error(ctx, e);
    return NULL;
}

// inih's line reader (fgets-like): counts lines; ends a line at LF or CRLF (handing inih an LF
// either way); refuses NUL bytes, a CR without an LF after it (a file with CR line endings would
// otherwise read as one line) and lines of more than num - 2 characters (inih's buffer of num
// bytes holds the line, its LF and the NUL), stopping the parse there; checks section headers.
static char *read_line(char *str, int num, void *stream) {
    LoadCtx *ctx = stream;
    int len = 0, ch;
    HpErr e;
    while ((ch = getc(ctx->f)) != EOF) {
        if (ch == '\r') {
            int next = getc(ctx->f);
            if (next == EOF && ferror(ctx->f)) break;
            if (next != '\n') {
                hp_fail(&e, "a CR not followed by LF at column %d: the file uses CR line endings, or holds a stray CR "
                        "(use LF or CRLF)", len + 1);
                return line_error(ctx, &e);
            }
            ch = '\n';
        }
        if (ch == '\n') {
            str[len++] = '\n';
            break;
        }
        if (ch == '\0') {  // fgets would keep reading, and the text would end at the NUL unseen
            hp_fail(&e, "NUL byte at column %d (not a text file)", len + 1);
            return line_error(ctx, &e);
        }
        if (len == num - 2) {
            hp_fail(&e, "line too long (at most %d characters)", num - 2);
            return line_error(ctx, &e);
        }
        str[len++] = (char)ch;
    }
    if (ferror(ctx->f)) {
        ctx->read_errno = errno ? errno : EIO;
        return NULL;
    }
    if (len == 0) return NULL;
    str[len] = '\0';
    ctx->line++;
    check_header(ctx, str);
    return str;
}

// Whether [section] name is set for the first time (in this [<family> NAME] section when
// in_family): records the line and returns true, or fails e naming the earlier line. Unknown
// keys pass, for the setter to refuse.
static bool first_setting(LoadCtx *ctx, bool in_family, const char *section, const char *name, HpErr *e) {
    const IniTable *t = in_family ? ctx->t->family_table : ctx->t;
    const IniKey *k = key_find(t, in_family ? ctx->t->family : section, name);
    if (!k) return true;
    int *at = (in_family ? ctx->sub_line : ctx->key_line) + (k - t->keys);
    if (*at) {
        hp_fail(e, "'%s' is set twice in [%s] (first at line %d)", name, section, *at);
        return false;
    }
    *at = ctx->line;
    return true;
}

// inih's key handler: validates and applies one key; returns 1 on success, 0 on error.
static int on_key(void *user, const char *section, const char *name, const char *value) {
    LoadCtx *ctx = user;
    const IniTable *t = ctx->t;
    HpErr e;
    ctx->after_key = true;
    const bool in_family = family_name(t, section) != NULL;
    if (in_family && !ctx->sub) return 0;  // its header failed, and said why
    if (ctx->continued) {
        hp_fail(&e, "an indented line continues the value of '%s' above: write each value on one line", name);
    } else if (!first_setting(ctx, in_family, section, name, &e)) {
        // e says where the key was set before
    } else if (!in_family) {
        if (ini_table_set(t, ctx->cfg, section, name, value, ctx->line, &e) == 0) return 1;
    } else if (table_set(t->family_table, ctx->sub, t->family, section, name, value, ctx->line, &e) == 0) {
        if (t->family_seen) t->family_seen(ctx->sub, name, ctx->line);
        return 1;
    }
    record_error(ctx, &e);
    return 0;
}

int ini_table_key_index(const IniTable *t, const char *section, const char *key) {
    const IniKey *k = key_find(t, section, key);
    return k ? (int)(k - t->keys) : -1;
}

int ini_table_load(const IniTable *t, void *cfg, const char *path, HpErr *err) {
    return ini_table_load_lines(t, cfg, path, NULL, err);
}

int ini_table_load_lines(const IniTable *t, void *cfg, const char *path, int *key_line, HpErr *err) {
    FILE *f = fopen(path, "r");
    if (!f) return hp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    LoadCtx ctx = {.t = t, .cfg = cfg, .f = f};
    const size_t n_sub = t->family_table ? t->family_table->n_keys : 0;
    ctx.key_line = hp_zalloc(t->n_keys + 1, sizeof(int), err);
    ctx.sub_line = ctx.key_line ? hp_zalloc(n_sub + 1, sizeof(int), err) : NULL;
    if (!ctx.sub_line) {
        free(ctx.key_line);
        fclose(f);
        return hp_prefix(err, path);
    }
    int ret = ini_parse_stream(read_line, &ctx, on_key, &ctx);
    free(ctx.sub_line);
    fclose(f);
    int rc = 0;
    if (ctx.read_errno)
        rc = hp_fail(err, "%s: cannot read: %s", path, strerror(ctx.read_errno));
    else if (ret > 0 && (ctx.err_line == 0 || ret < ctx.err_line))
        rc = hp_fail(err, "%s:%d: syntax error (expected [section], key = value or a comment)", path, ret);
    else if (ctx.err_line)
        rc = hp_fail(err, "%s:%d: %s", path, ctx.err_line, ctx.err.msg);
    else if (ret < 0)
        rc = hp_fail(err, "%s: cannot parse (inih error %d)", path, ret);
    if (rc == 0 && key_line) memcpy(key_line, ctx.key_line, t->n_keys * sizeof(int));
    free(ctx.key_line);
    return rc;
}
