// obs_bench.c: time and peak memory of the two OBS curvature builds on a trained model: the
// WoodFisher inverse (fisher_build: N gradients, then the block inverses) and the layer Hessians
// of every conv (groups 1) and linear node (layer_hessians, then layer_obs_scores per node).
//
//   build/bench/obs_bench MODEL [--only fisher|layer] [--data DIR] [--dataset NAME] [--threads T]
//       [--grads N] [--grad-batch B] [--block-size S] [--no-align] [--damp L]
//       [--method auto|recursion|woodbury|direct] [--images M] [--batch B] [--seed S]
//
// Defaults: both parts; fisher_defaults() (N 1000, batch 1, S 2000 layer-aligned, damp 1e-5) with
// no memory budget; 1024 calibration images (the first of a seeded permutation of the training
// set) in batches of 128, damping 1% of the mean diagonal. Peak memory is getrusage's ru_maxrss,
// the process's high-water mark: run one part at a time (--only) for a clean figure of each.
// Prints one line per part, plus fisher_bytes' estimate for the Fisher.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "formats/formats.h"
#include "hessian/layer_obs.h"
#include "hessian/obs.h"
#include "nn/train.h"

// Command-line settings.
typedef struct {
    const char *model, *data, *dataset, *only;
    int threads, images, batch;
    unsigned long long seed;
    FisherOpts fo;
} Options;

// Seconds on a monotonic clock.
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Peak resident set of the process so far, in MiB.
static double peak_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Prints the usage and exits with status 2.
static void usage(const char *msg) {
    fprintf(stderr,
            "obs_bench: %s\nusage: obs_bench MODEL [--only fisher|layer] [--data DIR] [--dataset NAME] [--threads T]\n"
            "       [--grads N] [--grad-batch B] [--block-size S] [--no-align] [--damp L]\n"
            "       [--method auto|recursion|woodbury|direct] [--images M] [--batch B] [--seed S]\n",
            msg);
    exit(2);
}

// The value after option argv[*i], or the usage.
static const char *value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) usage("an option needs a value");
    return argv[++*i];
}

// Parses the command line into o, or exits.
static void parse(int argc, char **argv, Options *o) {
    memset(o, 0, sizeof *o);
    o->fo = fisher_defaults();
    o->fo.budget_mb = 0;
    o->images = 1024;
    o->batch = 128;
    o->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--only") == 0) o->only = value(argc, argv, &i);
        else if (strcmp(a, "--data") == 0) o->data = value(argc, argv, &i);
        else if (strcmp(a, "--dataset") == 0) o->dataset = value(argc, argv, &i);
        else if (strcmp(a, "--threads") == 0) o->threads = atoi(value(argc, argv, &i));
        else if (strcmp(a, "--grads") == 0) o->fo.n_grads = atoi(value(argc, argv, &i));
        else if (strcmp(a, "--grad-batch") == 0) o->fo.grad_batch = atoi(value(argc, argv, &i));
        else if (strcmp(a, "--block-size") == 0) o->fo.block_size = strtoul(value(argc, argv, &i), NULL, 10);
        else if (strcmp(a, "--no-align") == 0) o->fo.align_layers = false;
        else if (strcmp(a, "--damp") == 0) o->fo.damp = atof(value(argc, argv, &i));
        else if (strcmp(a, "--images") == 0) o->images = atoi(value(argc, argv, &i));
        else if (strcmp(a, "--batch") == 0) o->batch = atoi(value(argc, argv, &i));
        else if (strcmp(a, "--seed") == 0) o->seed = strtoull(value(argc, argv, &i), NULL, 10);
        else if (strcmp(a, "--method") == 0) {
            const char *m = value(argc, argv, &i);
            FisherMethod ms[] = {FISHER_AUTO, FISHER_RECURSION, FISHER_WOODBURY, FISHER_DIRECT};
            int k = 0;
            while (k < 4 && strcmp(m, fisher_method_name(ms[k])) != 0) k++;
            if (k == 4) usage("--method: auto, recursion, woodbury or direct");
            o->fo.method = ms[k];
        } else if (a[0] == '-') usage("unknown option");
        else if (!o->model) o->model = a;
        else usage("one MODEL only");
    }
    if (!o->model) usage("MODEL is required");
    if (o->only && strcmp(o->only, "fisher") != 0 && strcmp(o->only, "layer") != 0) usage("--only fisher or layer");
    if (o->images < 1 || o->batch < 1) usage("--images and --batch must be >= 1");
}

// Gradient phase timing: the moment the last gradient finished.
typedef struct {
    double t_grads;
} Phase;

// Records when the gradients are done (progress counts gradients, then block inversions).
static void on_progress(long done, long total, const char *unit, void *user) {
    Phase *p = user;
    bool grads = strcmp(unit, FISHER_UNIT_GRADS) == 0;
    if ((!grads || done >= total) && p->t_grads == 0) p->t_grads = now_s();
}

// Times fisher_build and prints a line.
static int bench_fisher(const Options *o, Model *m, const Dataset *train) {
    HpErr err;
    Rng rng;
    rng_seed(&rng, o->seed, 401);
    Phase ph = {0};
    FisherInv f;
    double est = (double)fisher_bytes(m, &o->fo) / (1024.0 * 1024.0), t0 = now_s();
    if (fisher_build(m, train, &o->fo, &rng, on_progress, &ph, &f, &err) < 0) {
        fprintf(stderr, "obs_bench: %s\n", err.msg);
        return -1;
    }
    double t1 = now_s();
    size_t S = 0;
    for (int b = 0; b < f.n_blocks; b++)
        if (f.start[b + 1] - f.start[b] > S) S = f.start[b + 1] - f.start[b];
    printf("fisher_build: %s, %zu params, N %d x batch %d, %d blocks of <= %zu (%s, %s), damp %g: %.1f s "
           "(gradients %.1f s, blocks %.1f s); estimate %.0f MiB, peak RSS %.0f MiB\n",
           m->arch, m->n_params, o->fo.n_grads, o->fo.grad_batch, f.n_blocks, S,
           o->fo.align_layers ? "layer-aligned" : "fixed", fisher_method_name(o->fo.method), o->fo.damp, t1 - t0,
           ph.t_grads - t0, t1 - ph.t_grads, est, peak_mib());
    fisher_free(&f);
    return 0;
}

// Times layer_hessians over every conv (groups 1) and linear node, then the scores, and prints a line.
static int bench_layers(const Options *o, Model *m, const Dataset *train) {
    HpErr err;
    int *nodes = malloc((size_t)m->n_nodes * sizeof(int)), n_nodes = 0;
    for (int i = 0; i < m->n_nodes; i++)
        if ((m->nodes[i].op == OP_CONV2D && m->nodes[i].groups == 1) || m->nodes[i].op == OP_LINEAR) nodes[n_nodes++] = i;
    int n = o->images < train->n ? o->images : train->n;
    int *perm = malloc((size_t)train->n * sizeof(int));
    for (int i = 0; i < train->n; i++) perm[i] = i;
    Rng rng;
    rng_seed(&rng, o->seed, 402);
    rng_shuffle(&rng, perm, train->n);
    LayerHessian *h = calloc((size_t)n_nodes, sizeof(LayerHessian));
    double t0 = now_s();
    int rc = layer_hessians(m, train, perm, n, o->batch, nodes, n_nodes, h, &err);
    double t1 = now_s(), doubles = 0;
    for (int i = 0; i < n_nodes && rc == 0; i++) {
        const Node *nd = &m->nodes[nodes[i]];
        double *score = malloc((size_t)(h[i].d / h[i].block) * sizeof(double));
        rc = layer_obs_scores(&h[i], m->params + nd->w_off, nd->out_features, h[i].block, 0.01, score, &err);
        doubles += (double)h[i].d * h[i].d;
        free(score);
    }
    double t2 = now_s();
    if (rc < 0) fprintf(stderr, "obs_bench: %s\n", err.msg);
    else
        printf("layer_hessians: %s, %d conv/linear nodes, %d images in batches of %d: %.1f s (H: %.1f MiB), "
               "layer_obs_scores for all: %.2f s; peak RSS %.0f MiB\n",
               m->arch, n_nodes, n, o->batch, t1 - t0, doubles * 8 / (1024.0 * 1024.0), t2 - t1, peak_mib());
    for (int i = 0; i < n_nodes; i++) layer_hessian_free(&h[i]);
    free(h), free(perm), free(nodes);
    return rc;
}

int main(int argc, char **argv) {
    Options o;
    parse(argc, argv, &o);
    hp_set_threads(o.threads);
    HpErr err;
    Model m;
    if (model_load(&m, o.model, NULL, NULL, &err) < 0) {
        fprintf(stderr, "obs_bench: %s\n", err.msg);
        return 1;
    }
    Dataset train, test;
    if (dataset_load(o.dataset ? o.dataset : "fashion-mnist", o.data ? o.data : "/usr/share/datasets/fashion-mnist",
                     &train, &test, &err) < 0) {
        fprintf(stderr, "obs_bench: %s\n", err.msg);
        return 1;
    }
    dataset_free(&test);
    printf("obs_bench: %d threads, baseline RSS %.0f MiB (model and data loaded)\n", omp_get_max_threads(), peak_mib());
    int rc = 0;
    if (!o.only || strcmp(o.only, "fisher") == 0) rc |= bench_fisher(&o, &m, &train);
    if (!o.only || strcmp(o.only, "layer") == 0) rc |= bench_layers(&o, &m, &train);
    dataset_free(&train);
    model_free(&m);
    return rc ? 1 : 0;
}
