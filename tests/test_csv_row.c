// test_csv_row.c: the rows of a sweep's results.csv (csv_row in prune/sweep.c), built here
// with cells of 10 bytes so that a row can hold several cells too long for them (at the real
// size every checked result fits): the error names the first such cell, in column order.
#define CELL 10
#include "prune/sweep.c"

#include "testutil.h"

enum { COLS = sizeof SWEEP_CSV_HEADER / sizeof SWEEP_CSV_HEADER[0] };

// A result whose every cell fits in 9 characters.
static SweepResult small_result(void) {
    SweepResult x;
    memset(&x, 0, sizeof x);
    snprintf(x.id, sizeof x.id, "l1-s1");
    snprintf(x.method, sizeof x.method, "l1");
    snprintf(x.kind, sizeof x.kind, "flops");
    snprintf(x.seed, sizeof x.seed, "1");
    x.target = 0.5;
    x.params_orig = x.macs_orig = 1000;
    x.params = x.macs = 500;
    x.acc_orig = x.acc_oneshot = x.acc_recal = x.acc_final = 0.5;
    x.lat_orig = 2, x.lat = 1, x.seconds = 3;
    return x;
}

// Several cells too long: the first of them is named, not the last.
static void test_first_long_cell_named(void **state) {
    (void)state;
    char c[COLS][CELL];
    HpErr err;
    SweepResult x = small_result();
    assert_int_equal(csv_row(&x, c, "r.csv", &err), 0);
    assert_string_equal(c[0], "l1-s1");
    assert_string_equal(c[16], "1.000");
    assert_string_equal(c[18], "3.0");
    snprintf(x.id, sizeof x.id, "l1-flops0.5-s1");  // 14 characters
    x.lat = 1e9;                                    // 1000000000.000
    x.seconds = 1e12;                               // 1000000000000.0
    assert_int_equal(csv_row(&x, c, "r.csv", &err), -1);
    assert_string_equal(err.msg, "r.csv: the id cell is longer than 9 characters");
    snprintf(x.id, sizeof x.id, "l1-s1");
    assert_int_equal(csv_row(&x, c, "r.csv", &err), -1);
    assert_string_equal(err.msg, "r.csv: the latency_ms cell is longer than 9 characters");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_long_cell_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
