// table.c: growable strings and CSV tables of text cells (see table.h).
#include "table.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "formats.h"

void sb_printf(StrBuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        HP_ASSERT(n >= 0);
        if (b->s && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= (size_t)n) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            if (b->s) b->s[b->len] = '\0';  // the failed vsnprintf wrote part of the new text
            b->failed = cap;
            return;
        }
        if (!b->s) s[0] = '\0';
        b->s = s;
        b->cap = cap;
    }
}

int sb_status(const StrBuf *b, HpErr *err) {
    if (!b->failed) return 0;
    return hp_fail(err, "out of memory: cannot allocate %zu bytes", b->failed);
}

void sb_free(StrBuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

// Writes one line of n cells.
static void put_line(FILE *fp, const char *const *cells, int n) {
    for (int c = 0; c < n; c++) {
        if (c) fputc(',', fp);
        if (cells[c]) csv_put_text(fp, cells[c]);
    }
    fputc('\n', fp);
}

int table_write_csv(const char *path, const char *const *header, int n_cols, const char *const *cells, int n_rows,
                    HpErr *err) {
    if (!path) return hp_fail(err, "csv: no output path");
    if (n_cols < 1 || n_rows < 0 || (n_rows > 0 && !cells))
        return hp_fail(err, "%s: bad table (%d columns, %d rows)", path, n_cols, n_rows);
    char *tmp;
    FILE *fp;
    if (atomic_open(path, &tmp, &fp, err) < 0) return -1;
    if (header) put_line(fp, header, n_cols);
    for (int r = 0; r < n_rows; r++) put_line(fp, cells + (size_t)r * (size_t)n_cols, n_cols);
    return atomic_commit(fp, tmp, path, err);
}
