// csv.c: CSV writer (see csv.h). Streams to a temporary file beside the target and renames it
// into place; a write error anywhere is caught by atomic_commit (ferror), which leaves nothing.
#include "csv.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "formats.h"

// True when s must be quoted: it holds a comma, quote, CR or LF, or starts or ends with a space.
static bool csv_needs_quotes(const char *s) {
    size_t n = strlen(s);
    if (n > 0 && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        return true;
    return strpbrk(s, ",\"\r\n") != NULL;
}

void csv_put_text(FILE *fp, const char *s) {
    if (!csv_needs_quotes(s)) {
        fputs(s, fp);
        return;
    }
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"') fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

#define CSV_MAX_COLS (1 << 20)

// Checks the arguments shared by both writers (the header has n_cols names, plus one for the
// label column when labeled).
static int csv_check(const char *path, const char *const *header, int n_cols, bool labeled,
                     const double *rows, int n_rows, HpErr *err) {
    if (!path) return hp_fail(err, "csv: no output path");
    if (n_cols < 1 || n_cols > CSV_MAX_COLS)
        return hp_fail(err, "%s: %d columns, need 1..%d", path, n_cols, CSV_MAX_COLS);
    int n_header = n_cols + (labeled ? 1 : 0);
    if (n_rows < 0) return hp_fail(err, "%s: %d rows", path, n_rows);
    if (n_rows > 0 && !rows) return hp_fail(err, "%s: no row data", path);
    for (int c = 0; header && c < n_header; c++)
        if (!header[c]) return hp_fail(err, "%s: header name %d is missing", path, c);
    return 0;
}

// Writes the header line (if any) and the rows; labels, if not NULL, lead each row.
static int csv_emit(const char *path, const char *const *header, int n_header, int n_cols,
                    const char *const *labels, const double *rows, int n_rows, HpErr *err) {
    char *tmp;
    FILE *fp;
    if (atomic_open(path, &tmp, &fp, err) < 0) return -1;
    if (header) {
        for (int c = 0; c < n_header; c++) {
            if (c) fputc(',', fp);
            csv_put_text(fp, header[c]);
        }
        fputc('\n', fp);
    }
    for (int r = 0; r < n_rows; r++) {
        if (labels) {
            csv_put_text(fp, labels[r] ? labels[r] : "");
            fputc(',', fp);
        }
        for (int c = 0; c < n_cols; c++)
            fprintf(fp, c ? ",%.9g" : "%.9g", rows[(size_t)r * (size_t)n_cols + (size_t)c]);
        fputc('\n', fp);
    }
    return atomic_commit(fp, tmp, path, err);
}

// Numbers-only table (contract in csv.h).
int csv_write(const char *path, const char *const *header, int n_cols, const double *rows,
              int n_rows, HpErr *err) {
    if (csv_check(path, header, n_cols, false, rows, n_rows, err) < 0) return -1;
    return csv_emit(path, header, n_cols, n_cols, NULL, rows, n_rows, err);
}

// Table with a leading text column (contract in csv.h).
int csv_write_labeled(const char *path, const char *const *header, int n_cols,
                      const char *const *labels, const double *rows, int n_rows, HpErr *err) {
    if (csv_check(path, header, n_cols, true, rows, n_rows, err) < 0) return -1;
    if (n_rows > 0 && !labels) return hp_fail(err, "%s: no row labels", path);
    return csv_emit(path, header, n_cols + 1, n_cols, labels, rows, n_rows, err);
}
