// test_atomic.c: atomic output (temporary file, fsync, rename) and its failure paths.
#include "tests/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "formats/formats.h"

// Returns the number of entries of dir whose name starts with ".hprune-" (a temporary file).
static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, ".hprune-", 8) == 0) n++;
    closedir(d);
    return n;
}

// Checks that path holds exactly data[0..len).
static void expect_contents(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_int_equal(n, len);
    assert_memory_equal(buf, data, len);
}

static void test_write_and_replace(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    HpErr err = {{0}};
    assert_int_equal(write_file_atomic(path, "hello", 5, &err), 0);
    expect_contents(path, "hello", 5);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(write_file_atomic(path, "bye", 3, &err), 0);  // replaces
    expect_contents(path, "bye", 3);
    assert_int_equal(write_file_atomic(path, NULL, 0, &err), 0);  // empty file
    expect_contents(path, "", 0);
    assert_int_equal(count_tmp(dir), 0);
    assert_int_equal(tu_count_entries(dir), 1);
    tu_rmtree(dir);
}

static void test_open_commit_abort(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/report.csv", dir);
    HpErr err = {{0}};
    char *tmp;
    FILE *fp;
    assert_int_equal(atomic_open(path, &tmp, &fp, &err), 0);
    assert_non_null(strstr(tmp, "/.hprune-"));
    fprintf(fp, "a,b\n1,2\n");
    assert_int_equal(count_tmp(dir), 1);
    assert_int_equal(access(path, F_OK), -1);  // nothing visible before the commit
    assert_int_equal(atomic_commit(fp, tmp, path, &err), 0);
    expect_contents(path, "a,b\n1,2\n", 8);
    // An aborted write leaves the old file untouched and no temporary behind.
    assert_int_equal(atomic_open(path, &tmp, &fp, &err), 0);
    fprintf(fp, "half-written");
    atomic_abort(fp, tmp);
    expect_contents(path, "a,b\n1,2\n", 8);
    assert_int_equal(count_tmp(dir), 0);
    tu_rmtree(dir);
}

static void test_missing_dir(void **state) {
    (void)state;
    char dir[64], path[160];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out/model.safetensors", dir);
    HpErr err = {{0}};
    assert_int_equal(write_file_atomic(path, "x", 1, &err), -1);
    char want[256];
    snprintf(want, sizeof want, "%s: cannot write: No such file or directory", path);
    assert_string_equal(err.msg, want);
    assert_int_equal(tu_count_entries(dir), 0);
    tu_rmtree(dir);
}

// A rename that fails (the target became a directory after the temporary file was made)
// removes the temporary file.
static void test_rename_fails(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/target", dir);
    HpErr err = {{0}};
    char *tmp;
    FILE *fp;
    assert_int_equal(atomic_open(path, &tmp, &fp, &err), 0);
    fputs("data", fp);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(atomic_commit(fp, tmp, path, &err), -1);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "cannot write: Is a directory"));
    assert_int_equal(count_tmp(dir), 0);
    assert_int_equal(tu_count_entries(dir), 1);
    tu_rmtree(dir);
}

// A target that exists and is not a regular file (a directory, a FIFO), or is a symbolic link,
// is refused before anything is written: the rename would replace it. It is left as it was
// (a link's file too), with no temporary.
static void test_not_regular(void **state) {
    (void)state;
    char dir[64], sub[128], fifo[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    HpErr err = {{0}};
    char want[256], *tmp;
    assert_int_equal(write_file_atomic(sub, "x", 1, &err), -1);
    snprintf(want, sizeof want, "%s: cannot write: it is a directory", sub);
    assert_string_equal(err.msg, want);
    assert_int_equal(atomic_reserve(fifo, &tmp, &err), -1);
    assert_null(tmp);
    snprintf(want, sizeof want, "%s: cannot write: it is not a regular file (a device, FIFO or socket)", fifo);
    assert_string_equal(err.msg, want);
    struct stat st;
    assert_int_equal(stat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    char link[128], target[128];  // a link, even to a regular file: the rename would replace the link
    snprintf(link, sizeof link, "%s/link", dir);
    snprintf(target, sizeof target, "%s/target", dir);
    tu_write(target, "kept", 4);
    assert_int_equal(symlink("target", link), 0);
    assert_int_equal(write_file_atomic(link, "x", 1, &err), -1);
    snprintf(want, sizeof want, "%s: cannot write: it is a symbolic link (name the file it points to)", link);
    assert_string_equal(err.msg, want);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    expect_contents(target, "kept", 4);
    assert_int_equal(count_tmp(dir), 0);
    assert_int_equal(tu_count_entries(dir), 4);
    tu_rmtree(dir);
}

// An AtomicSet whose third rename fails (its target became a non-empty directory after it was
// staged): the first target gets its earlier file back, the second (new) one is removed, the
// message names the third, and no temporary is left. Then one that commits.
static void test_set_commit(void **state) {
    (void)state;
    char dir[64], a[128], b[128], c[128], inside[160];
    tu_tmpdir(dir, sizeof dir);
    snprintf(a, sizeof a, "%s/a.csv", dir);
    snprintf(b, sizeof b, "%s/b.md", dir);
    snprintf(c, sizeof c, "%s/c.png", dir);
    tu_write(a, "old a", 5);
    AtomicSet set = {0};
    HpErr err;
    const char *targets[3] = {a, b, c}, *texts[3] = {"new a", "new b", "new c"};
    for (int i = 0; i < 3; i++) tu_write(atomic_set_stage(&set, targets[i], &err), texts[i], 5);
    assert_int_equal(mkdir(c, 0755), 0);
    snprintf(inside, sizeof inside, "%s/x", c);
    tu_write(inside, "x", 1);
    assert_int_equal(atomic_set_commit(&set, &err), -1);
    assert_int_equal(set.n, 0);
    char want[256];
    snprintf(want, sizeof want, "%s: cannot write: ", c);
    assert_int_equal(strncmp(err.msg, want, strlen(want)), 0);
    assert_non_null(strstr(err.msg, "the other files were not written either"));
    expect_contents(a, "old a", 5);
    assert_int_equal(access(b, F_OK), -1);
    assert_int_equal(count_tmp(dir), 0);
    assert_int_equal(tu_count_entries(dir), 2);  // a.csv and the directory c.png
    tu_rmtree(c);
    for (int i = 0; i < 3; i++) tu_write(atomic_set_stage(&set, targets[i], &err), texts[i], 5);
    char msg[256];  // a writer's message names the temporary file: named as the target instead
    snprintf(msg, sizeof msg, "%s: cannot write: disk full", set.tmp[1]);
    atomic_set_name_targets(&set, msg, sizeof msg);
    snprintf(want, sizeof want, "%s: cannot write: disk full", b);
    assert_string_equal(msg, want);
    assert_int_equal(atomic_set_commit(&set, &err), 0);
    for (int i = 0; i < 3; i++) expect_contents(targets[i], texts[i], 5);
    assert_int_equal(count_tmp(dir), 0);
    assert_int_equal(tu_count_entries(dir), 3);
    tu_rmtree(dir);
}

// Writes n bytes to path through an atomic stream while the process may write files of at most
// limit bytes (RLIMIT_FSIZE, SIGXFSZ ignored: writes past it fail with EFBIG, as they would with
// ENOSPC on a full disk; limit 0: the limit the process has), with fwrite if whole, else in
// lines of fprintf; returns the commit's result, err its message. The limit and the signal's
// disposition are restored.
static int commit_over_limit(const char *path, size_t n, rlim_t limit, bool whole, HpErr *err) {
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {limit ? limit : old.rlim_cur, old.rlim_max};
    if (old.rlim_max != RLIM_INFINITY && lim.rlim_cur > old.rlim_max) lim.rlim_cur = old.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char *tmp;
    FILE *fp;
    assert_int_equal(atomic_open(path, &tmp, &fp, err), 0);
    if (whole) {
        char *data = calloc(n, 1);
        assert_non_null(data);
        (void)fwrite(data, 1, n, fp);
        free(data);
    } else {
        for (size_t at = 0; at < n; at += 16) fprintf(fp, "line %10zu\n", at);
    }
    int rc = atomic_commit(fp, tmp, path, err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    return rc;
}

// A write error is reported by the commit with its cause, and nothing is renamed: when the
// buffered bytes fail at the commit's flush, and when a write failed long before it (1 MB
// through fwrite, 64 kB through fprintf: the stream's error flag set before the commit, which
// used to read "Input/output error").
static void test_write_error(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/x.bin", dir);
    const struct {
        size_t n;
        bool whole;
    } cases[] = {{100, false}, {1 << 20, true}, {1 << 16, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        HpErr err = {{0}};
        assert_int_equal(commit_over_limit(path, cases[i].n, 64, cases[i].whole, &err), -1);
        assert_non_null(strstr(err.msg, "x.bin: cannot write: "));
        assert_non_null(strstr(err.msg, strerror(EFBIG)));
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(count_tmp(dir), 0);
    }
    // under the process's own limit, the same streams are written whole
    HpErr err = {{0}};
    assert_int_equal(commit_over_limit(path, 1 << 16, 0, false, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 1 << 16);
    tu_rmtree(dir);
}

// A target of the longest name a directory entry takes (255 bytes) is written: its temporary
// has a short name of its own. atomic_reserve leaves an empty temporary beside its target.
static void test_long_name_and_reserve(void **state) {
    (void)state;
    char dir[64], path[512], *tmp = NULL;
    tu_tmpdir(dir, sizeof dir);
    int at = snprintf(path, sizeof path, "%s/", dir);
    memset(path + at, 'a', 255);
    path[at + 255] = '\0';
    HpErr err = {{0}};
    assert_int_equal(write_file_atomic(path, "x", 1, &err), 0);
    expect_contents(path, "x", 1);
    assert_int_equal(atomic_reserve(path, &tmp, &err), 0);
    assert_non_null(strstr(tmp, "/.hprune-"));
    expect_contents(tmp, "", 0);
    assert_int_equal(count_tmp(dir), 1);
    unlink(tmp);
    free(tmp);
    snprintf(path, sizeof path, "%s/none/x.csv", dir);
    assert_int_equal(atomic_reserve(path, &tmp, &err), -1);
    assert_null(tmp);
    assert_non_null(strstr(err.msg, "none/x.csv: cannot write: "));
    assert_int_equal(tu_count_entries(dir), 1);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_name_and_reserve),
        cmocka_unit_test(test_write_and_replace), cmocka_unit_test(test_open_commit_abort),
        cmocka_unit_test(test_missing_dir),       cmocka_unit_test(test_rename_fails),
        cmocka_unit_test(test_not_regular),
        cmocka_unit_test(test_set_commit),
        cmocka_unit_test(test_write_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
