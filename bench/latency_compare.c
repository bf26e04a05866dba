// latency_compare.c: inference time of an original model against its pruned versions, measured
// interleaved in one run (so that a shared machine's load falls on all of them alike):
// R rounds, each timing every model once (median of 5 eval-mode forward passes of a batch),
// then per model the median time over the rounds, and its speed-up over the first model: the
// median over the rounds of the round's ratio, with their range (a slow spell of the machine
// falls on one round's models, close together, more than on the whole run's medians).
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
    int n = 0, batch = 64, rounds = 11, threads = 0;
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
        for (int k = 0; k < n; k++)
            if (model_latency(&m[k], &test, batch, 5, 0.0, &t[k * rounds + r], &ips, &err) < 0) {
                fprintf(stderr, "latency_compare: %s\n", err.msg);
                return 1;
            }
    printf("inference, batch %d, %d threads, median of %d interleaved rounds (each the median of 5 passes);\n"
           "speed-up: the median of the rounds' ratios to the first model (their range)\n",
           batch, threads, rounds);
    double *ratio = malloc((size_t)rounds * sizeof(double)), *first = malloc((size_t)rounds * sizeof(double));
    memcpy(first, t, (size_t)rounds * sizeof(double));  // the first model's time in each round
    for (int k = 0; k < n; k++) {
        for (int r = 0; r < rounds; r++) ratio[r] = first[r] / t[k * rounds + r];
        const double speedup = median(ratio, rounds), lo = ratio[0], hi = ratio[rounds - 1];  // median sorts
        const double med = median(t + k * rounds, rounds);
        printf("  %-44s %8.2f ms  %8.0f img/s  %7.3fM MACs  %5.2fx (%.2f..%.2f)\n", paths[k], med, batch / med * 1e3,
               (double)model_macs(&m[k]) / 1e6, speedup, lo, hi);
    }
    free(ratio);
    free(first);
    free(t);
    for (int k = 0; k < n; k++) model_free(&m[k]);
    dataset_free(&train), dataset_free(&test);
    return 0;
}
