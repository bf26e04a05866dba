// test_oom.c: the library under failing allocations. This binary is linked with
// -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, so every allocation the library's objects make
// passes through the wrappers below, which can make the k-th one fail. A pruning job (the whole
// pipeline: groups, scores, selection, surgery, batchnorm re-estimation, fine-tuning, test and
// latency) is run with k = 0, 1, 2, ... until it completes without reaching k: every run must
// return 0 or -1 with an out-of-memory message, and none may crash. Under `make sanitize`, none
// may leak either.
#include "testutil.h"

#include "prune/pipeline.h"
#include "tests/alloc_wrap.h"

// The fault injector's state, shared with the wrappers (the only way to reach them): while armed,
// allocation number fail_at (counted from 0 by seen) returns NULL.
static struct {
    bool armed;
    long fail_at;
    long seen;
} inject;

// True if this allocation is the one to fail (counts it while armed; safe under OpenMP).
static bool fail_now(void) {
    if (!__atomic_load_n(&inject.armed, __ATOMIC_SEQ_CST)) return false;
    return __atomic_fetch_add(&inject.seen, 1, __ATOMIC_SEQ_CST) == inject.fail_at;
}

void *__wrap_malloc(size_t size) { return fail_now() ? NULL : __real_malloc(size); }
void *__wrap_calloc(size_t count, size_t size) { return fail_now() ? NULL : __real_calloc(count, size); }
void *__wrap_realloc(void *p, size_t size) { return fail_now() ? NULL : __real_realloc(p, size); }

// A dataset of n random images (1, 28, 28) with labels below 10.
static void random_data(Dataset *d, int n, Rng *rng) {
    assert_int_equal(dataset_alloc(d, n, 1, 28, 28, 10, NULL), 0);
    for (size_t i = 0; i < (size_t)n * 28 * 28; i++) d->images[i] = (uint8_t)rng_below(rng, 256);
    for (int i = 0; i < n; i++) d->labels[i] = (uint8_t)rng_below(rng, 10);
}

// Runs a pruning job by `method` on a copy of base with the k-th allocation failing, for every k
// until a run completes without reaching its k; checks each run's outcome.
static void fail_each_allocation(Criterion method) {
    Rng rng;
    rng_seed(&rng, 7, 0);
    Model base;
    assert_int_equal(arch_build(&base, "lenet5", (Shape){1, 28, 28}, 10, NULL), 0);
    model_init_params(&base, &rng);
    base.norm_mean[0] = 0.5f, base.norm_std[0] = 0.25f;  // the one input channel
    Dataset train, test;
    random_data(&train, 48, &rng);
    random_data(&test, 16, &rng);
    PruneJob job = prune_job_defaults();
    job.crit.method = method;
    job.crit.samples = 16;
    job.crit.batch = 8;
    job.bn_samples = 16;
    job.finetune.epochs = 1;
    job.finetune.batch_size = 8;
    job.latency_batch = 4;
    job.latency_reps = 1;
    job.latency_round_s = 0.0;
    long failed_runs = 0;
    for (long k = 0;; k++) {
        Model m;
        assert_int_equal(model_copy(&m, &base, NULL), 0);
        PruneOutcome out;
        HpErr err = {{0}};
        inject.fail_at = k, inject.seen = 0;
        __atomic_store_n(&inject.armed, true, __ATOMIC_SEQ_CST);
        int rc = prune_run(&job, &m, &train, &test, &out, &err);
        __atomic_store_n(&inject.armed, false, __ATOMIC_SEQ_CST);
        model_free(&m);
        if (inject.seen <= k) {  // allocation k was never reached: the job ran whole
            assert_int_equal(rc, 0);
            break;
        }
        if (rc == 0) fail_msg("%s: allocation %ld of %ld failed, yet the job succeeded", criterion_name(method), k,
                              inject.seen);
        if (!strstr(err.msg, "out of memory"))
            fail_msg("%s: allocation %ld failed with the message '%s'", criterion_name(method), k, err.msg);
        failed_runs++;
    }
    print_message("%s: %ld allocations, each failed in turn: -1 and an out-of-memory message each time\n",
                  criterion_name(method), failed_runs);
    assert_true(failed_runs > 50);  // the injector reached the library
    dataset_free(&train);
    dataset_free(&test);
    model_free(&base);
}

// One pruning job's allocations, each failed in turn; *state is the criterion.
static void test_oom(void **state) { fail_each_allocation(*(const Criterion *)*state); }

int main(void) {
    hp_set_threads(2);
    static Criterion methods[] = {CRIT_L1, CRIT_FISHER, CRIT_OBS_LAYER};  // the cases' states
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_oom, &methods[0]),
        cmocka_unit_test_prestate(test_oom, &methods[1]),
        cmocka_unit_test_prestate(test_oom, &methods[2]),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
