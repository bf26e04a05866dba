// bench.c: training and inference throughput, and the cost of curvature products, of hprune's
// built-in architectures on synthetic, seeded batches. bench/torch_ref.py times the same
// networks in PyTorch the same way and bench/run_bench.sh interleaves the two and prints the
// comparison.
//
// One training step = zero the gradient, forward (MODE_TRAIN), softmax cross-entropy, backward,
// SGD step (momentum 0.9, weight decay 5e-4). One inference step = forward (MODE_INFER: eval-mode
// statistics with batchnorm, residual adds and ReLU folded into the ops before them).
// Each figure is the median over R timed blocks of k steps, k chosen so a block lasts at least
// --min-block seconds. FLOPs: 2 x multiply-accumulates (node_macs) per image for inference;
// a training step counts as 3 x the forward FLOPs (forward + input grad + weight grad).
//
// The curvature section (hessian/hvp.h) times, on one batch of B synthetic samples held in a
// Dataset, in milliseconds per call: the loss gradient (curv_loss_grad: forward + backward),
// an exact Hessian-vector product (curv_apply, CURV_HESSIAN) and a Gauss-Newton product
// (CURV_GGN). curv_apply keeps the forward pass of a single batch between products, so each
// product is timed twice: "cached" (R-forward + backward + R-backward, the forward reused) and
// "incl. forward" (the cache invalidated before every product), the fair match for a gradient.
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/xalloc.h"
#include "hessian/hvp.h"
#include "nn/data.h"
#include "nn/nn.h"
#include "nn/train.h"

#define MAX_ARCHS 8
#define TRAIN_FLOP_FACTOR 3.0  // training FLOPs per forward FLOP (the stated convention)
#define CURV_STREAM 0xC0u      // rng stream of the curvature section's data and direction
#define BN_EVAL 1              // Options.curv_bn bits: running statistics,
#define BN_BATCHSTATS 2        // batch statistics

// Command-line settings.
typedef struct {
    const char *archs[MAX_ARCHS];
    int n_archs;
    int batch, threads, reps, warmup;
    double min_block;  // seconds a timed block lasts at least
    bool json;
    bool train, infer, curv;  // which measurements to run (--only limits them)
    int curv_bn;              // BN_EVAL and/or BN_BATCHSTATS: modes of the curvature section
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
    float loss;  // loss of the last training step (curvature section: of the last gradient)
    // curvature section (curv_prepare): samples 0..batch-1 of data, direction v, product out
    Dataset data;
    int *idx;
    float *v, *out;
    Curvature hess, ggn;
} Bench;

// A throughput figure: images per second over R blocks, and the block size used.
typedef struct {
    double median, min, max;
    int steps_per_block;
} Timing;

// A cost figure: milliseconds per call over R blocks (median, fastest, slowest block).
typedef struct {
    double ms, ms_min, ms_max;
} Cost;

// The curvature section's figures for one BN mode.
typedef struct {
    bool done;
    Cost grad, hv, hv_fwd, gv, gv_fwd;  // hv, gv: forward cached; *_fwd: forward included
    float loss;                          // loss at which the products were taken
    double vhv;                          // v . Hv, a finiteness check
} CurvResult;

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
            "             [--min-block SECONDS] [--seed S] [--only train|infer|curv]... [--curv]\n"
            "             [--curv-bn eval|batchstats|both] [--json]\n"
            "Times training steps (forward MODE_TRAIN + softmax_xent + backward + sgd_step),\n"
            "inference (forward MODE_INFER) and curvature products (gradient, Hv, Gauss-Newton Gv on\n"
            "one batch, hessian/hvp.h) on 1x28x28 inputs, 10 classes. All three run by default;\n"
            "--only picks one (repeat it to pick several), --curv adds the curvature section to an\n"
            "--only selection. --curv-bn: batchnorm mode(s) of the curvature section (default eval;\n"
            "batchstats is skipped for models without batchnorm). Defaults: --arch lenet5 --arch\n"
            "resnet20, batch 128, all cores, 7 reps, 2 warm-up steps, blocks >= 0.3 s.\n");
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
    *o = (Options){.batch = 128,
                   .reps = 7,
                   .warmup = 2,
                   .min_block = 0.3,
                   .train = true,
                   .infer = true,
                   .curv = true,
                   .curv_bn = BN_EVAL,
                   .seed = 1};
    bool only_seen = false, curv_flag = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        bool takes_value = true, ok = true;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            takes_value = false;
        } else if (strcmp(a, "--curv") == 0) {
            curv_flag = true;
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
            if (!only_seen) o->train = o->infer = o->curv = false;
            only_seen = true;
            bool tr = strcmp(v, "train") == 0, in = strcmp(v, "infer") == 0, cu = strcmp(v, "curv") == 0;
            o->train |= tr;
            o->infer |= in;
            o->curv |= cu;
            ok = tr || in || cu;
        } else if (strcmp(a, "--curv-bn") == 0) {
            o->curv_bn = strcmp(v, "eval") == 0         ? BN_EVAL
                         : strcmp(v, "batchstats") == 0 ? BN_BATCHSTATS
                         : strcmp(v, "both") == 0       ? BN_EVAL | BN_BATCHSTATS
                                                        : 0;
            ok = o->curv_bn != 0;
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
    if (curv_flag) o->curv = true;
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
    if (ws_init(&b->ws, &b->m, batch, threads, err) < 0) return -1;
    b->batch = batch;
    size_t in_len = (size_t)batch * shape_numel(b->m.input);
    b->x = xmalloc(in_len * sizeof(float));
    for (size_t i = 0; i < in_len; i++) b->x[i] = rng_normal(&b->rng);
    b->labels = xmalloc((size_t)batch * sizeof(int));
    for (int i = 0; i < batch; i++) b->labels[i] = (int)rng_below(&b->rng, (uint64_t)b->m.n_classes);
    b->dlogits = xmalloc((size_t)batch * (size_t)b->m.n_classes * sizeof(float));
    b->grad = xcalloc(b->m.n_params, sizeof(float));
    b->mom = xcalloc(b->m.n_params, sizeof(float));
    return 0;
}

// Frees everything bench_init and curv_prepare allocated.
static void bench_free(Bench *b) {
    dataset_free(&b->data);
    free(b->idx);
    free(b->v);
    free(b->out);
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
static void infer_step(Bench *b) { model_forward(&b->m, &b->ws, b->x, b->batch, MODE_INFER, NULL); }

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
    double *ips = xmalloc((size_t)o->reps * sizeof(double));
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

// ---- curvature section ----

// True when the model has a batchnorm node (else its two curvature BN modes coincide).
static bool has_batchnorm(const Model *m) {
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].op == OP_BATCHNORM2D) return true;
    return false;
}

// Sets every batchnorm's running statistics to those of one batch-statistics forward pass over
// the curvature batch (momentum 1 for that pass), so eval-mode activations keep a trained-like scale.
static void calibrate_bn(Bench *b) {
    Model *m = &b->m;
    float *saved = xmalloc((size_t)m->n_nodes * sizeof(float));
    for (int i = 0; i < m->n_nodes; i++) {
        saved[i] = m->nodes[i].momentum;
        if (m->nodes[i].op == OP_BATCHNORM2D) m->nodes[i].momentum = 1.0f;
    }
    data_batch(&b->data, b->idx, b->batch, m->norm_mean, m->norm_std, NULL, NULL, b->x, b->labels);
    model_forward(m, &b->ws, b->x, b->batch, MODE_TRAIN, &b->rng);
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].momentum = saved[i];
    free(saved);
}

// Readies the curvature section: freshly initialised parameters (seed), a Dataset of `batch`
// random images and labels (seed, CURV_STREAM), normalisation 0.5/0.25, batchnorm running
// statistics from one batch (calibrate_bn) and a standard normal direction v.
static void curv_prepare(Bench *b, uint64_t seed) {
    Model *m = &b->m;
    rng_seed(&b->rng, seed, 0);
    model_init_params(m, &b->rng);
    Rng r;
    rng_seed(&r, seed, CURV_STREAM);
    HpErr err;
    if (dataset_alloc(&b->data, b->batch, m->input.c, m->input.h, m->input.w, m->n_classes, &err) < 0) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    size_t n_bytes = (size_t)b->batch * shape_numel(m->input);
    for (size_t i = 0; i < n_bytes; i++) b->data.images[i] = (uint8_t)rng_below(&r, 256);
    for (int i = 0; i < b->batch; i++) b->data.labels[i] = (uint8_t)rng_below(&r, (uint64_t)m->n_classes);
    b->idx = xmalloc((size_t)b->batch * sizeof(int));
    for (int i = 0; i < b->batch; i++) b->idx[i] = i;
    for (int c = 0; c < m->input.c; c++) {
        m->norm_mean[c] = 0.5f;
        m->norm_std[c] = 0.25f;
    }
    calibrate_bn(b);
    b->v = xmalloc(m->n_params * sizeof(float));
    b->out = xmalloc(m->n_params * sizeof(float));
    for (size_t j = 0; j < m->n_params; j++) b->v[j] = rng_normal(&r);
}

// One loss gradient over the batch (forward + backward; re-runs the forward every call).
static void grad_step(Bench *b) { b->loss = curv_loss_grad(&b->hess, b->grad); }

// Applies curvature c along b->v into b->out; when fresh, drops its cached forward pass first.
static void curv_step(Bench *b, Curvature *c, bool fresh) {
    HpErr err;
    if (fresh) curv_invalidate(c);
    HP_ASSERT(curv_apply(c, b->v, b->out, &err) == 0);
}

// Hv with the batch's forward pass reused from the previous product.
static void hv_step(Bench *b) { curv_step(b, &b->hess, false); }
// Hv including the forward pass.
static void hv_fwd_step(Bench *b) { curv_step(b, &b->hess, true); }
// Gauss-Newton Gv with the forward pass reused.
static void gv_step(Bench *b) { curv_step(b, &b->ggn, false); }
// Gv including the forward pass.
static void gv_fwd_step(Bench *b) { curv_step(b, &b->ggn, true); }

// Milliseconds per step from an images/s Timing over batches of `batch`.
static Cost cost_of(Timing t, int batch) {
    return (Cost){.ms = 1e3 * batch / t.median, .ms_min = 1e3 * batch / t.max, .ms_max = 1e3 * batch / t.min};
}

// Times gradient, Hv and Gv (each cached and incl. forward) in BN mode `mode`, one Curvature
// (and its workspace) alive at a time; returns 0, or -1 with err set when one cannot be built.
static int curv_measure(Bench *b, Mode mode, const Options *o, CurvResult *r, HpErr *err) {
    memset(r, 0, sizeof *r);
    if (curv_init(&b->hess, &b->m, &b->data, b->idx, b->batch, b->batch, mode, CURV_HESSIAN, err) < 0) return -1;
    r->grad = cost_of(measure(b, grad_step, o), b->batch);
    r->loss = b->loss;
    r->hv = cost_of(measure(b, hv_step, o), b->batch);
    r->hv_fwd = cost_of(measure(b, hv_fwd_step, o), b->batch);
    for (size_t j = 0; j < b->m.n_params; j++) r->vhv += (double)b->v[j] * b->out[j];
    curv_free(&b->hess);
    if (curv_init(&b->ggn, &b->m, &b->data, b->idx, b->batch, b->batch, mode, CURV_GGN, err) < 0) return -1;
    r->gv = cost_of(measure(b, gv_step, o), b->batch);
    r->gv_fwd = cost_of(measure(b, gv_fwd_step, o), b->batch);
    curv_free(&b->ggn);
    r->done = true;
    return 0;
}

// Runs the curvature section in the modes o asks for: r[0] eval, r[1] batch statistics (the
// latter only when the model has batchnorm). Returns 0, or -1 with err set.
static int curv_section(Bench *b, const Options *o, CurvResult r[2], HpErr *err) {
    memset(r, 0, 2 * sizeof *r);
    curv_prepare(b, o->seed);
    if ((o->curv_bn & BN_EVAL) && curv_measure(b, MODE_EVAL, o, &r[0], err) < 0) return -1;
    if ((o->curv_bn & BN_BATCHSTATS) && has_batchnorm(&b->m) && curv_measure(b, MODE_BATCHSTATS, o, &r[1], err) < 0)
        return -1;
    for (int k = 0; k < 2; k++)
        if (r[k].done && !(isfinite(r[k].loss) && isfinite(r[k].vhv)))
            fprintf(stderr, "bench: warning: curvature loss %f, v.Hv %g\n", (double)r[k].loss, r[k].vhv);
    return 0;
}

// Multiply-accumulates of one image's forward pass through the whole graph.
static uint64_t forward_macs(const Model *m) {
    uint64_t macs = 0;
    for (int i = 0; i < m->n_nodes; i++) macs += node_macs(m, i);
    return macs;
}

// Prints a Cost as JSON keys PREFIX NAME_ms, _ms_min, _ms_max (each preceded by a comma).
static void print_cost_json(const char *prefix, const char *name, Cost c) {
    printf(",\"%s%s_ms\":%.3f,\"%s%s_ms_min\":%.3f,\"%s%s_ms_max\":%.3f", prefix, name, c.ms, prefix, name, c.ms_min,
           prefix, name, c.ms_max);
}

// Ratio a / b, or 0 when b is 0.
static double ratio(double a, double b) { return b > 0.0 ? a / b : 0.0; }

// Prints one mode's curvature figures as JSON keys with the given prefix (each preceded by a comma).
static void print_curv_json(const char *prefix, const CurvResult *r) {
    if (!r->done) return;
    print_cost_json(prefix, "grad", r->grad);
    print_cost_json(prefix, "hv", r->hv);
    print_cost_json(prefix, "hv_fwd", r->hv_fwd);
    print_cost_json(prefix, "gv", r->gv);
    print_cost_json(prefix, "gv_fwd", r->gv_fwd);
    printf(",\"%shv_grad_ratio\":%.3f,\"%sgv_grad_ratio\":%.3f,\"%shv_cached_grad_ratio\":%.3f,"
           "\"%sgv_cached_grad_ratio\":%.3f,\"%scurv_loss\":%.5f",
           prefix, ratio(r->hv_fwd.ms, r->grad.ms), prefix, ratio(r->gv_fwd.ms, r->grad.ms), prefix,
           ratio(r->hv.ms, r->grad.ms), prefix, ratio(r->gv.ms, r->grad.ms), prefix, (double)r->loss);
}

// Prints one arch's results as a single-line JSON object (curvature keys of the batch-statistics
// mode carry the prefix "bs_").
static void print_json(const char *arch, const Bench *b, const Options *o, int threads, const Timing *tr,
                       const Timing *in, const CurvResult cr[2]) {
    double fwd_flop = 2.0 * (double)forward_macs(&b->m);
    printf("{\"engine\":\"hprune\",\"arch\":\"%s\",\"batch\":%d,\"threads\":%d,\"reps\":%d,\"params\":%zu,"
           "\"fwd_mflop_per_image\":%.4f,\"train_flop_factor\":%.1f,"
           "\"train_img_s\":%.2f,\"train_img_s_min\":%.2f,\"train_img_s_max\":%.2f,\"train_steps_per_block\":%d,"
           "\"infer_img_s\":%.2f,\"infer_img_s_min\":%.2f,\"infer_img_s_max\":%.2f,\"infer_steps_per_block\":%d,"
           "\"train_gflops\":%.3f,\"infer_gflops\":%.3f,\"final_loss\":%.5f",
           arch, o->batch, threads, o->reps, b->m.n_params, fwd_flop * 1e-6, TRAIN_FLOP_FACTOR, tr->median, tr->min,
           tr->max, tr->steps_per_block, in->median, in->min, in->max, in->steps_per_block,
           TRAIN_FLOP_FACTOR * fwd_flop * tr->median * 1e-9, fwd_flop * in->median * 1e-9, (double)b->loss);
    print_curv_json("", &cr[0]);
    print_curv_json("bs_", &cr[1]);
    printf("}\n");
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

// Prints the curvature table's header.
static void print_curv_header(const Options *o, int threads) {
    printf("\ncurvature products: one batch of %d synthetic samples, %d threads, ms per call, median of %d blocks\n",
           o->batch, threads, o->reps);
    printf("grad = curv_loss_grad (forward + backward); +fwd = product including the forward pass;\n"
           "cached = forward of the batch reused (R-forward + backward + R-backward); ratios use +fwd\n");
    printf("%-10s %-6s %8s %8s %9s %7s %8s %9s %7s\n", "arch", "BN", "grad ms", "Hv+fwd", "Hv cached", "Hv/grad",
           "Gv+fwd", "Gv cached", "Gv/grad");
}

// Prints one curvature table row (nothing when that mode was not run).
static void print_curv_row(const char *arch, const char *bn, const CurvResult *r) {
    if (!r->done) return;
    printf("%-10s %-6s %8.2f %8.2f %9.2f %6.2fx %8.2f %9.2f %6.2fx\n", arch, bn, r->grad.ms, r->hv_fwd.ms, r->hv.ms,
           ratio(r->hv_fwd.ms, r->grad.ms), r->gv_fwd.ms, r->gv.ms, ratio(r->gv_fwd.ms, r->grad.ms));
}

int main(int argc, char **argv) {
    Options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0) return rc > 0 ? 0 : 2;
    int threads = hp_set_threads(o.threads);
    bool throughput = o.train || o.infer;
    if (!o.json && throughput) print_table_header(&o, threads);
    CurvResult cr[MAX_ARCHS][2];
    memset(cr, 0, sizeof cr);
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
        float train_loss = b.loss;
        if (o.curv && curv_section(&b, &o, cr[a], &err) < 0) {
            fprintf(stderr, "bench: %s: %s\n", o.archs[a], err.msg);
            bench_free(&b);
            return 1;
        }
        b.loss = train_loss;
        if (o.json)
            print_json(o.archs[a], &b, &o, threads, &tr, &in, cr[a]);
        else if (throughput)
            print_table_row(o.archs[a], &b, &tr, &in);
        fflush(stdout);
        bench_free(&b);
    }
    if (!o.json && o.curv) {
        print_curv_header(&o, threads);
        for (int a = 0; a < o.n_archs; a++) {
            print_curv_row(o.archs[a], "eval", &cr[a][0]);
            print_curv_row(o.archs[a], "batch", &cr[a][1]);
        }
        printf("goals: Hv <= 3x a gradient, Gv <= 2x\n");
    }
    return 0;
}
