// test_outputs.c: the command line's outputs written together (cli/common.c: Outputs): all
// renamed into place, or, when one rename fails, the targets' earlier files put back and no
// temporary left. outputs_commit exits on failure, so those cases run in a child process.
// Also the progress display (cli/common.c: Progress): its rate, its series and the lines a log
// gets, on a clock the test sets.
#include "tests/testutil.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli/cli.h"

// Checks that path holds exactly text.
static void expect_text(const char *path, const char *text) {
    char buf[64] = "";
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_string_equal(buf, text);
}

// Stages target in o with content text.
static void stage_text(Outputs *o, const char *target, const char *text) {
    tu_write(outputs_stage(o, target), text, strlen(text));
}

// Frees this process's copy of o's staged names (a child process used them).
static void forget(Outputs *o) {
    for (int i = 0; i < o->set.n; i++) free(o->set.tmp[i]), free(o->set.target[i]);
    o->set.n = 0;
}

// Runs outputs_commit(o) in a child process; returns its exit status.
static int commit_in_child(Outputs *o) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        outputs_commit(o);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    forget(o);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

// Two files replace their earlier versions; nothing else is left in the directory.
static void test_commit(void **state) {
    (void)state;
    char dir[64], a[128], b[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(a, sizeof a, "%s/a.csv", dir);
    snprintf(b, sizeof b, "%s/b.png", dir);
    tu_write(a, "old a", 5);
    Outputs o = {0};
    stage_text(&o, a, "new a");
    stage_text(&o, b, "new b");
    assert_int_equal(tu_count_entries(dir), 3);  // a.csv and the two staged files
    outputs_commit(&o);
    expect_text(a, "new a");
    expect_text(b, "new b");
    assert_int_equal(tu_count_entries(dir), 2);
    tu_rmtree(dir);
}

// A rename that fails (its target became a directory after the checks) ends the command with
// status 1 and takes the directory made for the outputs with it; the roll-back of the files
// themselves is AtomicSet's (test_atomic: test_set_commit).
static void test_commit_fails_midway(void **state) {
    (void)state;
    char dir[64], sub[128], a[160], b[128], inside[160];
    tu_tmpdir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/made", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(a, sizeof a, "%s/a.csv", sub);
    snprintf(b, sizeof b, "%s/b.png", dir);
    Outputs o = {.made_dir = sub};
    stage_text(&o, a, "new a");
    stage_text(&o, b, "new b");
    assert_int_equal(mkdir(b, 0755), 0);
    snprintf(inside, sizeof inside, "%s/x", b);
    tu_write(inside, "x", 1);
    assert_int_equal(commit_in_child(&o), 1);
    assert_int_equal(access(sub, F_OK), -1);     // a.csv, new, was removed, and so was its directory
    assert_int_equal(tu_count_entries(dir), 1);  // the directory b.png, no temporary
    tu_rmtree(dir);
}

// outputs_fail removes every staged file and the directory made for them.
static void test_fail_removes_made_dir(void **state) {
    (void)state;
    char dir[64], sub[128], a[160];
    tu_tmpdir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/made", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(a, sizeof a, "%s/a.csv", sub);
    Outputs o = {.made_dir = sub};
    stage_text(&o, a, "new a");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) outputs_fail(&o, "a writer failed");
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    forget(&o);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    assert_int_equal(access(sub, F_OK), -1);
    assert_int_equal(tu_count_entries(dir), 0);
    tu_rmtree(dir);
}

// The test's clock for Progress, in seconds.
static double fake_now;
static double fake_clock(void) { return fake_now; }

// Feeds p the updates done = first..last of total, one second apart from time t, and returns
// the time after the last.
static double feed(Progress *p, double t, long first, long last, long total) {
    for (long d = first; d <= last; d++, t += 1) {
        fake_now = t;
        progress_update(p, d, total, "passes");
    }
    return t;
}

// Sets p up as a log's display labelled label, on the test's clock, writing to a memory stream
// (its text in *text once p->out is closed).
static void log_progress(Progress *p, const char *label, char **text, size_t *len) {
    progress_init(p, label);
    p->tty = false;
    p->clock = fake_clock;
    p->out = open_memstream(text, len);
    assert_non_null(p->out);
    fake_now = 0;  // progress_init's time: the set-up starts
}

// A log's progress lines measure the rate from a series' first update: 100 s of set-up before
// it and the gap before a second series (a done below the last) do not count.
static void test_progress_rate(void **state) {
    (void)state;
    char *text = NULL;
    size_t len = 0;
    Progress p;
    log_progress(&p, "scoring", &text, &len);
    feed(&p, 100, 1, 10, 10);
    feed(&p, 300, 1, 4, 10);
    fclose(p.out);
    assert_string_equal(text, "scoring: 1/10 passes\n"
                              "scoring: 3/10 passes  1.0/s  ETA 7s\n"
                              "scoring: 5/10 passes  1.0/s  ETA 5s\n"
                              "scoring: 7/10 passes  1.0/s  ETA 3s\n"
                              "scoring: 9/10 passes  1.0/s  ETA 1s\n"
                              "scoring: 10/10 passes  1.0/s  ETA 0s\n"
                              "scoring: 1/10 passes\n"
                              "scoring: 3/10 passes  1.0/s  ETA 7s\n");
    free(text);
}

// A done reported again (the total, by a parallel loop and once more at its end) is shown once.
static void test_progress_once(void **state) {
    (void)state;
    char *text = NULL;
    size_t len = 0;
    Progress p;
    log_progress(&p, "fisher", &text, &len);
    double t = feed(&p, 10, 1, 10, 10);
    fake_now = t;
    progress_update(&p, 10, 10, "passes");
    fclose(p.out);
    assert_string_equal(text, "fisher: 1/10 passes\n"
                              "fisher: 3/10 passes  1.0/s  ETA 7s\n"
                              "fisher: 5/10 passes  1.0/s  ETA 5s\n"
                              "fisher: 7/10 passes  1.0/s  ETA 3s\n"
                              "fisher: 9/10 passes  1.0/s  ETA 1s\n"
                              "fisher: 10/10 passes  1.0/s  ETA 0s\n");
    free(text);
}

// Another unit starts another series, its rate and ETA its own, even where done does not drop
// (one gradient, then one block); a series shows its total once.
static void test_progress_units(void **state) {
    (void)state;
    char *text = NULL;
    size_t len = 0;
    Progress p;
    log_progress(&p, "fisher", &text, &len);
    const struct {
        double t;
        long done, total;
        const char *unit;
    } up[] = {{10, 1, 4, "gradients"}, {13, 4, 4, "gradients"}, {14, 4, 4, "gradients"}, {15, 1, 4, "block inversions"},
              {25, 2, 4, "block inversions"}, {30, 1, 1, "gradients"}, {31, 1, 1, "block inversions"}};
    for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
        fake_now = up[i].t;
        progress_update(&p, up[i].done, up[i].total, up[i].unit);
    }
    fclose(p.out);
    assert_string_equal(text, "fisher: 1/4 gradients\n"
                              "fisher: 4/4 gradients  1.0/s  ETA 0s\n"
                              "fisher: 1/4 block inversions\n"
                              "fisher: 2/4 block inversions  0.1/s  ETA 20s\n"
                              "fisher: 1/1 gradients\n"
                              "fisher: 1/1 block inversions\n");
    free(text);
}

// A total that is a cap (Lanczos steps, Hutchinson probes under a tolerance) is shown as one:
// "of at most", and the ETA as a bound.
static void test_progress_capped(void **state) {
    (void)state;
    char *text = NULL;
    size_t len = 0;
    Progress p;
    log_progress(&p, "top eigenvalues", &text, &len);
    p.capped = true;
    feed(&p, 10, 1, 12, 100);
    fclose(p.out);
    assert_string_equal(text, "top eigenvalues: 10 of at most 100 passes  1.0/s  ETA <= 1m30s\n");
    free(text);
}

// In a log, a line comes when done enters another tenth of the total, though the counts reported
// skip the multiples (a parallel loop reports from one thread).
static void test_progress_skipped_counts(void **state) {
    (void)state;
    char *text = NULL;
    size_t len = 0;
    Progress p;
    log_progress(&p, "scoring", &text, &len);
    const long done[] = {2, 7, 8, 13, 14, 23, 30};
    for (size_t i = 0; i < sizeof done / sizeof done[0]; i++) {
        fake_now = 10 + 3.0 * (double)i;
        progress_update(&p, done[i], 30, "images");
    }
    fclose(p.out);
    assert_string_equal(text, "scoring: 7/30 images  1.7/s  ETA 14s\n"
                              "scoring: 13/30 images  1.2/s  ETA 14s\n"
                              "scoring: 23/30 images  1.4/s  ETA 5s\n"
                              "scoring: 30/30 images  1.6/s  ETA 0s\n");
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit),
        cmocka_unit_test(test_commit_fails_midway),
        cmocka_unit_test(test_fail_removes_made_dir),
        cmocka_unit_test(test_progress_rate),
        cmocka_unit_test(test_progress_once),
        cmocka_unit_test(test_progress_units),
        cmocka_unit_test(test_progress_capped),
        cmocka_unit_test(test_progress_skipped_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
