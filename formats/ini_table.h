// ini_table.h: INI files read with inih through a table of keys. A module lists every key it
// knows (section, name, type, field of its config struct, range); the reader parses and checks
// each value into that field, names unknown sections and keys, and reports the first error of a
// file as "path:line: message". Used by formats/config.c and prune/sweep_config.c.
#ifndef HP_INI_TABLE_H
#define HP_INI_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../nn/err.h"

typedef enum {
    IK_INT,     // int, decimal
    IK_U64,     // uint64_t, decimal digits only
    IK_FLOAT,   // float, finite
    IK_DOUBLE,  // double, finite
    IK_BOOL,    // bool: true/false, yes/no, on/off, 1/0 (any case)
    IK_STR,     // char[size]
    IK_NAME,    // char[size], one of choices()
    IK_ENUM,    // an int-sized enum: the index of the value in choices()
    IK_CUSTOM,  // parsed and stored by the entry's set()
} IniType;

enum {
    IK_MIN = 1,        // value >= min (or > min with IK_MIN_EXCL)
    IK_MAX = 2,        // value <= max (or < max with IK_MAX_EXCL)
    IK_RANGE = 3,      // both
    IK_MIN_EXCL = 4,
    IK_MAX_EXCL = 8,
    IK_NONEMPTY = 16,  // strings and names: the empty string is refused
    IK_OUTPUT = 32,    // strings naming an output: "-" (standard output) is refused
};

typedef struct IniKey IniKey;
typedef struct IniTable IniTable;

// One assignment in progress: the table, the key, the file's line (0: a command-line override,
// whose source names the key already) and where errors go.
typedef struct {
    const IniTable *table;
    const IniKey *key;
    int line;
    HpErr *err;
} IniSet;

struct IniKey {
    const char *section, *key;
    IniType type;
    size_t off, size;                     // the field inside the config struct
    double min, max;                      // numeric range, per flags
    unsigned flags;
    const char *const *(*choices)(void);  // IK_NAME, IK_ENUM: NULL-terminated accepted values
    const char *expect;                   // IK_NAME, IK_ENUM: errors say "expected <expect>" (NULL: "expected one of a, b")
    int (*set)(void *cfg, const IniSet *s, const char *value);  // IK_CUSTOM: 0, or -1 (cfg unchanged)
};

// A key's field in config struct type: `{"train", "epochs", IK_INT, INI_FIELD(Config, train.epochs), 1, 0, IK_MIN}`.
// Designated, so that the members after it (range, flags, choices...) may be left out.
#define INI_FIELD(type, member) .off = offsetof(type, member), .size = sizeof(((type *)0)->member)

struct IniTable {
    const char *const *sections;  // NULL-terminated
    const IniKey *keys;
    size_t n_keys;
    bool spans;  // range errors of keys with both bounds say "'k' must be in [1, 100], got 0" (else,
                 // and always for one bound, "'k' must be at least 1")
    // Named sections (optional): a header "[<family> NAME]" (e.g. "[method obs-pc]") calls
    // family_open(cfg, NAME, line, err), which returns the struct that section's keys go into
    // (or NULL with err set: a bad or repeated name); its keys are family_table's, under the
    // section name `family`; after each one is set, family_seen (may be NULL) gets its key and line.
    const char *family;
    const IniTable *family_table;
    void *(*family_open)(void *cfg, const char *name, int line, HpErr *err);
    void (*family_seen)(void *sub, const char *key, int line);
};

// Reads the file path into cfg through t. Returns 0, or -1 with err set to the file's first
// error ("path:line: message", "path: cannot open: ...", "path: cannot read: ..."); cfg may be
// partly written on error, so callers load into a copy. Lines end at LF or CRLF (a CR alone is
// refused); lines longer than 198 characters, and text after a section header's "]" other than a
// comment, are refused.
int ini_table_load(const IniTable *t, void *cfg, const char *path, HpErr *err);
// ini_table_load that also records where the file set each key: key_line (t->n_keys entries, in
// the order of t->keys) gets the line of each key the file sets and 0 for the others, on success
// only (on error it is left as it was).
int ini_table_load_lines(const IniTable *t, void *cfg, const char *path, int *key_line, HpErr *err);
// The index of [section] key in t->keys, or -1 if t has no such key.
int ini_table_key_index(const IniTable *t, const char *section, const char *key);

// Sets [section] key = value in cfg, as read at line (0: a command-line override). Returns 0, or
// -1 with err set ("unknown key 'k' in [s] (known: a, b)", "bad value ...") and cfg unchanged.
int ini_table_set(const IniTable *t, void *cfg, const char *section, const char *key, const char *value, int line,
                  HpErr *err);

// Fails with "bad value '<value>' for '<key>': <what>" (an override: without " for '<key>'").
int ini_bad_value(const IniSet *s, const char *value, const char *what);

// Checks v against the key's range; fails with "'<key>' must be at least 1" and the like.
int ini_check_range(const IniSet *s, double v);

// Whole-string parsers of plain decimal numbers, the one grammar of the numbers a user writes (in
// INI files and on the command line): a long or an int (an optional '-', then digits), a uint64_t
// (digits only), a finite double (an optional '-', digits with an optional '.' and fraction, or
// '.' and a fraction, then an optional exponent: "-2", "0.5", ".5", "1e-3"). No blanks, no
// leading '+', no hexadecimal, inf or nan. Each returns 0, -1 if malformed, -2 if out of range.
int ini_long(const char *v, long *out);
int ini_int(const char *v, int *out);
int ini_u64(const char *v, uint64_t *out);
int ini_number(const char *v, double *out);

#define INI_TOKEN 64  // bytes of one entry of a comma list, with its terminator
enum { INI_SPLIT_EMPTY = -1, INI_SPLIT_LONG = -2, INI_SPLIT_MANY = -3 };

// Splits v at commas into at most max entries of toks, each without surrounding blanks. Returns
// the count, or INI_SPLIT_EMPTY (an empty entry), INI_SPLIT_LONG, INI_SPLIT_MANY.
int ini_split(const char *v, char (*toks)[INI_TOKEN], int max);

#endif
