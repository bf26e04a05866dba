// hessian_cmd.c: `hprune hessian`: trace (model, layer, channel), top eigenvalues at both ends,
// spectral density and loss landscape of a model's loss, and Optimal Brain Surgeon scores from the
// inverse empirical Fisher (--obs), with CSV, PNG and JSON output.
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../formats/csv.h"
#include "../formats/plot.h"
#include "../hessian/estimators.h"
#include "../hessian/groups.h"
#include "../hessian/hvp.h"
#include "../hessian/landscape.h"
#include "../hessian/obs.h"
#include "../nn/train.h"
#include "cli.h"

#define PATH_CAP 4096

static const char *const HELP_HESSIAN =
    "usage: hprune hessian MODEL [options]\n"
    "\n"
    "Curvature of MODEL's mean cross-entropy loss on training images (in file order, no\n"
    "augmentation): exact Hessian-vector products by the R-operator, or Gauss-Newton products.\n"
    "Each analysis option runs that analysis only; with none, it estimates the trace, the\n"
    "largest eigenvalue and the most negative one (not for --operator ggn, which is PSD).\n"
    "An option tuning an analysis (--tol, --max-steps, --slq-steps, --radius, ...) needs it.\n"
    "\n"
    "data:\n"
    "      --data DIR          dataset directory (default: the model's, else " DEFAULT_DATA_DIR ")\n"
    "      --dataset NAME      fashion-mnist, mnist or cifar10 (default: the model's)\n"
    "      --samples N|all     the first N training images (default: one batch)\n"
    "      --batches N         the first N batches of --batch-size images\n"
    "      --batch-size B      images per product batch (default 128)\n"
    "      --bn eval|train     batchnorm with running statistics (default, as PyHessian and HAP)\n"
    "                          or batch statistics (samples coupled within a batch)\n"
    "      --operator hessian|ggn   exact Hessian (default) or generalized Gauss-Newton (PSD)\n"
    "analyses:\n"
    "      --trace             Hutchinson trace with its standard error\n"
    "      --per model|layer|channel   also the trace of each layer or output channel\n"
    "      --tol T             stop when the standard error <= T x |trace| (default 0.01)\n"
    "      --max-probes M      at most M probes (default 100)\n"
    "      --exact             with --operator ggn and --bn eval: the traces from the exact\n"
    "                          Gauss-Newton diagonal (a backward pass per class and image;\n"
    "                          no probes, no standard error; --tol and --max-probes do not\n"
    "                          apply) instead of Hutchinson's estimate\n"
    "      --hutchpp M         Hutch++ trace with a budget of M products (PSD: use with ggn)\n"
    "      --eigs K            the K largest eigenvalues and the most negative ones (Lanczos)\n"
    "      --neg-eigs K        the K most negative eigenvalues (default 1 with --eigs, 0 with\n"
    "                          --operator ggn; --neg-eigs 0 turns them off)\n"
    "      --eig-tol T         relative Ritz residual to stop at (default 1e-3)\n"
    "      --max-steps S       Lanczos steps at most (default 100; K if --eigs or --neg-eigs K\n"
    "                          is larger)\n"
    "      --density FILE.png  spectral density by stochastic Lanczos quadrature (and FILE.csv)\n"
    "      --slq-probes P      SLQ runs (default 5)\n"
    "      --slq-steps S       Lanczos steps per SLQ run (default 90)\n"
    "      --landscape FILE.png   loss on the plane of the top two eigenvectors (and FILE.csv,\n"
    "                          FILE_1d.png and FILE_1d.csv along the top one)\n"
    "      --radius R          landscape half-width along unit eigenvectors (default 0.5)\n"
    "      --points N          landscape points per axis (default 21)\n"
    "Optimal Brain Surgeon (an analysis of its own; eval-mode batchnorm, its own samples):\n"
    "      --obs               OBS scores 1/2 w_Q^T ([F^-1]_QQ)^-1 w_Q from the block-diagonal\n"
    "                          inverse empirical Fisher F = damp I + (1/N) sum g g^T (WoodFisher)\n"
    "      --per channel|weight   score each output channel of every conv and linear (its filter\n"
    "                          and bias, jointly; default), or every single weight\n"
    "      --fisher-grads N    gradients N (default 1000), drawn at random from the training set\n"
    "      --fisher-batch B    images per gradient (default 1: per-sample gradients)\n"
    "      --block-size S      Fisher blocks of at most S parameters, never straddling a layer\n"
    "                          (default 2000)\n"
    "      --damp L            the damp in F, absolute, > 0 (default 1e-5, as WoodFisher's\n"
    "                          ResNet-20 runs)\n"
    "      --memory-budget MB  refuse a build needing more MiB (default 4096; 0: no limit): the\n"
    "                          gradients take 4 N x params bytes, the blocks 4 S x params;\n"
    "                          without --obs, the memory the analyses may plan for (default\n"
    "                          80% of the machine's, or of its container's limit)\n"
    "output:\n"
    "      --csv FILE          per-group traces (or eigenvalues, or OBS scores) as CSV\n"
    "      --json              one JSON object on stdout (the format is in the README)\n"
    "      --seed S            probe seed, and --obs's sample draw (default 1)\n"
    "      --threads N         OpenMP threads (default: all cores)\n"
    "  -h, --help              this text\n";

// Everything the command was asked to do.
typedef struct {
    const char *model, *data, *dataset;
    long samples;  // 0: not given; -1: all
    int batches, batch;
    Mode bn;
    CurvKind op;
    bool trace, json;
    bool exact;             // --exact: traces from the exact Gauss-Newton diagonal
    GroupLevel per;
    double tol, eig_tol, radius;
    int max_probes, hutchpp, eigs, neg_eigs, max_steps, slq_probes, slq_steps, points, threads;
    const char *density, *landscape, *csv;
    char density_csv[PATH_CAP];                // FILE.csv beside --density FILE.png
    char land_csv[PATH_CAP], land_1d_png[PATH_CAP], land_1d_csv[PATH_CAP];  // beside --landscape's
    unsigned long long seed;
    // --obs
    bool obs, obs_per_weight;
    const char *per_arg;    // --per as given (checked once --obs is known)
    const char *obs_flag;   // the first Fisher option given (they need --obs)
    const char *probe_opt;  // the first of --tol, --max-probes given (Hutchinson's trace)
    const char *lanczos_opt;  // the first of --eig-tol, --max-steps given (Lanczos)
    const char *slq_opt;    // the first of --slq-probes, --slq-steps given (--density)
    const char *land_opt;   // the first of --radius, --points given (--landscape)
    bool trace_flag;        // --trace itself was given
    bool batch_flag;        // --batch-size was given
    int fisher_grads, fisher_batch;
    long block_size;
    double damp, budget_mb;
    bool budget_flag;  // --memory-budget was given
} HessOpts;

// Results gathered for the summary and the JSON.
typedef struct {
    int n_groups;
    GroupInfo *groups;
    double *group_trace, *group_se;
    HutchOut hutch;
    HutchppOut hpp;
    bool have_trace, have_hpp;
    double *top, *top_res, *neg, *neg_res;
    float *top_vecs;  // 2 x n when the landscape needs them
    int top_steps, neg_steps, top_converged, neg_converged, n_top, n_neg;
    SlqResult slq;
    SpectrumFigures fig;
    bool have_slq;
    double landscape_center;
    double *alpha, *loss_1d, *loss_2d;  // landscape grid and losses (loss_2d[j * n + i])
    double landscape_seconds;
    double exact_seconds;  // --exact: the exact diagonal's passes (part of seconds)
    long products;
    double seconds;
} HessResults;

// Fills o with defaults.
static void hess_defaults(HessOpts *o) {
    memset(o, 0, sizeof *o);
    o->batch = 128;
    o->bn = MODE_EVAL;
    o->op = CURV_HESSIAN;
    o->per = GROUP_MODEL;
    o->tol = 0.01;
    o->max_probes = 100;
    o->eig_tol = 1e-3;
    o->max_steps = 100;
    o->slq_probes = 5;
    o->slq_steps = 90;
    o->radius = 0.5;
    o->points = 21;
    o->seed = 1;
    o->neg_eigs = -1;
    FisherOpts fo = fisher_defaults();
    o->fisher_grads = fo.n_grads;
    o->fisher_batch = fo.grad_batch;
    o->block_size = (long)fo.block_size;
    o->damp = fo.damp;
    o->budget_mb = fo.budget_mb;
}

// Replaces a ".png" ending of path (or appends) with suffix into buf (PATH_CAP bytes), or exits
// if the name does not fit.
static const char *sibling(const char *path, const char *suffix, char buf[PATH_CAP]) {
    size_t len = strlen(path);
    if (len > 4 && strcmp(path + len - 4, ".png") == 0) len -= 4;
    if ((size_t)snprintf(buf, PATH_CAP, "%.*s%s", (int)len, path, suffix) >= PATH_CAP) die("%s: path too long", path);
    return buf;
}

// Fills in the files --density and --landscape write beside theirs, and exits unless every
// output can be written and no two of them are one file.
static void check_hess_outputs(const char *cmd, HessOpts *o) {
    if (o->density) sibling(o->density, ".csv", o->density_csv);
    if (o->landscape) {
        sibling(o->landscape, ".csv", o->land_csv);
        sibling(o->landscape, "_1d.png", o->land_1d_png);
        sibling(o->landscape, "_1d.csv", o->land_1d_csv);
    }
    bool d = o->density, l = o->landscape;
    const char *paths[] = {o->csv,
                           o->density,
                           d ? o->density_csv : NULL,
                           o->landscape,
                           l ? o->land_csv : NULL,
                           l ? o->land_1d_png : NULL,
                           l ? o->land_1d_csv : NULL};
    const char *labels[] = {"--csv",
                            "--density",
                            "--density's CSV",
                            "--landscape",
                            "--landscape's CSV",
                            "--landscape's 1-D plot",
                            "--landscape's 1-D CSV"};
    check_spares_inputs(cmd, paths, labels, 7, &o->model, (const char *const[]){"the model"}, 1);
    check_outputs(cmd, paths, labels, 7);
}

// Records opt in *slot unless an earlier option is there already.
static void given(const char **slot, const char *opt) {
    if (!*slot) *slot = opt;
}

// The first option given that tunes an analysis of the curvature operator, or NULL.
static const char *curvature_tuning(const HessOpts *o) {
    return o->probe_opt ? o->probe_opt : o->lanczos_opt ? o->lanczos_opt : o->slq_opt ? o->slq_opt : o->land_opt;
}

// Exits with a usage error naming an option that tunes an analysis which is not running (all
// of them are resolved: the default analysis included).
static void check_tuning_applies(const char *cmd, const HessOpts *o) {
    if (o->probe_opt && o->exact)
        usage_error(cmd, "%s does not apply to --exact, which uses no probes: drop it", o->probe_opt);
    if (o->probe_opt && !o->trace)
        usage_error(cmd, "%s tunes the Hutchinson trace: it needs --trace or --per", o->probe_opt);
    if (o->lanczos_opt && !o->eigs && !o->neg_eigs && !o->landscape)
        usage_error(cmd, "%s tunes the Lanczos eigenvalues: it needs --eigs, --neg-eigs or --landscape",
                    o->lanczos_opt);
    if (o->slq_opt && !o->density) usage_error(cmd, "%s tunes the spectral density: it needs --density", o->slq_opt);
    if (o->land_opt && !o->landscape)
        usage_error(cmd, "%s tunes the loss landscape: it needs --landscape", o->land_opt);
}

// The checks of an --obs run's options, or exits: --per channel or weight; no other analysis;
// none of the curvature operator's data options.
static void obs_parse_checks(const char *cmd, HessOpts *o) {
    if (o->per_arg) {
        if (strcmp(o->per_arg, "channel") != 0 && strcmp(o->per_arg, "weight") != 0)
            usage_error(cmd, "--per with --obs: '%s' is not channel or weight", o->per_arg);
        o->obs_per_weight = strcmp(o->per_arg, "weight") == 0;
    }
    if (o->trace_flag || o->hutchpp || o->eigs || o->neg_eigs >= 0 || o->density || o->landscape)
        usage_error(cmd, "--obs is an analysis of its own: drop --trace, --exact, --hutchpp, --eigs, --neg-eigs, --density "
                         "and --landscape");
    if (o->samples || o->batches || o->batch_flag || o->bn != MODE_EVAL || o->op != CURV_HESSIAN)
        usage_error(cmd, "--obs draws its own samples (--fisher-grads x --fisher-batch) with eval-mode batchnorm: "
                         "drop --samples, --batches, --batch-size, --bn and --operator");
    if (curvature_tuning(o)) usage_error(cmd, "%s does not apply to --obs: drop it", curvature_tuning(o));
    const char *label = "--csv";
    check_spares_inputs(cmd, &o->csv, &label, 1, &o->model, (const char *const[]){"the model"}, 1);
    check_outputs(cmd, &o->csv, &label, 1);
}

// Parses the options into o, or exits.
static void hess_parse(int argc, char **argv, HessOpts *o) {
    enum { O_DATA = 256, O_DATASET, O_SAMPLES, O_BATCHES, O_BATCH, O_BN, O_OP, O_TRACE, O_PER, O_TOL, O_MAXP, O_HPP,
           O_EIGS, O_NEG, O_EIGTOL, O_STEPS, O_DENS, O_SLQP, O_SLQS, O_LAND, O_RAD, O_PTS, O_CSV, O_JSON, O_SEED,
           O_THREADS, O_OBS, O_FGRADS, O_FBATCH, O_BLOCK, O_DAMP, O_BUDGET, O_EXACT };
    static const struct option opts[] = {
        {"data", 1, 0, O_DATA},         {"dataset", 1, 0, O_DATASET},   {"samples", 1, 0, O_SAMPLES},
        {"batches", 1, 0, O_BATCHES},   {"batch-size", 1, 0, O_BATCH},  {"bn", 1, 0, O_BN},
        {"operator", 1, 0, O_OP},       {"trace", 0, 0, O_TRACE},       {"per", 1, 0, O_PER},
        {"tol", 1, 0, O_TOL},           {"max-probes", 1, 0, O_MAXP},   {"hutchpp", 1, 0, O_HPP},
        {"eigs", 1, 0, O_EIGS},         {"neg-eigs", 1, 0, O_NEG},      {"eig-tol", 1, 0, O_EIGTOL},
        {"max-steps", 1, 0, O_STEPS},   {"density", 1, 0, O_DENS},      {"slq-probes", 1, 0, O_SLQP},
        {"slq-steps", 1, 0, O_SLQS},    {"landscape", 1, 0, O_LAND},    {"radius", 1, 0, O_RAD},
        {"points", 1, 0, O_PTS},        {"csv", 1, 0, O_CSV},           {"json", 0, 0, O_JSON},
        {"seed", 1, 0, O_SEED},         {"threads", 1, 0, O_THREADS},   {"help", 0, 0, 'h'},
        {"obs", 0, 0, O_OBS},           {"fisher-grads", 1, 0, O_FGRADS}, {"fisher-batch", 1, 0, O_FBATCH},
        {"block-size", 1, 0, O_BLOCK},  {"damp", 1, 0, O_DAMP},         {"memory-budget", 1, 0, O_BUDGET},
        {"exact", 0, 0, O_EXACT},
        {0, 0, 0, 0}};
    const char *cmd = "hessian";
    int c;
    bool seen[sizeof opts / sizeof opts[0]] = {0};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        option_once(cmd, ":h", opts, seen, c);
        switch (c) {
        case O_DATA: o->data = optarg; break;
        case O_DATASET: o->dataset = optarg; break;
        case O_SAMPLES:
            o->samples = strcmp(optarg, "all") == 0 ? -1 : parse_int(cmd, "--samples", optarg, 1, 100000000);
            break;
        case O_BATCHES: o->batches = (int)parse_int(cmd, "--batches", optarg, 1, 1000000); break;
        case O_BATCH:
            o->batch = (int)parse_int(cmd, "--batch-size", optarg, 1, 65536);
            o->batch_flag = true;
            break;
        case O_BN:
            if (strcmp(optarg, "eval") != 0 && strcmp(optarg, "train") != 0)
                usage_error(cmd, "--bn: '%s' is not eval or train", optarg);
            o->bn = strcmp(optarg, "eval") == 0 ? MODE_EVAL : MODE_BATCHSTATS;
            break;
        case O_OP:
            if (strcmp(optarg, "hessian") != 0 && strcmp(optarg, "ggn") != 0)
                usage_error(cmd, "--operator: '%s' is not hessian or ggn", optarg);
            o->op = strcmp(optarg, "hessian") == 0 ? CURV_HESSIAN : CURV_GGN;
            break;
        case O_TRACE: o->trace = o->trace_flag = true; break;
        case O_EXACT: o->exact = o->trace = o->trace_flag = true; break;
        case O_PER: o->per_arg = optarg; break;
        case O_TOL:
            o->tol = parse_double(cmd, "--tol", optarg, 1e-12, 1.0);
            given(&o->probe_opt, "--tol");
            break;
        case O_MAXP:
            o->max_probes = (int)parse_int(cmd, "--max-probes", optarg, 2, 1000000);
            given(&o->probe_opt, "--max-probes");
            break;
        case O_HPP: o->hutchpp = (int)parse_int(cmd, "--hutchpp", optarg, 6, 1000000); break;
        case O_EIGS: o->eigs = (int)parse_int(cmd, "--eigs", optarg, 1, 100000000); break;
        case O_NEG: o->neg_eigs = (int)parse_int(cmd, "--neg-eigs", optarg, 0, 100000000); break;
        case O_EIGTOL:
            o->eig_tol = parse_double(cmd, "--eig-tol", optarg, 1e-12, 1.0);
            given(&o->lanczos_opt, "--eig-tol");
            break;
        case O_STEPS:
            o->max_steps = (int)parse_int(cmd, "--max-steps", optarg, 1, 100000);
            given(&o->lanczos_opt, "--max-steps");
            break;
        case O_DENS: o->density = png_output_option(cmd, "--density", optarg); break;
        case O_SLQP:
            o->slq_probes = (int)parse_int(cmd, "--slq-probes", optarg, 1, 1000);
            given(&o->slq_opt, "--slq-probes");
            break;
        case O_SLQS:
            o->slq_steps = (int)parse_int(cmd, "--slq-steps", optarg, 2, 10000);
            given(&o->slq_opt, "--slq-steps");
            break;
        case O_LAND: o->landscape = png_output_option(cmd, "--landscape", optarg); break;
        case O_RAD:
            o->radius = parse_double(cmd, "--radius", optarg, 1e-9, 1e3);  // further, the loss overflows
            given(&o->land_opt, "--radius");
            break;
        case O_PTS:
            o->points = (int)parse_int(cmd, "--points", optarg, 2, 1001);
            given(&o->land_opt, "--points");
            break;
        case O_CSV: o->csv = output_option(cmd, "--csv", optarg, "file"); break;
        case O_JSON: o->json = true; break;
        case O_SEED: o->seed = (unsigned long long)parse_int(cmd, "--seed", optarg, 0, 1L << 53); break;
        case O_THREADS: o->threads = (int)parse_int(cmd, "--threads", optarg, 0, HP_MAX_THREADS); break;
        case O_OBS: o->obs = true; break;
        case O_FGRADS:
            o->fisher_grads = (int)parse_int(cmd, "--fisher-grads", optarg, 1, 100000000);
            given(&o->obs_flag, "--fisher-grads");
            break;
        case O_FBATCH:
            o->fisher_batch = (int)parse_int(cmd, "--fisher-batch", optarg, 1, 65536);
            given(&o->obs_flag, "--fisher-batch");
            break;
        case O_BLOCK:
            o->block_size = parse_int(cmd, "--block-size", optarg, 1, 1L << 40);
            given(&o->obs_flag, "--block-size");
            break;
        case O_DAMP:
            o->damp = parse_double(cmd, "--damp", optarg, HP_DAMP_MIN, HP_DAMP_MAX);
            given(&o->obs_flag, "--damp");
            break;
        case O_BUDGET:
            o->budget_mb = parse_double(cmd, "--memory-budget", optarg, 0, 1e12);
            o->budget_flag = true;  // the Fisher's budget with --obs, else the analyses' limit
            break;
        case 'h': fputs(HELP_HESSIAN, stdout), check_stdout(), exit(0);
        case ':': usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        default: bad_option(cmd, argv, opts);
        }
    }
    if (optind != argc - 1) usage_error(cmd, optind >= argc ? "MODEL is required" : "one MODEL only");
    if (o->samples && o->batches) usage_error(cmd, "give --samples or --batches, not both");
    o->model = argv[optind];
    if (o->obs) {
        obs_parse_checks(cmd, o);
        return;
    }
    if (o->obs_flag) usage_error(cmd, "%s needs --obs", o->obs_flag);
    if (o->per_arg) {
        int lvl = group_level_parse(o->per_arg);
        if (lvl < 0)
            usage_error(cmd, "--per: '%s' is not model, layer or channel%s", o->per_arg,
                        strcmp(o->per_arg, "weight") == 0 ? " (weight needs --obs)" : "");
        o->per = (GroupLevel)lvl;
        o->trace = true;
    }
    if (o->neg_eigs == 0 && !o->eigs)
        usage_error(cmd, "--neg-eigs 0 turns off the most negative eigenvalue of --eigs: it needs --eigs");
    // only what was asked; with no analysis option, the trace and the largest eigenvalue
    if (!o->trace && !o->hutchpp && !o->eigs && o->neg_eigs < 0 && !o->density && !o->landscape) {
        o->trace = true;
        o->eigs = 1;
    }
    if (o->exact && (o->op != CURV_GGN || o->bn != MODE_EVAL))
        usage_error(cmd, "--exact gives the Gauss-Newton diagonal with independent samples: it needs --operator ggn "
                         "and --bn eval");
    // the most negative eigenvalue comes with --eigs, except for the PSD Gauss-Newton matrix
    if (o->eigs && o->neg_eigs < 0) o->neg_eigs = o->op == CURV_GGN ? 0 : 1;
    if (o->neg_eigs < 0) o->neg_eigs = 0;
    check_tuning_applies(cmd, o);
    if (o->points % 2 == 0) usage_error(cmd, "--points %d: give an odd count, so the grid passes through the model", o->points);
    if (o->csv && !o->trace && !o->eigs && !o->neg_eigs)
        usage_error(cmd, "--csv writes the traces (--trace, --per) or the eigenvalues (--eigs, --neg-eigs): ask for "
                         "one");
    check_hess_outputs(cmd, o);
}

// Bytes a Lanczos run of `steps` steps holds on n parameters: its basis (one double vector per
// step, at most n of them) and the eigenvectors of its tridiagonal matrix (steps x steps).
static double lanczos_bytes(double n, int steps) {
    double cap = fmin((double)steps, n);
    return 8.0 * (cap * n + cap * cap);
}

// The largest estimator's memory, what sets it (why: "--eigs 50000: 50000 Lanczos steps") and
// the option that would lower it (knob).
typedef struct {
    double bytes;
    char why[96];
    const char *knob;
} MemNeed;

// Makes need the larger of itself and a run of `bytes` described by opt, value and what.
static void mem_max(MemNeed *need, double bytes, const char *opt, long value, const char *what, long count) {
    if (bytes <= need->bytes) return;
    need->bytes = bytes;
    need->knob = opt;
    snprintf(need->why, sizeof need->why, "%s %ld: %ld %s", opt, value, count, what);
}

// The Lanczos step limit of one end asking for k eigenpairs (run_lanczos raises --max-steps to
// k), into mem_max with the option that sets it: `opt` when k is over --max-steps.
static void mem_lanczos(MemNeed *need, const HessOpts *o, double n, int k, const char *opt) {
    int steps = o->max_steps > k ? o->max_steps : k;
    long shown = (long)fmin(steps, n);
    if (k > o->max_steps)
        mem_max(need, lanczos_bytes(n, steps), opt, k, "Lanczos steps", shown);
    else
        mem_max(need, lanczos_bytes(n, steps), "--max-steps", o->max_steps, "Lanczos steps", shown);
}

// The training images the analysis runs on: --samples N, --batches N of --batch-size, one batch
// by default, or with --samples all the whole training set, whose size is read from its files'
// headers (exits with their error), so that the memory check sees the batch curv_init will run.
static long hess_samples(const HessOpts *o, const Model *m) {
    if (o->samples > 0) return o->samples;
    if (o->samples == 0) return (long)(o->batches ? o->batches : 1) * o->batch;
    DatasetChoice c = {.name = o->dataset, .dir = o->data};
    model_dataset("hessian", m, o->model, &c);
    Shape in;
    int n_train, classes;
    HpErr err;
    if (dataset_peek(c.name, c.dir, &in, &n_train, &classes, &err) < 0) die("%s", err.msg);
    return n_train;
}

// Exits before any data is read or product computed if the largest estimator (Lanczos at
// either end, with the steps it will really take; SLQ; Hutch++'s basis), the top vectors kept
// for the landscape and what curv_init allocates for the batch it will run (curv_bytes: at most
// the samples, so --samples all or a few samples are not sized by a larger --batch-size) would
// exceed --memory-budget, else 80% of the memory this process may use (memory_limit).
static void check_memory(const HessOpts *o, const Model *m) {
    double n = (double)m->n_params;
    MemNeed need = {0, "", NULL};
    int k_top = o->landscape && o->eigs < 2 ? 2 : o->eigs;
    if (k_top) mem_lanczos(&need, o, n, k_top, "--eigs");
    if (o->neg_eigs) mem_lanczos(&need, o, n, o->neg_eigs, "--neg-eigs");
    if (o->density) mem_max(&need, lanczos_bytes(n, o->slq_steps), "--slq-steps", o->slq_steps, "Lanczos steps",
                            (long)fmin(o->slq_steps, n));
    if (o->hutchpp) {
        double k = fmin(o->hutchpp / 3, n);
        mem_max(&need, 8.0 * n * 2.0 * k, "--hutchpp", o->hutchpp, "basis vectors", (long)(2 * k));
    }
    if (o->landscape) need.bytes += 4.0 * n * k_top;  // the top vectors, kept for the landscape
    long samples = hess_samples(o, m);
    int n_in = samples > INT_MAX ? INT_MAX : (int)samples;  // more than the training set: refused later
    int batch = curv_batch(n_in, o->batch);
    double act_bytes = (double)curv_bytes(m, n_in, o->batch, 0);  // what curv_init allocates
    char of[96];
    double limit = o->budget_flag ? o->budget_mb * 1048576.0 : memory_limit(of, sizeof of);
    if (o->budget_flag) snprintf(of, sizeof of, "--memory-budget %g", o->budget_mb);
    if (limit <= 0 || need.bytes + act_bytes <= limit) return;
    char lower[64];  // the larger part's option first
    if (!need.why[0])
        snprintf(lower, sizeof lower, "--batch-size");
    else
        snprintf(lower, sizeof lower, need.bytes >= act_bytes ? "%s or --batch-size" : "--batch-size or %s", need.knob);
    char need_s[32], limit_s[32];
    die("%s: this analysis needs about %s of memory (%s%s%zu parameters, batch %d), over the limit of %s (%s): lower "
        "%s",
        o->model, fmt_bytes(need.bytes + act_bytes, need_s, sizeof need_s), need.why, need.why[0] ? " on " : "",
        m->n_params, batch, fmt_bytes(limit, limit_s, sizeof limit_s), of, lower);
}

// Exits unless the eigenvalue counts fit the model and the analysis fits in memory: right after
// loading the model, before any data is read or product computed.
static void check_counts(const HessOpts *o, const Model *m) {
    if ((size_t)o->eigs > m->n_params)
        die("%s: --eigs %d is more than the model's %zu parameters", o->model, o->eigs, m->n_params);
    if ((size_t)o->neg_eigs > m->n_params)
        die("%s: --neg-eigs %d is more than the model's %zu parameters", o->model, o->neg_eigs, m->n_params);
    if (o->landscape && m->n_params < 2)
        die("%s: --landscape needs two eigenvectors; the model has %zu parameter", o->model, m->n_params);
    check_memory(o, m);
}

// Loads the training set (--dataset and --data, else the model's, else Fashion-MNIST), or exits.
static void load_train(const HessOpts *o, const Model *m, Dataset *train) {
    DatasetChoice c = {.name = o->dataset, .dir = o->data};
    model_dataset("hessian", m, o->model, &c);
    load_dataset_or_die(c.name, c.dir, train, NULL);  // the test files need not exist
}

// Picks the samples (first N training images in file order) and builds the curvature operator.
static void hess_setup(const HessOpts *o, Model *m, Dataset *train, Curvature *c) {
    load_train(o, m, train);
    long n = o->samples == -1 ? train->n : o->samples > 0 ? o->samples : (long)(o->batches ? o->batches : 1) * o->batch;
    if (n > train->n) die("%s: asked for %ld samples, the training set has %d", o->model, n, train->n);
    int *idx = xmalloc((size_t)n * sizeof(int));
    for (long i = 0; i < n; i++) idx[i] = (int)i;
    HpErr err;
    if (curv_init(c, m, train, idx, (int)n, o->batch, o->bn, o->op, &err) < 0) die("%s: %s", o->model, err.msg);
    free(idx);
}

// The exact traces of the Gauss-Newton matrix: r's group traces are sums of its exact diagonal
// (standard errors zero, no probes).
static void exact_trace(Curvature *c, const Model *m, const uint32_t *group_of, HessResults *r) {
    HpErr err;
    Progress pr;
    float *diag = xmalloc(m->n_params * sizeof(float));
    double t0 = now_s();
    progress_init(&pr, "exact diagonal");
    if (curv_ggn_diag(c, diag, progress_hook, &pr, &err) < 0) die("%s", err.msg);
    progress_done(&pr);
    r->exact_seconds = now_s() - t0;
    double total = 0;
    for (size_t i = 0; i < m->n_params; i++) r->group_trace[group_of[i]] += diag[i];
    for (int g = 0; g < r->n_groups; g++) total += r->group_trace[g];  // in index order, as Hutchinson's
    r->hutch.trace = total;
    free(diag);
}

// Hutchinson's estimates of r's group traces (and their standard errors).
static void hutchinson_traces(const HessOpts *o, LinOp *op, const uint32_t *group_of, HessResults *r) {
    HpErr err;
    Rng rng;
    Progress pr;
    HutchOpts ho = hutch_defaults();
    ho.tol = o->tol;
    ho.max_probes = o->max_probes;
    if (ho.min_probes > ho.max_probes) ho.min_probes = ho.max_probes;
    progress_init(&pr, "trace");
    pr.capped = true;  // --tol may stop it before --max-probes
    ho.progress = progress_hook;
    ho.user = &pr;
    r->hutch.group_trace = r->group_trace;
    r->hutch.group_se = r->group_se;
    rng_seed(&rng, o->seed, 101);
    if (hutchinson_trace(op, group_of, (size_t)r->n_groups, &ho, &rng, &r->hutch, &err) < 0) die("%s", err.msg);
    progress_done(&pr);
}

// The traces at the requested level (with the model total), Hutchinson's or the exact
// Gauss-Newton ones, and Hutch++'s.
static void run_trace(const HessOpts *o, Curvature *c, LinOp *op, const Model *m, HessResults *r) {
    HpErr err;
    Rng rng;
    Progress pr;
    if (o->trace) {
        uint32_t *group_of = xmalloc(m->n_params * sizeof(uint32_t));
        r->n_groups = param_groups(m, o->per, group_of, &r->groups, &err);
        if (r->n_groups < 0) die("%s", err.msg);
        r->group_trace = xcalloc((size_t)r->n_groups, sizeof(double));
        r->group_se = xcalloc((size_t)r->n_groups, sizeof(double));
        if (o->exact)
            exact_trace(c, m, group_of, r);
        else
            hutchinson_traces(o, op, group_of, r);
        r->have_trace = true;
        free(group_of);
    }
    if (o->hutchpp) {
        progress_init(&pr, "hutch++");
        rng_seed(&rng, o->seed, 102);
        if (hutchpp_trace(op, o->hutchpp, &rng, progress_hook, &pr, &r->hpp, &err) < 0) die("%s", err.msg);
        progress_done(&pr);
        r->have_hpp = true;
    }
}

// One Lanczos run for k eigenpairs at one end; vectors wanted only if vecs is not NULL.
static void run_lanczos(const HessOpts *o, LinOp *op, EigWhich which, int k, double *values, double *res,
                        float *vecs, int *steps, int *converged, uint64_t stream) {
    HpErr err;
    Rng rng;
    Progress pr;
    progress_init(&pr, which == EIG_LARGEST ? "top eigenvalues" : "negative eigenvalues");
    pr.capped = true;  // --max-steps: it stops once the Ritz values converge
    LanczosOpts lo = lanczos_defaults();
    lo.k = k;
    lo.which = which;
    lo.tol = o->eig_tol;
    lo.max_steps = o->max_steps > k ? o->max_steps : k;
    lo.progress = progress_hook;
    lo.user = &pr;
    LanczosOut out = {.values = values, .vectors = vecs, .residuals = res};
    rng_seed(&rng, o->seed, stream);
    if (lanczos_eigs(op, &lo, &rng, &out, &err) < 0) die("%s", err.msg);
    progress_done(&pr);
    *steps = out.steps;
    *converged = out.converged;
}

// Top and most negative eigenvalues (and the top two vectors when the landscape needs them).
static void run_eigs(const HessOpts *o, LinOp *op, const Model *m, HessResults *r) {
    int k = o->eigs;
    if (o->landscape && k < 2) k = 2;
    if (k > 0) {  // k fits the model: check_counts
        r->n_top = k;
        r->top = xcalloc((size_t)k, sizeof(double));
        r->top_res = xcalloc((size_t)k, sizeof(double));
        r->top_vecs = o->landscape ? xmalloc((size_t)k * m->n_params * sizeof(float)) : NULL;
        run_lanczos(o, op, EIG_LARGEST, k, r->top, r->top_res, r->top_vecs, &r->top_steps, &r->top_converged, 201);
    }
    if (o->neg_eigs > 0) {
        r->n_neg = o->neg_eigs;
        r->neg = xcalloc((size_t)r->n_neg, sizeof(double));
        r->neg_res = xcalloc((size_t)r->n_neg, sizeof(double));
        run_lanczos(o, op, EIG_SMALLEST, r->n_neg, r->neg, r->neg_res, NULL, &r->neg_steps, &r->neg_converged, 202);
    }
}

// Spectral density by SLQ, with its derived figures.
static void run_density(const HessOpts *o, LinOp *op, HessResults *r) {
    HpErr err;
    Rng rng;
    Progress pr;
    progress_init(&pr, "density");
    SlqOpts so = slq_defaults();
    so.n_probes = o->slq_probes;
    so.steps = o->slq_steps;
    so.progress = progress_hook;
    so.user = &pr;
    rng_seed(&rng, o->seed, 301);
    if (slq_density(op, &so, &rng, &r->slq, &err) < 0) die("%s", err.msg);
    progress_done(&pr);
    if (slq_figures(&r->slq, 0.0, &r->fig, &err) < 0) die("%s", err.msg);
    r->have_slq = true;
}

// Stages the FILE.png plot (log density) and FILE.csv of the density in outs.
static void write_density(const HessOpts *o, const HessResults *r, Outputs *outs) {
    HpErr err;
    PlotSeries s = {.name = "density", .x = r->slq.grid, .y = r->slq.density, .n = (size_t)r->slq.grid_points};
    PlotOpts po = {.log_y = true};
    char title[160];
    snprintf(title, sizeof title, "%s spectral density (SLQ, %d x %d steps)", o->op == CURV_GGN ? "Gauss-Newton" : "Hessian",
             r->slq.n_probes, r->slq.steps);
    if (plot_lines(outputs_stage(outs, o->density), title, "eigenvalue", "density", &s, 1, &po, &err) < 0)
        outputs_fail(outs, err.msg);
    const char *header[] = {"eigenvalue", "density"};
    double *rows = outputs_alloc(outs, (size_t)r->slq.grid_points * 2, sizeof(double), false);
    for (int i = 0; i < r->slq.grid_points; i++) {
        rows[2 * i] = r->slq.grid[i];
        rows[2 * i + 1] = r->slq.density[i];
    }
    if (csv_write(outputs_stage(outs, o->density_csv), header, 2, rows, r->slq.grid_points, &err) < 0)
        outputs_fail(outs, err.msg);
    free(rows);
}

// Loss landscape along the top eigenvector (1-D) and on the plane of the top two (2-D).
static void run_landscape(const HessOpts *o, Curvature *c, HessResults *r) {
    HpErr err;
    Progress pr;
    size_t P = c->m->n_params;
    int n = o->points;
    r->alpha = xmalloc((size_t)n * sizeof(double));
    r->loss_1d = xmalloc((size_t)n * sizeof(double));
    r->loss_2d = xmalloc((size_t)n * n * sizeof(double));
    progress_init(&pr, "landscape 1-D");
    if (landscape_1d(c, r->top_vecs, o->radius, n, r->alpha, r->loss_1d, progress_hook, &pr, &err) < 0)
        die("%s", err.msg);
    progress_done(&pr);
    r->landscape_center = r->loss_1d[n / 2];  // n is odd: the grid's middle point is the model itself
    progress_init(&pr, "landscape 2-D");
    if (landscape_2d(c, r->top_vecs, r->top_vecs + P, o->radius, n, r->loss_2d, progress_hook, &pr, &err) < 0)
        die("%s", err.msg);
    progress_done(&pr);
}

// Stages the landscape in outs: FILE.png (2-D) and FILE_1d.png, then FILE_1d.csv and FILE.csv.
static void write_landscape(const HessOpts *o, const HessResults *r, Outputs *outs) {
    HpErr err;
    int n = o->points;
    const char *title = "loss on the plane of the top two eigenvectors";
    if (plot_heatmap(outputs_stage(outs, o->landscape), title, "step along v1", "step along v2", r->loss_2d, (size_t)n,
                     (size_t)n, -o->radius, o->radius, -o->radius, o->radius, &err) < 0)
        outputs_fail(outs, err.msg);
    PlotSeries s = {.name = "loss", .x = r->alpha, .y = r->loss_1d, .n = (size_t)n};
    if (plot_lines(outputs_stage(outs, o->land_1d_png), "loss along the top eigenvector", "step along v1", "loss", &s,
                   1, NULL, &err) < 0)
        outputs_fail(outs, err.msg);
    const char *h1[] = {"alpha", "loss"};
    double *rows = outputs_alloc(outs, (size_t)n * n * 3, sizeof(double), false);
    for (int i = 0; i < n; i++) {
        rows[2 * i] = r->alpha[i];
        rows[2 * i + 1] = r->loss_1d[i];
    }
    if (csv_write(outputs_stage(outs, o->land_1d_csv), h1, 2, rows, n, &err) < 0) outputs_fail(outs, err.msg);
    const char *h2[] = {"alpha", "beta", "loss"};
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) {
            double *row = rows + ((size_t)j * n + i) * 3;
            row[0] = r->alpha[i];
            row[1] = r->alpha[j];
            row[2] = r->loss_2d[(size_t)j * n + i];
        }
    if (csv_write(outputs_stage(outs, o->land_csv), h2, 3, rows, n * n, &err) < 0) outputs_fail(outs, err.msg);
    free(rows);
}

// Stages the per-group trace table (or the eigenvalues) as CSV in outs.
static void write_csv(const HessOpts *o, const HessResults *r, Outputs *outs) {
    HpErr err;
    if (r->have_trace) {
        const char *header[] = {"group", "params", "trace", "stderr", "trace_per_param"};
        const char **labels = outputs_alloc(outs, (size_t)r->n_groups, sizeof(char *), false);
        double *rows = outputs_alloc(outs, (size_t)r->n_groups * 4, sizeof(double), false);
        for (int g = 0; g < r->n_groups; g++) {
            labels[g] = r->groups[g].name;
            double np = (double)r->groups[g].n_params;
            double *row = rows + (size_t)g * 4;
            row[0] = np;
            row[1] = r->group_trace[g];
            row[2] = r->group_se[g];
            row[3] = np > 0 ? r->group_trace[g] / np : 0.0;
        }
        if (csv_write_labeled(outputs_stage(outs, o->csv), header, 4, labels, rows, r->n_groups, &err) < 0)
            outputs_fail(outs, err.msg);
        free(labels);
        free(rows);
        return;
    }
    const char *header[] = {"end", "index", "eigenvalue", "residual"};
    int n = r->n_top + r->n_neg;
    const char **labels = outputs_alloc(outs, (size_t)(n ? n : 1), sizeof(char *), false);
    double *rows = outputs_alloc(outs, (size_t)(n ? n : 1) * 3, sizeof(double), false);
    for (int i = 0; i < n; i++) {
        bool top = i < r->n_top;
        int j = top ? i : i - r->n_top;
        labels[i] = top ? "largest" : "most_negative";
        rows[3 * i] = j + 1;
        rows[3 * i + 1] = top ? r->top[j] : r->neg[j];
        rows[3 * i + 2] = top ? r->top_res[j] : r->neg_res[j];
    }
    if (csv_write_labeled(outputs_stage(outs, o->csv), header, 3, labels, rows, n, &err) < 0)
        outputs_fail(outs, err.msg);
    free(labels);
    free(rows);
}

// Sum of the group traces of node `node` (groups in index order).
static double layer_sum(const HessResults *r, int node, size_t *params) {
    double s = 0.0;
    *params = 0;
    for (int g = 0; g < r->n_groups; g++)
        if (r->groups[g].node == node) {
            s += r->group_trace[g];
            *params += r->groups[g].n_params;
        }
    return s;
}

// Prints the human-readable summary.
static void print_summary(const HessOpts *o, const Model *m, const Curvature *c, const HessResults *r) {
    printf("%s: %s, %zu parameters; %d training image%s, batch %d, batchnorm %s, %s\n", o->model, m->arch,
           m->n_params, c->n, plural(c->n), c->batch, o->bn == MODE_EVAL ? "eval" : "train",
           o->op == CURV_HESSIAN ? "Hessian" : "Gauss-Newton");
    if (r->have_trace) {
        if (o->exact)
            printf("trace: %.6g (exact: the Gauss-Newton diagonal), %.4g per parameter\n", r->hutch.trace,
                   r->hutch.trace / (double)m->n_params);
        else
            printf("trace: %.6g +- %.3g (standard error, %d probes%s), %.4g per parameter\n", r->hutch.trace,
                   r->hutch.trace_se, r->hutch.probes,
                   r->hutch.converged ? "" : "; --max-probes reached before the standard error met --tol",
                   r->hutch.trace / (double)m->n_params);
        if (o->per != GROUP_MODEL) {
            printf("%-28s %9s %14s %12s\n", "layer", "params", "trace", "per param");
            for (int i = 0; i < m->n_nodes; i++) {
                size_t np;
                double t = layer_sum(r, i, &np);
                if (np) printf("%-28s %9zu %14.6g %12.4g\n", m->nodes[i].name, np, t, t / (double)np);
            }
            if (o->per == GROUP_CHANNEL && !o->csv) printf("(per-channel traces: add --csv FILE or --json)\n");
        }
    }
    if (r->have_hpp)
        printf("Hutch++ trace: %.6g +- %.3g (%ld products, rank %d)\n", r->hpp.trace, r->hpp.se, r->hpp.products,
               r->hpp.rank);
    if (r->n_top) {
        printf("largest eigenvalues (%d Lanczos step%s%s):", r->top_steps, plural(r->top_steps),
               r->top_converged ? "" : ", not converged");
        for (int i = 0; i < r->n_top; i++) printf(" %.6g", r->top[i]);
        printf("\n");
    }
    if (r->n_neg) {
        printf("most negative eigenvalues (%d step%s%s):", r->neg_steps, plural(r->neg_steps),
               r->neg_converged ? "" : ", not converged");
        for (int i = 0; i < r->n_neg; i++) printf(" %.6g", r->neg[i]);
        printf("\n");
    }
    if (r->have_slq) {
        printf("density: %s (and %s), %d probe%s x %d steps, eigenvalues in [%.4g, %.4g]\n", o->density,
               "the .csv beside it", r->slq.n_probes, plural(r->slq.n_probes), r->slq.steps, r->fig.lambda_min,
               r->fig.lambda_max);
        printf("condition number of the positive part: %.4g; negative/positive curvature mass: %.4g\n",
               r->fig.condition, r->fig.neg_pos_ratio);
    }
    if (o->landscape)
        printf("landscape: %s and its _1d.png, .csv, _1d.csv; loss at the centre %.6g (%d loss evaluations in %.1f s)\n",
               o->landscape, r->landscape_center, o->points + o->points * o->points, r->landscape_seconds);
    if (o->exact)
        printf("%d image%s x %d classes of backward passes in %.1f s\n", c->n, plural(c->n), m->n_classes,
               r->exact_seconds);
    double product_s = r->seconds - r->exact_seconds;
    if (!o->exact || r->products)
        printf("%ld product%s in %.1f s (%.2f per second)\n", r->products, plural(r->products), product_s,
               r->products / product_s);
}

// Adds a number array to a JSON object.
static void json_array(cJSON *obj, const char *key, const double *v, int n) {
    cJSON_AddItemToObject(obj, key, cJSON_CreateDoubleArray(v, n));
}

// Adds "seed" to a JSON object as the integer --seed, in full: cJSON writes a number with 15
// significant digits when they read back within a relative 2^-52 of it, so a seed near 2^53 (the
// largest --seed, every one of them exact in a double) came out as 9.00719925474099e+15.
static void json_add_seed(cJSON *obj, unsigned long long seed) {
    char text[24];
    snprintf(text, sizeof text, "%llu", seed);
    cJSON_AddRawToObject(obj, "seed", text);
}

// Prints the JSON result (stable keys, documented in the README).
static void print_json(const HessOpts *o, const Model *m, const Curvature *c, const HessResults *r, Outputs *outs) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", o->model);
    cJSON_AddStringToObject(root, "arch", m->arch);
    cJSON_AddNumberToObject(root, "params", (double)m->n_params);
    cJSON_AddNumberToObject(root, "samples", c->n);
    cJSON_AddNumberToObject(root, "batch_size", c->batch);
    cJSON_AddStringToObject(root, "bn", o->bn == MODE_EVAL ? "eval" : "train");
    cJSON_AddStringToObject(root, "operator", o->op == CURV_HESSIAN ? "hessian" : "ggn");
    json_add_seed(root, o->seed);
    if (r->have_trace) {
        cJSON *t = cJSON_AddObjectToObject(root, "trace");
        cJSON_AddNumberToObject(t, "estimate", r->hutch.trace);
        cJSON_AddNumberToObject(t, "stderr", r->hutch.trace_se);
        cJSON_AddNumberToObject(t, "probes", r->hutch.probes);
        cJSON_AddBoolToObject(t, "exact", o->exact);
        cJSON_AddBoolToObject(t, "converged", o->exact || r->hutch.converged);
        cJSON_AddNumberToObject(t, "per_param", r->hutch.trace / (double)m->n_params);
        cJSON_AddStringToObject(t, "per", group_level_name(o->per));
        if (o->per != GROUP_MODEL) {
            cJSON *groups = cJSON_AddArrayToObject(t, "groups");
            for (int g = 0; g < r->n_groups; g++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "name", r->groups[g].name);
                cJSON_AddStringToObject(e, "layer", m->nodes[r->groups[g].node].name);
                cJSON_AddNumberToObject(e, "channel", r->groups[g].channel);
                cJSON_AddNumberToObject(e, "params", (double)r->groups[g].n_params);
                cJSON_AddNumberToObject(e, "trace", r->group_trace[g]);
                cJSON_AddNumberToObject(e, "stderr", r->group_se[g]);
                cJSON_AddItemToArray(groups, e);
            }
        }
    }
    if (r->have_hpp) {
        cJSON *t = cJSON_AddObjectToObject(root, "hutchpp");
        cJSON_AddNumberToObject(t, "estimate", r->hpp.trace);
        cJSON_AddNumberToObject(t, "stderr", r->hpp.se);
        cJSON_AddNumberToObject(t, "products", (double)r->hpp.products);
    }
    if (r->n_top || r->n_neg) {
        cJSON *e = cJSON_AddObjectToObject(root, "eigenvalues");
        json_array(e, "largest", r->top, r->n_top);
        json_array(e, "largest_residuals", r->top_res, r->n_top);
        json_array(e, "most_negative", r->neg, r->n_neg);
        json_array(e, "most_negative_residuals", r->neg_res, r->n_neg);
        cJSON_AddNumberToObject(e, "steps", r->top_steps + r->neg_steps);  // both ends' (kept for old readers)
        cJSON_AddNumberToObject(e, "largest_steps", r->top_steps);
        cJSON_AddBoolToObject(e, "largest_converged", !r->n_top || r->top_converged);
        cJSON_AddNumberToObject(e, "most_negative_steps", r->neg_steps);
        cJSON_AddBoolToObject(e, "most_negative_converged", !r->n_neg || r->neg_converged);
    }
    if (r->have_slq) {
        cJSON *d = cJSON_AddObjectToObject(root, "density");
        cJSON_AddStringToObject(d, "png", o->density);
        cJSON_AddNumberToObject(d, "probes", r->slq.n_probes);
        cJSON_AddNumberToObject(d, "steps", r->slq.steps);
        cJSON_AddNumberToObject(d, "lambda_min", r->fig.lambda_min);
        cJSON_AddNumberToObject(d, "lambda_max", r->fig.lambda_max);
        cJSON_AddNumberToObject(d, "condition_positive", isfinite(r->fig.condition) ? r->fig.condition : -1);
        cJSON_AddNumberToObject(d, "negative_positive_mass_ratio",
                                isfinite(r->fig.neg_pos_ratio) ? r->fig.neg_pos_ratio : -1);
    }
    if (o->landscape) {
        cJSON *l = cJSON_AddObjectToObject(root, "landscape");
        cJSON_AddStringToObject(l, "png", o->landscape);
        cJSON_AddNumberToObject(l, "radius", o->radius);
        cJSON_AddNumberToObject(l, "points", o->points);
        cJSON_AddNumberToObject(l, "center_loss", r->landscape_center);
    }
    cJSON_AddNumberToObject(root, "products", (double)r->products);
    cJSON_AddNumberToObject(root, "seconds", round(r->seconds * 1000) / 1000);
    char *text = json_text(root, false, outs);
    puts(text);
    free(text);
    cJSON_Delete(root);
}


// Frees the results.
static void results_free(HessResults *r) {
    free(r->groups);
    free(r->group_trace);
    free(r->group_se);
    free(r->top);
    free(r->top_res);
    free(r->neg);
    free(r->neg_res);
    free(r->top_vecs);
    free(r->alpha);
    free(r->loss_1d);
    free(r->loss_2d);
    slq_free(&r->slq);
}

// ---------------------------------------------------------------------------------------------
// --obs: OBS scores from the WoodFisher inverse.

// What an --obs run computed.
typedef struct {
    FisherInv f;
    FisherOpts fo;
    double build_seconds, score_seconds;
    size_t bytes;     // fisher_bytes of the build
    int n_groups;     // per channel: conv and linear output channels
    GroupInfo *groups;
    double *score;    // [n_groups], or per weight [n_params]
    double *sq_norm;  // per channel: ||w_Q||^2
} ObsResults;

// The Fisher options of an --obs run.
static FisherOpts obs_fisher_opts(const HessOpts *o) {
    FisherOpts fo = fisher_defaults();
    fo.n_grads = o->fisher_grads;
    fo.grad_batch = o->fisher_batch;
    fo.block_size = (size_t)o->block_size;
    fo.damp = o->damp;
    fo.budget_mb = o->budget_mb;
    return fo;
}

// Exits unless the options fit the model and the budget (the library's check, which says what
// would fit) and the build fits in the machine's memory: before any data is read.
static void obs_check(const HessOpts *o, const Model *m, const FisherOpts *fo) {
    HpErr err;
    if (fisher_check(m, fo, &err) < 0) die("%s: %s", o->model, err.msg);
    char what[96];
    snprintf(what, sizeof what, "the Fisher inverse (%d gradients, blocks of %zu) needs", fo->n_grads, fo->block_size);
    check_memory_fits(o->model, what, (double)fisher_bytes(m, fo), "lower --fisher-grads or --block-size");
}

// Exits unless the training set holds the --fisher-grads x --fisher-batch distinct images the
// Fisher draws, naming the options: as soon as it is loaded, before any work.
static void obs_check_images(const HessOpts *o, const FisherOpts *fo, const Dataset *train) {
    check_fisher_images(o->model, "--fisher-grads", "--fisher-batch", fo, train->n);
}

// Scores every output channel of every conv and linear (filter and bias jointly).
static void obs_channels(const Model *m, ObsResults *r) {
    size_t n = m->n_params;
    uint32_t *group_of = xmalloc(n * sizeof(uint32_t));
    GroupInfo *all;
    HpErr err;
    int n_all = param_groups(m, GROUP_CHANNEL, group_of, &all, &err);
    if (n_all < 0) die("%s", err.msg);
    uint32_t *keep = xmalloc((size_t)n_all * sizeof(uint32_t));
    r->groups = xmalloc((size_t)n_all * sizeof(GroupInfo));
    for (int g = 0; g < n_all; g++) {
        OpKind op = m->nodes[all[g].node].op;
        keep[g] = op == OP_CONV2D || op == OP_LINEAR ? (uint32_t)r->n_groups : UINT32_MAX;
        if (keep[g] != UINT32_MAX) r->groups[r->n_groups++] = all[g];
    }
    for (size_t i = 0; i < n; i++) group_of[i] = keep[group_of[i]];
    r->score = xcalloc((size_t)r->n_groups, sizeof(double));
    r->sq_norm = xcalloc((size_t)r->n_groups, sizeof(double));
    for (size_t i = 0; i < n; i++)
        if (group_of[i] != UINT32_MAX) r->sq_norm[group_of[i]] += (double)m->params[i] * m->params[i];
    if (obs_group_scores(&r->f, m->params, group_of, (size_t)r->n_groups, r->score, &err) < 0) die("%s", err.msg);
    free(group_of), free(keep), free(all);
}

// Builds the inverse and the scores.
static void obs_run(const HessOpts *o, Model *m, const Dataset *train, ObsResults *r) {
    HpErr err;
    Rng rng;
    Progress pr;
    rng_seed(&rng, o->seed, 401);
    r->bytes = fisher_bytes(m, &r->fo);
    progress_init(&pr, "fisher");
    double t0 = now_s();
    if (fisher_build(m, train, &r->fo, &rng, progress_hook, &pr, &r->f, &err) < 0) die("%s: %s", o->model, err.msg);
    progress_done(&pr);
    double t1 = now_s();
    r->build_seconds = t1 - t0;
    if (o->obs_per_weight) {
        r->score = xmalloc(m->n_params * sizeof(double));
        obs_weight_scores(&r->f, m->params, r->score);
    } else {
        obs_channels(m, r);
    }
    r->score_seconds = now_s() - t1;
}

// Compares doubles for qsort.
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Minimum, median and maximum of v[0..n) (n >= 1).
static void summary3(const double *v, size_t n, double out[3]) {
    double *c = xmalloc(n * sizeof(double));
    memcpy(c, v, n * sizeof(double));
    qsort(c, n, sizeof(double), cmp_double);
    out[0] = c[0];
    out[1] = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    out[2] = c[n - 1];
    free(c);
}

// Stages the OBS CSV in outs: per channel (group, params, obs_score, sq_norm) or per weight
// (tensor, index, weight, obs_score).
static void obs_write_csv(const HessOpts *o, const Model *m, const ObsResults *r, Outputs *outs) {
    HpErr err;
    if (!o->obs_per_weight) {
        const char *header[] = {"group", "params", "obs_score", "sq_norm"};
        const char **labels = outputs_alloc(outs, (size_t)(r->n_groups ? r->n_groups : 1), sizeof(char *), false);
        double *rows = outputs_alloc(outs, (size_t)(r->n_groups ? r->n_groups : 1) * 3, sizeof(double), false);
        for (int g = 0; g < r->n_groups; g++) {
            labels[g] = r->groups[g].name;
            rows[3 * g] = (double)r->groups[g].n_params;
            rows[3 * g + 1] = r->score[g];
            rows[3 * g + 2] = r->sq_norm[g];
        }
        if (csv_write_labeled(outputs_stage(outs, o->csv), header, 3, labels, rows, r->n_groups, &err) < 0)
            outputs_fail(outs, err.msg);
        free(labels), free(rows);
        return;
    }
    int nt = model_tensors(m, NULL, 0);
    TensorRef *t = outputs_alloc(outs, (size_t)nt, sizeof(TensorRef), false);
    model_tensors(m, t, nt);
    const char *header[] = {"tensor", "index", "weight", "obs_score"};
    const char **labels = outputs_alloc(outs, m->n_params, sizeof(char *), false);
    double *rows = outputs_alloc(outs, m->n_params * 3, sizeof(double), false);
    size_t at = 0;
    for (int k = 0; k < nt; k++) {
        if (!t[k].is_param) continue;
        size_t off = (size_t)(t[k].data - m->params);
        for (size_t j = 0; j < t[k].numel; j++, at++) {
            labels[at] = t[k].name;
            rows[3 * at] = (double)j;
            rows[3 * at + 1] = m->params[off + j];
            rows[3 * at + 2] = r->score[off + j];
        }
    }
    HP_ASSERT(at == m->n_params);
    if (csv_write_labeled(outputs_stage(outs, o->csv), header, 3, labels, rows, (int)at, &err) < 0)
        outputs_fail(outs, err.msg);
    free(labels), free(rows), free(t);
}

// Prints the per-layer table of channel scores.
static void obs_print_channels(const HessOpts *o, const Model *m, const ObsResults *r, Outputs *outs) {
    printf("%-28s %8s %9s %12s %12s %12s  %s\n", "layer", "channels", "params/ch", "min score", "median", "max score",
           "cheapest");
    double *v = outputs_alloc(outs, (size_t)(r->n_groups ? r->n_groups : 1), sizeof(double), false);
    for (int i = 0; i < m->n_nodes; i++) {
        int cnt = 0, best = -1;
        for (int g = 0; g < r->n_groups; g++)
            if (r->groups[g].node == i) {
                v[cnt++] = r->score[g];
                if (best < 0 || r->score[g] < r->score[best]) best = g;
            }
        if (cnt == 0) continue;
        double s3[3];
        summary3(v, (size_t)cnt, s3);
        printf("%-28s %8d %9zu %12.4g %12.4g %12.4g  %s\n", m->nodes[i].name, cnt, r->groups[best].n_params, s3[0],
               s3[1], s3[2], r->groups[best].name);
    }
    free(v);
    if (!o->csv) printf("(per-channel scores: add --csv FILE or --json)\n");
}

// Index of the k smallest scores (k <= n) into idx, ascending by score.
static void smallest(const double *v, size_t n, size_t *idx, int k) {
    for (int j = 0; j < k; j++) idx[j] = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        int j = k - 1;
        if (idx[j] != SIZE_MAX && v[i] >= v[idx[j]]) continue;
        while (j > 0 && (idx[j - 1] == SIZE_MAX || v[i] < v[idx[j - 1]])) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
}

// The tensor holding parameter i and its index there.
static const TensorRef *tensor_of(const Model *m, const TensorRef *t, int nt, size_t i, size_t *j) {
    for (int k = 0; k < nt; k++) {
        size_t off = (size_t)(t[k].data - m->params);
        if (t[k].is_param && i >= off && i < off + t[k].numel) {
            *j = i - off;
            return &t[k];
        }
    }
    HP_ASSERT(0 && "parameter outside every tensor");
    return NULL;
}

#define OBS_SMALLEST 10  // single-weight scores listed

// Prints the per-tensor table of single-weight scores and the smallest ones.
static void obs_print_weights(const Model *m, const ObsResults *r, Outputs *outs) {
    int nt = model_tensors(m, NULL, 0);
    TensorRef *t = outputs_alloc(outs, (size_t)nt, sizeof(TensorRef), false);
    model_tensors(m, t, nt);
    printf("%-36s %9s %12s %12s %12s\n", "tensor", "params", "min score", "median", "max score");
    for (int k = 0; k < nt; k++) {
        if (!t[k].is_param || t[k].numel == 0) continue;
        double s3[3];
        summary3(r->score + (t[k].data - m->params), t[k].numel, s3);
        printf("%-36s %9zu %12.4g %12.4g %12.4g\n", t[k].name, t[k].numel, s3[0], s3[1], s3[2]);
    }
    int k = m->n_params < OBS_SMALLEST ? (int)m->n_params : OBS_SMALLEST;
    size_t idx[OBS_SMALLEST];
    smallest(r->score, m->n_params, idx, k);
    printf("smallest single-weight scores:");
    for (int j = 0; j < k; j++) {
        size_t at;
        const TensorRef *tr = tensor_of(m, t, nt, idx[j], &at);
        printf(" %s[%zu] %.4g", tr->name, at, r->score[idx[j]]);
    }
    printf("\n");
    free(t);
}

// Prints the human-readable OBS summary.
static void obs_print(const HessOpts *o, const Model *m, const ObsResults *r, Outputs *outs) {
    size_t S = 0;
    for (int b = 0; b < r->f.n_blocks; b++)
        if (r->f.start[b + 1] - r->f.start[b] > S) S = r->f.start[b + 1] - r->f.start[b];
    printf("%s: %s, %zu parameters; OBS from the inverse empirical Fisher: %d gradient%s of %d image%s, %d block%s of "
           "at most %zu parameters (layer-aligned), damp %g\n",
           o->model, m->arch, m->n_params, r->fo.n_grads, plural(r->fo.n_grads), r->fo.grad_batch,
           plural(r->fo.grad_batch), r->f.n_blocks, plural(r->f.n_blocks), S, r->fo.damp);
    if (o->obs_per_weight)
        obs_print_weights(m, r, outs);
    else
        obs_print_channels(o, m, r, outs);
    printf("Fisher inverse in %.1f s (about %.0f MiB at the peak), scores in %.2f s\n", r->build_seconds,
           (double)r->bytes / (1024.0 * 1024.0), r->score_seconds);
}

// Prints the OBS result as one JSON object (keys in the README).
static void obs_print_json(const HessOpts *o, const Model *m, const ObsResults *r, Outputs *outs) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", o->model);
    cJSON_AddStringToObject(root, "arch", m->arch);
    cJSON_AddNumberToObject(root, "params", (double)m->n_params);
    json_add_seed(root, o->seed);
    cJSON *ob = cJSON_AddObjectToObject(root, "obs");
    cJSON_AddStringToObject(ob, "per", o->obs_per_weight ? "weight" : "channel");
    cJSON_AddNumberToObject(ob, "grads", r->fo.n_grads);
    cJSON_AddNumberToObject(ob, "grad_batch", r->fo.grad_batch);
    cJSON_AddNumberToObject(ob, "block_size", (double)r->fo.block_size);
    cJSON_AddNumberToObject(ob, "blocks", r->f.n_blocks);
    cJSON_AddNumberToObject(ob, "damp", r->fo.damp);
    cJSON_AddNumberToObject(ob, "bytes", (double)r->bytes);
    if (!o->obs_per_weight) {
        cJSON *groups = cJSON_AddArrayToObject(ob, "groups");
        for (int g = 0; g < r->n_groups; g++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", r->groups[g].name);
            cJSON_AddStringToObject(e, "layer", m->nodes[r->groups[g].node].name);
            cJSON_AddNumberToObject(e, "channel", r->groups[g].channel);
            cJSON_AddNumberToObject(e, "params", (double)r->groups[g].n_params);
            cJSON_AddNumberToObject(e, "score", r->score[g]);
            cJSON_AddNumberToObject(e, "sq_norm", r->sq_norm[g]);
            cJSON_AddItemToArray(groups, e);
        }
    } else {
        int nt = model_tensors(m, NULL, 0);
        TensorRef *t = outputs_alloc(outs, (size_t)nt, sizeof(TensorRef), false);
        model_tensors(m, t, nt);
        cJSON *tensors = cJSON_AddArrayToObject(ob, "tensors");
        for (int k = 0; k < nt; k++) {
            if (!t[k].is_param || t[k].numel == 0) continue;
            double s3[3];
            summary3(r->score + (t[k].data - m->params), t[k].numel, s3);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", t[k].name);
            cJSON_AddNumberToObject(e, "params", (double)t[k].numel);
            cJSON_AddNumberToObject(e, "min", s3[0]);
            cJSON_AddNumberToObject(e, "median", s3[1]);
            cJSON_AddNumberToObject(e, "max", s3[2]);
            cJSON_AddItemToArray(tensors, e);
        }
        free(t);
    }
    cJSON_AddNumberToObject(root, "seconds", round((r->build_seconds + r->score_seconds) * 1000) / 1000);
    char *text = json_text(root, false, outs);
    puts(text);
    free(text);
    cJSON_Delete(root);
}

// `hprune hessian MODEL --obs ...`: checks, the Fisher inverse, the scores, then the outputs.
static void obs_command(const HessOpts *o, Model *m) {
    ObsResults r;
    memset(&r, 0, sizeof r);
    r.fo = obs_fisher_opts(o);
    obs_check(o, m, &r.fo);
    Dataset train;
    load_train(o, m, &train);
    obs_check_images(o, &r.fo, &train);
    obs_run(o, m, &train, &r);
    Outputs outs = {0};
    if (o->csv) obs_write_csv(o, m, &r, &outs);
    if (o->json)
        obs_print_json(o, m, &r, &outs);
    else
        obs_print(o, m, &r, &outs);
    outputs_finish(&outs);
    fisher_free(&r.f);
    free(r.groups), free(r.score), free(r.sq_norm);
    dataset_free(&train);
}

int cmd_hessian(int argc, char **argv) {
    HessOpts o;
    hess_defaults(&o);
    hess_parse(argc, argv, &o);
    set_threads(o.threads, 1);
    Model m;
    load_model_or_die(&m, o.model);
    if (o.obs) {
        obs_command(&o, &m);
        model_free(&m);
        return 0;
    }
    check_counts(&o, &m);
    Dataset train;
    Curvature c;
    hess_setup(&o, &m, &train, &c);
    LinOp op = curv_linop(&c);
    HessResults r;
    memset(&r, 0, sizeof r);
    double t0 = now_s();
    run_trace(&o, &c, &op, &m, &r);
    run_eigs(&o, &op, &m, &r);
    if (o.density) run_density(&o, &op, &r);
    r.seconds = now_s() - t0;
    r.products = op.products;
    double t1 = now_s();
    if (o.landscape) run_landscape(&o, &c, &r);
    r.landscape_seconds = now_s() - t1;
    // every analysis done: now the files, staged (plots first, the likelier to refuse their
    // data), then standard output, then all files into place together
    Outputs outs = {0};
    if (o.density) write_density(&o, &r, &outs);
    if (o.landscape) write_landscape(&o, &r, &outs);
    if (o.csv) write_csv(&o, &r, &outs);
    if (o.json)
        print_json(&o, &m, &c, &r, &outs);
    else
        print_summary(&o, &m, &c, &r);
    outputs_finish(&outs);
    results_free(&r);
    curv_free(&c);
    dataset_free(&train);
    model_free(&m);
    return 0;
}
