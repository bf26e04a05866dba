// test_sweep.c: the sweep's config file, run list and shards (prune/sweep*.c), result files and
// collect on made-up outcomes (the model's CRC-32 among their checks), the checks before the
// first run on a small net, and the sensitivity helpers (ratio ranges, rank correlation).
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "prune/sensitivity.h"
#include "prune/sweep.h"

// A temporary directory holding one test's files.
typedef struct {
    char dir[64];
    char path[128];
} Fixture;

static int setup(void **state) {
    Fixture *fx = calloc(1, sizeof *fx);
    tu_tmpdir(fx->dir, sizeof fx->dir);
    snprintf(fx->path, sizeof fx->path, "%s/s.ini", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    Fixture *fx = *state;
    tu_rmtree(fx->dir);
    free(fx);
    return 0;
}

// Makes the fixture's directory "out", which holds the sweeps' output directories.
static void make_out(const Fixture *fx) {
    char out[96];
    snprintf(out, sizeof out, "%s/out", fx->dir);
    assert_int_equal(mkdir(out, 0755), 0);
}

// Writes text as the fixture's config and loads it over c.
static int load_text(Fixture *fx, SweepConfig *c, const char *text, HpErr *err) {
    tu_write(fx->path, text, strlen(text));
    return sweep_config_load(c, fx->path, err);
}

// Asserts that text fails to load with "<path>:<line>: " (line 0: "<path>: ") and `words` in
// the message, leaving the config as it was.
static void expect_error(Fixture *fx, const char *text, int line, const char *words) {
    SweepConfig c, before;
    sweep_config_default(&c);
    before = c;
    HpErr err = {{0}};
    assert_int_equal(load_text(fx, &c, text, &err), -1);
    char prefix[192];
    snprintf(prefix, sizeof prefix, line > 0 ? "%s:%d: " : "%s: ", fx->path, line);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || !strstr(err.msg, words)) {
        print_error("message '%s'\nwanted prefix '%s' and words '%s'\n", err.msg, prefix, words);
        fail();
    }
    assert_memory_equal(&c, &before, sizeof c);
}

// A full config loads into every field.
static void test_config_full(void **state) {
    Fixture *fx = *state;
    SweepConfig c;
    sweep_config_default(&c);
    HpErr err;
    const char *text = "# a sweep\n[sweep]\nmodel = m.safetensors\nout = o\nmethods = l1, hap ,obs-layer\n"
                       "target = params\ntargets = 0.3,0.5\nseeds = 1, 7\nsteps = 2\nmax_layer_frac = 0.8\n"
                       "samples = 64\nprobes = 4\nthreads = 1\n[data]\ndataset = mnist\ndir = /d\n"
                       "[finetune]\nepochs = 3\nlr = 0.02\nbatch_size = 32\nval_split = 0\n"
                       "weight_decay = 1e-4\ncrop_pad = 2\nhflip = yes\n";
    if (load_text(fx, &c, text, &err) < 0) fail_msg("%s", err.msg);
    assert_string_equal(c.model, "m.safetensors");
    assert_string_equal(c.out, "o");
    assert_int_equal(c.n_methods, 3);
    assert_int_equal(c.methods[0].criterion, CRIT_L1);
    assert_int_equal(c.methods[1].criterion, CRIT_HAP);
    assert_int_equal(c.methods[2].criterion, CRIT_OBS_LAYER);
    assert_string_equal(c.methods[2].name, "obs-layer");
    assert_int_equal(c.methods_line, 5);
    assert_int_equal(c.kind, TARGET_PARAMS);
    assert_int_equal(c.n_targets, 2);
    assert_true(c.targets[1] == 0.5);
    assert_int_equal(c.targets_line, 7);
    assert_int_equal(c.n_seeds, 2);
    assert_int_equal(c.seeds[1], 7);
    assert_int_equal(c.steps, 2);
    assert_true(c.max_layer_frac == 0.8);
    assert_int_equal(c.samples, 64);
    assert_int_equal(c.probes, 4);
    assert_int_equal(c.threads, 1);
    assert_string_equal(c.dataset, "mnist");
    assert_string_equal(c.data_dir, "/d");
    assert_int_equal(c.finetune.epochs, 3);
    assert_true(c.finetune.lr == 0.02f);
    assert_int_equal(c.finetune.batch_size, 32);
    assert_true(c.finetune.val_split == 0);
    assert_true(c.finetune.weight_decay == 1e-4f);
    assert_int_equal(c.finetune.augment.crop_pad, 2);
    assert_true(c.finetune.augment.hflip);
    assert_string_equal(c.path, fx->path);
}

// Every kind of mistake fails at its line, before anything is applied.
static void test_config_errors(void **state) {
    Fixture *fx = *state;
    expect_error(fx, "[sweep]\nmodel = m\nmethodz = l1\n", 3, "unknown key 'methodz' in [sweep]");
    expect_error(fx, "[sweep]\nmodel = m\n[train]\nepochs = 1\n", 3,
                 "unknown section [train] (known: [sweep], [data], [finetune], [method NAME])");
    expect_error(fx, "[sweep]\nmodel = m\n[empty]\n", 3, "unknown section [empty]");
    expect_error(fx, "[sweep]\nmodel = m\nmethods = l1, foo\n", 3,
                 "unknown method 'foo' in 'methods' (criteria: random, l1, l2, bn, taylor, hap, obd, fisher, obs, "
                 "obs-layer; or define it in a [method foo] section)");
    expect_error(fx, "[sweep]\nmodel = m\nmethods = hap, hap\n", 3, "lists 'hap' twice");
    expect_error(fx, "[sweep]\nmodel = m\nmethods = l1,,hap\n", 3, "empty entry");
    expect_error(fx, "[sweep]\nmodel = m\ntargets = 0.5, 1\n", 3, "in (0, 1)");
    expect_error(fx, "[sweep]\nmodel = m\ntargets = 0\n", 3, "in (0, 1)");
    expect_error(fx, "[sweep]\nmodel = m\ntargets = half\n", 3, "expected comma-separated numbers");
    expect_error(fx, "[sweep]\nmodel = m\ntargets = 0.5, 0.50\n", 3, "twice");
    expect_error(fx, "[sweep]\nmodel = m\nseeds = -1\n", 3, "non-negative integers");
    expect_error(fx, "[sweep]\nmodel = m\ntarget = gates\n", 3, "flops (or macs), params or channels");
    expect_error(fx, "[sweep]\nmodel = m\nsteps = 0\n", 3, "'steps' must be in [1, 100]");
    expect_error(fx, "[sweep]\nmodel = m\nmax_layer_frac = 1\n", 3, "'max_layer_frac' must be in (0, 1)");
    expect_error(fx, "[sweep]\nmodel = m\nprobes = 1\n", 3, "'probes' must be in [2,");
    expect_error(fx, "[sweep]\nmodel = m\n[finetune]\nlr = 0\n", 4, "'lr' must be in (0,");
    expect_error(fx, "[sweep]\nmodel = m\n[finetune]\nval_split = 1\n", 4, "'val_split'");
    // A float is checked as stored: neither rounded to 0 nor up to an excluded bound.
    expect_error(fx, "[sweep]\nmodel = m\n[finetune]\nlr = 1e-60\n", 4, "bad value '1e-60' for 'lr': number out of range");
    expect_error(fx, "[sweep]\nmodel = m\n[finetune]\nval_split = 0.99999999999\n", 4, "'val_split' must be in [0, 1)");
    expect_error(fx, "[sweep]\nmodel = m\nseeds = 3, 1, 3\n", 3, "'seeds' lists '3' twice");
    expect_error(fx, "[sweep]\nmodel = m\n[data]\ndataset =\n", 4, "'dataset' must not be empty");
    expect_error(fx, "[sweep]\nmodel = m\n[finetune]\nhflip = maybe\n", 4, "expected true or false");
    expect_error(fx, "[sweep]\nmodel = m\n[finetune]\ncrop_pad = -1\n", 4, "'crop_pad' must be in [0, 64]");
    expect_error(fx, "[sweep]\nmodel = m\n[data]\ndataset = imagenet\n", 4, "fashion-mnist, mnist or cifar10");
    expect_error(fx, "[sweep]\nmodel =\n", 2, "must not be empty");
    expect_error(fx, "[sweep]\nmodel = m\nout = -\n", 3, "'out' = -: writing to standard output is not supported");
    expect_error(fx, "model = m\n", 1, "outside any section");
    expect_error(fx, "[sweep]\nmodel = m\nthis is not ini\n", 3, "syntax error");
    expect_error(fx, "[sweep]\nmethods = l1\n", 0, "model is required");
}

// The run list is methods x targets x seeds in config order, with stable ids, and the shards
// partition it.
static void test_runs_and_shards(void **state) {
    Fixture *fx = *state;
    SweepConfig c;
    sweep_config_default(&c);
    HpErr err;
    const char *text = "[sweep]\nmodel = m\nmethods = hap, l1\ntargets = 0.5, 0.25, 0.333\nseeds = 1, 2\n";
    if (load_text(fx, &c, text, &err) < 0) fail_msg("%s", err.msg);
    SweepRun *r;
    int n = sweep_runs(&c, &r, &err);
    if (n < 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 12);
    assert_string_equal(r[0].id, "hap-flops0.50-s1");
    assert_string_equal(r[1].id, "hap-flops0.50-s2");
    assert_string_equal(r[2].id, "hap-flops0.25-s1");
    assert_string_equal(r[4].id, "hap-flops0.333-s1");
    assert_string_equal(r[11].id, "l1-flops0.333-s2");
    for (int i = 0; i < n; i++) {
        assert_int_equal(r[i].index, i);
        int owners = 0;
        for (int s = 0; s < 5; s++) owners += sweep_in_shard(i, s, 5);
        assert_int_equal(owners, 1);
    }
    PruneJob j = sweep_job(&c, &r[3], 2);
    assert_int_equal(j.crit.method, CRIT_HAP);
    assert_true(j.target.ratio == 0.25);
    assert_int_equal(j.crit.seed, 2);
    assert_int_equal(j.finetune.seed, 2);
    assert_int_equal(j.finetune.threads, 2);
    free(r);
    int s, k;
    assert_int_equal(sweep_parse_shard("1/3", &s, &k, &err), 0);
    assert_int_equal(s, 1);
    assert_int_equal(k, 3);
    assert_int_equal(sweep_parse_shard("3/3", &s, &k, &err), -1);
    assert_int_equal(sweep_parse_shard("-1/3", &s, &k, &err), -1);
    assert_int_equal(sweep_parse_shard("1/0", &s, &k, &err), -1);
    assert_int_equal(sweep_parse_shard("1", &s, &k, &err), -1);
    assert_int_equal(sweep_parse_shard("1/2x", &s, &k, &err), -1);
    // plain decimal only, as every number on the command line
    static const char *const lax[] = {" 1/3", "1/ 3", "+1/3", "1/+3", "0x1/3", "1/0x3", "1/3/5", "/3", "1/", "1/3 "};
    for (size_t i = 0; i < sizeof lax / sizeof lax[0]; i++) {
        if (sweep_parse_shard(lax[i], &s, &k, &err) != -1) fail_msg("'%s' read as a shard", lax[i]);
        assert_non_null(strstr(err.msg, "is not I/N"));
    }
}

// Result files: written, recognised as done for the same settings only, merged by collect
// into a CSV sorted by method then target, a Markdown table and the charts.
static void test_results_and_collect(void **state) {
    Fixture *fx = *state;
    SweepConfig c;
    sweep_config_default(&c);
    HpErr err;
    if (load_text(fx, &c, "[sweep]\nmodel = m\nmethods = l1, hap\ntargets = 0.5, 0.3\n", &err) < 0)
        fail_msg("%s", err.msg);
    char dir[128], path[SWEEP_PATH * 3];
    make_out(fx);
    snprintf(dir, sizeof dir, "%s/none/sub", fx->dir);  // one level is made, not a missing parent
    assert_int_equal(sweep_make_dirs(dir, &err), -1);
    char no_parent[256];
    snprintf(no_parent, sizeof no_parent, "%s: cannot create: directory %s/none: No such file or directory", dir,
             fx->dir);
    assert_string_equal(err.msg, no_parent);
    snprintf(dir, sizeof dir, "%s/none", fx->dir);
    assert_int_equal(access(dir, F_OK), -1);
    snprintf(dir, sizeof dir, "%s/out/sub", fx->dir);
    assert_int_equal(sweep_make_dirs(dir, &err), 0);
    SweepRun *r;
    int n = sweep_runs(&c, &r, &err);
    if (n < 0) fail_msg("%s", err.msg);
    assert_int_equal(sweep_result_path(dir, r[0].id, path, sizeof path, &err), 0);
    assert_int_equal(sweep_result_done(path, &c, &r[0], &err), 0);
    for (int i = 0; i < n; i++) {
        PruneOutcome o = {.acc_orig = 0.9, .acc_oneshot = 0.5 + 0.01 * i, .acc_final = 0.8, .macs_orig = 1000,
                          .macs_pruned = (uint64_t)(1000 * (1 - r[i].target)), .params_orig = 100, .params_pruned = 60,
                          .lat_orig_ms = 2, .lat_pruned_ms = 1, .total_s = 3, .finetune_epochs = 1, .best_epoch = 1,
                          .speedup = i == 0 ? 1.75 : 0};  // the others without one, as results written before it
        assert_int_equal(sweep_result_path(dir, r[i].id, path, sizeof path, &err), 0);
        if (sweep_result_write(path, &c, &r[i], &o, &err) < 0) fail_msg("%s", err.msg);
        assert_int_equal(sweep_result_done(path, &c, &r[i], &err), 1);
    }
    SweepConfig other = c;
    other.finetune.epochs = 2;
    assert_int_equal(sweep_result_done(path, &other, &r[n - 1], &err), -1);
    assert_non_null(strstr(err.msg, "finetune_epochs=0"));
    // without fine-tuning (epochs 0) its other settings are not used: changing them keeps the result
    other = c;
    other.finetune.lr = 0.5f, other.finetune.batch_size = 7, other.finetune.val_split = 0;
    other.finetune.weight_decay = 0, other.finetune.augment.crop_pad = 4, other.finetune.augment.hflip = true;
    if (sweep_result_done(path, &other, &r[n - 1], &err) != 1) fail_msg("%s", err.msg);
    // with fine-tuning they are: a result fine-tuned at another lr is not this run's
    SweepConfig fine = c;
    fine.finetune.epochs = 2;
    PruneOutcome fo = {.acc_orig = 0.9, .acc_oneshot = 0.5, .acc_final = 0.8, .macs_orig = 1000, .macs_pruned = 700,
                       .params_orig = 100, .params_pruned = 60, .lat_orig_ms = 2, .lat_pruned_ms = 1, .total_s = 3,
                       .finetune_epochs = 2, .best_epoch = 1};
    if (sweep_result_write(path, &fine, &r[n - 1], &fo, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(sweep_result_done(path, &fine, &r[n - 1], &err), 1);
    other = fine;
    other.finetune.lr = 0.5f;
    assert_int_equal(sweep_result_done(path, &other, &r[n - 1], &err), -1);
    // the message shows each value in the fewest digits that read back the same (the file keeps
    // %.9g of a float, %.17g of a double): not lr=0.00999999978, max_layer_frac=0.90000000000000002
    assert_non_null(strstr(err.msg, "(it has lr=0.01 where this config has lr=0.5)"));
    other = fine;
    other.max_layer_frac = 0.8;
    assert_int_equal(sweep_result_done(path, &other, &r[n - 1], &err), -1);
    assert_non_null(strstr(err.msg, "(it has max_layer_frac=0.9 where this config has max_layer_frac=0.8)"));
    other = fine;
    other.max_layer_frac = 0.1 + 0.2;  // 0.30000000000000004: all 17 digits are needed
    assert_int_equal(sweep_result_done(path, &other, &r[n - 1], &err), -1);
    assert_non_null(strstr(err.msg, "where this config has max_layer_frac=0.30000000000000004)"));
    other = fine;
    other.finetune.weight_decay = 1e-4f;
    assert_int_equal(sweep_result_done(path, &other, &r[n - 1], &err), -1);
    assert_non_null(strstr(err.msg, "where this config has weight_decay=0.0001)"));
    other = fine;
    other.finetune.augment.hflip = true;
    assert_int_equal(sweep_result_done(path, &other, &r[n - 1], &err), -1);
    assert_non_null(strstr(err.msg, "(it has hflip=0 where this config has hflip=1)"));
    assert_int_equal(sweep_result_done(path, &c, &r[n - 1], &err), -1);  // fine-tuned, where c does not
    assert_non_null(strstr(err.msg, "(it has finetune_epochs=2 where this config has finetune_epochs=0)"));
    tu_write(path, "{\"id\": 1", 8);  // a broken result is an error, not a finished run
    assert_int_equal(sweep_result_done(path, &c, &r[n - 1], &err), -1);
    tu_write(path, "{}", 2);
    assert_int_equal(sweep_collect(dir, &n, &err), -1);
    assert_non_null(strstr(err.msg, "no string \"id\""));
    unlink(path);
    int merged = 0;
    if (sweep_collect(dir, &merged, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(merged, 3);
    char csv[256];
    snprintf(csv, sizeof csv, "%s/results.csv", dir);
    FILE *f = fopen(csv, "r");
    assert_non_null(f);
    char line[512];
    assert_non_null(fgets(line, sizeof line, f));
    assert_int_equal(strncmp(line, "id,method,target_kind,target,seed,", 34), 0);
    const char *want[] = {"hap-flops0.50-s1,", "l1-flops0.30-s1,", "l1-flops0.50-s1,"};  // hap 0.3 removed
    for (int i = 0; i < 3; i++) {
        assert_non_null(fgets(line, sizeof line, f));
        assert_int_equal(strncmp(line, want[i], strlen(want[i])), 0);
        // the speed-up as the run measured it, else latency_ms_original / latency_ms
        bool measured = strncmp(line, r[0].id, strlen(r[0].id)) == 0 && line[strlen(r[0].id)] == ',';
        assert_non_null(strstr(line, measured ? ",1.750," : ",2.000,"));
    }
    assert_null(fgets(line, sizeof line, f));
    fclose(f);
    const char *files[] = {"results.md", "accuracy_vs_macs.png", "accuracy_vs_macs.svg"};
    for (int i = 0; i < 3; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size > 100);
    }
    free(r);
}

// Reads a whole small file into buf (NUL-terminated); fails the test if it cannot.
static void read_small(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    assert_true(n > 0 && n < cap - 1);
    buf[n] = 0;
}

// Writes a result for each of c's n runs r into dir (paths into path[i]) with one made-up
// outcome, each then read back as done.
static void write_run_results(const SweepConfig *c, const SweepRun *r, int n, const char *dir,
                              char path[][SWEEP_PATH * 3]) {
    HpErr err;
    PruneOutcome o = {.acc_orig = 0.9, .acc_oneshot = 0.5, .acc_final = 0.8, .macs_orig = 1000, .macs_pruned = 500,
                      .params_orig = 100, .params_pruned = 60, .lat_orig_ms = 2, .lat_pruned_ms = 1, .total_s = 3};
    for (int i = 0; i < n; i++) {
        assert_int_equal(sweep_result_path(dir, r[i].id, path[i], SWEEP_PATH * 3, &err), 0);
        if (sweep_result_write(path[i], c, &r[i], &o, &err) < 0) fail_msg("%s", err.msg);
        assert_int_equal(sweep_result_done(path[i], c, &r[i], &err), 1);
    }
}

// An obs run's result records the Fisher settings it was made with (prune's defaults: blocks of
// 100, damp 1e-2), so a result made with other ones (an older default) is refused on restart;
// other methods' results do not depend on them.
static void test_obs_result_settings(void **state) {
    Fixture *fx = *state;
    SweepConfig c;
    sweep_config_default(&c);
    HpErr err;
    if (load_text(fx, &c, "[sweep]\nmodel = m\nmethods = l1, obs\ntargets = 0.5\n", &err) < 0) fail_msg("%s", err.msg);
    char dir[128], path[2][SWEEP_PATH * 3], text[8192];
    make_out(fx);
    snprintf(dir, sizeof dir, "%s/out/obs", fx->dir);
    assert_int_equal(sweep_make_dirs(dir, &err), 0);
    SweepRun *r;
    int n = sweep_runs(&c, &r, &err);
    if (n < 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 2);
    write_run_results(&c, r, n, dir, path);
    for (int i = 0; i < n; i++) {
        read_small(path[i], text, sizeof text);
        const char *fisher = "obs_fisher=1000 gradients of 1, blocks of 100, damp 0.01;";
        if (r[i].method->criterion == CRIT_OBS) assert_non_null(strstr(text, fisher));
        else assert_null(strstr(text, "obs_fisher"));
        assert_null(strstr(text, "method="));  // bare criteria: the settings of results made before methods had options
    }
    int k = r[0].method->criterion == CRIT_OBS ? 0 : 1;
    read_small(path[k], text, sizeof text);
    char *at = strstr(text, "blocks of 100,");
    assert_non_null(at);
    memcpy(at, "blocks of 200,", 14);  // as if made with other Fisher blocks
    tu_write(path[k], text, strlen(text));
    assert_int_equal(sweep_result_done(path[k], &c, &r[k], &err), -1);
    assert_non_null(strstr(err.msg, "made with other settings"));
    assert_non_null(strstr(err.msg, "it has obs_fisher=1000 gradients of 1, blocks of 200, damp 0.01 where this config "
                                    "has obs_fisher=1000 gradients of 1, blocks of 100, damp 0.01"));
    // a result written before obs recorded its Fisher: the setting it lacks is named
    at = strstr(text, "obs_fisher=");
    char *end = strchr(at, ';');
    assert_non_null(end);
    memmove(at, end + 1, strlen(end + 1) + 1);
    tu_write(path[k], text, strlen(text));
    assert_int_equal(sweep_result_done(path[k], &c, &r[k], &err), -1);
    assert_non_null(strstr(err.msg, "it has nothing where this config has obs_fisher=1000 gradients of 1"));
    free(r);
}

// Writes text into the file path inside the fixture, replacing the first occurrence of from
// (which must be there) by to.
static void edit_file(const char *path, const char *from, const char *to) {
    char text[8192], out[8192];
    read_small(path, text, sizeof text);
    char *at = strstr(text, from);
    assert_non_null(at);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    tu_write(path, out, strlen(out));
}

// Removes the line holding key from the JSON file path (a result written before key existed).
static void drop_line(const char *path, const char *key) {
    char text[8192];
    read_small(path, text, sizeof text);
    char *at = strstr(text, key);
    assert_non_null(at);
    char *start = at, *end = strchr(at, '\n');
    while (start > text && start[-1] != '\n') start--;
    assert_non_null(end);
    memmove(start, end + 1, strlen(end + 1) + 1);
    tu_write(path, text, strlen(text));
}

// Asserts what sweep_result_done says of run r's result at path under config c: want, and for
// -1 the words in its message.
static void expect_done(const char *path, const SweepConfig *c, const SweepRun *r, int want, const char *words) {
    HpErr err = {{0}};
    int got = sweep_result_done(path, c, r, &err);
    if (got != want || (want < 0 && !strstr(err.msg, words)))
        fail_msg("%s: %d (wanted %d) '%s'; wanted words '%s'", r->id, got, want, err.msg, want < 0 ? words : "");
}

// Loads text over a fresh config c and makes its run list (4 runs: l1, hap, hap-ggn, obs).
static void load_runs(Fixture *fx, SweepConfig *c, const char *text, SweepRun **r) {
    HpErr err;
    sweep_config_default(c);
    if (load_text(fx, c, text, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(sweep_runs(c, r, &err), 4);
}

// A result records and is checked against the settings every run reads and those its own
// method reads: changing probes (hap's, not with ggn) or samples (hap's) leaves the l1 and obs
// results done and refuses hap's; a setting every run reads refuses them all. A result written
// before settings were per method (samples and probes in every run's) is checked the same way.
static void test_method_settings(void **state) {
    Fixture *fx = *state;
    const char *base = "[sweep]\nmodel = m\nmethods = l1, hap, hap-ggn, obs\ntargets = 0.3\nsamples = %d\nprobes = %d\n"
                       "steps = %d\n[method hap-ggn]\ncriterion = hap\nggn = true\n";
    char text[512], dir[128], path[4][SWEEP_PATH * 3], json[8192];
    SweepConfig c;
    SweepRun *r, *q;
    snprintf(text, sizeof text, base, 64, 4, 1);
    load_runs(fx, &c, text, &r);
    make_out(fx);
    snprintf(dir, sizeof dir, "%s/out/own", fx->dir);
    HpErr err;
    assert_int_equal(sweep_make_dirs(dir, &err), 0);
    write_run_results(&c, r, 4, dir, path);
    const char *has[4][3] = {{NULL, NULL, NULL}, {"samples=64;", "probes=4;", NULL},
                             {"samples=64;", NULL, NULL}, {NULL, NULL, "obs_fisher="}};
    const char *items[3] = {"samples=", "probes=", "obs_fisher="};
    for (int i = 0; i < 4; i++) {
        read_small(path[i], json, sizeof json);
        for (int k = 0; k < 3; k++)
            if (has[i][k]) assert_non_null(strstr(json, has[i][k]));
            else assert_null(strstr(json, items[k]));
    }
    struct { int samples, probes, steps, done[4]; const char *words; } cases[] = {
        {64, 5, 1, {1, -1, 1, 1}, "made with other settings (it has probes=4 where this config has probes=5)"},
        {32, 4, 1, {1, -1, -1, 1}, "(it has samples=64 where this config has samples=32)"},
        {64, 4, 2, {-1, -1, -1, -1}, "(it has steps=1 where this config has steps=2)"},
    };
    for (int t = 0; t < 2; t++) {  // as written now; then l1's and obs's as written before (samples, probes)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            SweepConfig d;
            snprintf(text, sizeof text, base, cases[k].samples, cases[k].probes, cases[k].steps);
            load_runs(fx, &d, text, &q);
            for (int i = 0; i < 4; i++) expect_done(path[i], &d, &q[i], cases[k].done[i], cases[k].words);
            free(q);
        }
        for (int i = 0; i < 4; i++) expect_done(path[i], &c, &r[i], 1, "");
        if (t == 0) {
            edit_file(path[0], ";finetune_epochs=", ";samples=64;probes=4;finetune_epochs=");
            edit_file(path[3], ";obs_fisher=", ";samples=64;probes=4;obs_fisher=");
        }
    }
    free(r);
    // a model path holding ";probes=": the result a run just wrote is its own
    load_runs(fx, &c, "[sweep]\nmodel = a;probes=9/m\nmethods = l1, hap, hap-ggn, obs\ntargets = 0.3\n"
                      "[method hap-ggn]\ncriterion = hap\nggn = true\n", &r);
    snprintf(dir, sizeof dir, "%s/out/semi", fx->dir);
    assert_int_equal(sweep_make_dirs(dir, &err), 0);
    write_run_results(&c, r, 4, dir, path);
    for (int i = 0; i < 4; i++) expect_done(path[i], &c, &r[i], 1, "");
    free(r);
}

// The model's CRC-32 goes into every result; a result made from a model file whose bytes have
// changed since is refused, naming the file and the model; a result written before the CRC was
// recorded is reused but said to be unchecked.
static void test_model_fingerprint(void **state) {
    Fixture *fx = *state;
    char model[128], text[256], dir[128], path[2][SWEEP_PATH * 3], json[8192];
    snprintf(model, sizeof model, "%s/base.safetensors", fx->dir);
    tu_write(model, "model A bytes", 13);
    SweepConfig c;
    sweep_config_default(&c);
    HpErr err;
    snprintf(text, sizeof text, "[sweep]\nmodel = %s\nmethods = l1\ntargets = 0.3, 0.5\n", model);
    if (load_text(fx, &c, text, &err) < 0) fail_msg("%s", err.msg);
    assert_false(c.model_crc_known);
    assert_int_equal(sweep_fingerprint(&c, &err), 0);
    assert_true(c.model_crc_known);
    assert_int_equal(c.model_crc, (uint32_t)crc32(0L, (const Bytef *)"model A bytes", 13));
    snprintf(dir, sizeof dir, "%s/out", fx->dir);
    assert_int_equal(sweep_make_dirs(dir, &err), 0);
    SweepRun *r;
    int n = sweep_runs(&c, &r, &err);
    if (n < 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 2);
    write_run_results(&c, r, n, dir, path);
    read_small(path[0], json, sizeof json);
    char want[64];
    snprintf(want, sizeof want, "\"model_crc32\":\t\"%08x\"", (unsigned)c.model_crc);
    assert_non_null(strstr(json, want));
    // the model file replaced by another of the same name: its runs are not this sweep's
    SweepConfig now = c;
    tu_write(model, "model B bytes", 13);
    assert_int_equal(sweep_fingerprint(&now, &err), 0);
    assert_int_not_equal(now.model_crc, c.model_crc);
    assert_int_equal(sweep_result_done(path[0], &now, &r[0], &err), -1);
    char words[4096];
    snprintf(words, sizeof words, "%s: made from another model: %s with CRC-32 %08x, where this sweep's model %s has "
             "CRC-32 %08x (the file changed since): use another output directory or delete it", path[0], model,
             (unsigned)c.model_crc, model, (unsigned)now.model_crc);
    assert_string_equal(err.msg, words);
    // a result written before results recorded the CRC: reused, but unchecked
    drop_line(path[0], "\"model_crc32\"");
    assert_int_equal(sweep_result_done(path[0], &now, &r[0], &err), SWEEP_DONE_UNCHECKED);
    SweepConfig plain = c;  // a config whose model was not read (no CRC to compare): done
    plain.model_crc_known = false;
    assert_int_equal(sweep_result_done(path[0], &plain, &r[0], &err), 1);
    assert_int_equal(sweep_result_done(path[1], &plain, &r[1], &err), 1);
    // a CRC that is not one
    edit_file(path[1], "\"model_crc32\":\t\"", "\"model_crc32\":\t\"zz");
    assert_int_equal(sweep_result_done(path[1], &c, &r[1], &err), -1);
    assert_non_null(strstr(err.msg, "\"model_crc32\" is not a CRC-32 (8 hex digits)"));
    // a model that cannot be read
    SweepConfig gone = c;
    snprintf(gone.model, sizeof gone.model, "%s/missing.safetensors", fx->dir);
    assert_int_equal(sweep_fingerprint(&gone, &err), -1);
    assert_non_null(strstr(err.msg, "missing.safetensors: cannot open"));
    free(r);
}

// Writes the results of c's runs into dir with outcome o, as made from a model of CRC crc
// (0: as written before results recorded it).
static void write_results(const char *dir, SweepConfig *c, const PruneOutcome *o, uint32_t crc) {
    HpErr err;
    assert_int_equal(sweep_make_dirs(dir, &err), 0);
    c->model_crc = crc, c->model_crc_known = crc != 0;
    SweepRun *r;
    int n = sweep_runs(c, &r, &err);
    if (n < 0) fail_msg("%s", err.msg);
    for (int i = 0; i < n; i++) {
        char path[SWEEP_PATH * 3];
        assert_int_equal(sweep_result_path(dir, r[i].id, path, sizeof path, &err), 0);
        if (sweep_result_write(path, c, &r[i], o, &err) < 0) fail_msg("%s", err.msg);
    }
    free(r);
}

// collect merges only results of one base model: the same CRC-32 where recorded, the same
// parameters, MACs and accuracy before pruning; otherwise it names two files and their models.
static void test_collect_one_base(void **state) {
    Fixture *fx = *state;
    SweepConfig a, b;
    sweep_config_default(&a);
    HpErr err;
    if (load_text(fx, &a, "[sweep]\nmodel = m.safetensors\nmethods = l1\ntargets = 0.3\n", &err) < 0) fail_msg("%s", err.msg);
    sweep_config_default(&b);
    if (load_text(fx, &b, "[sweep]\nmodel = m.safetensors\nmethods = l1\ntargets = 0.5\n", &err) < 0) fail_msg("%s", err.msg);
    PruneOutcome o = {.acc_orig = 0.9085, .acc_oneshot = 0.5, .acc_final = 0.8, .macs_orig = 416520, .macs_pruned = 200000,
                      .params_orig = 61706, .params_pruned = 40000, .lat_orig_ms = 2, .lat_pruned_ms = 1, .total_s = 3};
    char dir[128];
    int n;
    struct { uint32_t crc_a, crc_b; double acc_b; size_t params_b; const char *words; } cases[] = {
        {0x1234abcd, 0x1234abcd, 0.9085, 61706, NULL},  // one model
        {0, 0x1234abcd, 0.9085, 61706, NULL},           // an older result, the same figures
        {0, 0, 0.9085, 61706, NULL},
        {0x1234abcd, 0x9999aaaa, 0.9085, 61706,
         "l1-flops0.30-s1.json and l1-flops0.50-s1.json come from different base models, m.safetensors (CRC-32 "
         "1234abcd, 61706 parameters, 416520 MACs, test accuracy 90.85%) and m.safetensors (CRC-32 9999aaaa, 61706 "
         "parameters, 416520 MACs, test accuracy 90.85%): collect the runs of one model only"},
        {0x1234abcd, 0x1234abcd, 0.8350, 61706, "(CRC-32 1234abcd, 61706 parameters, 416520 MACs, test accuracy 83.5%)"},
        {0, 0x1234abcd, 0.8350, 61706, "m.safetensors (CRC-32 not recorded, 61706 parameters"},
        {0x1234abcd, 0, 0.9085, 60000, "(CRC-32 not recorded, 60000 parameters"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(dir, sizeof dir, "%s/c%zu", fx->dir, i);
        write_results(dir, &a, &o, cases[i].crc_a);
        PruneOutcome ob = o;
        ob.acc_orig = cases[i].acc_b, ob.params_orig = cases[i].params_b;
        write_results(dir, &b, &ob, cases[i].crc_b);
        int rc = sweep_collect(dir, &n, &err);
        if (!cases[i].words) {
            if (rc != 0) fail_msg("case %zu: %s", i, err.msg);
            assert_int_equal(n, 2);
            continue;
        }
        char prefix[160];
        snprintf(prefix, sizeof prefix, "%s/runs: ", dir);
        if (rc != -1 || strncmp(err.msg, prefix, strlen(prefix)) != 0 || !strstr(err.msg, cases[i].words))
            fail_msg("case %zu: rc %d, message '%s'", i, rc, rc ? err.msg : "");
        char csv[192];
        snprintf(csv, sizeof csv, "%s/results.csv", dir);
        assert_int_equal(access(csv, F_OK), -1);  // nothing written
    }
    // three results: the odd one out among those recording a CRC is named against the first such
    snprintf(dir, sizeof dir, "%s/three", fx->dir);
    write_results(dir, &a, &o, 0);
    write_results(dir, &b, &o, 0x1234abcd);
    SweepConfig d = b;
    if (load_text(fx, &d, "[sweep]\nmodel = m.safetensors\nmethods = l1\ntargets = 0.7\n", &err) < 0) fail_msg("%s", err.msg);
    write_results(dir, &d, &o, 0x5555eeee);
    assert_int_equal(sweep_collect(dir, &n, &err), -1);
    assert_non_null(strstr(err.msg, "l1-flops0.50-s1.json and l1-flops0.70-s1.json come from different base models"));
}

// A whole file in a malloc'd buffer (*len bytes); fails the test if it cannot be read.
static char *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

// The four files collect writes, read into memory to compare after a collect that failed.
static const char *const COLLECTED[4] = {"results.csv", "results.md", "accuracy_vs_macs.png", "accuracy_vs_macs.svg"};
typedef struct {
    char *data[4];
    size_t len[4];
} Collected;

static void outputs_read(const char *dir, Collected *o) {
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, COLLECTED[i]);
        o->data[i] = read_whole(path, &o->len[i]);
    }
}

static void outputs_free(Collected *o) {
    for (int i = 0; i < 4; i++) free(o->data[i]);
}

// Fails the test unless dir's outputs are byte for byte those in o, and neither dir nor
// dir/runs holds a temporary file (.hprune-*).
static void expect_untouched(const char *dir, const Collected *o, const char *what) {
    Collected now;
    outputs_read(dir, &now);
    for (int i = 0; i < 4; i++)
        if (now.len[i] != o->len[i] || memcmp(now.data[i], o->data[i], o->len[i]) != 0)
            fail_msg("%s: %s changed", what, COLLECTED[i]);
    outputs_free(&now);
    const char *sub[] = {"", "/runs"};
    for (int s = 0; s < 2; s++) {
        char path[256];
        snprintf(path, sizeof path, "%s%s", dir, sub[s]);
        DIR *d = opendir(path);
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));)
            if (strncmp(e->d_name, ".hprune-", 8) == 0) fail_msg("%s: %s/%s left behind", what, path, e->d_name);
        closedir(d);
    }
}

// Asserts that collect in dir fails with "<file>: <words>...", leaving the outputs o as they were.
static void expect_collect_error(const char *dir, const char *file, const char *words, const Collected *o) {
    HpErr err;
    int n = 0;
    int rc = sweep_collect(dir, &n, &err);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s: %s", file, words);
    if (rc != -1 || strncmp(err.msg, prefix, strlen(prefix)) != 0)
        fail_msg("rc %d, message '%s'\nwanted '%s...'", rc, rc ? err.msg : "", prefix);
    expect_untouched(dir, o, words);
}

// collect checks every field of every result before it writes anything: a value out of range,
// a string a sweep would not write (one that would break a table), data after the object or a
// key twice is refused, naming the file and the key; and it writes its four files all or none,
// so a failure leaves the earlier ones byte for byte and no temporary file.
static void test_collect_checks(void **state) {
    Fixture *fx = *state;
    SweepConfig c;
    sweep_config_default(&c);
    HpErr err;
    if (load_text(fx, &c, "[sweep]\nmodel = m.safetensors\nmethods = l1\ntargets = 0.3, 0.5\n", &err) < 0)
        fail_msg("%s", err.msg);
    PruneOutcome o = {.acc_orig = 0.9, .acc_oneshot = 0.5, .acc_recal = 0.7, .acc_final = 0.8, .macs_orig = 1000,
                      .macs_pruned = 700, .params_orig = 100, .params_pruned = 60, .lat_orig_ms = 2, .lat_pruned_ms = 1,
                      .total_s = 3, .finetune_epochs = 1, .best_epoch = 1};
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "%s/out", fx->dir);
    write_results(dir, &c, &o, 0x1234abcd);
    int n;
    if (sweep_collect(dir, &n, &err) < 0) fail_msg("%s", err.msg);
    Collected before;
    outputs_read(dir, &before);
    snprintf(path, sizeof path, "%s/runs/l1-flops0.30-s1.json", dir);
    size_t len;
    char *good = read_whole(path, &len);
    struct { const char *from, *to, *words; } cases[] = {
        {"\"accuracy_original\":\t0.9", "\"accuracy_original\":\t1e308", "accuracy_original 1e+308 is not in [0, 1]"},
        {"\"accuracy_finetuned\":\t0.8", "\"accuracy_finetuned\":\t-0.5", "accuracy_finetuned -0.5 is not in [0, 1]"},
        {"\"accuracy_oneshot\":\t0.5", "\"accuracy_oneshot\":\t1e999", "accuracy_oneshot is not a finite number"},
        {"\"params_original\":\t100", "\"params_original\":\t1e308",
         "params_original 1e+308 is not a positive integer below 2^53"},
        {"\"params\":\t60", "\"params\":\t60.5", "params 60.5 is not a positive integer below 2^53"},
        {"\"macs\":\t700", "\"macs\":\t0", "macs 0 is not a positive integer below 2^53"},
        {"\"macs\":\t700", "\"macs\":\t1001", "macs 1001 is above macs_original 1000"},
        {"\"params\":\t60", "\"params\":\t101", "params 101 is above params_original 100"},
        {"\"finetune_epochs\":\t1", "\"finetune_epochs\":\t10001",
         "finetune_epochs 10001 is not an integer in [0, 10000]"},
        {"\"best_epoch\":\t1", "\"best_epoch\":\t2", "best_epoch 2 is above finetune_epochs 1"},
        {"\"best_epoch\":\t1", "\"best_epoch\":\t-1", "best_epoch -1 is not an integer in [0, 10000]"},
        {"\"latency_ms\":\t1", "\"latency_ms\":\t0", "latency_ms 0 is not positive"},
        {"\"latency_ms\":\t1", "\"latency_ms\":\t1e-320",
         "latency_ms_original 2 / latency_ms 1e-320 is not a finite speed-up"},
        {"\"seconds\":\t3", "\"seconds\":\t-1", "seconds -1 is negative"},
        {"\"target\":\t0.3", "\"target\":\t1.5", "target 1.5 is not in (0, 1)"},
        {"\"method\":\t\"l1\"", "\"method\":\t\"l1|x\"", "method is not a method name"},
        {"\"method\":\t\"l1\"", "\"method\":\t\"l1\\nx\"", "method is not a method name"},
        {"\"seed\":\t\"1\"", "\"seed\":\t\"01\"", "seed is not a decimal integer below 2^64"},
        {"\"seed\":\t\"1\"", "\"seed\":\t\"18446744073709551616\"", "seed is not a decimal integer below 2^64"},
        {"\"seed\":\t\"1\"", "\"seed\":\t\"1,2\"", "seed is not a decimal integer below 2^64"},
        {"\"id\":\t\"l1-flops0.30-s1\"", "\"id\":\t\"a|b\"",
         "id is not l1-flops0.30-s1, the id of its method, target and seed"},
        {"\"target_kind\":\t\"flops\"", "\"target_kind\":\t\"flops\\n\"",
         "target_kind is not flops, params or channels"},
        {"\"options\":\t\"\"", "\"options\":\t\"rank | score\"", "options has characters other than"},
        {"\"criterion\":\t\"l1\"", "\"criterion\":\t\"l2\"",
         "criterion l2 is not l1, the criterion its method is named after"},
        {"\"criterion\":\t\"l1\"", "\"criterion\":\t\"l1`\"", "criterion is not the name of a criterion"},
        {"\"model\":\t\"m.safetensors\"", "\"model\":\t\"m\\n.safetensors\"", "model has a control character"},
        {"\"macs\":\t700", "\"macs\":\t700,\n\t\"macs\":\t5", "key \"macs\" appears twice"},
        // an escaped NUL, where cJSON would cut the string short (a seed of 1, a model path, no options)
        {"\"seed\":\t\"1\"", "\"seed\":\t\"1\\u00002\"", "\"seed\" holds a string with an escaped NUL (\\u0000)"},
        {"\"model\":\t\"m.safetensors\"", "\"model\":\t\"m.safetensors\\u0000.old\"",
         "\"model\" holds a string with an escaped NUL (\\u0000)"},
        {"\"options\":", "\"opt\\u0000ions\":", "a key with an escaped NUL (\\u0000): \"opt\\u0000ions\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        edit_file(path, cases[i].from, cases[i].to);
        expect_collect_error(dir, path, cases[i].words, &before);
        tu_write(path, good, len);
    }
    // data after the object: text, a second object, a NUL byte (white space is fine)
    struct { const char *tail; size_t n; const char *words; } tails[] = {
        {"garbage", 7, "data after the JSON object (at byte"}, {"{}", 2, "data after the JSON object"},
        {"\0junk", 5, "a NUL byte at byte"}};
    char text[8192];
    assert_true(len + 8 < sizeof text);
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        memcpy(text, good, len);
        memcpy(text + len, tails[i].tail, tails[i].n);
        tu_write(path, text, len + tails[i].n);
        expect_collect_error(dir, path, tails[i].words, &before);
    }
    // an escaped backslash before "u0000" is no NUL
    tu_write(path, good, len);
    edit_file(path, "\"model\":\t\"m.safetensors\"", "\"model\":\t\"m\\\\u0000.safetensors\"");
    if (sweep_collect(dir, &n, &err) < 0) fail_msg("an escaped backslash before u0000: %s", err.msg);
    memcpy(text, good, len);
    memcpy(text + len, "\n \t\r\n", 5);
    tu_write(path, text, len + 5);
    if (sweep_collect(dir, &n, &err) < 0) fail_msg("trailing white space: %s", err.msg);
    outputs_free(&before);
    outputs_read(dir, &before);
    // an output that cannot be written: none of the four is, and no temporary file is left
    char svg[256];
    snprintf(svg, sizeof svg, "%s/accuracy_vs_macs.svg", dir);
    unlink(svg);
    assert_int_equal(mkdir(svg, 0755), 0);
    assert_int_equal(sweep_collect(dir, &n, &err), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: cannot write: it is a directory", svg);
    assert_string_equal(err.msg, want);
    assert_int_equal(rmdir(svg), 0);
    tu_write(svg, before.data[3], before.len[3]);
    expect_untouched(dir, &before, "a directory in the way");
    // the largest values the checks allow fit their cells: a latency of 1e308 ms, in full
    edit_file(path, "\"latency_ms\":\t1", "\"latency_ms\":\t1e308");
    if (sweep_collect(dir, &n, &err) < 0) fail_msg("%s", err.msg);
    char csv[256];
    snprintf(csv, sizeof csv, "%s/results.csv", dir);
    char *table = read_whole(csv, &len);
    table[len] = '\0';
    char *p = strstr(table, "\nl1-flops0.30-s1,");
    assert_non_null(p);
    for (int col = 0; col < 16; col++) {  // to latency_ms, column 16
        p = strchr(p + 1, ',');
        assert_non_null(p);
    }
    assert_int_equal(strcspn(p + 1, ","), 313);  // "%.3f" of 1e308: 309 digits, a point, 3 decimals
    assert_int_equal(strncmp(p + 314, ",0.000,", 7), 0);  // the speed-up, 2e-308
    free(table);
    free(good);
    outputs_free(&before);
}

// tu_small_net (with or without batchnorm) and 16 random 1x8x8 images of its 3 classes.
static void small_net(Model *m, Dataset *d, bool with_bn) {
    Rng rng;
    rng_seed(&rng, 7, 0);
    tu_small_net(m, &rng, with_bn);
    assert_int_equal(dataset_alloc(d, 16, 1, 8, 8, 3, NULL), 0);
    for (int i = 0; i < 16 * 64; i++) d->images[i] = (uint8_t)rng_below(&rng, 256);
    for (int i = 0; i < 16; i++) d->labels[i] = (uint8_t)(i % 3);
}

// Loads text as the fixture's config and runs sweep_check on m and d; returns its status.
static int check_text(Fixture *fx, const char *text, const Model *m, const Dataset *d, HpErr *err) {
    SweepConfig c;
    sweep_config_default(&c);
    if (load_text(fx, &c, text, err) < 0) fail_msg("%s", err->msg);
    return sweep_check(&c, m, d, err);
}

// Before any run, every method's criterion scores the base model once on a tiny calibration:
// one it cannot use (bn without batchnorm) is named at the line that chose it, with the model.
static void test_check_methods(void **state) {
    Fixture *fx = *state;
    Model plain, bn;
    Dataset d;
    small_net(&plain, &d, false);
    Dataset d2;
    small_net(&bn, &d2, true);
    dataset_free(&d2);
    HpErr err;
    const char *all = "[sweep]\nmodel = m\nmethods = random, l1, l2, taylor, hap, obd, fisher, obs, obs-layer, hap-ggn\n"
                      "targets = 0.3\nsamples = 64\n[method hap-ggn]\ncriterion = hap\nggn = true\n"
                      "[method obs]\nfisher_grads = 16\n";
    if (check_text(fx, all, &plain, &d, &err) != 0) fail_msg("%s", err.msg);  // every criterion but bn runs here
    if (check_text(fx, "[sweep]\nmodel = m\nmethods = l1, bn\ntargets = 0.3\n", &bn, &d, &err) != 0) fail_msg("%s", err.msg);
    struct { const char *text; int line; } cases[] = {
        {"[sweep]\nmodel = m\nmethods = l1, bn\ntargets = 0.3\n", 3},                              // the methods line
        {"[sweep]\nmodel = m\nmethods = l1, slim\ntargets = 0.3\n[method slim]\nrank = per-cost\ncriterion = bn\n", 7},  // criterion =
        {"[sweep]\nmodel = m\ntargets = 0.3\nmethods = bn\n[method bn]\nnormalize = max\n", 5},    // [method bn]
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(check_text(fx, cases[i].text, &plain, &d, &err), -1);
        char want[512];
        snprintf(want, sizeof want, "%s:%d: method %s cannot run on m: criterion bn: channel group 'conv1' has no "
                 "batchnorm", fx->path, cases[i].line, i == 1 ? "slim" : "bn");
        if (strncmp(err.msg, want, strlen(want)) != 0) fail_msg("case %zu: '%s'\nwanted '%s'", i, err.msg, want);
    }
    // a Fisher needing more images than the data holds is named at its method's line, with its keys
    assert_int_equal(check_text(fx, "[sweep]\nmodel = m\nmethods = l1, obs\ntargets = 0.3\n", &plain, &d, &err), -1);
    assert_non_null(strstr(err.msg, ":3: method obs: fisher_grads 1000 x fisher_batch 1 needs 1000 training images, "
                                    "the training set has 16"));
    assert_int_equal(check_text(fx, "[sweep]\nmodel = m\nmethods = o\ntargets = 0.3\n[method o]\ncriterion = obs\n"
                                    "fisher_grads = 5\nfisher_batch = 4\n", &plain, &d, &err), -1);
    assert_non_null(strstr(err.msg, ":6: method o: fisher_grads 5 x fisher_batch 4 needs 20 training images, "
                                    "the training set has 16"));
    // the default method needs no line: l1 runs everywhere; a target out of reach comes first
    if (check_text(fx, "[sweep]\nmodel = m\ntargets = 0.3\n", &plain, &d, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(check_text(fx, "[sweep]\nmodel = m\nmethods = bn\nmax_layer_frac = 0.1\ntargets = 0.95\n", &plain,
                                &d, &err), -1);
    assert_non_null(strstr(err.msg, ":5: "));
    // calibration images the model does not take: the criteria that read them say so
    Dataset wrong;
    assert_int_equal(dataset_alloc(&wrong, 4, 1, 6, 6, 3, NULL), 0);
    memset(wrong.images, 0, 4 * 36);
    memset(wrong.labels, 0, 4);
    assert_int_equal(check_text(fx, "[sweep]\nmodel = m\nmethods = l1, taylor\ntargets = 0.3\n", &plain, &wrong, &err), -1);
    assert_non_null(strstr(err.msg, ":3: method taylor cannot run on m: calibration images are 1x6x6"));
    dataset_free(&wrong);
    dataset_free(&d);
    model_free(&plain), model_free(&bn);
}

// Counts the phases of a sensitivity analysis (user: an int).
static void count_phase(void *user, const char *name) {
    (void)name;
    ++*(int *)user;
}

// A criterion the model cannot use (bn without batchnorm) is refused by sensitivity_check, and
// by sensitivity_run before any work (no phase starts: not after the accuracy and the traces).
static void test_sensitivity_refuses_bn(void **state) {
    (void)state;
    Model plain, bn;
    Dataset d, d2;
    small_net(&plain, &d, false);
    small_net(&bn, &d2, true);
    double ratios[] = {0.5};
    int phases = 0;
    SensOpts o = {.crit = crit_defaults(), .ratios = ratios, .n_ratios = 1, .phase = count_phase, .user = &phases};
    o.crit.method = CRIT_BN;
    o.crit.data = &d;
    o.crit.samples = 8;
    o.crit.probes = 2;
    HpErr err = {{0}};
    const char *want = "criterion bn: channel group 'conv1' has no batchnorm";
    assert_int_equal(sensitivity_check(&o, &plain, &err), -1);
    if (!strstr(err.msg, want)) fail_msg("'%s'", err.msg);
    SensResult r;
    assert_int_equal(sensitivity_run(&o, &plain, &d, &r, &err), -1);
    if (!strstr(err.msg, want)) fail_msg("'%s'", err.msg);
    assert_int_equal(phases, 0);
    assert_null(r.groups);
    // with its batchnorms the same analysis runs
    assert_int_equal(sensitivity_check(&o, &bn, &err), 0);
    if (sensitivity_run(&o, &bn, &d2, &r, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(r.n_groups, 2);
    assert_int_equal(phases, 3);
    sensresult_free(&r);
    // and so does one of l1 on the model without them
    o.crit.method = CRIT_L1;
    assert_int_equal(sensitivity_check(&o, &plain, &err), 0);
    dataset_free(&d), dataset_free(&d2);
    model_free(&plain), model_free(&bn);
}

// The drops of a group: acc_orig - acc at each ratio, their mean and their largest, negative
// when pruning raised the accuracy (not floored at 0: with one ratio both are that drop).
static void test_sensitivity_drops(void **state) {
    (void)state;
    double acc1[] = {0.901}, acc3[] = {0.95, 0.85, 0.92};
    SensGroup g[2] = {{.acc = acc1}, {.acc = acc3}};
    SensResult one = {.groups = g, .n_groups = 1, .n_ratios = 1, .acc_orig = 0.9};
    double mean, max;
    sens_drops(&one, 0, &mean, &max);
    assert_true(fabs(mean - (-0.001)) < 1e-12);
    assert_true(mean == max);
    SensResult three = {.groups = g, .n_groups = 2, .n_ratios = 3, .acc_orig = 0.9};
    sens_drops(&three, 1, &mean, &max);
    assert_true(fabs(mean - (-0.05 + 0.05 - 0.02) / 3) < 1e-12);
    assert_true(fabs(max - 0.05) < 1e-12);
    acc3[1] = 0.96;  // every drop negative: the largest is the least negative
    sens_drops(&three, 1, &mean, &max);
    assert_true(fabs(max - (-0.02)) < 1e-12);
    assert_true(fabs(mean - (-0.05 - 0.06 - 0.02) / 3) < 1e-12);
}

// Counts the milestone lines of a job (user: an int).
static void count_log(void *user, const char *line) {
    (void)line;
    ++*(int *)user;
}

// A run of obs whose Fisher needs more images than the training set has fails before any work:
// not after measuring the unpruned model (prune_run checks the data up front, as the memory).
static void test_run_fisher_data(void **state) {
    Fixture *fx = *state;
    Model m;
    Dataset d;
    small_net(&m, &d, false);
    SweepConfig c;
    sweep_config_default(&c);
    HpErr err;
    if (load_text(fx, &c, "[sweep]\nmodel = m\nmethods = obs\ntargets = 0.3\n[method obs]\nfisher_grads = 17\n", &err) < 0)
        fail_msg("%s", err.msg);
    SweepRun *r;
    assert_int_equal(sweep_runs(&c, &r, &err), 1);
    PruneJob job = sweep_job(&c, &r[0], 1);
    int lines = 0;
    job.log = count_log;
    job.user = &lines;
    PruneOutcome out;
    assert_int_equal(prune_run(&job, &m, &d, &d, &out, &err), -1);
    assert_string_equal(err.msg, "fisher: N 17 x batch 1 needs 17 training images, the training set has 16");
    assert_int_equal(lines, 0);
    assert_true(out.acc_orig == 0 && out.macs_orig == 0);
    free(r);
    dataset_free(&d);
    model_free(&m);
}

// The lines the config's keys were read at: the model, the data, the fine-tuning's epochs and
// batch size, a method's criterion.
static void test_config_lines(void **state) {
    Fixture *fx = *state;
    SweepConfig c;
    sweep_config_default(&c);
    HpErr err;
    const char *text = "[sweep]\nmethods = l1, bn, x\nmodel = m\n[data]\ndir = /d\ndataset = mnist\n"
                       "[method x]\ncriterion = obs\n[method bn]\nnormalize = max\n[finetune]\nbatch_size = 64\n"
                       "epochs = 3\n";
    if (load_text(fx, &c, text, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(c.model_line, 3);
    assert_int_equal(c.data_dir_line, 5);
    assert_int_equal(c.dataset_line, 6);
    assert_int_equal(c.finetune_batch_line, 12);
    assert_int_equal(c.finetune_epochs_line, 13);
    assert_int_equal(c.finetune.batch_size, 64);
    assert_int_equal(c.finetune.epochs, 3);
    assert_string_equal(c.dataset, "mnist");
    assert_string_equal(c.data_dir, "/d");
    assert_int_equal(sweep_method_line(&c, &c.methods[0]), 2);  // a bare criterion: the methods line
    assert_int_equal(sweep_method_line(&c, &c.methods[1]), 9);  // [method bn]: its header
    assert_int_equal(sweep_method_line(&c, &c.methods[2]), 8);  // criterion = obs
    sweep_config_default(&c);
    if (load_text(fx, &c, "[sweep]\nmodel = m\n", &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(c.dataset_line + c.data_dir_line + c.finetune_batch_line + c.finetune_epochs_line, 0);
    assert_int_equal(sweep_method_line(&c, &c.methods[0]), 0);  // the default l1
    expect_error(fx, "[sweep]\nmodel = m\n[data]\ndir =\n", 4, "'dir' must not be empty");
    expect_error(fx, "[sweep]\nmodel = m\n[finetune]\nbatch_size = 0\n", 4, "'batch_size' must be in [1, 65536], got 0");
    expect_error(fx, "[sweep]\nmodel = m\nmodel = n\n", 3, "'model' is set twice in [sweep] (first at line 2)");
}

// [method NAME] sections: a named criterion with options, in run ids, jobs, result settings and
// results.md; a section named after a criterion changes its defaults.
static void test_method_sections(void **state) {
    Fixture *fx = *state;
    SweepConfig c;
    sweep_config_default(&c);
    HpErr err;
    const char *text = "[sweep]\nmodel = m\nmethods = l1, obs-pc, fisher\nsteps = 2\nsamples = 64\n"
                       "[method obs-pc]\ncriterion = obs\nrank = per-cost\nsteps = 5\nblock_size = 250\ndamp = 1e-3\n"
                       "compensate = false\n"
                       "[method fisher]\nslices = consumers\nsamples = 32\n"
                       "[method unused]\ncriterion = hap\nggn = yes\n";
    if (load_text(fx, &c, text, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(c.n_methods, 3);
    assert_int_equal(c.n_defined, 3);
    assert_true(sweep_method_listed(&c, 0) && sweep_method_listed(&c, 1));
    assert_false(sweep_method_listed(&c, 2));  // [method unused]: checked, not run
    const SweepMethod *obs = &c.methods[1], *fisher = &c.methods[2];
    assert_string_equal(obs->name, "obs-pc");
    assert_int_equal(obs->criterion, CRIT_OBS);
    assert_int_equal(obs->line, 6);
    assert_true(obs->per_cost && !obs->compensate);
    assert_int_equal(fisher->criterion, CRIT_FISHER);
    assert_true(fisher->consumers_only && !fisher->per_cost);
    char opts[256];
    sweep_method_options(obs, opts, sizeof opts);
    assert_string_equal(opts, "rank per-cost, 5 steps, Fisher blocks of 250, damp 0.001, no compensation");
    sweep_method_options(&c.methods[0], opts, sizeof opts);
    assert_string_equal(opts, "");
    SweepRun *r;
    int n = sweep_runs(&c, &r, &err);
    if (n < 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 3);
    assert_string_equal(r[1].id, "obs-pc-flops0.50-s1");
    assert_string_equal(r[2].id, "fisher-flops0.50-s1");
    PruneJob j = sweep_job(&c, &r[1], 1);  // the section's options, [sweep]'s for the rest
    assert_int_equal(j.crit.method, CRIT_OBS);
    assert_true(j.target.per_cost);
    assert_int_equal(j.steps, 5);
    assert_int_equal(j.crit.fisher.block_size, 250);
    assert_true(j.crit.fisher.damp == 1e-3);
    assert_int_equal(j.crit.fisher.n_grads, crit_defaults().fisher.n_grads);
    assert_false(j.crit.compensate);
    assert_int_equal(j.crit.samples, 64);
    j = sweep_job(&c, &r[2], 1);
    assert_true(j.crit.consumers_only && !j.target.per_cost);
    assert_int_equal(j.steps, 2);
    assert_int_equal(j.crit.samples, 32);
    j = sweep_job(&c, &r[0], 1);
    assert_true(!j.crit.consumers_only && !j.target.per_cost && j.crit.method == CRIT_L1);
    // results: a method's options are part of its settings; results.md says what it stands for
    char dir[128], path[3][SWEEP_PATH * 3], md[8192];
    snprintf(dir, sizeof dir, "%s/out", fx->dir);
    assert_int_equal(sweep_make_dirs(dir, &err), 0);
    PruneOutcome o = {.acc_orig = 0.9, .acc_oneshot = 0.5, .acc_final = 0.8, .macs_orig = 1000, .macs_pruned = 500,
                      .params_orig = 100, .params_pruned = 60, .lat_orig_ms = 2, .lat_pruned_ms = 1, .total_s = 3};
    for (int i = 0; i < n; i++) {
        assert_int_equal(sweep_result_path(dir, r[i].id, path[i], sizeof path[i], &err), 0);
        if (sweep_result_write(path[i], &c, &r[i], &o, &err) < 0) fail_msg("%s", err.msg);
        assert_int_equal(sweep_result_done(path[i], &c, &r[i], &err), 1);
    }
    read_small(path[1], md, sizeof md);
    assert_non_null(strstr(md, "\"method\":\t\"obs-pc\""));
    assert_non_null(strstr(md, "\"criterion\":\t\"obs\""));
    assert_non_null(strstr(md, "steps=5;"));
    SweepConfig other = c;
    other.methods[1].damp = 1e-2;
    SweepRun *ro;
    assert_int_equal(sweep_runs(&other, &ro, &err), n);  // its runs point into other's methods
    assert_int_equal(sweep_result_done(path[1], &other, &ro[1], &err), -1);
    free(ro);
    assert_non_null(strstr(err.msg, "it has obs_fisher=1000 gradients of 1, blocks of 250, damp 0.001 where this "
                                    "config has obs_fisher=1000 gradients of 1, blocks of 250, damp 0.01"));
    int merged;
    if (sweep_collect(dir, &merged, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(merged, 3);
    char mdpath[256];
    snprintf(mdpath, sizeof mdpath, "%s/results.md", dir);
    read_small(mdpath, md, sizeof md);
    assert_non_null(strstr(md, "The runs took different numbers of pruning steps"));  // obs-pc 5, the others 2
    assert_non_null(strstr(md, "Methods:\n\n- `fisher`: fisher, slices consumers, 32 samples\n"
                               "- `obs-pc`: obs, rank per-cost, 5 steps, Fisher blocks of 250, damp 0.001, no compensation\n\n"));
    assert_null(strstr(md, "- `l1`"));
    free(r);
    // the longest id: a 31-character name, a target of 17 digits, a 20-digit seed
    const char *longest = "[sweep]\nmodel = m\nmethods = abcdefghijklmnopqrstuvwxyz01234\ntarget = channels\n"
                          "targets = 0.12345678901234567\nseeds = 18446744073709551615\n"
                          "[method abcdefghijklmnopqrstuvwxyz01234]\ncriterion = l1\n";
    if (load_text(fx, &c, longest, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(sweep_runs(&c, &r, &err), 1);
    assert_string_equal(r[0].id, "abcdefghijklmnopqrstuvwxyz01234-channels0.12345678901234566-s18446744073709551615");
    free(r);
}

// The mistakes a [method NAME] section can hold, each at its line.
static void test_method_errors(void **state) {
    Fixture *fx = *state;
    const char *head = "[sweep]\nmodel = m\nmethods = x\n";  // sections start at line 4
    char text[512];
    struct { const char *body; int line; const char *words; } cases[] = {
        {"[method x]\nrank = per-cost\n", 4, "[method x] needs 'criterion = NAME' (one of random, l1, l2, bn"},
        {"[method x]\n", 4, "[method x] needs 'criterion = NAME'"},
        {"[method x]\ncriterion = obs\nrank = per-cost\nggn = true\n", 7,
         "'ggn' applies to hap and obd, not obs (in [method x])"},
        {"[method x]\ncriterion = obs\nslices = consumers\n", 6,
         "'slices' applies to l1, l2, taylor, hap, obd and fisher, not obs (in [method x])"},
        {"[method x]\ncriterion = l1\ndamp = 0.1\n", 6, "'damp' applies to obs, not l1"},
        {"[method x]\ncriterion = obs\nlayer_damp = 0.1\n", 6, "'layer_damp' applies to obs-layer, not obs"},
        {"[method x]\ncriterion = hap\ncompensate = no\n", 6, "'compensate' applies to obs and obs-layer, not hap"},
        {"[method x]\ncriterion = l1\nfoo = 1\n", 6, "unknown key 'foo' in [method x] (known: criterion, rank, slices"},
        {"[method x]\ncriterion = l1\n[method x]\ncriterion = l2\n", 6, "[method x] is defined twice (first at line 4)"},
        {"[method a/b]\ncriterion = l1\n", 4, "method name 'a/b': only letters, digits and . _ + - are allowed"},
        {"[method x]\ncriterion = magic\n", 5, "bad value 'magic' for 'criterion': expected one of random, l1"},
        {"[method x]\ncriterion = obs\nrank = cheap\n", 6, "bad value 'cheap' for 'rank': expected score or per-cost"},
        {"[method x]\ncriterion = obs\ndamp = 0\n", 6, "'damp' must be in [1e-12, 1000000], got 0"},
        {"[method x]\ncriterion = obs-layer\nlayer_damp = -1\n", 6, "'layer_damp' must be in [1e-12, 1000000], got -1"},
        {"[method x]\ncriterion = obs\nsteps = 0\n", 6, "'steps' must be in [1, 100]"},
        {"[method x]\ncriterion = fisher\nnormalize = best\n", 6, "expected auto, mean, max, size or none"},
        {"[method y]\ncriterion = l1\n", 3, "unknown method 'x' in 'methods'"},
        {"[method x]\ncriterion = obs\nggn = true\nslices = consumers\n", 6, "'ggn' applies"},  // the first in the file
        {"[method x]\ncriterion = l1\nsamples = 100\n", 6,
         "'samples' applies to taylor, hap, obd, fisher and obs-layer, not l1"},
        {"[method x]\ncriterion = hap\nggn = true\nprobes = 8\n", 7, "'probes' does not apply with 'ggn = true'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, "%s%s", head, cases[i].body);
        expect_error(fx, text, cases[i].line, cases[i].words);
    }
    expect_error(fx, "[sweep]\nmodel = m\ntarget = channels\nmethods = x\n[method x]\ncriterion = l1\nrank = per-cost\n", 7,
                 "'rank = per-cost' with a channel target ranks as 'score' (every channel costs one): drop it (in "
                 "[method x])");
    expect_error(fx, "[sweep]\nmodel = m\nmethods = l1, a:b\n", 3, "method name 'a:b': only letters");
    expect_error(fx, "[sweep]\nmodel = m\nmethods = l1, .pc\n", 3, "method name '.pc' must start with a letter or a digit");
    expect_error(fx, "[sweep]\nmodel = m\nmethods = obs\n[method obs]\ncriterion = hap\n", 5,
                 "[method obs] changes obs's defaults: its criterion cannot be hap");
    char longer[256];  // a header name longer than any fixed buffer: still named as too long
    snprintf(longer, sizeof longer, "[sweep]\nmodel = m\n[method %0140d]\ncriterion = l1\n", 7);
    expect_error(fx, longer, 3, "is too long (at most 31 characters)");
    expect_error(fx, "[sweep]\nmodel = m\n[method ]\ncriterion = l1\n", 3, "a method needs a name");
    char many[4096];  // one section more than a sweep holds
    int at = snprintf(many, sizeof many, "[sweep]\nmodel = m\n");
    for (int i = 0; i <= SWEEP_MAX_LIST; i++) at += snprintf(many + at, sizeof many - (size_t)at, "[method m%d]\ncriterion = l1\n", i);
    expect_error(fx, many, 3 + 2 * SWEEP_MAX_LIST, "at most 32 [method NAME] sections");
    // an indented line after a key is, for inih, a continuation of that key's value (which would
    // replace it): refused, a header too
    expect_error(fx, "[sweep]\nmodel = m\nmethods = l1\n  [method l1]\n", 4,
                 "an indented line continues the value of 'methods' above: write each value on one line");
    expect_error(fx, "[sweep]\nmodel = m\nmethods = l1, hap\n    obs\n", 4, "continues the value of 'methods'");
    // a key set twice: in [sweep], and in one [method NAME] section (two sections may share keys)
    expect_error(fx, "[sweep]\nmodel = m\nmethods = l1\ntargets = 0.3\n[data]\n[sweep]\ntargets = 0.5\n", 7,
                 "'targets' is set twice in [sweep] (first at line 4)");
    expect_error(fx, "[sweep]\nmodel = m\nmethods = x\n[method x]\ncriterion = obs\ndamp = 0.1\ndamp = 0.2\n", 7,
                 "'damp' is set twice in [method x] (first at line 6)");
    SweepConfig ok;
    sweep_config_default(&ok);
    HpErr err;
    if (load_text(fx, &ok, "[sweep]\nmodel = m\nmethods = x, y\n[method x]\ncriterion = obs\ndamp = 0.1\n"
                           "; a comment\n  ; an indented comment\n\n[method y]\ncriterion = obs\ndamp = 0.2\n", &err) != 0)
        fail_msg("%s", err.msg);
    assert_true(ok.methods[0].damp == 0.1 && ok.methods[1].damp == 0.2);
    expect_error(fx, "[sweep]\nmodel = m\nmethods = l1, abcdefghijklmnopqrstuvwxyz0123456789\n", 3, "is too long");
}

// The shipped sweep configs load (the tests run from the repository root) and say what they claim.
static void test_shipped_sweeps(void **state) {
    (void)state;
    if (access("configs/sweep_resnet20_steps.ini", R_OK) != 0) skip();
    const char *files[] = {"configs/sweep_lenet5_fmnist.ini", "configs/sweep_resnet20_fmnist.ini",
                           "configs/sweep_resnet20_steps.ini"};
    SweepConfig c;
    HpErr err;
    for (int i = 0; i < 3; i++) {
        sweep_config_default(&c);
        if (sweep_config_load(&c, files[i], &err) != 0) fail_msg("%s", err.msg);
    }
    assert_int_equal(c.n_methods, 4);  // the steps sweep: l1, fisher-pc, obs-pc, obs-layer in 5 steps, no training
    assert_int_equal(c.steps, 5);
    assert_int_equal(c.finetune.epochs, 0);
    const SweepMethod *f = &c.methods[1], *o = &c.methods[2];
    assert_true(f->criterion == CRIT_FISHER && f->consumers_only && f->per_cost);
    assert_true(o->criterion == CRIT_OBS && o->per_cost && o->compensate);
    assert_true(o->block_size == 100 && o->damp == 1e-2 && o->fisher_grads == 1000);
}

// Ratio ranges and lists, and their errors.
static void test_ratios(void **state) {
    (void)state;
    double r[100];
    HpErr err;
    assert_int_equal(parse_ratios("0.1:0.9:0.1", r, 100, &err), 9);
    assert_true(r[0] == 0.1 && r[2] == 0.3 && r[8] == 0.9);
    assert_int_equal(parse_ratios("0.25,0.5", r, 100, &err), 2);
    assert_int_equal(parse_ratios("0.5:0.5:0.1", r, 100, &err), 1);
    assert_int_equal(parse_ratios("0:0.5:0.1", r, 100, &err), -1);
    assert_int_equal(parse_ratios("0.5:0.1:0.1", r, 100, &err), -1);
    assert_int_equal(parse_ratios("0.1:0.9:0", r, 100, &err), -1);
    assert_int_equal(parse_ratios("0.1:0.9", r, 100, &err), -1);
    assert_int_equal(parse_ratios("0.1:0.9:0.1:1", r, 100, &err), -1);
    assert_int_equal(parse_ratios("0.5,,0.6", r, 100, &err), -1);
    assert_int_equal(parse_ratios("0.5,0.5", r, 100, &err), -1);
    assert_int_equal(parse_ratios("0.001:0.9:0.001", r, 100, &err), -1);
    // plain decimal only, as every number on the command line
    static const char *const lax[] = {"+0.5", " 0.5", "0.5, 0.6", "0x1p-1", "0.25,0x.8", "0.1:0.9:+0.1", "0.1: 0.9:0.1",
                                      "0x.1:0.5:0.1"};
    for (size_t i = 0; i < sizeof lax / sizeof lax[0]; i++)
        if (parse_ratios(lax[i], r, 100, &err) != -1) fail_msg("'%s' read as ratios", lax[i]);
    assert_int_equal(parse_ratios("5e-1,2.5e-1", r, 100, &err), 2);
}

// Spearman: 1 for the same order, -1 for the reverse, ties averaged, NAN when constant.
static void test_spearman(void **state) {
    (void)state;
    double x[] = {1, 2, 3, 4}, y[] = {10, 20, 30, 40}, z[] = {4, 3, 2, 1}, c[] = {5, 5, 5, 5}, rho;
    HpErr err;
    assert_int_equal(spearman(x, y, 4, &rho, &err), 0);
    assert_true(fabs(rho - 1) < 1e-12);
    assert_int_equal(spearman(x, z, 4, &rho, &err), 0);
    assert_true(fabs(rho + 1) < 1e-12);
    assert_int_equal(spearman(x, c, 4, &rho, &err), 0);
    assert_true(isnan(rho));
    double t[] = {1, 1, 2, 3};
    assert_int_equal(spearman(t, x, 4, &rho, &err), 0);
    assert_true(rho > 0.9 && rho < 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_and_shards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_and_collect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_obs_result_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_fingerprint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collect_one_base, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collect_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_fisher_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_sections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_errors, setup, teardown),
        cmocka_unit_test(test_shipped_sweeps),
        cmocka_unit_test(test_ratios),
        cmocka_unit_test(test_spearman),
        cmocka_unit_test(test_sensitivity_refuses_bn),
        cmocka_unit_test(test_sensitivity_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
