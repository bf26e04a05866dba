// prune_cmd.c: `hprune prune`: score channels, remove them to a target (one shot or in steps),
// fine-tune, write the slimmed model and a report.
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../formats/config.h"
#include "../formats/table.h"
#include "../nn/train.h"
#include "../prune/pipeline.h"
#include "cli.h"

static const char *const HELP_PRUNE =
    "usage: hprune prune MODEL --method NAME --target-flops R -o SLIM.safetensors [options]\n"
    "\n"
    "Removes whole channels of MODEL (with every tensor slice coupled to them, residual\n"
    "channels together) until the target is met, optionally fine-tunes, and writes a smaller\n"
    "dense model.\n"
    "\n"
    "criterion (an option that the criterion does not use is refused, but for --samples and\n"
    "--batch-size, which every criterion accepts, as a sweep's [sweep] samples):\n"
    "      --method NAME       random, l1, l2, bn, taylor, hap, obd, fisher, obs, obs-layer\n"
    "      --normalize N       auto (default: none for taylor, hap, obd, fisher, obs; mean for the\n"
    "                          others), mean, max, size (per parameter) or none\n"
    "      --slices all|consumers  l1, l2, taylor, hap, obd, fisher: score a channel on every\n"
    "                          tensor slice it touches (default), or on its consumers' input\n"
    "                          columns alone, whose zeroing is exactly the channel's removal\n"
    "      --samples N         calibration images from the training set (default 512)\n"
    "      --batch-size B      calibration batch (default 128)\n"
    "      --probes P          Hutchinson probes for hap and obd (default 32; not with --ggn)\n"
    "      --ggn               hap and obd on the exact Gauss-Newton diagonal (one backward\n"
    "                          per class and image, no probes, never below zero) instead of\n"
    "                          the Hessian's Hutchinson estimate\n"
    "      --fisher-grads N    obs: gradients in the empirical Fisher (default 1000)\n"
    "      --fisher-batch B    obs: samples per gradient (default 1)\n"
    "      --block-size S      obs: Fisher block size (default 100)\n"
    "      --damp L            obs: Fisher damping, absolute (default 1e-2; hessian --obs,\n"
    "                          which follows WoodFisher, uses blocks of 2000 and 1e-5)\n"
    "      --memory-budget MB  obs: refuse to need more (default 4096)\n"
    "      --layer-damp D      obs-layer: damping relative to the mean diagonal (default 0.01)\n"
    "      --no-compensate     obs, obs-layer: scores only, no update of the kept weights\n"
    "target (exactly one; a fraction of the unpruned model to remove, in (0, 1)):\n"
    "      --target-flops R    multiply-accumulates (alias --target-macs)\n"
    "      --target-params R   parameters\n"
    "      --target-channels R channels of the prunable layers\n"
    "      --uniform           with --target-channels: every layer loses that fraction of its\n"
    "                          own channels (local ranking) instead of a global ranking; its\n"
    "                          kept width rounded to the nearest multiple of --round-to,\n"
    "                          never below what --max-layer-frac keeps\n"
    "      --max-layer-frac F  at most this fraction of a layer's channels (default 0.9)\n"
    "      --round-to N        kept channels a multiple of N where a layer is wider (default 1)\n"
    "      --steps K           reach the target in K steps, re-scoring in between (default 1)\n"
    "      --rank score|per-cost   remove the lowest scores first (default), or the lowest\n"
    "                          scores per MAC (parameter) their removal saves\n"
    "      --bn-recalibrate N  after pruning, re-estimate batchnorm statistics on N training\n"
    "                          images (no weight changes; default 1024, 0: off)\n"
    "fine-tuning (the engine's trainer; the best epoch on the validation split is kept;\n"
    "--lr and --config need --finetune-epochs or --between-epochs):\n"
    "      --finetune-epochs E epochs after pruning (default 0: none)\n"
    "      --between-epochs E  epochs after each intermediate step of --steps K, K >= 2 (default 0)\n"
    "      --lr LR             learning rate (default 0.01, cosine schedule)\n"
    "      --config FILE       a training config whose [data] and [train] sections set the\n"
    "                          fine-tuning (augmentation, validation split, schedule, ...)\n"
    "                          and [data] dataset and dir the data (--dataset and --data\n"
    "                          win); a [model] arch other than MODEL's is an error; [train]\n"
    "                          epochs, seed, threads and output are not used (a warning\n"
    "                          each: --finetune-epochs, --seed, --threads and -o set them)\n"
    "output:\n"
    "  -o, --output FILE       the slimmed model (safetensors; required)\n"
    "      --report FILE       the report, Markdown (.md) or JSON (.json)\n"
    "      --data DIR          dataset directory (default: --config's [data] dir, else the\n"
    "                          model's, else " DEFAULT_DATA_DIR ")\n"
    "      --dataset NAME      fashion-mnist, mnist or cifar10 (default: --config's [data]\n"
    "                          dataset, else the model's)\n"
    "      --seed S            seed of calibration samples, probes and fine-tuning (default 1)\n"
    "      --threads N         OpenMP threads (default: all cores)\n"
    "  -h, --help              this text\n";

#define PCMD "prune"

enum {
    O_METHOD = 256, O_NORMALIZE, O_SAMPLES, O_BATCH, O_PROBES, O_GGN, O_FGRADS, O_FBATCH, O_BLOCK, O_DAMP, O_BUDGET,
    O_LDAMP, O_NOCOMP, O_TFLOPS, O_TPARAMS, O_TCHANNELS, O_MAXFRAC, O_ROUND, O_STEPS, O_FT, O_BETWEEN, O_LR,
    O_CONFIG, O_REPORT, O_DATA, O_DATASET, O_SEED, O_THREADS, O_RANK, O_BNCAL, O_UNIFORM, O_SLICES, O_END
};

// Everything the command was asked to do.
typedef struct {
    const char *model, *output, *report, *config, *data, *dataset;
    CritOpts crit;
    PruneTarget target;
    int n_targets, steps, bn_samples, finetune_epochs, between_epochs, threads;
    double lr;
    bool lr_given, rank_given;
    unsigned long long seed;
    int given[O_END - O_METHOD];  // per long option: where it first came among the options (1-based; 0: absent)
} PruneOpts;

// Sets the one target, or exits if another was given.
static void set_target(PruneOpts *o, TargetKind kind, const char *flag, const char *value) {
    o->target.kind = kind;
    o->target.ratio = parse_fraction(PCMD, flag, value);
    if (o->target.ratio < 1e-6)  // (1 - ratio) rounds to 1: no channel would have to go
        usage_error(PCMD, "%s %s removes nothing: give at least 1e-06", flag, value);
    o->n_targets++;
}

// Parses one option that sets a criterion field; returns false if c is not one.
static bool parse_crit_option(int c, PruneOpts *o) {
    CritOpts *k = &o->crit;
    switch (c) {
    case O_SAMPLES: k->samples = (int)parse_int(PCMD, "--samples", optarg, 1, 1 << 24); return true;
    case O_BATCH: k->batch = (int)parse_int(PCMD, "--batch-size", optarg, 1, 65536); return true;
    case O_PROBES: k->probes = (int)parse_int(PCMD, "--probes", optarg, 2, 100000); return true;
    case O_GGN: k->ggn = true; return true;
    case O_FGRADS: k->fisher.n_grads = (int)parse_int(PCMD, "--fisher-grads", optarg, 1, 1 << 24); return true;
    case O_FBATCH: k->fisher.grad_batch = (int)parse_int(PCMD, "--fisher-batch", optarg, 1, 65536); return true;
    case O_BLOCK: k->fisher.block_size = (size_t)parse_int(PCMD, "--block-size", optarg, 1, 1L << 30); return true;
    case O_DAMP:
        k->fisher.damp = parse_double(PCMD, "--damp", optarg, HP_DAMP_MIN, HP_DAMP_MAX);
        return true;
    case O_BUDGET: k->fisher.budget_mb = parse_double(PCMD, "--memory-budget", optarg, 1, 1e9); return true;
    case O_LDAMP:
        k->damp_rel = parse_double(PCMD, "--layer-damp", optarg, HP_DAMP_MIN, HP_DAMP_MAX);
        return true;
    case O_NOCOMP: k->compensate = false; return true;
    case O_SLICES:
        if (strcmp(optarg, "all") != 0 && strcmp(optarg, "consumers") != 0)
            usage_error(PCMD, "--slices: unknown '%s' (all, consumers)", optarg);
        k->consumers_only = strcmp(optarg, "consumers") == 0;
        return true;
    case O_NORMALIZE: {
        int n = normalize_parse(optarg);
        if (n < 0) usage_error(PCMD, "--normalize: unknown '%s' (auto, mean, max, size, none)", optarg);
        k->normalize = (Normalize)n;
        return true;
    }
    case O_METHOD:
        k->method = criterion_parse(optarg);
        if (k->method == CRIT_COUNT) {
            char names[160];
            criteria_names(names, sizeof names);
            usage_error(PCMD, "--method: unknown '%s' (%s)", optarg, names);
        }
        return true;
    }
    return false;
}

// The options only some criteria use: the option and its key for criterion_option_applies.
static const struct {
    int code;
    const char *flag, *key;
} CRIT_ONLY[] = {
    {O_SLICES, "--slices", "slices"},         {O_GGN, "--ggn", "ggn"},
    {O_PROBES, "--probes", "probes"},         {O_FGRADS, "--fisher-grads", "fisher_grads"},
    {O_FBATCH, "--fisher-batch", "fisher_batch"}, {O_BLOCK, "--block-size", "block_size"},
    {O_DAMP, "--damp", "damp"},               {O_BUDGET, "--memory-budget", "memory_budget"},
    {O_LDAMP, "--layer-damp", "layer_damp"},  {O_NOCOMP, "--no-compensate", "compensate"},
};

// Position of option code among the options given (0: not given).
static int given_at(const PruneOpts *o, int code) { return o->given[code - O_METHOD]; }

// Exits with a usage error naming the first option given (in command-line order) that does not
// apply: one the criterion does not use, --probes with --ggn, --between-epochs without steps
// to go between.
static void check_applicable(const PruneOpts *o) {
    Criterion k = o->crit.method;
    int first = -1, n = (int)(sizeof CRIT_ONLY / sizeof CRIT_ONLY[0]);
    for (int i = 0; i < n; i++) {
        int at = given_at(o, CRIT_ONLY[i].code);
        if (at && !criterion_option_applies(CRIT_ONLY[i].key, k, NULL, 0) &&
            (first < 0 || at < given_at(o, CRIT_ONLY[first].code)))
            first = i;
    }
    if (first >= 0) {
        char users[160], flag[40];
        criterion_option_applies(CRIT_ONLY[first].key, k, users, sizeof users);
        snprintf(flag, sizeof flag, "%s%s", CRIT_ONLY[first].flag, CRIT_ONLY[first].code != O_SLICES ? ""
                                                                   : o->crit.consumers_only ? " consumers" : " all");
        usage_error(PCMD, "%s applies to %s, not %s", flag, users, criterion_name(k));
    }
    if (given_at(o, O_PROBES) && o->crit.ggn)
        usage_error(PCMD, "--probes does not apply with --ggn (the exact Gauss-Newton diagonal has no probes)");
    int ft_opt = given_at(o, O_LR) && (!given_at(o, O_CONFIG) || given_at(o, O_LR) < given_at(o, O_CONFIG)) ? O_LR
                 : given_at(o, O_CONFIG)                                                                  ? O_CONFIG
                                                                                                          : 0;
    if (ft_opt && o->finetune_epochs == 0 && o->between_epochs == 0)
        usage_error(PCMD, "%s applies to fine-tuning (--finetune-epochs E, or --between-epochs E with --steps)",
                    ft_opt == O_LR ? "--lr" : "--config");
    if (given_at(o, O_BETWEEN) && o->steps < 2)
        usage_error(PCMD, "--between-epochs applies between the steps of --steps K, K at least 2 (%s)",
                    given_at(o, O_STEPS) ? "--steps 1 has none" : "one step by default");
}

// Parses the command line into o, or exits.
static void prune_parse(int argc, char **argv, PruneOpts *o) {
    static const struct option opts[] = {
        {"method", 1, 0, O_METHOD}, {"normalize", 1, 0, O_NORMALIZE}, {"slices", 1, 0, O_SLICES},
        {"samples", 1, 0, O_SAMPLES}, {"batch-size", 1, 0, O_BATCH}, {"probes", 1, 0, O_PROBES}, {"ggn", 0, 0, O_GGN},
        {"fisher-grads", 1, 0, O_FGRADS}, {"fisher-batch", 1, 0, O_FBATCH}, {"block-size", 1, 0, O_BLOCK},
        {"damp", 1, 0, O_DAMP}, {"memory-budget", 1, 0, O_BUDGET}, {"layer-damp", 1, 0, O_LDAMP},
        {"no-compensate", 0, 0, O_NOCOMP}, {"target-flops", 1, 0, O_TFLOPS}, {"target-macs", 1, 0, O_TFLOPS},
        {"target-params", 1, 0, O_TPARAMS}, {"target-channels", 1, 0, O_TCHANNELS},
        {"max-layer-frac", 1, 0, O_MAXFRAC}, {"rank", 1, 0, O_RANK}, {"bn-recalibrate", 1, 0, O_BNCAL}, {"uniform", 0, 0, O_UNIFORM}, {"round-to", 1, 0, O_ROUND}, {"steps", 1, 0, O_STEPS},
        {"finetune-epochs", 1, 0, O_FT}, {"between-epochs", 1, 0, O_BETWEEN}, {"lr", 1, 0, O_LR},
        {"config", 1, 0, O_CONFIG}, {"output", 1, 0, 'o'}, {"report", 1, 0, O_REPORT}, {"data", 1, 0, O_DATA},
        {"dataset", 1, 0, O_DATASET}, {"seed", 1, 0, O_SEED}, {"threads", 1, 0, O_THREADS}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int c, pos = 0;
    bool seen[sizeof opts / sizeof opts[0]] = {0};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        option_once(PCMD, ":o:h", opts, seen, c);
        pos++;
        if (c >= O_METHOD && c < O_END && !o->given[c - O_METHOD]) o->given[c - O_METHOD] = pos;
        if (parse_crit_option(c, o)) continue;
        switch (c) {
        case O_TFLOPS: set_target(o, TARGET_MACS, "--target-flops", optarg); break;
        case O_TPARAMS: set_target(o, TARGET_PARAMS, "--target-params", optarg); break;
        case O_TCHANNELS: set_target(o, TARGET_CHANNELS, "--target-channels", optarg); break;
        case O_MAXFRAC:
            o->target.max_layer_frac = parse_fraction(PCMD, "--max-layer-frac", optarg);
            break;
        case O_RANK:
            if (strcmp(optarg, "per-cost") != 0 && strcmp(optarg, "score") != 0)
                usage_error(PCMD, "--rank: unknown '%s' (per-cost, score)", optarg);
            o->target.per_cost = strcmp(optarg, "per-cost") == 0;
            o->rank_given = true;
            break;
        case O_UNIFORM: o->target.uniform = true; break;
        case O_BNCAL: o->bn_samples = (int)parse_int(PCMD, "--bn-recalibrate", optarg, 0, 1 << 24); break;
        case O_ROUND: o->target.round_to = (int)parse_int(PCMD, "--round-to", optarg, 1, 4096); break;
        case O_STEPS: o->steps = (int)parse_int(PCMD, "--steps", optarg, 1, 100); break;
        case O_FT: o->finetune_epochs = (int)parse_int(PCMD, "--finetune-epochs", optarg, 0, 10000); break;
        case O_BETWEEN: o->between_epochs = (int)parse_int(PCMD, "--between-epochs", optarg, 0, 10000); break;
        case O_LR:
            o->lr = parse_double(PCMD, "--lr", optarg, 1e-8, 100);  // a float in training: not 0, not inf
            o->lr_given = true;
            break;
        case O_CONFIG: o->config = optarg; break;
        case 'o': o->output = model_output_option(PCMD, option_form(argv, "-o", "--output"), optarg); break;
        case O_REPORT: o->report = output_option(PCMD, "--report", optarg, "file"); break;
        case O_DATA: o->data = optarg; break;
        case O_DATASET: o->dataset = optarg; break;
        case O_SEED: o->seed = (unsigned long long)parse_int(PCMD, "--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case O_THREADS: o->threads = (int)parse_int(PCMD, "--threads", optarg, 0, HP_MAX_THREADS); break;
        case 'h': fputs(HELP_PRUNE, stdout), check_stdout(), exit(0);
        case ':': usage_error(PCMD, "option '%s' needs a value", argv[optind - 1]);
        default: bad_option(PCMD, argv, opts);
        }
    }
    if (optind >= argc) usage_error(PCMD, "MODEL is required");
    if (optind != argc - 1) usage_error(PCMD, "one MODEL only (unexpected '%s')", argv[optind + 1]);
    o->model = argv[optind];
    if (!given_at(o, O_METHOD)) usage_error(PCMD, "--method NAME is required");
    if (o->n_targets == 0) usage_error(PCMD, "a target is required: --target-flops, --target-params or --target-channels");
    if (o->n_targets > 1) usage_error(PCMD, "give one target only (--target-flops, --target-params or --target-channels)");
    if (!o->output) usage_error(PCMD, "-o SLIM.safetensors is required");
    check_applicable(o);
    if (o->target.uniform && o->target.kind != TARGET_CHANNELS)
        usage_error(PCMD, "--uniform needs --target-channels (the same fraction of every layer's channels)");
    if (o->target.per_cost && o->target.kind == TARGET_CHANNELS)
        usage_error(PCMD, "--rank per-cost applies to --target-flops and --target-params (under --target-channels "
                          "every channel costs one)");
    if (o->report) {
        const char *dot = strrchr(o->report, '.');
        if (!dot || (strcmp(dot, ".md") != 0 && strcmp(dot, ".json") != 0))
            usage_error(PCMD, "--report %s: the name must end in .md or .json", o->report);
    }
    o->crit.seed = o->seed;
}

// Fills o with defaults.
static void prune_defaults(PruneOpts *o) {
    memset(o, 0, sizeof *o);
    o->crit = crit_defaults();
    o->target = (PruneTarget){.kind = TARGET_MACS, .max_layer_frac = 0.9, .round_to = 1};
    o->steps = 1;
    o->bn_samples = 1024;
    o->lr = 0.01;
    o->seed = 1;
}

// ---- hooks ----

// Milestone lines of the job, on stderr (clearing a live line first).
static void on_log(void *user, const char *line) {
    progress_done(user);
    fprintf(stderr, "%s\n", line);
}

// The --config file: what it sets and the lines that set it.
typedef struct {
    const char *path;  // NULL: no --config
    Config cfg;
    ConfigLines lines;
} FtConfig;

// The line of [section] key in the --config file; 0 when there is none or it does not set the key.
static int ft_line(const FtConfig *fc, const char *section, const char *key) {
    return fc->path ? config_line(&fc->lines, section, key) : 0;
}

// The fine-tuning settings: defaults, then the config's [data] and [train] sections, then the
// command line; fc gets the config file (exits on a bad one).
static void finetune_config(const PruneOpts *o, TrainConfig *ft, FtConfig *fc) {
    config_default(&fc->cfg);
    fc->cfg.train = *ft;
    fc->path = o->config;
    HpErr err;
    if (o->config && config_load_lines(&fc->cfg, o->config, &fc->lines, &err) < 0) die("%s", err.msg);
    *ft = fc->cfg.train;
    ft->epochs = o->finetune_epochs;
    if (o->lr_given) ft->lr = (float)o->lr;
    ft->seed = o->seed;
    ft->threads = o->threads;
}

// Exits when the config's [model] section describes another network than the model's (its arch).
static void check_config_model(const FtConfig *fc, const Model *m, const char *model_path) {
    int line = ft_line(fc, "model", "arch");
    if (line && strcmp(fc->cfg.arch, m->arch) != 0)
        die("%s:%d: [model] arch: %s, but %s is a %s", fc->path, line, fc->cfg.arch, model_path, m->arch);
}

// Exits with "CONFIG:LINE: [data] KEY: problem", naming the config key that chose the data: its
// dir when that is in use, else its dataset.
__attribute__((noreturn)) static void config_data_error(const FtConfig *fc, bool dir_from_config, const char *problem) {
    const char *key = dir_from_config ? "dir" : "dataset";
    die("%s:%d: [data] %s: %s", fc->path, ft_line(fc, "data", key), key, problem);
}

// Loads the data prune reads, or exits: --dataset and --data, else the config's [data] dataset
// and dir, else the model's provenance, else fashion-mnist in DEFAULT_DATA_DIR (dataset_pick).
// The config's dir goes with its dataset: with a --dataset other than the config's it is not used
// (*dir_unused is set, for a warning). A failure of data the config chose names its line; the
// model must take the images and have at least their classes.
static void load_prune_data(const PruneOpts *o, const FtConfig *fc, const Model *m, Dataset *train, Dataset *test,
                            bool *dir_unused) {
    const Config *cfg = &fc->cfg;
    int name_line = ft_line(fc, "data", "dataset"), dir_line = ft_line(fc, "data", "dir");
    bool dir_fits = !o->dataset || !name_line || strcmp(o->dataset, cfg->dataset) == 0;
    *dir_unused = dir_line && !o->data && !dir_fits;
    DatasetChoice c = {.name = o->dataset ? o->dataset : name_line ? cfg->dataset : NULL,
                       .dir = o->data ? o->data : dir_line && dir_fits ? cfg->data_dir : NULL};
    bool name_from_config = !o->dataset && name_line, dir_from_config = !o->data && dir_line && dir_fits;
    if (!name_from_config && !dir_from_config) {
        load_model_dataset_or_die(PCMD, m, o->model, c.name, c.dir, train, test, NULL, 0);
        return;
    }
    char on[8300], msg[9000];
    DatasetChoice asked = c;
    DatasetPick pick = dataset_pick(m, &c);
    if (pick == PICK_NEEDS_DIR && name_from_config)
        die("%s:%d: [data] dataset %s: give its directory with [data] dir or --data DIR (the model was trained on %s)",
            fc->path, name_line, c.name, trained_on(&c, on, sizeof on));
    if (pick != PICK_OK) model_dataset(PCMD, m, o->model, &asked);  // exits with its refusal
    HpErr err;
    if (dataset_load(c.name, c.dir, train, test, &err) < 0) {
        snprintf(msg, sizeof msg, "cannot load %s: %s", c.name, err.msg);
        config_data_error(fc, dir_from_config, msg);
    }
    if (m->input.c != test->c || m->input.h != test->h || m->input.w != test->w || m->n_classes < test->n_classes) {
        snprintf(msg, sizeof msg, "%s takes %dx%dx%d inputs and %d classes, %s in %s has %dx%dx%d and %d", o->model,
                 m->input.c, m->input.h, m->input.w, m->n_classes, c.name, c.dir, test->c, test->h, test->w,
                 test->n_classes);
        config_data_error(fc, dir_from_config && !name_from_config, msg);
    }
}

// The [train] keys prune does not take from a config, and the option that sets each instead.
static const struct {
    const char *key, *instead;
} UNUSED_TRAIN_KEYS[] = {
    {"epochs", "--finetune-epochs sets the epochs"},
    {"seed", "--seed sets the seed"},
    {"threads", "--threads sets the threads"},
    {"output", "-o sets the output"},
};

// Warns, one line each in the file's order, of the config keys prune does not use: [train]
// epochs, seed, threads and output, and a [data] dir that went with another dataset than
// --dataset's (dir_unused).
static void warn_unused_keys(const PruneOpts *o, const FtConfig *fc, bool dir_unused) {
    enum { N = sizeof UNUSED_TRAIN_KEYS / sizeof UNUSED_TRAIN_KEYS[0] };
    int line[N + 1];  // the lines of those [train] keys, then of the [data] dir (0: no warning)
    for (int i = 0; i < N; i++) line[i] = ft_line(fc, "train", UNUSED_TRAIN_KEYS[i].key);
    line[N] = dir_unused ? ft_line(fc, "data", "dir") : 0;
    for (int last = 0;;) {
        int k = -1;  // the one on the first line after `last`
        for (int i = 0; i <= N; i++)
            if (line[i] > last && (k < 0 || line[i] < line[k])) k = i;
        if (k < 0) return;
        if (k == N)
            warn("%s:%d: [data] dir is not used by prune: it is the directory of [data] dataset %s, and --dataset %s "
                 "chose another", fc->path, line[k], fc->cfg.dataset, o->dataset);
        else
            warn("%s:%d: [train] %s is not used by prune (%s)", fc->path, line[k], UNUSED_TRAIN_KEYS[k].key,
                 UNUSED_TRAIN_KEYS[k].instead);
        last = line[k];
    }
}

// Exits, before any scoring, when fine-tuning is asked for and the training images left after
// the validation split do not fill one batch (train() would refuse them only after the scoring).
static void check_finetune_batch(const PruneOpts *o, const TrainConfig *ft, const Dataset *train) {
    if (o->finetune_epochs == 0 && o->between_epochs == 0) return;
    int n = train->n - dataset_val_count(train->n, ft->val_split);
    if (n < ft->batch_size)
        die("%s: fine-tuning in batches of %d needs that many training images; the training set has %d%s%s", o->model,
            ft->batch_size, n, n < train->n ? " after the validation split" : "",
            o->config ? " (lower [train] batch_size in --config)" : "");
}

// ---- report ----

// Appends s to b as one word of a POSIX shell command: as it is when no character of it is
// special to the shell, else in single quotes, a ' inside written as '\''.
static void sb_shell_word(StrBuf *b, const char *s) {
    bool plain = *s != '\0';
    for (const char *p = s; *p && plain; p++) plain = isalnum((unsigned char)*p) || strchr("_-./:=,+@%", *p);
    if (plain) {
        sb_printf(b, "%s", s);
        return;
    }
    sb_printf(b, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            sb_printf(b, "'\\''");
        else
            sb_printf(b, "%c", *p);
    }
    sb_printf(b, "'");
}

// The command line as typed: "hprune" and argv in the order given (call it before getopt
// reorders argv), each argument quoted for a POSIX shell where it needs it (malloc'd).
static char *command_line(int argc, char *const *argv) {
    StrBuf b = {0};
    sb_printf(&b, "hprune");
    for (int i = 0; i < argc; i++) {
        sb_printf(&b, " ");
        sb_shell_word(&b, argv[i]);
    }
    HpErr err;
    if (sb_status(&b, &err) < 0) die("%s", err.msg);
    return b.s;
}

// Adds one layer's row (a conv or linear node i of both models) to the JSON array.
static void json_layer(cJSON *layers, const Model *a, const Model *b, int i) {
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "name", a->nodes[i].name);
    cJSON_AddNumberToObject(l, "out_before", a->nodes[i].out_features);
    cJSON_AddNumberToObject(l, "out_after", b->nodes[i].out_features);
    cJSON_AddNumberToObject(l, "params_before", (double)node_params(a, i));
    cJSON_AddNumberToObject(l, "params_after", (double)node_params(b, i));
    cJSON_AddNumberToObject(l, "macs_before", (double)node_macs(a, i));
    cJSON_AddNumberToObject(l, "macs_after", (double)node_macs(b, i));
    cJSON_AddItemToArray(layers, l);
}

// Rounds x to 6 significant decimals for the JSON.
static double r6(double x) { return round(x * 1e6) / 1e6; }

// Adds the settings of the OBS curvature the criterion used: "fisher" for obs, "layer_damp" for
// obs-layer, and for both whether the weight update was applied.
static void json_obs_settings(cJSON *j, const CritOpts *k) {
    if (k->method == CRIT_OBS) {
        cJSON *f = cJSON_AddObjectToObject(j, "fisher");
        cJSON_AddNumberToObject(f, "grads", k->fisher.n_grads);
        cJSON_AddNumberToObject(f, "batch", k->fisher.grad_batch);
        cJSON_AddNumberToObject(f, "block_size", (double)k->fisher.block_size);
        cJSON_AddNumberToObject(f, "damp", k->fisher.damp);
    }
    if (k->method == CRIT_OBS_LAYER) cJSON_AddNumberToObject(j, "layer_damp", k->damp_rel);
    if (criterion_compensates(k->method)) cJSON_AddBoolToObject(j, "compensate", k->compensate);
}

// Builds the report as JSON.
static cJSON *report_json(const PruneOpts *o, const Model *a, const Model *b, const PruneOutcome *r, const char *cmd) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "command", cmd);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", o->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "threads", o->threads);
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "output", o->output);
    cJSON_AddStringToObject(j, "method", criterion_name(o->crit.method));
    cJSON_AddStringToObject(j, "slices", o->crit.consumers_only ? "consumers" : "all");
    cJSON_AddStringToObject(j, "normalize", normalize_name(crit_normalize(&o->crit)));
    cJSON_AddStringToObject(j, "rank", o->target.per_cost ? "per-cost" : "score");
    json_obs_settings(j, &o->crit);
    cJSON_AddStringToObject(j, "target", target_kind_name(o->target.kind));
    cJSON_AddNumberToObject(j, "target_ratio", o->target.ratio);
    cJSON_AddNumberToObject(j, "steps", o->steps);
    cJSON *layers = cJSON_AddArrayToObject(j, "layers");
    for (int i = 0; i < a->n_nodes; i++)
        if (a->nodes[i].op == OP_CONV2D || a->nodes[i].op == OP_LINEAR) json_layer(layers, a, b, i);
    cJSON_AddNumberToObject(j, "params_before", (double)model_param_count(a));
    cJSON_AddNumberToObject(j, "params_after", (double)model_param_count(b));
    cJSON_AddNumberToObject(j, "macs_before", (double)model_macs(a));
    cJSON_AddNumberToObject(j, "macs_after", (double)model_macs(b));
    cJSON_AddNumberToObject(j, "accuracy_original", r6(r->acc_orig));
    cJSON_AddNumberToObject(j, "accuracy_pruned", r6(r->acc_oneshot));
    cJSON_AddNumberToObject(j, "accuracy_recalibrated", r6(r->acc_recal));  // = pruned when bn_samples is 0
    cJSON_AddNumberToObject(j, "bn_samples", r->recal_samples);
    if (r->finetune_epochs > 0) cJSON_AddNumberToObject(j, "accuracy_finetuned", r6(r->acc_final));
    cJSON_AddNumberToObject(j, "finetune_epochs", r->finetune_epochs);
    cJSON_AddNumberToObject(j, "between_epochs", r->between_epochs);
    cJSON_AddNumberToObject(j, "latency_ms_before", r6(r->lat_orig_ms));
    cJSON_AddNumberToObject(j, "latency_ms_after", r6(r->lat_pruned_ms));
    cJSON_AddNumberToObject(j, "images_per_s_before", round(r->ips_orig));
    cJSON_AddNumberToObject(j, "images_per_s_after", round(r->ips_pruned));
    cJSON_AddNumberToObject(j, "speedup", r6(r->speedup));
    cJSON_AddNumberToObject(j, "score_seconds", round(r->score_s * 10) / 10);
    cJSON_AddNumberToObject(j, "finetune_seconds", round(r->finetune_s * 10) / 10);
    cJSON_AddNumberToObject(j, "total_seconds", round(r->total_s * 10) / 10);
    time_t t = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    cJSON_AddStringToObject(j, "date", date);
    return j;
}

// Appends the scoring settings to the Markdown report: slices, the normalisation applied ("(auto)"
// when --normalize auto chose it) and rank, and the OBS curvature.
static void md_settings(StrBuf *t, const PruneOpts *o) {
    const CritOpts *k = &o->crit;
    sb_printf(t, "slices %s, normalize %s%s, rank by %s", k->consumers_only ? "consumers" : "all",
              normalize_name(crit_normalize(k)), k->normalize == NORM_AUTO ? " (auto)" : "",
              o->target.per_cost ? "score per cost" : "score");
    if (k->method == CRIT_OBS)
        sb_printf(t, "; Fisher of %d gradient%s of %d image%s, blocks of %zu, damp %g", k->fisher.n_grads,
                  plural(k->fisher.n_grads), k->fisher.grad_batch, plural(k->fisher.grad_batch), k->fisher.block_size,
                  k->fisher.damp);
    if (k->method == CRIT_OBS_LAYER) sb_printf(t, "; layer damping %g of the mean diagonal", k->damp_rel);
    if (criterion_compensates(k->method)) sb_printf(t, "; weight update %s", k->compensate ? "applied" : "off");
    sb_printf(t, "\n\n");
}

// Appends s to t as a Markdown code span, its fence one backtick longer than any run of
// backticks in s (and padded with spaces when there is one).
static void md_code(StrBuf *t, const char *s) {
    int longest = 0, run = 0;
    for (const char *p = s; *p; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > longest) longest = run;
    }
    for (int k = 0; k <= longest; k++) sb_printf(t, "`");
    sb_printf(t, longest ? " %s " : "%s", s);
    for (int k = 0; k <= longest; k++) sb_printf(t, "`");
}

// How the pruned accuracy was reached, into buf: "one-shot", "in 5 steps" or "in 3 steps, 1
// fine-tuning epoch after each but the last".
static const char *pruned_how(int steps, int between_epochs, char *buf, size_t cap) {
    if (steps <= 1)
        snprintf(buf, cap, "one-shot");
    else if (between_epochs == 0)
        snprintf(buf, cap, "in %d steps", steps);
    else
        snprintf(buf, cap, "in %d steps, %d fine-tuning epoch%s after each but the last", steps, between_epochs,
                 plural(between_epochs));
    return buf;
}

// Builds the report as Markdown text (malloc'd).
static char *report_md(const PruneOpts *o, const Model *a, const Model *b, const PruneOutcome *r, const char *cmd,
                       Outputs *out) {
    StrBuf t = {0};
    sb_printf(&t, "# hprune prune: %s, %s -%.0f%%\n\n", criterion_name(o->crit.method), target_kind_name(o->target.kind),
              100 * o->target.ratio);
    md_code(&t, cmd);
    sb_printf(&t, "\n\nseed %llu, %d step%s, %d thread%s\n\n", o->seed, o->steps, plural(o->steps), o->threads,
              plural(o->threads));
    md_settings(&t, o);
    sb_printf(&t, "| layer | channels | params | MACs |\n|---|---:|---:|---:|\n");
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *na = &a->nodes[i], *nb = &b->nodes[i];
        if (na->op != OP_CONV2D && na->op != OP_LINEAR) continue;
        sb_printf(&t, "| %s | %d → %d | %zu → %zu | %.3fM → %.3fM |\n", na->name, na->out_features,
                  nb->out_features, node_params(a, i), node_params(b, i), node_macs(a, i) / 1e6, node_macs(b, i) / 1e6);
    }
    double pa = (double)model_param_count(a), pb = (double)model_param_count(b);
    double ma = (double)model_macs(a), mb = (double)model_macs(b);
    sb_printf(&t, "| **total** | | %.0f → %.0f (-%.1f%%) | %.3fM → %.3fM (-%.1f%%) |\n\n", pa, pb,
              100 * (1 - pb / pa), ma / 1e6, mb / 1e6, 100 * (1 - mb / ma));
    char how[96];
    sb_printf(&t, "| | test accuracy |\n|---|---:|\n| original | %.2f%% |\n| pruned (%s) | %.2f%% |\n",
              100 * r->acc_orig, pruned_how(o->steps, r->between_epochs, how, sizeof how), 100 * r->acc_oneshot);
    if (r->recal_samples > 0)
        sb_printf(&t, "| pruned, batchnorm statistics re-estimated (%d image%s) | %.2f%% |\n", r->recal_samples,
                  plural(r->recal_samples), 100 * r->acc_recal);
    if (r->finetune_epochs > 0)
        sb_printf(&t, "| fine-tuned (%d epoch%s, best %d) | %.2f%% |\n", r->finetune_epochs,
                  plural(r->finetune_epochs), r->best_epoch,
                  100 * r->acc_final);
    sb_printf(&t,
              "\n| inference (batch 64, median) | ms per batch | images/s |\n|---|---:|---:|\n| original | %.2f | %.0f |\n"
              "| pruned | %.2f | %.0f |\n| speed-up | %.2fx | |\n\n",
              r->lat_orig_ms, r->ips_orig, r->lat_pruned_ms, r->ips_pruned, r->speedup);
    sb_printf(&t, "scoring %.1fs, fine-tuning %.1fs, total %.1fs\n", r->score_s, r->finetune_s, r->total_s);
    HpErr err;
    if (sb_status(&t, &err) < 0) outputs_fail(out, err.msg);
    return t.s;
}

// Writes the report (Markdown or JSON by o->report's extension) to path, its staged file in
// out; on failure removes every staged file and exits.
static void write_report(const PruneOpts *o, const Model *a, const Model *b, const PruneOutcome *r, const char *cmd,
                         const char *path, Outputs *out) {
    char *text;
    if (strcmp(strrchr(o->report, '.'), ".json") == 0) {
        cJSON *j = report_json(o, a, b, r, cmd);
        text = json_text(j, true, out);
        cJSON_Delete(j);
    } else
        text = report_md(o, a, b, r, cmd, out);
    HpErr err;
    int rc = write_file_atomic(path, text, strlen(text), &err);
    free(text);
    if (rc < 0) outputs_fail(out, err.msg);
}

// Prints the summary lines.
static void print_summary(const PruneOpts *o, const Model *a, const Model *b, const PruneOutcome *r) {
    double pa = (double)model_param_count(a), pb = (double)model_param_count(b);
    double ma = (double)model_macs(a), mb = (double)model_macs(b);
    printf("params      %10.0f -> %10.0f  (-%.1f%%)\n", pa, pb, 100 * (1 - pb / pa));
    printf("MACs        %9.3fM -> %9.3fM  (-%.1f%%)\n", ma / 1e6, mb / 1e6, 100 * (1 - mb / ma));
    char how[96];
    printf("accuracy    %9.2f%% -> %9.2f%%  %s", 100 * r->acc_orig, 100 * r->acc_oneshot,
           pruned_how(o->steps, r->between_epochs, how, sizeof how));
    if (r->recal_samples > 0) printf(", %.2f%% with batchnorm re-estimated", 100 * r->acc_recal);
    if (r->finetune_epochs > 0)
        printf(", %.2f%% after %d fine-tuning epoch%s", 100 * r->acc_final, r->finetune_epochs,
               plural(r->finetune_epochs));
    printf("\nlatency     %8.2fms -> %8.2fms  (batch 64, %.2fx faster)\n", r->lat_orig_ms, r->lat_pruned_ms,
           r->speedup);
}

// Writes the slim model and the report (if asked) together, after the summary: both staged,
// the report first, then renamed into place only once both are complete and the summary has
// reached standard output; on failure neither is left, nor a temporary file, and the command
// exits.
static void write_outputs(const PruneOpts *o, const Model *orig, const Model *slim, const PruneOutcome *r,
                          const char *cmd) {
    Outputs out = {0};
    const char *model_tmp = outputs_stage(&out, o->output);
    if (o->report) write_report(o, orig, slim, r, cmd, outputs_stage(&out, o->report), &out);
    HpErr err;
    if (model_save(slim, model_tmp, NULL, &err) < 0) outputs_fail(&out, err.msg);
    print_summary(o, orig, slim, r);
    outputs_finish(&out);
    printf("wrote %s%s%s\n", o->output, o->report ? " and " : "", o->report ? o->report : "");
}

// Records the pruning in the slim model's provenance JSON: its own test accuracy and loss, and
// what was done.
static void set_prune_provenance(const PruneOpts *o, Model *m, const PruneOutcome *r, const char *cmd) {
    cJSON *p = m->provenance ? cJSON_Parse(m->provenance) : NULL;
    if (!p) p = cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(p, "test_accuracy");
    cJSON_AddNumberToObject(p, "test_accuracy", r6(r->acc_final));
    cJSON_DeleteItemFromObjectCaseSensitive(p, "test_loss");
    cJSON_AddNumberToObject(p, "test_loss", r6(r->loss_final));
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "command", cmd);
    cJSON_AddNumberToObject(q, "threads", o->threads);
    cJSON_AddStringToObject(q, "source", o->model);
    cJSON_AddStringToObject(q, "method", criterion_name(o->crit.method));
    cJSON_AddNumberToObject(q, "accuracy_original", r6(r->acc_orig));
    cJSON_DeleteItemFromObjectCaseSensitive(p, "prune");
    cJSON_AddItemToObject(p, "prune", q);
    free(m->provenance);
    m->provenance = json_text(p, false, NULL);
    cJSON_Delete(p);
}

// Exits before any data is read when the job's batch buffers would not fit in memory (the
// unpruned model bounds the pruned ones): obs's Fisher within --memory-budget (fisher_check,
// which says what would fit), the calibration passes of a criterion that reads samples, and the
// fine-tuning (train_bytes with the model, its copy, its momentum and the best epoch kept), each
// checked on its own with the option that lowers it.
static void check_prune_memory(const PruneOpts *o, const PruneJob *job, const Model *m) {
    HpErr err;
    if (job->crit.method == CRIT_OBS && fisher_check(m, &job->crit.fisher, &err) < 0) die("%s: %s", o->model, err.msg);
    if (criterion_reads_samples(job->crit.method))
        check_calibration_memory(o->model, m, job->crit.samples, job->crit.batch, 1, "lower --batch-size");
    if (job->finetune.epochs == 0 && job->between_epochs == 0) return;
    check_finetune_memory(o->model, m, job->finetune.batch_size, 1, "lower [train] batch_size in --config");
}

int cmd_prune(int argc, char **argv) {
    char *cmd = command_line(argc, argv);  // before getopt moves MODEL to the end
    PruneOpts o;
    prune_defaults(&o);
    prune_parse(argc, argv, &o);
    const char *paths[] = {o.output, o.report}, *labels[] = {"-o", "--report"};
    const char *inputs[] = {o.model, o.config}, *what[] = {"the model", "the config"};
    check_spares_inputs(PCMD, paths, labels, 2, inputs, what, 2);
    check_outputs(PCMD, paths, labels, 2);
    o.threads = set_threads(o.threads, 1);
    PruneJob job = prune_job_defaults();
    job.crit = o.crit;
    job.target = o.target;
    job.steps = o.steps;
    job.between_epochs = o.between_epochs;
    job.bn_samples = o.bn_samples;
    FtConfig fc;
    finetune_config(&o, &job.finetune, &fc);  // a bad config fails here, before any work
    Progress pr;
    progress_init(&pr, "scoring");
    TrainUi ui = {.tty = isatty(STDERR_FILENO), .cfg = &job.finetune, .last_test_acc = -1, .last_val_acc = -1};
    job.score_progress = progress_hook;  // a live line on a terminal, a line every 10% in a log
    job.train_progress = train_progress_print;
    job.user = &pr;
    job.train_user = &ui;
    job.log = on_log;

    Model m, orig;
    load_model_or_die(&m, o.model);
    check_config_model(&fc, &m, o.model);
    check_prune_memory(&o, &job, &m);
    Dataset train, test;
    bool dir_unused;
    load_prune_data(&o, &fc, &m, &train, &test, &dir_unused);
    if (given_at(&o, O_SAMPLES) && criterion_reads_samples(o.crit.method) && o.crit.samples > train.n)
        die("%s: --samples %d: the training set has %d images", o.model, o.crit.samples, train.n);
    if (o.crit.method == CRIT_OBS)
        check_fisher_images(o.model, "--fisher-grads", "--fisher-batch", &o.crit.fisher, train.n);
    check_finetune_batch(&o, &job.finetune, &train);
    warn_unused_keys(&o, &fc, dir_unused);  // after the errors, which are one line each
    PruneOutcome r;
    HpErr err;
    if (model_copy(&orig, &m, &err) < 0) die("%s: %s", o.model, err.msg);
    if (prune_run(&job, &m, &train, &test, &r, &err) < 0) die("%s: %s", o.model, err.msg);
    set_prune_provenance(&o, &m, &r, cmd);
    write_outputs(&o, &orig, &m, &r, cmd);
    free(cmd);
    model_free(&orig), model_free(&m);
    dataset_free(&train), dataset_free(&test);
    return 0;
}
