// latency_compare.c: inference time of an original model against its pruned versions, measured
// interleaved in one run (so that a shared machine's load falls on all of them alike):
// R rounds, each timing every model once (median of 5 eval-mode forward passes of a batch),
// then the median over rounds per model and its speed-up over the first.
//
//   build/bench/latency_compare ORIGINAL PRUNED... [--batch B] [--rounds R] [--threads T]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/formats.h"
#include "nn/train.h"
#include "prune/pipeline.h"

#define MAX_MODELS 16

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median of n values (sorts them).
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    const char *paths[MAX_MODELS];
    int n = 0, batch = 64, rounds = 7, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) batch = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (n < MAX_MODELS) paths[n++] = argv[i];
    }
    if (n < 2 || batch < 1 || rounds < 1) {
        fprintf(stderr, "usage: latency_compare ORIGINAL PRUNED... [--batch B] [--rounds R] [--threads T]\n");
        return 2;
    }
    threads = hp_set_threads(threads);
    Model m[MAX_MODELS];
    HpErr err;
    for (int k = 0; k < n; k++)
        if (model_load(&m[k], paths[k], NULL, NULL, &err) < 0) {
            fprintf(stderr, "latency_compare: %s\n", err.msg);
            return 1;
        }
    Dataset train, test;
    if (dataset_load("fashion-mnist", "/usr/share/datasets/fashion-mnist", &train, &test, &err) < 0) {
        fprintf(stderr, "latency_compare: %s\n", err.msg);
        return 1;
    }
    double *t = malloc((size_t)n * (size_t)rounds * sizeof(double)), ips;
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < n; k++) t[k * rounds + r] = model_latency(&m[k], &test, batch, 5, &ips);
    double base = median(t, rounds);
    printf("inference, batch %d, %d threads, median of %d interleaved rounds (each the median of 5 passes):\n", batch,
           threads, rounds);
    for (int k = 0; k < n; k++) {
        double med = k ? median(t + k * rounds, rounds) : base;
        printf("  %-44s %8.2f ms  %8.0f img/s  %7.3fM MACs  %5.2fx\n", paths[k], med, batch / med * 1e3,
               (double)model_macs(&m[k]) / 1e6, base / med);
    }
    free(t);
    for (int k = 0; k < n; k++) model_free(&m[k]);
    dataset_free(&train), dataset_free(&test);
    return 0;
}
