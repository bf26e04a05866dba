// atomic.c: atomic file output. Data goes to a temporary file beside the target
// ("DIR/.hprune-XXXXXX": a short name, so that a target of the longest legal name still gets
// one), is flushed and fsync'd, then renamed over the target, so readers see either the old
// file or the complete new one, and a failure leaves nothing behind.
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats.h"

#define TMP_NAME ".hprune-XXXXXX"
#define OUTPUT_MODE 0644  // mkstemp creates 0600; outputs are ordinary readable files

// Flushes the directory holding path so that a rename into it is durable (best effort:
// some file systems do not support fsync on directories).
static void sync_parent_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

// Creates an empty temporary file beside path, open for writing: returns its descriptor and
// its malloc'd name in *tmp_path, or -1 (nothing on disk, *tmp_path NULL).
static int make_temp(const char *path, char **tmp_path, HpErr *err) {
    *tmp_path = NULL;
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;  // with its '/'
    char *tmp = hp_malloc(dir_len + sizeof TMP_NAME);
    memcpy(tmp, path, dir_len);
    memcpy(tmp + dir_len, TMP_NAME, sizeof TMP_NAME);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return hp_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    (void)fchmod(fd, OUTPUT_MODE);
    *tmp_path = tmp;
    return fd;
}

int atomic_reserve(const char *path, char **tmp_path, HpErr *err) {
    int fd = make_temp(path, tmp_path, err);
    if (fd < 0) return -1;
    if (close(fd) != 0) {
        int e = errno;
        unlink(*tmp_path);
        free(*tmp_path);
        *tmp_path = NULL;
        return hp_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

// Opens a temporary file beside path; *tmp_path gets its malloc'd name and *fp the stream.
// On failure nothing is left on disk and both are NULL.
int atomic_open(const char *path, char **tmp_path, FILE **fp, HpErr *err) {
    *fp = NULL;
    char *tmp = NULL;
    int fd = make_temp(path, &tmp, err);
    if (fd < 0) {
        *tmp_path = NULL;
        return -1;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return hp_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    *tmp_path = tmp;
    *fp = f;
    return 0;
}

// Flushes, fsyncs and closes fp, then renames tmp_path to path. Always closes fp and frees
// tmp_path; on failure unlinks the temporary file and returns -1 naming path.
int atomic_commit(FILE *fp, char *tmp_path, const char *path, HpErr *err) {
    int e = 0;
    if (ferror(fp)) e = EIO;  // an earlier write failed (its errno is long gone)
    if (!e && fflush(fp) != 0) e = errno;
    if (!e && fsync(fileno(fp)) != 0) e = errno;
    if (fclose(fp) != 0 && !e) e = errno;
    if (!e && rename(tmp_path, path) != 0) e = errno;
    if (e) {
        unlink(tmp_path);
        free(tmp_path);
        return hp_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    free(tmp_path);
    sync_parent_dir(path);
    return 0;
}

// Closes fp (if not NULL), removes the temporary file and frees tmp_path.
void atomic_abort(FILE *fp, char *tmp_path) {
    if (fp) fclose(fp);
    if (tmp_path) {
        unlink(tmp_path);
        free(tmp_path);
    }
}

// Writes data[0..len) to path atomically.
int write_file_atomic(const char *path, const void *data, size_t len, HpErr *err) {
    char *tmp = NULL;
    FILE *fp = NULL;
    if (atomic_open(path, &tmp, &fp, err) < 0) return -1;
    errno = 0;  // so that a short write without a cause reads as EIO, not a stale errno
    if (len > 0 && fwrite(data, 1, len, fp) != len) {
        int e = errno ? errno : EIO;
        atomic_abort(fp, tmp);
        return hp_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    return atomic_commit(fp, tmp, path, err);
}
