// testutil.h: shared helpers for the cmocka tests (fixtures are made by the tests themselves).
#ifndef HP_TESTUTIL_H
#define HP_TESTUTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/xalloc.h"
#include "formats/formats.h"
#include "nn/nn.h"
#include "nn/rng.h"
#include "prune/prune.h"

#ifdef __SANITIZE_ADDRESS__
// AddressSanitizer aborts on an allocation it cannot serve unless told to return NULL, as
// malloc does: the out-of-memory tests check what the library does then.
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
#endif

// Fills a[0..n) with uniform values in [lo, hi).
static inline void tu_fill_uniform(float *a, size_t n, float lo, float hi, Rng *rng) {
    for (size_t i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng_uniform(rng);
}

// Returns ||a - b|| / max(||b||, tiny), accumulated in double.
static inline double tu_rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

// Makes a fresh temporary directory for a test's files; writes its path into buf.
static inline void tu_tmpdir(char *buf, size_t cap) {
    snprintf(buf, cap, "/tmp/hprune-test-XXXXXX");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        abort();
    }
}

// Writes len bytes to path (test fixture files); aborts on failure.
static inline void tu_write(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

// A small net: input 1x8x8 -> conv1 (4, 3x3) -> bn1 -> relu -> conv2 (6, 3x3) -> bn2 -> relu
// -> global pool -> fc (3). Two prunable groups: conv1 (4 channels) and conv2 (6). Without
// with_bn, the batchnorms are left out and conv2 has a bias.
static inline void tu_small_net(Model *m, Rng *rng, bool with_bn) {
    HpErr err;
    model_init(m, (Shape){1, 8, 8}, 3);
    int x = mb_input(m, &err);
    x = mb_conv(m, "conv1", x, 4, 3, 1, 1, 1, true, &err);
    if (with_bn) x = mb_bn(m, "bn1", x, &err);
    x = mb_relu(m, "relu1", x, &err);
    x = mb_conv(m, "conv2", x, 6, 3, 1, 1, 1, !with_bn, &err);
    if (with_bn) x = mb_bn(m, "bn2", x, &err);
    x = mb_relu(m, "relu2", x, &err);
    x = mb_gap(m, "pool", x, &err);
    x = mb_linear(m, "fc", x, 3, true, &err);
    assert_true(x > 0);
    assert_int_equal(model_finalize(m, &err), 0);
    model_init_params(m, rng);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f * rng_normal(rng);  // non-trivial BN and biases
    for (int i = 0; i < m->n_nodes; i++) {  // running statistics that keep every channel alive
        const Node *nd = &m->nodes[i];
        if (nd->op != OP_BATCHNORM2D) continue;
        for (int c = 0; c < nd->out.c; c++) {
            m->buffers[nd->mean_off + (size_t)c] = 0.1f * rng_normal(rng);
            m->buffers[nd->var_off + (size_t)c] = 0.5f + 0.5f * rng_uniform(rng);
        }
    }
}

// Returns the number of entries of dir other than "." and ".." (-1 if it cannot be read).
static inline int tu_count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

// Removes a directory tree made by tu_tmpdir.
static inline void tu_rmtree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

// Fails the test, printing err's message, if a library call returned an error (rc < 0: builder
// calls return node ids).
static inline void tu_expect_ok(int rc, const HpErr *err) {
    if (rc < 0) fail_msg("unexpected error: %s", err->msg);
}

// Node id of the node called name in m; fails the test if there is none.
static inline int tu_node_id(const Model *m, const char *name) {
    for (int i = 0; i < m->n_nodes; i++)
        if (strcmp(m->nodes[i].name, name) == 0) return i;
    fail_msg("no node %s", name);
    return -1;
}

// Eval-mode logits of m on the N inputs x (already normalised), computed with `threads` threads
// (as ws_init takes them), into a malloc'd N x n_classes array.
static inline float *tu_logits(Model *m, const float *x, int N, int threads) {
    Workspace ws;
    assert_int_equal(ws_init(&ws, m, N, threads, NULL), 0);
    const float *z = model_forward(m, &ws, x, N, MODE_EVAL, NULL);
    float *out = xmalloc((size_t)N * (size_t)m->n_classes * sizeof(float));
    memcpy(out, z, (size_t)N * (size_t)m->n_classes * sizeof(float));
    ws_free(&ws);
    return out;
}

// Saves m to a temporary file, loads it back (the loader validates the graph and the tensors)
// and asserts the same parameter and node counts, MACs, input normalisation and eval-mode
// logits on the N inputs x.
static inline void tu_expect_round_trip(Model *m, const float *x, int N) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    HpErr err = {{0}};
    tu_expect_ok(model_save(m, path, NULL, &err), &err);
    Model back;
    tu_expect_ok(model_load(&back, path, NULL, NULL, &err), &err);
    assert_int_equal(back.n_params, m->n_params);
    assert_int_equal(back.n_nodes, m->n_nodes);
    assert_int_equal(model_macs(&back), model_macs(m));
    assert_memory_equal(back.norm_mean, m->norm_mean, sizeof m->norm_mean);
    assert_memory_equal(back.norm_std, m->norm_std, sizeof m->norm_std);
    float *za = tu_logits(m, x, N, 0), *zb = tu_logits(&back, x, N, 0);
    assert_memory_equal(za, zb, (size_t)N * (size_t)m->n_classes * sizeof(float));
    free(za), free(zb);
    model_free(&back);
    tu_rmtree(dir);
}

#endif
