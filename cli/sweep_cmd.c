// sweep_cmd.c: `hprune sweep`: every method x target x seed of a config, one prune_run each on
// a fresh copy of the base model, each result its own file (restartable, shardable, optionally
// in parallel processes), then the merged tables and chart; `hprune sweep --collect DIR` merges.
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../prune/sweep.h"
#include "cli.h"

static const char *const HELP_SWEEP =
    "usage: hprune sweep CONFIG [--out DIR] [--shard I/N] [--jobs J] [--threads N] [--list]\n"
    "       hprune sweep --collect DIR\n"
    "\n"
    "Runs a pruning study: every method x target x seed of CONFIG is one run (prune a fresh\n"
    "copy of the base model to the target, fine-tune, measure), named like hap-flops0.50-s1.\n"
    "Each finished run is written atomically to DIR/runs/<id>.json; a restarted sweep skips the\n"
    "runs whose file exists and redoes the ones it was interrupted in; a file made with other\n"
    "settings, or from a model file whose CRC-32 differs (the model was replaced), is an error.\n"
    "Before the first run (and with --list) every method scores the model once on a few\n"
    "images, so a criterion the model cannot use (bn without batchnorm) is named at its line of\n"
    "CONFIG, as is data that cannot be loaded. When every run of CONFIG is done the results\n"
    "are merged (as --collect does) into DIR/results.csv (one row per run; its last three\n"
    "columns, latency_ms, speedup and seconds, are timings and vary between runs, the others\n"
    "are reproducible for the same config), DIR/results.md (tables) and\n"
    "DIR/accuracy_vs_macs.png and .svg (accuracy against MACs removed, one line per method).\n"
    "\n"
    "CONFIG (INI; paths are relative to the current directory; unknown keys are errors):\n"
    "  [sweep]     model = FILE          trained base model (required)\n"
    "              out = DIR             output directory (or --out)\n"
    "              methods = l1, hap     criteria: random, l1, l2, bn, taylor, hap, obd, fisher,\n"
    "                                    obs, obs-layer (default l1), or [method NAME] sections\n"
    "              target = flops        what the targets count: flops (= macs), params or\n"
    "                                    channels (default flops)\n"
    "              targets = 0.3, 0.5    fractions to remove, each in (0, 1) (default 0.5)\n"
    "              seeds = 1, 2          seeds of calibration, probes and fine-tuning (default 1)\n"
    "              steps = 1             reach a target in this many pruning steps\n"
    "              max_layer_frac = 0.9  at most this fraction of a layer's channels removed\n"
    "              samples = 512         calibration images (taylor, hap, obd, fisher, obs-layer)\n"
    "              probes = 32           Hutchinson probes (hap, obd)\n"
    "              threads = 0           OpenMP threads per run (0: all cores, divided among\n"
    "                                    --jobs); results reproduce exactly for the same count\n"
    "  [method NAME]                     a method with options, used as NAME in methods, run\n"
    "                                    ids and tables (NAME a criterion: changes its defaults)\n"
    "                                    (a section methods does not list is not run: a warning)\n"
    "              criterion = obs       required unless NAME is a criterion\n"
    "              rank = per-cost       score (default) or per-cost, as prune --rank\n"
    "              slices = consumers    all (default) or consumers (l1, l2, taylor, hap, obd,\n"
    "                                    fisher), as prune --slices\n"
    "              normalize = auto      auto, mean, max, size or none\n"
    "              steps, samples, probes   this method's, instead of [sweep]'s\n"
    "              ggn = false           hap, obd: the exact Gauss-Newton diagonal\n"
    "              fisher_grads = 1000, fisher_batch = 1, block_size = 100, damp = 0.01   obs\n"
    "              layer_damp = 0.01     obs-layer\n"
    "              compensate = true     obs, obs-layer: the weight update\n"
    "                                    (an option the criterion does not use is an error)\n"
    "  [data]      dataset, dir          default: the model's\n"
    "  [finetune]  epochs = 0            fine-tuning epochs after pruning (0: none)\n"
    "              lr = 0.01             cosine schedule, Nesterov momentum\n"
    "              batch_size = 128\n"
    "              val_split = 0.05      held out to pick the best epoch (0: keep the last)\n"
    "              weight_decay = 5e-4\n"
    "              crop_pad = 0          random crops of the image zero-padded by this much\n"
    "              hflip = false         random horizontal flips\n"
    "\n"
    "options:\n"
    "      --out DIR         output directory (default: [sweep] out), made if missing (its\n"
    "                        parent must exist)\n"
    "      --shard I/N       only the runs whose index (in config order: methods, then\n"
    "                        targets, then seeds) is I modulo N; shards are numbered from 0\n"
    "                        (0/2 and 1/2 split a sweep in two); shards may share DIR\n"
    "      --jobs J          run J runs at a time in parallel processes (default 1), each\n"
    "                        with threads/J threads when threads is 0; on a small machine\n"
    "                        one job with all threads is usually as fast\n"
    "      --threads N       override [sweep] threads\n"
    "      --list            check CONFIG, the model and the data (as a sweep does before\n"
    "                        its first run), list the runs (of this shard) with their state\n"
    "                        in DIR, and stop\n"
    "      --collect DIR     only merge DIR/runs/*.json into the tables and charts (they\n"
    "                        must come from one base model: CRC-32, parameters, MACs and\n"
    "                        accuracy before pruning)\n"
    "  -h, --help            this text\n";

#define SCMD "sweep"

// The command line.
typedef struct {
    const char *config, *out, *collect;
    int shard, n_shards, jobs, threads;
    bool threads_given, list;
} SweepOpts;

// What every run of this process shares.
typedef struct {
    const SweepConfig *cfg;
    const char *dir;
    const Model *base;
    const Dataset *train, *test;
    int threads;  // per run
    bool live;    // one job: live progress lines and the trainer's epoch lines
    int total;    // runs in the whole sweep
} SweepCtx;

// Parses the command line into o, or exits.
static void sweep_parse(int argc, char **argv, SweepOpts *o) {
    enum { O_OUT = 256, O_SHARD, O_JOBS, O_THREADS, O_COLLECT, O_LIST };
    static const struct option opts[] = {{"out", 1, 0, O_OUT},         {"shard", 1, 0, O_SHARD},
                                         {"jobs", 1, 0, O_JOBS},       {"threads", 1, 0, O_THREADS},
                                         {"collect", 1, 0, O_COLLECT}, {"list", 0, 0, O_LIST},
                                         {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->n_shards = 1;
    o->jobs = 1;
    bool shard_given = false, jobs_given = false;
    HpErr err;
    int c;
    bool seen[sizeof opts / sizeof opts[0]] = {0};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        option_once(SCMD, ":h", opts, seen, c);
        switch (c) {
        case O_OUT: o->out = output_option(SCMD, "--out", optarg, "directory"); break;
        case O_SHARD:
            if (sweep_parse_shard(optarg, &o->shard, &o->n_shards, &err) < 0) usage_error(SCMD, "--shard: %s", err.msg);
            shard_given = true;
            break;
        case O_JOBS:
            o->jobs = (int)parse_int(SCMD, "--jobs", optarg, 1, 64);
            jobs_given = true;
            break;
        case O_THREADS:
            o->threads = (int)parse_int(SCMD, "--threads", optarg, 0, HP_MAX_THREADS);
            o->threads_given = true;
            break;
        case O_COLLECT: o->collect = output_option(SCMD, "--collect", optarg, "directory"); break;
        case O_LIST: o->list = true; break;
        case 'h': fputs(HELP_SWEEP, stdout), check_stdout(), exit(0);
        case ':': usage_error(SCMD, "option '%s' needs a value", argv[optind - 1]);
        default: bad_option(SCMD, argv, opts);
        }
    }
    if (o->collect) {
        if (optind < argc) usage_error(SCMD, "--collect DIR takes no CONFIG (unexpected '%s')", argv[optind]);
        if (o->out || shard_given || jobs_given || o->threads_given || o->list)
            usage_error(SCMD, "--collect DIR takes no other option");
        return;
    }
    if (o->list && jobs_given) usage_error(SCMD, "--jobs applies to a sweep that runs, not --list (which runs none)");
    if (optind >= argc) usage_error(SCMD, "CONFIG is required (or --collect DIR)");
    if (optind != argc - 1) usage_error(SCMD, "one CONFIG only (unexpected '%s')", argv[optind + 1]);
    o->config = argv[optind];
}

// ---- one run ----

// The hooks' view of the run in progress.
typedef struct {
    const SweepCtx *ctx;
    const SweepRun *run;
    Progress pr;
} RunUi;

// A milestone line of the job, prefixed by the run id.
static void on_log(void *user, const char *line) {
    RunUi *u = user;
    progress_done(&u->pr);
    fprintf(stderr, "%s: %s\n", u->run->id, line);
}

// Scoring progress: a live line when one job runs.
static void on_score(long done, long total, const char *unit, void *user) {
    RunUi *u = user;
    if (u->ctx->live) progress_update(&u->pr, done, total, unit);
}

// Fine-tuning progress of a parallel job: one line per epoch, prefixed by the run id.
static void on_epoch(const TrainProgress *p, void *user) {
    const RunUi *u = user;
    if (!p->epoch_done) return;
    fprintf(stderr, "%s: fine-tuning epoch %d/%d  loss %.4f  test-acc %.2f%%  %.1fs\n", u->run->id, p->epoch + 1,
            p->epochs, p->loss, 100.0 * p->test_acc, p->epoch_s);
}

// Runs one run and writes its result file. Returns 0, or -1 after printing why.
static int run_one(const SweepCtx *ctx, const SweepRun *r, int pos, int n_pending) {
    char path[SWEEP_PATH * 3], label[SWEEP_ID + 32];
    HpErr err;
    if (sweep_result_path(ctx->dir, r->id, path, sizeof path, &err) < 0) die("%s", err.msg);
    snprintf(label, sizeof label, "%s: scoring", r->id);  // "RUNID: ...", as the other lines of a run
    RunUi u = {.ctx = ctx, .run = r};
    progress_init(&u.pr, label);
    TrainUi ui = {.tty = u.pr.tty, .prefix = r->id, .last_test_acc = -1, .last_val_acc = -1};
    PruneJob job = sweep_job(ctx->cfg, r, ctx->threads);
    ui.cfg = &job.finetune;
    job.log = on_log;
    job.user = &u;
    job.score_progress = on_score;
    job.train_progress = ctx->live ? train_progress_print : on_epoch;
    job.train_user = ctx->live ? (void *)&ui : (void *)&u;
    fprintf(stderr, "[%d/%d] %s (run %d of %d)\n", pos, n_pending, r->id, r->index + 1, ctx->total);
    Model m;
    PruneOutcome o;
    int rc = model_copy(&m, ctx->base, &err);
    if (rc == 0) rc = prune_run(&job, &m, ctx->train, ctx->test, &o, &err);
    model_free(&m);
    progress_done(&u.pr);
    if (rc == 0) rc = sweep_result_write(path, ctx->cfg, r, &o, &err);
    if (rc < 0) {
        fprintf(stderr, "hprune: error: run %s: %s\n", r->id, err.msg);
        return -1;
    }
    printf("%-24s MACs -%.1f%%  params -%.1f%%  accuracy %.2f%% -> %.2f%% one-shot, %.2f%% final  (%.0fs)\n", r->id,
           100.0 * (1.0 - (double)o.macs_pruned / (double)o.macs_orig),
           100.0 * (1.0 - (double)o.params_pruned / (double)o.params_orig), 100 * o.acc_orig, 100 * o.acc_oneshot,
           100 * o.acc_final, o.total_s);
    fflush(stdout);
    return 0;
}

// Runs pending[k], pending[k + step], ... in this process; returns how many failed.
static int run_share(const SweepCtx *ctx, SweepRun *const *pending, int n_pending, int k, int step) {
    int failed = 0;
    hp_set_threads(ctx->threads);
    for (int i = k; i < n_pending; i += step) failed += run_one(ctx, pending[i], i + 1, n_pending) < 0;
    return failed;
}

// Runs the pending runs in `jobs` child processes (child k takes every jobs-th run from k);
// returns how many children failed.
static int run_forked(const SweepCtx *ctx, SweepRun *const *pending, int n_pending, int jobs) {
    pid_t *pids = xcalloc((size_t)jobs, sizeof(pid_t));
    fflush(stdout), fflush(stderr);  // a child must not repeat buffered output
    pid_t parent = getpid();
    for (int k = 0; k < jobs; k++) {
        pids[k] = fork();
        if (pids[k] < 0) die("fork: %s", strerror(errno));
        if (pids[k] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);  // a killed sweep takes its jobs with it
            if (getppid() != parent) _exit(EXIT_RUNTIME);
            int failed = run_share(ctx, pending, n_pending, k, jobs);
            fflush(stdout), fflush(stderr);
            _exit(failed ? EXIT_RUNTIME : 0);  // the parent owns the memory and the exit handlers
        }
    }
    int failed = 0;
    for (int k = 0; k < jobs; k++) {
        int st;
        while (waitpid(pids[k], &st, 0) < 0)
            if (errno != EINTR) die("waitpid: %s", strerror(errno));
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            failed++;
            if (WIFSIGNALED(st)) fprintf(stderr, "hprune: error: job %d killed by signal %d\n", k + 1, WTERMSIG(st));
        }
    }
    free(pids);
    return failed;
}

// ---- the sweep ----

// Reads the config and settles the output directory and the threads per run, or exits.
static void load_config(const SweepOpts *o, SweepConfig *cfg, const char **dir, int *threads) {
    HpErr err;
    sweep_config_default(cfg);
    if (sweep_config_load(cfg, o->config, &err) < 0) die("%s", err.msg);
    for (int i = 0; i < cfg->n_defined; i++) {
        const SweepMethod *d = &cfg->defined[i];
        if (sweep_method_listed(cfg, i)) continue;
        if (cfg->methods_line)
            warn("%s:%d: [method %s] is not run: 'methods' (line %d) does not list it", o->config, d->line, d->name,
                 cfg->methods_line);
        else
            warn("%s:%d: [method %s] is not run: [sweep] has no 'methods' (the default runs l1 alone)", o->config,
                 d->line, d->name);
    }
    *dir = o->out ? o->out : cfg->out[0] ? cfg->out : NULL;
    if (!*dir) usage_error(SCMD, "no output directory: give --out DIR or 'out' in [sweep] of %s", o->config);
    *threads = o->threads_given ? o->threads : cfg->threads;
    if (*threads == 0 && o->jobs > 1) {
        int procs = omp_get_num_procs();  // those this process may run on, as set_threads counts them
        *threads = procs > o->jobs ? procs / o->jobs : 1;
    }
}

// Whether every run of the list has its result file; exits on a foreign or broken one.
// *unchecked (may be NULL) gets how many were written before results recorded the model's
// CRC-32 (reused; see sweep_result_done), and one of their paths goes into example.
static int count_done(const SweepConfig *cfg, const char *dir, const SweepRun *runs, int n, bool *done, int *unchecked,
                      char *example, size_t cap) {
    int k = 0;
    if (unchecked) *unchecked = 0;
    for (int i = 0; i < n; i++) {
        char path[SWEEP_PATH * 3];
        HpErr err;
        if (sweep_result_path(dir, runs[i].id, path, sizeof path, &err) < 0) die("%s", err.msg);
        int rc = sweep_result_done(path, cfg, &runs[i], &err);
        if (rc < 0) die("%s", err.msg);
        if (rc == SWEEP_DONE_UNCHECKED && unchecked && (*unchecked)++ == 0) snprintf(example, cap, "%s", path);
        done[i] = rc > 0;
        k += done[i];
    }
    return k;
}

// Counts the finished runs into done, and warns once if some cannot be checked against the model.
static void find_done(const SweepConfig *cfg, const char *dir, const SweepRun *runs, int n, bool *done) {
    int unchecked;
    char example[SWEEP_PATH * 3] = "";
    count_done(cfg, dir, runs, n, done, &unchecked, example, sizeof example);
    if (unchecked == 1)
        warn("%s: written before sweeps recorded the model's CRC-32, so whether it was made from %s as it is now "
             "cannot be checked: reused (delete it to redo the run)", example, cfg->model);
    else if (unchecked > 1)
        warn("%s and %d other result files: written before sweeps recorded the model's CRC-32, so whether they were "
             "made from %s as it is now cannot be checked: reused (delete them to redo the runs)", example,
             unchecked - 1, cfg->model);
}

// Prints the runs of this shard, one line each: index, id, done or pending.
static void list_runs(const SweepOpts *o, const SweepRun *runs, int n, const bool *done, const char *dir) {
    int mine = 0, k = 0;
    for (int i = 0; i < n; i++) {
        if (!sweep_in_shard(i, o->shard, o->n_shards)) continue;
        printf("%4d  %-28s %s\n", i, runs[i].id, done[i] ? "done" : "pending");
        mine++, k += done[i];
    }
    printf("%d run%s", n, plural(n));
    if (o->n_shards > 1) printf(", %d in shard %d/%d", mine, o->shard, o->n_shards);
    printf("; %d done, %d pending in %s\n", k, mine - k, dir);
}

// Merges DIR's results and prints where they are, or exits.
static void collect(const char *dir) {
    HpErr err;
    int n;
    if (sweep_collect(dir, &n, &err) < 0) die("%s", err.msg);
    printf("collected %d run%s: %s/results.csv, %s/results.md, %s/accuracy_vs_macs.png and .svg\n", n, plural(n),
           dir, dir, dir);
}

// Picks this shard's unfinished runs into pending (in list order), says what will run, and
// returns their count.
static int pick_pending(const SweepOpts *o, SweepRun *runs, int n, const bool *done, const char *dir,
                        SweepRun **pending) {
    int n_mine = 0, n_pending = 0;
    for (int i = 0; i < n; i++) {
        if (!sweep_in_shard(i, o->shard, o->n_shards)) continue;
        n_mine++;
        if (!done[i]) pending[n_pending++] = &runs[i];
    }
    fprintf(stderr, "sweep %s: %d run%s", o->config, n, plural(n));
    if (o->n_shards > 1) fprintf(stderr, ", shard %d/%d has %d", o->shard, o->n_shards, n_mine);
    fprintf(stderr, "; %d done earlier, %d to run into %s\n", n_mine - n_pending, n_pending, dir);
    return n_pending;
}

// Runs this shard's pending runs (in this process, or in --jobs processes), then merges the
// results if the whole sweep is done, or says what is missing. Exits if a run failed.
static void execute(const SweepOpts *o, SweepCtx *ctx, SweepRun *runs, int n, bool *done) {
    SweepRun **pending = xcalloc((size_t)n, sizeof(SweepRun *));
    int n_pending = pick_pending(o, runs, n, done, ctx->dir, pending);
    int jobs = o->jobs < n_pending ? o->jobs : (n_pending > 0 ? n_pending : 1);
    ctx->live = jobs == 1;
    int failed = jobs == 1 ? run_share(ctx, pending, n_pending, 0, 1) : run_forked(ctx, pending, n_pending, jobs);
    free(pending);
    int n_done = count_done(ctx->cfg, ctx->dir, runs, n, done, NULL, NULL, 0);
    if (n_done == n)
        collect(ctx->dir);
    else if (o->n_shards > 1)
        printf("%d of %d run%s done in %s; when the other shards finish: hprune sweep --collect %s\n", n_done, n,
               plural(n), ctx->dir, ctx->dir);
    else
        printf("%d of %d run%s done in %s\n", n_done, n, plural(n), ctx->dir);
    if (failed)
        die("%d %s%s failed (see above); run the sweep again to retry", failed, jobs == 1 ? "run" : "job",
            failed > 1 ? "s" : "");
}

// Exits with "CONFIG:LINE: what: cannot load NAME: problem", naming the config line that chose
// the data (its [data] dir, else its [data] dataset, else its model, whose provenance names them).
__attribute__((noreturn)) static void data_error(const SweepConfig *cfg, bool prov_dir, const char *name,
                                                 const char *problem) {
    int line = cfg->data_dir[0] ? cfg->data_dir_line : cfg->dataset[0] ? cfg->dataset_line : cfg->model_line;
    const char *what = cfg->data_dir[0]   ? "[data] dir"
                       : cfg->dataset[0]  ? "[data] dataset"
                       : prov_dir         ? "the data [sweep] model names ([data] dir chooses other)"
                                          : "no [data] dir, and [sweep] model names none";
    die("%s:%d: %s: cannot load %s: %s", cfg->path, line, what, name, problem);
}

// Loads the training and test images, or exits naming the config line: [data] dataset and
// dir, else those the model's provenance names, else fashion-mnist in DEFAULT_DATA_DIR (as
// hprune prune); the model must take the images and have at least their classes.
static void load_data(const SweepConfig *cfg, const Model *m, Dataset *train, Dataset *test) {
    DatasetChoice c = {.name = cfg->dataset[0] ? cfg->dataset : NULL, .dir = cfg->data_dir[0] ? cfg->data_dir : NULL};
    char on[8300];
    switch (dataset_pick(m, &c)) {
    case PICK_OK: break;
    case PICK_UNKNOWN_PROVENANCE:
        die("%s:%d: [sweep] model: its provenance names dataset '%s', which hprune does not know ([data] dataset "
            "chooses another)", cfg->path, cfg->model_line, c.prov_name);
    case PICK_NEEDS_DIR:
        die("%s:%d: [data] dataset %s: give its directory with [data] dir (the model was trained on %s)", cfg->path,
            cfg->dataset_line, c.name, trained_on(&c, on, sizeof on));
    case PICK_PROVENANCE_NO_DIR:
        die("%s:%d: [sweep] model: its provenance names dataset %s but no directory ([data] dir gives it)", cfg->path,
            cfg->model_line, c.name);
    }
    HpErr err;
    bool from_model = c.has_prov_dir && c.dir == c.prov_dir;
    if (dataset_load(c.name, c.dir, train, test, &err) < 0) data_error(cfg, from_model, c.name, err.msg);
    if (m->input.c != test->c || m->input.h != test->h || m->input.w != test->w || m->n_classes < test->n_classes) {
        hp_fail(&err, "the model takes %dx%dx%d inputs and %d classes, %s in %s has %dx%dx%d and %d", m->input.c,
                m->input.h, m->input.w, m->n_classes, c.name, c.dir, test->c, test->h, test->w, test->n_classes);
        data_error(cfg, from_model, c.name, err.msg);
    }
}

// Exits before any data is read when a run's batch buffers would not fit in memory, as prune
// checks them (the base model m bounds the pruned ones), in each of `jobs` runs at once: obs's
// Fisher within its memory budget and the calibration passes of each method whose criterion reads
// samples (named at the method's line, as sweep_check names a method), and the fine-tuning of
// [finetune] (named at its batch_size, else its epochs).
static void check_sweep_memory(const SweepConfig *cfg, const Model *m, int jobs) {
    char subject[SWEEP_PATH + 64], what[SWEEP_NAME + 16], advice[SWEEP_NAME + 64];
    for (int i = 0; i < cfg->n_methods; i++) {
        const SweepMethod *sm = &cfg->methods[i];
        if (!criterion_reads_samples(sm->criterion)) continue;
        SweepRun r = {.method = sm, .target = cfg->targets[0], .seed = cfg->seeds[0]};
        PruneJob job = sweep_job(cfg, &r, 0);
        snprintf(what, sizeof what, "method %s", sm->name);
        sweep_config_place(cfg, sweep_method_line(cfg, sm), what, subject, sizeof subject);
        HpErr err;
        if (sm->criterion == CRIT_OBS && fisher_check(m, &job.crit.fisher, &err) < 0) die("%s: %s", subject, err.msg);
        if (sm->samples)
            snprintf(advice, sizeof advice, "lower samples in [method %s]", sm->name);
        else
            snprintf(advice, sizeof advice, "lower [sweep] samples");
        check_calibration_memory(subject, m, job.crit.samples, job.crit.batch, jobs, advice);
    }
    if (cfg->finetune.epochs == 0) return;
    int line = cfg->finetune_batch_line ? cfg->finetune_batch_line : cfg->finetune_epochs_line;
    sweep_config_place(cfg, line, "[finetune]", subject, sizeof subject);
    check_finetune_memory(subject, m, cfg->finetune.batch_size, jobs, "lower [finetune] batch_size");
}

int cmd_sweep(int argc, char **argv) {
    SweepOpts o;
    sweep_parse(argc, argv, &o);
    if (o.collect) {
        collect(o.collect);
        return 0;
    }
    SweepConfig cfg;
    const char *dir;
    int threads;
    load_config(&o, &cfg, &dir, &threads);
    check_output_dir(dir);  // made (one level) only once the checks pass
    Model base;
    HpErr err;
    if (model_load(&base, cfg.model, NULL, NULL, &err) < 0)
        die("%s:%d: [sweep] model: %s", cfg.path, cfg.model_line, err.msg);
    if (sweep_fingerprint(&cfg, &err) < 0) die("%s:%d: [sweep] model: %s", cfg.path, cfg.model_line, err.msg);
    SweepRun *runs;
    int n = sweep_runs(&cfg, &runs, &err);
    if (n < 0) die("%s", err.msg);
    int mine = 0;  // this shard's runs: at most that many, and --jobs, run at the same time
    for (int i = 0; i < n; i++) mine += sweep_in_shard(i, o.shard, o.n_shards);
    const int at_once = o.list ? 1 : mine < o.jobs ? mine : o.jobs;  // --list checks as for one run
    set_threads(threads, o.list ? 0 : at_once);  // the runs' buffers are sized for it; --list runs none
    if (at_once > 0) check_sweep_memory(&cfg, &base, at_once);  // before the data is read
    Dataset train, test;
    load_data(&cfg, &base, &train, &test);
    if (sweep_check(&cfg, &base, &train, &err) < 0) die("%s", err.msg);
    bool *done = xcalloc((size_t)n, sizeof(bool));
    find_done(&cfg, dir, runs, n, done);  // after the config's own checks, whose errors come first
    if (o.list) {
        list_runs(&o, runs, n, done, dir);
    } else {
        if (sweep_make_dirs(dir, &err) < 0) die("%s", err.msg);
        SweepCtx ctx = {&cfg, dir, &base, &train, &test, threads, true, n};
        execute(&o, &ctx, runs, n, done);
    }
    dataset_free(&train), dataset_free(&test);
    free(done), free(runs);
    model_free(&base);
    return 0;
}
