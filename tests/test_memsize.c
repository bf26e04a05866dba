// test_memsize.c: the byte counts the commands check against the machine's memory before they
// start (ws_bytes, ws_rop_bytes, curv_bytes, train_bytes, model_bytes) are what the library then
// allocates. This binary is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, so every
// allocation the library's objects make passes through the wrappers below, which add up the
// bytes asked for while counting is on.
#include "testutil.h"

#include "hessian/hvp.h"
#include "nn/train.h"
#include "tests/alloc_wrap.h"

// The wrappers' tally (atomic: the library may allocate inside OpenMP regions).
static struct {
    bool on;
    size_t bytes;
} tally;

// Adds bytes to the tally while counting is on.
static void count(size_t bytes) {
    if (__atomic_load_n(&tally.on, __ATOMIC_SEQ_CST)) __atomic_fetch_add(&tally.bytes, bytes, __ATOMIC_SEQ_CST);
}

void *__wrap_malloc(size_t size) { return count(size), __real_malloc(size); }
void *__wrap_calloc(size_t n, size_t size) { return count(n * size), __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t size) { return count(size), __real_realloc(p, size); }

// Starts counting from zero.
static void tally_start(void) {
    tally.bytes = 0;
    __atomic_store_n(&tally.on, true, __ATOMIC_SEQ_CST);
}

// Stops counting; returns the bytes counted.
static size_t tally_stop(void) {
    __atomic_store_n(&tally.on, false, __ATOMIC_SEQ_CST);
    return tally.bytes;
}

// A dataset of n random images (1, 28, 28) with labels below 10.
static void random_data(Dataset *d, int n, Rng *rng) {
    assert_int_equal(dataset_alloc(d, n, 1, 28, 28, 10, NULL), 0);
    for (size_t i = 0; i < (size_t)n * 28 * 28; i++) d->images[i] = (uint8_t)rng_below(rng, 256);
    for (int i = 0; i < n; i++) d->labels[i] = (uint8_t)rng_below(rng, 10);
}

static const char *const ARCHS[] = {"lenet5", "resnet20", "vgg11"};

// ws_init and ws_enable_rop allocate exactly ws_bytes and ws_rop_bytes, for every built-in
// architecture, batch and thread count tried (0: all of OpenMP's).
static void test_workspace_bytes(void **state) {
    (void)state;
    static const int batches[] = {1, 7, 64}, threads[] = {0, 1, 3};
    for (size_t a = 0; a < sizeof ARCHS / sizeof ARCHS[0]; a++) {
        Model m;
        assert_int_equal(arch_build(&m, ARCHS[a], (Shape){1, 28, 28}, 10, NULL), 0);
        for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++)
            for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
                Workspace ws;
                tally_start();
                assert_int_equal(ws_init(&ws, &m, batches[b], threads[t], NULL), 0);
                size_t got = tally_stop();
                assert_int_equal(got, ws_bytes(&m, batches[b], threads[t]));
                tally_start();
                assert_int_equal(ws_enable_rop(&ws, &m, NULL), 0);
                got = tally_stop();
                assert_int_equal(got, ws_rop_bytes(&m, batches[b]));
                ws_free(&ws);
            }
        model_free(&m);
    }
}

// curv_init allocates exactly curv_bytes, its batch capped at the samples as curv_batch says
// (fewer samples than one batch, and several batches).
static void test_curvature_bytes(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 3, 0);
    Dataset d;
    random_data(&d, 40, &rng);
    int idx[40];
    for (int i = 0; i < 40; i++) idx[i] = i;
    static const int cases[][2] = {{40, 128}, {40, 16}, {5, 65536}};  // samples, batch asked
    for (size_t a = 0; a < sizeof ARCHS / sizeof ARCHS[0]; a++) {
        Model m;
        assert_int_equal(arch_build(&m, ARCHS[a], (Shape){1, 28, 28}, 10, NULL), 0);
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            int n = cases[k][0], batch = cases[k][1];
            Curvature c;
            tally_start();
            assert_int_equal(curv_init(&c, &m, &d, idx, n, batch, MODE_EVAL, CURV_HESSIAN, NULL), 0);
            size_t got = tally_stop();
            assert_int_equal(c.batch, curv_batch(n, batch));
            assert_int_equal(got, curv_bytes(&m, n, batch, 0));
            curv_free(&c);
        }
        model_free(&m);
    }
    // the batch the analysis runs, not the one asked: 5 samples in batches of 65536 take 5's room
    Model m;
    assert_int_equal(arch_build(&m, "lenet5", (Shape){1, 28, 28}, 10, NULL), 0);
    assert_true(curv_bytes(&m, 5, 65536, 1) == curv_bytes(&m, 5, 5, 1));
    assert_true(curv_bytes(&m, 5, 65536, 1) < 2 * ws_bytes(&m, 5, 1) + 4 * m.n_params + 4096);
    model_free(&m);
    dataset_free(&d);
}

// A one-epoch training run (evaluated once, on a test set) allocates exactly train_bytes.
static void test_train_bytes(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 5, 0);
    Dataset tr, val = {0}, test;
    random_data(&tr, 48, &rng);
    random_data(&test, 20, &rng);
    for (size_t a = 0; a < sizeof ARCHS / sizeof ARCHS[0]; a++) {
        Model m;
        assert_int_equal(arch_build(&m, ARCHS[a], (Shape){1, 28, 28}, 10, NULL), 0);
        model_init_params(&m, &rng);
        TrainConfig c;
        train_config_default(&c);
        c.epochs = 1;
        c.batch_size = 16;
        c.lr = 0.01f;
        TrainState s = {0};
        s.momentum = xcalloc(m.n_params, sizeof(float));
        HpErr err;
        tally_start();
        int rc = train(&m, &c, &tr, &val, &test, &s, NULL, NULL, NULL, &err);
        size_t got = tally_stop();
        assert_int_equal(rc, 0);
        assert_int_equal(got, train_bytes(&m, c.batch_size, tr.n, 0));
        free(s.momentum);
        model_free(&m);
    }
    dataset_free(&tr);
    dataset_free(&test);
}

// arch_layout sizes a model without allocating its parameters, so a huge input costs nothing
// until model_alloc, which allocates exactly model_bytes.
static void test_layout_then_alloc(void **state) {
    (void)state;
    Model m;
    tally_start();
    assert_int_equal(arch_layout(&m, "lenet5", (Shape){1, 4096, 4096}, 10, NULL), 0);
    size_t got = tally_stop();
    assert_null(m.params);
    assert_true(m.n_params > 2000000000u);  // fc1 alone: 16 x 1021 x 1021 inputs x 120 outputs
    assert_true(got < 65536);               // the graph's nodes only
    assert_true(model_bytes(&m) == (m.n_params + m.n_buffers) * sizeof(float));
    model_free(&m);
    assert_int_equal(arch_layout(&m, "resnet20", (Shape){3, 32, 32}, 10, NULL), 0);
    tally_start();
    assert_int_equal(model_alloc(&m, NULL), 0);
    got = tally_stop();
    assert_int_equal(got, model_bytes(&m));
    Model built;
    assert_int_equal(arch_build(&built, "resnet20", (Shape){3, 32, 32}, 10, NULL), 0);
    assert_int_equal(built.n_params, m.n_params);
    assert_memory_equal(built.params, m.params, m.n_params * sizeof(float));  // batchnorm weights 1, the rest 0
    assert_memory_equal(built.buffers, m.buffers, m.n_buffers * sizeof(float));
    model_free(&built);
    model_free(&m);
}

// A count too large for size_t saturates instead of wrapping to a small one.
static void test_saturation(void **state) {
    (void)state;
    Model m;  // conv1 alone gives 6 x 16380^2 floats an image: over 2^64 bytes for 2e9 images
    assert_int_equal(arch_layout(&m, "lenet5", (Shape){1, 16384, 16384}, 10, NULL), 0);
    assert_true(ws_bytes(&m, 2000000000, 1) == SIZE_MAX);
    assert_true(ws_rop_bytes(&m, 2000000000) == SIZE_MAX);
    assert_true(train_bytes(&m, 2000000000, 0, 1) == SIZE_MAX);
    assert_true(hp_size_mul(SIZE_MAX / 2, 3) == SIZE_MAX);
    assert_true(hp_size_add(SIZE_MAX - 1, 2) == SIZE_MAX);
    model_free(&m);
}

int main(void) {
    hp_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workspace_bytes), cmocka_unit_test(test_curvature_bytes),
        cmocka_unit_test(test_train_bytes),     cmocka_unit_test(test_layout_then_alloc),
        cmocka_unit_test(test_saturation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
