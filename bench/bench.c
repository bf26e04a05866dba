// bench.c: training and inference throughput of hprune's built-in architectures on synthetic,
// seeded batches. bench/torch_ref.py times the same networks in PyTorch the same way and
// bench/run_bench.sh interleaves the two and prints the comparison.
//
// One training step = zero the gradient, forward (MODE_TRAIN), softmax cross-entropy, backward,
// SGD step (momentum 0.9, weight decay 5e-4). One inference step = forward (MODE_EVAL).
// Each figure is the median over R timed blocks of k steps, k chosen so a block lasts at least
// --min-block seconds. FLOPs: 2 x multiply-accumulates (node_macs) per image for inference;
// a training step counts as 3 x the forward FLOPs (forward + input grad + weight grad).
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/nn.h"
#include "nn/train.h"

#define MAX_ARCHS 8
#define TRAIN_FLOP_FACTOR 3.0  // training FLOPs per forward FLOP (the stated convention)

// Command-line settings.
typedef struct {
    const char *archs[MAX_ARCHS];
    int n_archs;
    int batch, threads, reps, warmup;
    double min_block;  // seconds a timed block lasts at least
    bool json;
    bool train, infer;  // which measurements to run (--only limits to one)
    uint64_t seed;
} Options;

// Everything one timed step touches: the model, its workspace and a fixed synthetic batch.
typedef struct {
    Model m;
    Workspace ws;
    Rng rng;
    int batch;
    float *x, *dlogits, *grad, *mom;
    int *labels;
    float loss;  // loss of the last training step
} Bench;

// A throughput figure: images per second over R blocks, and the block size used.
typedef struct {
    double median, min, max;
    int steps_per_block;
} Timing;

typedef void (*StepFn)(Bench *b);

// Seconds on a monotonic clock.
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Prints the usage text to f.
static void usage(FILE *f) {
    fprintf(f,
            "usage: bench [--arch NAME]... [--batch B] [--threads N] [--reps R] [--warmup W]\n"
            "             [--min-block SECONDS] [--seed S] [--only train|infer] [--json]\n"
            "Times training steps (forward MODE_TRAIN + softmax_xent + backward + sgd_step) and\n"
            "inference (forward MODE_EVAL) on 1x28x28 inputs, 10 classes. Defaults: --arch lenet5\n"
            "--arch resnet20, batch 128, all cores, 7 reps, 2 warm-up steps, blocks >= 0.3 s.\n");
}

// Parses s as an integer in [lo, hi] into *out; returns false if it is not one.
static bool parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

// Fills o from argv; returns 0, 1 after printing help, or -1 after printing an error.
static int parse_options(int argc, char **argv, Options *o) {
    *o = (Options){.batch = 128, .reps = 7, .warmup = 2, .min_block = 0.3, .train = true, .infer = true, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        bool takes_value = true, ok = true;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            takes_value = false;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        } else if (!v) {
            fprintf(stderr, "bench: %s needs a value (or is unknown)\n", a);
            return -1;
        } else if (strcmp(a, "--arch") == 0) {
            if (o->n_archs == MAX_ARCHS) ok = false;
            else o->archs[o->n_archs++] = v;
        } else if (strcmp(a, "--batch") == 0) {
            ok = parse_int(v, 1, 1 << 16, &n);
            o->batch = (int)n;
        } else if (strcmp(a, "--threads") == 0) {
            ok = parse_int(v, 0, 1024, &n);
            o->threads = (int)n;
        } else if (strcmp(a, "--reps") == 0) {
            ok = parse_int(v, 1, 1000, &n);
            o->reps = (int)n;
        } else if (strcmp(a, "--warmup") == 0) {
            ok = parse_int(v, 0, 1000, &n);
            o->warmup = (int)n;
        } else if (strcmp(a, "--seed") == 0) {
            ok = parse_int(v, 0, 1L << 62, &n);
            o->seed = (uint64_t)n;
        } else if (strcmp(a, "--only") == 0) {
            o->train = strcmp(v, "train") == 0;
            o->infer = strcmp(v, "infer") == 0;
            ok = o->train || o->infer;
        } else if (strcmp(a, "--min-block") == 0) {
            char *end;
            o->min_block = strtod(v, &end);
            ok = end != v && *end == '\0' && o->min_block >= 0.0 && o->min_block <= 60.0;
        } else {
            fprintf(stderr, "bench: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "bench: bad value '%s' for %s\n", v, a);
            return -1;
        }
        if (takes_value) i++;
    }
    if (o->n_archs == 0) {
        o->archs[o->n_archs++] = "lenet5";
        o->archs[o->n_archs++] = "resnet20";
    }
    return 0;
}

// Builds arch for 1x28x28 inputs and 10 classes with a seeded synthetic batch (normal pixels,
// uniform labels); returns 0, or -1 with err set.
static int bench_init(Bench *b, const char *arch, int batch, int threads, uint64_t seed, HpErr *err) {
    memset(b, 0, sizeof *b);
    if (arch_build(&b->m, arch, (Shape){1, 28, 28}, 10, err) < 0) return -1;
    rng_seed(&b->rng, seed, 0);
    model_init_params(&b->m, &b->rng);
    ws_init(&b->ws, &b->m, batch, threads);
    b->batch = batch;
    size_t in_len = (size_t)batch * shape_numel(b->m.input);
    b->x = hp_malloc(in_len * sizeof(float));
    for (size_t i = 0; i < in_len; i++) b->x[i] = rng_normal(&b->rng);
    b->labels = hp_malloc((size_t)batch * sizeof(int));
    for (int i = 0; i < batch; i++) b->labels[i] = (int)rng_below(&b->rng, (uint64_t)b->m.n_classes);
    b->dlogits = hp_malloc((size_t)batch * (size_t)b->m.n_classes * sizeof(float));
    b->grad = hp_calloc(b->m.n_params, sizeof(float));
    b->mom = hp_calloc(b->m.n_params, sizeof(float));
    return 0;
}

// Frees everything bench_init allocated.
static void bench_free(Bench *b) {
    free(b->x);
    free(b->labels);
    free(b->dlogits);
    free(b->grad);
    free(b->mom);
    ws_free(&b->ws);
    model_free(&b->m);
}

// One SGD training step on the synthetic batch (gradient zeroed first, as zero_grad does).
static void train_step(Bench *b) {
    memset(b->grad, 0, b->m.n_params * sizeof(float));
    const float *logits = model_forward(&b->m, &b->ws, b->x, b->batch, MODE_TRAIN, &b->rng);
    b->loss = softmax_xent(logits, b->labels, b->batch, b->m.n_classes, 0.0f, b->dlogits, NULL);
    model_backward(&b->m, &b->ws, b->dlogits, b->grad, NULL);
    sgd_step(b->m.params, b->grad, b->mom, b->m.n_params, 0.01f, 0.9f, 5e-4f, false);
}

// One inference forward pass on the synthetic batch.
static void infer_step(Bench *b) { model_forward(&b->m, &b->ws, b->x, b->batch, MODE_EVAL, NULL); }

// Runs `steps` steps of fn; returns the wall time in seconds.
static double time_steps(Bench *b, StepFn fn, int steps) {
    double t0 = now_s();
    for (int i = 0; i < steps; i++) fn(b);
    return now_s() - t0;
}

// qsort comparator for doubles, ascending.
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median of v[0..n) (n >= 1); sorts v in place.
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Steps per block so a block lasts at least min_block seconds: doubles a trial block until it
// takes an eighth of that, scales, then re-times the block and grows it (at most 3 times) if
// a slow trial step (a cold start, a noisy neighbour) made it too short.
static int calibrate(Bench *b, StepFn fn, double min_block) {
    int k = 1;
    double t = time_steps(b, fn, k);
    while (t < min_block / 8.0 && k < (1 << 20)) {
        k *= 2;
        t = time_steps(b, fn, k);
    }
    for (int tries = 0; tries < 3 && t < min_block; tries++) {
        double per_step = t / k;
        int next = per_step > 0.0 ? (int)ceil(1.05 * min_block / per_step) : k + 1;
        if (next <= k) break;  // already at least min_block long by the estimate
        k = next;
        t = time_steps(b, fn, k);
    }
    return k;
}

// Warms up, calibrates the block size, times reps blocks; returns images/s statistics.
static Timing measure(Bench *b, StepFn fn, const Options *o) {
    time_steps(b, fn, o->warmup);
    Timing tm = {.steps_per_block = calibrate(b, fn, o->min_block)};
    double *ips = hp_malloc((size_t)o->reps * sizeof(double));
    for (int r = 0; r < o->reps; r++) {
        double t = time_steps(b, fn, tm.steps_per_block);
        ips[r] = (double)tm.steps_per_block * b->batch / t;
    }
    tm.median = median(ips, o->reps);
    tm.min = ips[0];
    tm.max = ips[o->reps - 1];
    free(ips);
    return tm;
}

// Multiply-accumulates of one image's forward pass through the whole graph.
static uint64_t forward_macs(const Model *m) {
    uint64_t macs = 0;
    for (int i = 0; i < m->n_nodes; i++) macs += node_macs(m, i);
    return macs;
}

// Prints one arch's results as a single-line JSON object.
static void print_json(const char *arch, const Bench *b, const Options *o, int threads, const Timing *tr,
                       const Timing *in) {
    double fwd_flop = 2.0 * (double)forward_macs(&b->m);
    printf("{\"engine\":\"hprune\",\"arch\":\"%s\",\"batch\":%d,\"threads\":%d,\"reps\":%d,\"params\":%zu,"
           "\"fwd_mflop_per_image\":%.4f,\"train_flop_factor\":%.1f,"
           "\"train_img_s\":%.2f,\"train_img_s_min\":%.2f,\"train_img_s_max\":%.2f,\"train_steps_per_block\":%d,"
           "\"infer_img_s\":%.2f,\"infer_img_s_min\":%.2f,\"infer_img_s_max\":%.2f,\"infer_steps_per_block\":%d,"
           "\"train_gflops\":%.3f,\"infer_gflops\":%.3f,\"final_loss\":%.5f}\n",
           arch, o->batch, threads, o->reps, b->m.n_params, fwd_flop * 1e-6, TRAIN_FLOP_FACTOR, tr->median, tr->min,
           tr->max, tr->steps_per_block, in->median, in->min, in->max, in->steps_per_block,
           TRAIN_FLOP_FACTOR * fwd_flop * tr->median * 1e-9, fwd_flop * in->median * 1e-9, (double)b->loss);
}

// Prints the table header (with the FLOP convention) for human-readable output.
static void print_table_header(const Options *o, int threads) {
    printf("hprune bench: batch %d, %d threads, median of %d blocks (>= %.2f s each)\n", o->batch, threads, o->reps,
           o->min_block);
    printf("FLOPs: 2 x MACs per image for inference; training counted as 3 x forward FLOPs\n");
    printf("%-10s %9s %12s %10s %12s %10s %8s\n", "arch", "MFLOP/img", "train img/s", "train GF/s", "infer img/s",
           "infer GF/s", "ms/step");
}

// Prints v with the given printf format and width, or "-" when v is 0 (not measured).
static void print_cell(const char *fmt, int width, double v) {
    if (v > 0.0)
        printf(fmt, width, v);
    else
        printf(" %*s", width, "-");
}

// Prints one arch's row of the human-readable table (ms/step is the training step).
static void print_table_row(const char *arch, const Bench *b, const Timing *tr, const Timing *in) {
    double fwd_flop = 2.0 * (double)forward_macs(&b->m);
    printf("%-10s %9.2f", arch, fwd_flop * 1e-6);
    print_cell(" %*.1f", 12, tr->median);
    print_cell(" %*.2f", 10, TRAIN_FLOP_FACTOR * fwd_flop * tr->median * 1e-9);
    print_cell(" %*.1f", 12, in->median);
    print_cell(" %*.2f", 10, fwd_flop * in->median * 1e-9);
    print_cell(" %*.2f", 8, tr->median > 0.0 ? 1e3 * b->batch / tr->median : 0.0);
    printf("\n");
}

int main(int argc, char **argv) {
    Options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0) return rc > 0 ? 0 : 2;
    int threads = hp_set_threads(o.threads);
    if (!o.json) print_table_header(&o, threads);
    for (int a = 0; a < o.n_archs; a++) {
        Bench b;
        HpErr err;
        if (bench_init(&b, o.archs[a], o.batch, threads, o.seed, &err) < 0) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
        Timing none = {0}, tr = o.train ? measure(&b, train_step, &o) : none;
        Timing in = o.infer ? measure(&b, infer_step, &o) : none;
        if (!isfinite(b.loss)) fprintf(stderr, "bench: warning: %s training loss is %f\n", o.archs[a], (double)b.loss);
        if (o.json)
            print_json(o.archs[a], &b, &o, threads, &tr, &in);
        else
            print_table_row(o.archs[a], &b, &tr, &in);
        fflush(stdout);
        bench_free(&b);
    }
    return 0;
}
