// table.h: text reports: a growable string for building Markdown or other text, and a CSV
// writer for tables of text cells (quoted as in csv.h: RFC 4180 style, "\n" line ends).
// Output is atomic (temporary file, rename).
#ifndef HP_TABLE_H
#define HP_TABLE_H

#include <stddef.h>

#include "../nn/err.h"

// A NUL-terminated string that grows as text is appended (s is NULL until the first append).
typedef struct {
    char *s;
    size_t len, cap;
    size_t failed;  // bytes an append could not get (0: none failed); see sb_status
} StrBuf;

// Appends printf-formatted text to b. When memory runs out the text stays as it was, and this and
// every later append do nothing: check sb_status before using the text.
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Returns 0 if every append to b succeeded, else -1 with err set ("out of memory: cannot allocate
// 4096 bytes").
int sb_status(const StrBuf *b, HpErr *err);
// Frees b's text and zeroes b.
void sb_free(StrBuf *b);

// Writes a CSV file: a header line of n_cols names (NULL: none), then n_rows rows of n_cols text
// cells, cells[r * n_cols + c] (a NULL cell is written empty). n_cols >= 1, n_rows >= 0.
// Returns 0, or -1 with err naming path.
int table_write_csv(const char *path, const char *const *header, int n_cols, const char *const *cells, int n_rows,
                    HpErr *err);

#endif
