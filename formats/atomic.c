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

// The temporary file behind an atomic stream (a glibc cookie stream): its descriptor and the
// cause of its first failed write, which a FILE's error flag does not keep, so that a write that
// fails before the commit still reads "No space left on device", not "Input/output error".
typedef struct {
    int fd;
    int first_errno;  // 0 while every write has succeeded
} Sink;

// The stream's write: all of buf[0..n) to the descriptor (short writes and EINTR retried).
// On failure records the cause (once) and returns the bytes written, fewer than n, which sets
// the stream's error flag.
static ssize_t sink_write(void *cookie, const char *buf, size_t n) {
    Sink *s = cookie;
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(s->fd, buf + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (!s->first_errno) s->first_errno = k < 0 ? errno : EIO;
            errno = s->first_errno;
            return (ssize_t)done;
        }
        done += (size_t)k;
    }
    return (ssize_t)n;
}

// The stream's close: fsyncs and closes the descriptor and frees the sink. 0, or -1 with errno
// the first failed write's cause, else fsync's, else close's.
static int sink_close(void *cookie) {
    Sink *s = cookie;
    int e = s->first_errno;
    if (!e && fsync(s->fd) != 0) e = errno;
    if (close(s->fd) != 0 && !e) e = errno;
    free(s);
    errno = e;
    return e ? -1 : 0;
}

// A write-only stream over fd that reports its first write error's cause when closed (Sink);
// NULL (fd left open) if it cannot be made.
static FILE *sink_open(int fd) {
    Sink *s = malloc(sizeof *s);
    if (!s) return NULL;
    *s = (Sink){.fd = fd};
    FILE *f = fopencookie(s, "w", (cookie_io_functions_t){.write = sink_write, .close = sink_close});
    if (!f) free(s);
    return f;
}

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
// its malloc'd name in *tmp_path, or -1 (nothing on disk, *tmp_path NULL). Refuses a path that
// exists and is not a regular file, or is a symbolic link: the rename would replace a device,
// FIFO or socket, or the link itself (/dev/stdout among them) instead of the file it names.
static int make_temp(const char *path, char **tmp_path, HpErr *err) {
    *tmp_path = NULL;
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
        return hp_fail(err, "%s: cannot write: it is a symbolic link (name the file it points to)", path);
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return hp_fail(err, "%s: cannot write: it is %s", path,
                       S_ISDIR(st.st_mode) ? "a directory" : "not a regular file (a device, FIFO or socket)");
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;  // with its '/'
    char *tmp = hp_alloc(dir_len + sizeof TMP_NAME, 1, err);
    if (!tmp) return hp_prefix(err, path);
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
    FILE *f = sink_open(fd);
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

// Flushes, fsyncs and closes fp (sink_close), then renames tmp_path to path. Always closes fp
// and frees tmp_path; on failure unlinks the temporary file and returns -1 naming path and the
// cause: the first failed write's, even one long before the commit.
int atomic_commit(FILE *fp, char *tmp_path, const char *path, HpErr *err) {
    const bool failed = ferror(fp);  // a write failed before (the sink kept its cause)
    errno = 0;
    int e = fclose(fp) != 0 ? (errno ? errno : EIO) : 0;
    if (!e && failed) e = EIO;  // an error flag without a failed write (not expected)
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

// Closes fp (if not NULL; its close flushes and fsyncs as any sink's does), removes the temporary
// file and frees tmp_path.
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

// ---- several files written together ----

const char *atomic_set_stage(AtomicSet *s, const char *target, HpErr *err) {
    if (s->n == ATOMIC_SET_MAX) return hp_fail(err, "%s: too many output files", target), NULL;
    size_t len = strlen(target) + 1;
    char *name = hp_alloc(len, 1, err), *tmp;
    if (!name) return hp_prefix(err, target), NULL;
    if (atomic_reserve(target, &tmp, err) < 0) {
        free(name);
        return NULL;
    }
    memcpy(name, target, len);
    s->target[s->n] = name;
    s->tmp[s->n] = tmp;
    return s->tmp[s->n++];
}

void atomic_set_name_targets(const AtomicSet *s, char *msg, size_t cap) {
    for (int i = 0; i < s->n; i++) {
        char *at = strstr(msg, s->tmp[i]);
        if (!at) continue;
        char rest[4096];
        snprintf(rest, sizeof rest, "%s", at + strlen(s->tmp[i]));
        snprintf(at, cap - (size_t)(at - msg), "%s%s", s->target[i], rest);
    }
}

void atomic_set_abort(AtomicSet *s) {
    for (int i = 0; i < s->n; i++) {
        unlink(s->tmp[i]);
        free(s->tmp[i]);
        free(s->target[i]);
    }
    s->n = 0;
}

// A fresh name beside path hard-linked to its present file (malloc'd), or NULL when path holds
// no file (nothing to keep) or no link can be made.
static char *keep_aside(const char *path) {
    struct stat st;
    char *name;
    HpErr e;
    if (lstat(path, &st) != 0 || S_ISDIR(st.st_mode) || atomic_reserve(path, &name, &e) < 0) return NULL;
    unlink(name);  // the name was free a moment ago: link the present file there
    if (link(path, name) == 0) return name;
    free(name);
    return NULL;
}

// Puts target back as it was before a rename replaced it: its earlier file from the link *old
// (then freed and NULL), or no file where there was none (existed false); appends to err what
// could not be put back.
static void put_back(const char *target, char **old, bool existed, HpErr *err) {
    size_t at = strlen(err->msg), cap = sizeof err->msg - at;
    if (*old && rename(*old, target) != 0)
        snprintf(err->msg + at, cap, "; %s holds the new file, its earlier one is kept as %s", target, *old);
    else if (!*old && existed)
        snprintf(err->msg + at, cap, "; %s holds the new file (its earlier one could not be kept aside)", target);
    else if (!*old)
        unlink(target);
    free(*old);
    *old = NULL;
}

int atomic_set_commit(AtomicSet *s, HpErr *err) {
    char *old[ATOMIC_SET_MAX] = {0};  // hard links to the files the targets held, to put back on failure
    bool existed[ATOMIC_SET_MAX] = {0};
    for (int i = 0; i < s->n; i++) {
        struct stat st;
        existed[i] = lstat(s->target[i], &st) == 0;
        old[i] = existed[i] ? keep_aside(s->target[i]) : NULL;
    }
    int rc = 0, renamed = 0;
    for (; renamed < s->n; renamed++) {
        if (rename(s->tmp[renamed], s->target[renamed]) == 0) continue;
        rc = hp_fail(err, "%s: cannot write: %s; the other files were not written either", s->target[renamed],
                     strerror(errno));
        for (int j = 0; j < renamed; j++) put_back(s->target[j], &old[j], existed[j], err);
        break;
    }
    for (int i = 0; i < s->n; i++) {
        if (old[i]) unlink(old[i]);  // the earlier files not put back: replaced, or never touched
        free(old[i]);
        if (i >= renamed) unlink(s->tmp[i]);  // the temporaries not renamed into place
        if (rc == 0) sync_parent_dir(s->target[i]);
        free(s->tmp[i]);
        free(s->target[i]);
    }
    s->n = 0;
    return rc;
}
