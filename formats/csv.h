// csv.h: a small CSV writer for reports (RFC 4180 style: comma separated, "\n" line ends,
// fields with a comma, quote, CR, LF or leading/trailing space are quoted, quotes doubled).
// Numbers are written with %.9g (non-finite values as nan, inf, -inf). Output is atomic.
#ifndef HP_CSV_H
#define HP_CSV_H

#include <stdio.h>

#include "../nn/err.h"

// Writes n_rows rows of n_cols numbers (rows[r * n_cols + c]) to path, after a header line of
// n_cols names (header may be NULL for no header line). n_cols >= 1, n_rows >= 0.
int csv_write(const char *path, const char *const *header, int n_cols, const double *rows,
              int n_rows, HpErr *err);

// Like csv_write with a leading text column: row r starts with labels[r] (e.g. a layer name).
// header, if not NULL, has 1 + n_cols names, the first naming the label column.
int csv_write_labeled(const char *path, const char *const *header, int n_cols,
                      const char *const *labels, const double *rows, int n_rows, HpErr *err);

// Writes one text field to fp, quoted (with quotes doubled) when it holds a comma, quote, CR
// or LF, or starts or ends with a space or tab.
void csv_put_text(FILE *fp, const char *s);

#endif
