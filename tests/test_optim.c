// test_optim.c: SGD update (PyTorch semantics) and learning-rate schedules (nn/optim.c).
#include "testutil.h"

#include "nn/train.h"

#define TOL 1e-6

// Runs three sgd_step calls on one weight (start 1.0, constant gradient 0.5, lr 0.1) and
// checks the weight after each against values worked out by hand.
static void run_three(float momentum, float wd, bool nesterov, const double want[3]) {
    float w = 1.0f, g = 0.5f, buf = 0.0f;
    for (int s = 0; s < 3; s++) {
        sgd_step(&w, &g, &buf, 1, 0.1f, momentum, wd, nesterov);
        assert_float_equal(w, want[s], TOL);
    }
}

static void test_sgd_plain(void **state) {
    (void)state;
    // w -= 0.1 * 0.5 each step.
    static const double want[3] = {0.95, 0.90, 0.85};
    run_three(0.0f, 0.0f, false, want);
    // Without momentum the buffer is not used and may be NULL.
    float w = 1.0f, g = 0.5f;
    sgd_step(&w, &g, NULL, 1, 0.1f, 0.0f, 0.0f, false);
    assert_float_equal(w, 0.95, TOL);
}

static void test_sgd_momentum(void **state) {
    (void)state;
    // buf: 0.5, 0.95, 1.355; w: 1 - 0.05 = 0.95, 0.95 - 0.095 = 0.855, 0.855 - 0.1355 = 0.7195.
    static const double want[3] = {0.95, 0.855, 0.7195};
    run_three(0.9f, 0.0f, false, want);
}

static void test_sgd_nesterov(void **state) {
    (void)state;
    // buf: 0.5, 0.95, 1.355; step d + 0.9 buf: 0.95, 1.355, 1.7195;
    // w: 0.905, 0.7695, 0.59755.
    static const double want[3] = {0.905, 0.7695, 0.59755};
    run_three(0.9f, 0.0f, true, want);
}

static void test_sgd_weight_decay(void **state) {
    (void)state;
    // No momentum, wd 0.1: d = 0.5 + 0.1 w: 0.6, 0.594, 0.58806; w: 0.94, 0.8806, 0.821794.
    static const double plain[3] = {0.94, 0.8806, 0.821794};
    run_three(0.0f, 0.1f, false, plain);
    // Momentum 0.9: d 0.6, 0.594, 0.58266; buf 0.6, 1.134, 1.60326; w 0.94, 0.8266, 0.666274.
    static const double heavy[3] = {0.94, 0.8266, 0.666274};
    run_three(0.9f, 0.1f, false, heavy);
    // Nesterov: d 0.6, 0.5886, 0.5725566; buf 0.6, 1.1286, 1.5882966;
    // step d + 0.9 buf 1.14, 1.60434, 2.0020235; w 0.886, 0.725566, 0.5253636.
    static const double nest[3] = {0.886, 0.725566, 0.5253636};
    run_three(0.9f, 0.1f, true, nest);
}

// The vector form (odd length, so the vector loop has a tail) against a reference loop in
// double, over several steps, for each variant.
static void test_sgd_vector(void **state) {
    (void)state;
    enum { N = 37, STEPS = 4 };
    Rng rng;
    rng_seed(&rng, 7, 0);
    for (int variant = 0; variant < 3; variant++) {
        float m = variant == 0 ? 0.0f : 0.9f, wd = 5e-4f, lr = 0.05f;
        bool nest = variant == 2;
        float w[N], g[N], buf[N] = {0};
        double rw[N], rb[N] = {0};
        tu_fill_uniform(w, N, -1, 1, &rng);
        for (int i = 0; i < N; i++) rw[i] = w[i];
        for (int s = 0; s < STEPS; s++) {
            tu_fill_uniform(g, N, -1, 1, &rng);
            sgd_step(w, g, buf, N, lr, m, wd, nest);
            for (int i = 0; i < N; i++) {
                double d = g[i] + (double)wd * rw[i];
                if (m != 0) {
                    rb[i] = (double)m * rb[i] + d;
                    d = nest ? d + (double)m * rb[i] : rb[i];
                }
                rw[i] -= (double)lr * d;
            }
        }
        for (int i = 0; i < N; i++) assert_float_equal(w[i], rw[i], 1e-5);
    }
}

static void test_lr_constant_and_step(void **state) {
    (void)state;
    TrainConfig c;
    train_config_default(&c);
    c.schedule = SCHED_CONSTANT;
    assert_float_equal(lr_at(&c, 0.0), 0.1, 1e-7);
    assert_float_equal(lr_at(&c, 9.99), 0.1, 1e-7);

    c.schedule = SCHED_STEP;
    c.milestones[0] = 3;
    c.milestones[1] = 6;
    c.n_milestones = 2;
    c.gamma = 0.1f;
    assert_float_equal(lr_at(&c, 0.0), 0.1, 1e-7);
    assert_float_equal(lr_at(&c, 2.99), 0.1, 1e-7);
    assert_float_equal(lr_at(&c, 3.0), 0.01, 1e-8);
    assert_float_equal(lr_at(&c, 5.5), 0.01, 1e-8);
    assert_float_equal(lr_at(&c, 6.0), 0.001, 1e-9);
    assert_float_equal(lr_at(&c, 9.9), 0.001, 1e-9);
    // No milestones: a constant rate.
    c.n_milestones = 0;
    assert_float_equal(lr_at(&c, 8.0), 0.1, 1e-7);
}

static void test_lr_cosine(void **state) {
    (void)state;
    TrainConfig c;
    train_config_default(&c);  // cosine, lr 0.1, 10 epochs
    assert_float_equal(lr_at(&c, 0.0), 0.1, 1e-7);
    assert_float_equal(lr_at(&c, 2.5), 0.05 * (1 + sqrt(0.5)), 1e-7);
    assert_float_equal(lr_at(&c, 5.0), 0.05, 1e-7);
    assert_float_equal(lr_at(&c, 7.5), 0.05 * (1 - sqrt(0.5)), 1e-7);
    assert_float_equal(lr_at(&c, 10.0), 0.0, 1e-9);
    assert_float_equal(lr_at(&c, 12.0), 0.0, 1e-9);
    // Monotone non-increasing over the run, strictly positive before the end.
    float prev = lr_at(&c, 0.0);
    for (int i = 1; i < 1000; i++) {
        float lr = lr_at(&c, i / 100.0);
        assert_true(lr <= prev);
        assert_true(lr > 0);
        prev = lr;
    }
}

static void test_lr_warmup(void **state) {
    (void)state;
    TrainConfig c;
    train_config_default(&c);
    c.warmup_epochs = 2;  // cosine over epochs 2..10 after a warm-up from lr/10
    assert_float_equal(lr_at(&c, 0.0), 0.01, 1e-8);
    assert_float_equal(lr_at(&c, 1.0), 0.055, 1e-7);
    assert_float_equal(lr_at(&c, 2.0), 0.1, 1e-7);
    assert_float_equal(lr_at(&c, 6.0), 0.05, 1e-7);
    assert_float_equal(lr_at(&c, 10.0), 0.0, 1e-9);
    // Rising during warm-up, falling after.
    float prev = lr_at(&c, 0.0);
    for (int i = 1; i <= 200; i++) {
        float lr = lr_at(&c, i / 100.0);
        assert_true(lr >= prev);
        prev = lr;
    }
    for (int i = 200; i < 1000; i++) {
        float lr = lr_at(&c, i / 100.0);
        assert_true(lr <= prev);
        prev = lr;
    }
    // Warm-up with the other schedules: the same ramp, then their own rule.
    c.schedule = SCHED_CONSTANT;
    assert_float_equal(lr_at(&c, 1.0), 0.055, 1e-7);
    assert_float_equal(lr_at(&c, 5.0), 0.1, 1e-7);
    c.schedule = SCHED_STEP;
    c.milestones[0] = 5;
    c.n_milestones = 1;
    assert_float_equal(lr_at(&c, 1.0), 0.055, 1e-7);
    assert_float_equal(lr_at(&c, 4.0), 0.1, 1e-7);
    assert_float_equal(lr_at(&c, 5.0), 0.01, 1e-8);
    // A warm-up as long as the run never divides by zero.
    c.schedule = SCHED_COSINE;
    c.warmup_epochs = 10;
    assert_float_equal(lr_at(&c, 5.0), 0.055, 1e-7);
    assert_float_equal(lr_at(&c, 10.0), 0.1, 1e-7);
}

// train() refuses a crop_pad beyond HP_MAX_CROP_PAD with an error (batch assembly asserts the
// bound), whichever caller filled the config.
static void test_train_checks_crop_pad(void **state) {
    (void)state;
    Model m;
    Rng rng;
    rng_seed(&rng, 3, 0);
    tu_small_net(&m, &rng, false);
    Dataset d;
    HpErr err = {{0}};
    assert_int_equal(dataset_alloc(&d, 4, 1, 8, 8, 3, &err), 0);
    TrainConfig c;
    train_config_default(&c);
    c.epochs = 1;
    c.batch_size = 2;
    c.augment.crop_pad = HP_MAX_CROP_PAD + 1;
    float *mom = calloc(m.n_params, sizeof *mom);
    TrainState st = {.momentum = mom};
    assert_int_equal(train(&m, &c, &d, NULL, NULL, &st, NULL, NULL, NULL, &err), -1);
    assert_string_equal(err.msg, "crop_pad 65 is outside [0, 64]");
    c.augment.crop_pad = HP_MAX_CROP_PAD;  // the largest runs
    if (train(&m, &c, &d, NULL, NULL, &st, NULL, NULL, NULL, &err) != 0) fail_msg("%s", err.msg);
    free(mom);
    dataset_free(&d);
    model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_sgd_weight_decay),
        cmocka_unit_test(test_sgd_vector),
        cmocka_unit_test(test_lr_constant_and_step),
        cmocka_unit_test(test_lr_cosine),
        cmocka_unit_test(test_lr_warmup),
        cmocka_unit_test(test_train_checks_crop_pad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
