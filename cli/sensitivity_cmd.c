// sensitivity_cmd.c: `hprune sensitivity`: each layer (prunable channel group) pruned alone at a
// range of ratios, test accuracy without fine-tuning, beside each layer's Hessian trace; a CSV,
// a chart and a ranking on stdout.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../formats/csv.h"
#include "../formats/plot.h"
#include "../prune/pipeline.h"
#include "../prune/sensitivity.h"
#include "cli.h"

static const char *const HELP_SENS =
    "usage: hprune sensitivity MODEL [options]\n"
    "\n"
    "Prunes each layer (prunable channel group) of MODEL alone, at each ratio, removing its\n"
    "lowest-scoring channels by --method (obs and obs-layer with their compensating update),\n"
    "and measures test accuracy without fine-tuning. Beside it, each layer's Hessian trace\n"
    "(a Hutchinson estimate over every parameter the layer's channels touch), so one sees\n"
    "whether curvature predicts the sensitive layers. Writes DIR/sensitivity.csv (one row per\n"
    "layer and ratio: group, channels, params, trace, trace_per_param, ratio, removed,\n"
    "accuracy, accuracy_drop) and DIR/sensitivity.png and .svg (accuracy against the ratio,\n"
    "one line per layer), and prints the layers ranked by their mean accuracy drop.\n"
    "\n"
    "options:\n"
    "      --ratios R          a:b:step or a comma list, each in (0, 1) (default 0.1:0.9:0.1)\n"
    "      --method NAME       l1 (default), hap, obs-layer, or any criterion of hprune prune\n"
    "      --samples N         training images for the scores and the trace (default 512)\n"
    "      --batch-size B      batch of those passes (default 128)\n"
    "      --probes P          Hutchinson probes of the trace (and of hap) (default 32)\n"
    "      --test-images N     measure accuracy on the first N test images (default: all)\n"
    "      --data DIR          dataset directory (default: the model's, else " DEFAULT_DATA_DIR ")\n"
    "      --dataset NAME      fashion-mnist, mnist or cifar10 (default: the model's)\n"
    "      --seed S            seed of samples and probes (default 1)\n"
    "      --threads N         OpenMP threads (default: all cores)\n"
    "  -o, --out DIR           output directory, created if missing once the results are\n"
    "                          ready (default: .)\n"
    "  -h, --help              this text\n";

#define NCMD "sensitivity"
#define MAX_RATIOS 1000

typedef struct {
    const char *model, *out, *data, *dataset;
    double ratios[MAX_RATIOS];
    int n_ratios, test_images, threads;
    CritOpts crit;
    bool samples_given;  // --samples given (else the default, capped at the training set)
} SensCli;

// Parses the command line into o, or exits.
static void sens_parse(int argc, char **argv, SensCli *o) {
    enum { O_RATIOS = 256, O_METHOD, O_SAMPLES, O_BATCH, O_PROBES, O_TEST, O_DATA, O_DATASET, O_SEED, O_THREADS };
    static const struct option opts[] = {
        {"ratios", 1, 0, O_RATIOS}, {"method", 1, 0, O_METHOD},     {"samples", 1, 0, O_SAMPLES},
        {"batch-size", 1, 0, O_BATCH}, {"probes", 1, 0, O_PROBES},  {"test-images", 1, 0, O_TEST},
        {"data", 1, 0, O_DATA},     {"dataset", 1, 0, O_DATASET},   {"seed", 1, 0, O_SEED},
        {"threads", 1, 0, O_THREADS}, {"out", 1, 0, 'o'},           {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->crit = crit_defaults();
    o->out = ".";
    HpErr err;
    o->n_ratios = parse_ratios("0.1:0.9:0.1", o->ratios, MAX_RATIOS, &err);
    int c;
    bool seen[sizeof opts / sizeof opts[0]] = {0};
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        option_once(NCMD, ":o:h", opts, seen, c);
        switch (c) {
        case O_RATIOS:
            o->n_ratios = parse_ratios(optarg, o->ratios, MAX_RATIOS, &err);
            if (o->n_ratios < 0) usage_error(NCMD, "--ratios: %s", err.msg);
            break;
        case O_METHOD:
            o->crit.method = criterion_parse(optarg);
            if (o->crit.method == CRIT_COUNT) {
                char names[160];
                criteria_names(names, sizeof names);
                usage_error(NCMD, "--method: unknown '%s' (%s)", optarg, names);
            }
            break;
        case O_SAMPLES:
            o->crit.samples = (int)parse_int(NCMD, "--samples", optarg, 1, 1 << 24);
            o->samples_given = true;
            break;
        case O_BATCH: o->crit.batch = (int)parse_int(NCMD, "--batch-size", optarg, 1, 65536); break;
        case O_PROBES: o->crit.probes = (int)parse_int(NCMD, "--probes", optarg, 2, 100000); break;
        case O_TEST: o->test_images = (int)parse_int(NCMD, "--test-images", optarg, 1, 1 << 30); break;
        case O_DATA: o->data = optarg; break;
        case O_DATASET: o->dataset = optarg; break;
        case O_SEED: o->crit.seed = (uint64_t)parse_int(NCMD, "--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case O_THREADS: o->threads = (int)parse_int(NCMD, "--threads", optarg, 0, HP_MAX_THREADS); break;
        case 'o': o->out = output_option(NCMD, option_form(argv, "-o", "--out"), optarg, "directory"); break;
        case 'h': fputs(HELP_SENS, stdout), check_stdout(), exit(0);
        case ':': usage_error(NCMD, "option '%s' needs a value", argv[optind - 1]);
        default: bad_option(NCMD, argv, opts);
        }
    }
    if (optind >= argc) usage_error(NCMD, "MODEL is required");
    if (optind != argc - 1) usage_error(NCMD, "one MODEL only (unexpected '%s')", argv[optind + 1]);
    o->model = argv[optind];
}

// The files written into the output directory.
typedef struct {
    char csv[4096], png[4096], svg[4096];
} SensPaths;

// Fills p with the output files of dir, or exits if a path would be too long.
static void sens_paths(const char *dir, SensPaths *p) {
    if (snprintf(p->csv, sizeof p->csv, "%s/sensitivity.csv", dir) >= (int)sizeof p->csv) die("%s: path too long", dir);
    snprintf(p->png, sizeof p->png, "%s/sensitivity.png", dir);
    snprintf(p->svg, sizeof p->svg, "%s/sensitivity.svg", dir);
}

// Exits unless the outputs can be written, creating nothing: dir an existing directory where
// the three files can be created (none of them the input model), or a missing one that can be
// created (a file can be in its parent).
static void check_out_dir(const char *dir, const SensPaths *p, const char *model) {
    check_output_dir(dir);
    struct stat st;
    if (stat(dir, &st) != 0) return;  // to be made: it holds nothing yet
    const char *paths[] = {p->csv, p->png, p->svg}, *labels[] = {"the CSV", "the PNG chart", "the SVG chart"};
    check_spares_inputs(NCMD, paths, labels, 3, &model, (const char *const[]){"the model"}, 1);
    check_outputs(NCMD, paths, labels, 3);
}

// Creates the output directory if it is missing (one level), or exits; returns whether it
// made it.
static bool make_out_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) die("%s: not a directory", dir);
        return false;
    }
    if (mkdir(dir, 0777) != 0) die("%s: cannot create: %s", dir, strerror(errno));
    return true;
}

// ---- hooks ----

// A new phase: a fresh progress line labelled with its name.
static void on_phase(void *user, const char *name) {
    Progress *p = user;
    progress_done(p);
    progress_init(p, name);
}

// ---- outputs ----

// Trace per parameter of group g.
static double per_param(const SensGroup *g) { return g->params ? g->trace / (double)g->params : 0; }

// Writes the CSV to path (its staged file in out), or fails the outputs.
static void write_csv(const char *path, const SensResult *r, const double *ratios, Outputs *out) {
    static const char *const header[] = {"group", "channels", "params", "trace", "trace_per_param", "ratio",
                                         "removed", "accuracy", "accuracy_drop"};
    int n = r->n_groups * r->n_ratios, nc = 8;
    double *rows = outputs_alloc(out, (size_t)n * (size_t)nc, sizeof(double), false);
    const char **labels = outputs_alloc(out, (size_t)n, sizeof(char *), false);
    for (int g = 0, k = 0; g < r->n_groups; g++)
        for (int i = 0; i < r->n_ratios; i++, k++) {
            const SensGroup *s = &r->groups[g];
            labels[k] = s->name;
            double acc = round(s->acc[i] * 1e6) / 1e6, drop = round((r->acc_orig - s->acc[i]) * 1e6) / 1e6;
            double row[8] = {s->channels, (double)s->params, s->trace, per_param(s),
                             ratios[i],   s->removed[i],     acc,      drop};
            memcpy(rows + (size_t)k * nc, row, sizeof row);
        }
    HpErr err;
    int rc = csv_write_labeled(path, header, nc, labels, rows, n, &err);
    free(labels), free(rows);
    if (rc < 0) outputs_fail(out, err.msg);
}

// Writes the chart to png and svg (staged files in out): accuracy against the ratio, one line
// per group, from the unpruned model at ratio 0. Fails the outputs on error.
static void write_chart(const char *png, const char *svg, const char *model, const SensResult *r, const double *ratios,
                        Outputs *out) {
    int np = r->n_ratios + 1;
    double *xy = outputs_alloc(out, (size_t)r->n_groups * 2 * (size_t)np, sizeof(double), false);
    PlotSeries *s = outputs_alloc(out, (size_t)r->n_groups, sizeof *s, true);
    for (int g = 0; g < r->n_groups; g++) {
        double *x = xy + (size_t)g * 2 * np, *y = x + np;
        x[0] = 0, y[0] = 100 * r->acc_orig;
        for (int i = 0; i < r->n_ratios; i++) x[i + 1] = 100 * ratios[i], y[i + 1] = 100 * r->groups[g].acc[i];
        s[g] = (PlotSeries){r->groups[g].name, x, y, (size_t)np};
    }
    const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    char title[160];
    snprintf(title, sizeof title, "sensitivity of each layer: %.100s", base);
    PlotOpts po = {.markers = r->n_ratios <= 20};
    HpErr err;
    const char *xl = "channels of the layer removed (%)", *yl = "test accuracy (%)";
    int rc = plot_lines(png, title, xl, yl, s, r->n_groups, &po, &err);
    if (rc == 0) rc = plot_svg_lines(svg, title, xl, yl, s, r->n_groups, &po, &err);
    free(s), free(xy);
    if (rc < 0) outputs_fail(out, err.msg);
}

// Prints the groups ranked by mean accuracy drop, with their traces and trace ranks, and the
// rank correlation of the two; out of memory, fails out (its staged files).
static void print_ranking(const SensCli *o, const SensResult *r, int n_test, Outputs *out) {
    int n = r->n_groups;
    double *drop = outputs_alloc(out, (size_t)n, sizeof(double), false);
    double *worst = outputs_alloc(out, (size_t)n, sizeof(double), false);
    double *tpp = outputs_alloc(out, (size_t)n, sizeof(double), false);
    int *order = outputs_alloc(out, (size_t)n, sizeof(int), false);
    int *trank = outputs_alloc(out, (size_t)n, sizeof(int), false);
    for (int g = 0; g < n; g++) sens_drops(r, g, &drop[g], &worst[g]), tpp[g] = per_param(&r->groups[g]), order[g] = g;
    for (int g = 0; g < n; g++) {  // rank by drop (descending), and each group's trace rank
        trank[g] = 1;
        for (int h = 0; h < n; h++) trank[g] += tpp[h] > tpp[g] || (tpp[h] == tpp[g] && h < g);
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && drop[order[j]] > drop[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    printf("%s: %s, %d ratio%s from %g to %g, %d test image%s, accuracy %.2f%% unpruned; trace from %d probes\n",
           o->model, criterion_name(o->crit.method), r->n_ratios, plural(r->n_ratios), o->ratios[0],
           o->ratios[r->n_ratios - 1], n_test, plural(n_test), 100 * r->acc_orig, r->probes);
    printf("%-4s %-24s %8s %10s %10s %13s %10s\n", "rank", "layer", "channels", "mean drop", "max drop",
           "trace/param", "trace rank");
    for (int i = 0; i < n; i++) {
        int g = order[i];
        printf("%-4d %-24s %8d %9.2f%% %9.2f%% %13.4g %10d\n", i + 1, r->groups[g].name, r->groups[g].channels,
               100 * drop[g], 100 * worst[g], tpp[g], trank[g]);
    }
    double rho;
    HpErr err;
    if (spearman(tpp, drop, n, &rho, &err) < 0) outputs_fail(out, err.msg);
    if (isfinite(rho))
        printf("Spearman rank correlation of trace per parameter and mean drop: %+.2f (1: the trace ranks the layers "
               "as pruning does)\n", rho);
    free(trank), free(order), free(tpp), free(worst), free(drop);
}

// Creates the output directory if needed, writes the CSV and the chart, prints the ranking
// and renames them all into place together once all are complete and the ranking reached
// standard output; or exits leaving none of them (nor the directory, if it made it).
static void write_outputs(const SensCli *o, const SensPaths *p, const SensResult *r, int n_test) {
    Outputs out = {0};
    if (make_out_dir(o->out)) out.made_dir = o->out;
    const char *csv = outputs_stage(&out, p->csv), *png = outputs_stage(&out, p->png), *svg = outputs_stage(&out, p->svg);
    write_csv(csv, r, o->ratios, &out);
    write_chart(png, svg, o->model, r, o->ratios, &out);
    print_ranking(o, r, n_test, &out);
    outputs_finish(&out);
    printf("wrote %s and %s (.svg)\n", p->csv, p->png);
}


int cmd_sensitivity(int argc, char **argv) {
    SensCli o;
    sens_parse(argc, argv, &o);
    SensPaths paths;
    sens_paths(o.out, &paths);
    check_out_dir(o.out, &paths, o.model);  // the directory is made only when there is something to write
    set_threads(o.threads, 1);
    Model m;
    load_model_or_die(&m, o.model);
    Progress pr;
    SensOpts so = {.crit = o.crit, .ratios = o.ratios, .n_ratios = o.n_ratios, .phase = on_phase,
                   .progress = progress_hook, .user = &pr};
    // a criterion the model cannot use (bn without batchnorm), obs's Fisher within its budget and
    // the trace's passes, before any data
    HpErr err;
    if (sensitivity_check(&so, &m, &err) < 0) die("%s: %s", o.model, err.msg);
    check_calibration_memory(o.model, &m, o.crit.samples, o.crit.batch, 1, "lower --batch-size");
    Dataset train, test;
    load_model_dataset_or_die(NCMD, &m, o.model, o.dataset, o.data, &train, &test, NULL, 0);
    if (o.test_images > test.n) die("%s: asked for %d test images, the test set has %d", o.model, o.test_images, test.n);
    if (o.samples_given && criterion_reads_samples(o.crit.method) && o.crit.samples > train.n)
        die("%s: --samples %d: the training set has %d images", o.model, o.crit.samples, train.n);
    // sensitivity has no options for its Fisher: the message names prune's defaults instead
    if (o.crit.method == CRIT_OBS && fisher_images(&o.crit.fisher) > train.n)
        die("%s: --method obs needs %ld training images for its Fisher (%d gradients of %d image%s, prune's "
            "defaults), the training set has %d", o.model, fisher_images(&o.crit.fisher), o.crit.fisher.n_grads,
            o.crit.fisher.grad_batch, plural(o.crit.fisher.grad_batch), train.n);
    if (o.test_images && o.test_images < test.n) {
        Dataset head;
        if (dataset_head(&test, o.test_images, &head, &err) < 0) die("%s", err.msg);
        dataset_free(&test);
        test = head;
    }
    progress_init(&pr, "sensitivity");
    so.crit.data = &train;
    SensResult r;
    if (sensitivity_run(&so, &m, &test, &r, &err) < 0) die("%s: %s", o.model, err.msg);
    progress_done(&pr);
    write_outputs(&o, &paths, &r, test.n);
    sensresult_free(&r);
    model_free(&m);
    dataset_free(&train), dataset_free(&test);
    return 0;
}
