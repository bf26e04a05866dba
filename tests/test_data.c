// test_data.c: dataset split and head, channel statistics, batch normalisation and augmentation.
#include "tests/testutil.h"

#include <omp.h>

#include "nn/data.h"

// A dataset of n images of (c, h, w) whose bytes are (i * 37 + k * 11) % 256, labels i % k.
static void make_set(Dataset *d, int n, int c, int h, int w, int classes) {
    assert_int_equal(dataset_alloc(d, n, c, h, w, classes, NULL), 0);
    size_t nb = (size_t)c * h * w;
    for (int i = 0; i < n; i++) {
        d->labels[i] = (uint8_t)(i % classes);
        for (size_t k = 0; k < nb; k++) d->images[i * nb + k] = (uint8_t)((i * 37 + k * 11) % 256);
    }
}

// Recovers the original index of image j of a subset of a set made with tag_set.
static int tag_of(const Dataset *d, int j) {
    size_t nb = (size_t)d->c * d->h * d->w;
    return d->images[j * nb] | d->images[j * nb + 1] << 8;
}

// Like make_set, but the first two bytes of image i hold i (little-endian), to track images.
static void tag_set(Dataset *d, int n) {
    make_set(d, n, 1, 2, 2, 10);
    for (int i = 0; i < n; i++) {
        d->images[i * 4] = (uint8_t)(i & 0xff);
        d->images[i * 4 + 1] = (uint8_t)(i >> 8);
    }
}

static void test_split(void **state) {
    (void)state;
    Dataset src, tr, va, tr2, va2;
    tag_set(&src, 1003);
    assert_int_equal(dataset_split(&src, 0.1, 7, &tr, &va, NULL), 0);
    assert_int_equal(va.n, 100);  // round(100.3)
    assert_int_equal(tr.n, 903);
    assert_int_equal(tr.h, 2);
    assert_int_equal(va.n_classes, 10);
    // Every image lands in exactly one part; both parts keep the original order.
    int *seen = calloc(1003, sizeof *seen);
    for (int j = 0; j < tr.n; j++) {
        int t = tag_of(&tr, j);
        seen[t]++;
        assert_int_equal(tr.labels[j], t % 10);
        if (j > 0) assert_true(t > tag_of(&tr, j - 1));
    }
    for (int j = 0; j < va.n; j++) {
        seen[tag_of(&va, j)]++;
        if (j > 0) assert_true(tag_of(&va, j) > tag_of(&va, j - 1));
    }
    for (int i = 0; i < 1003; i++) assert_int_equal(seen[i], 1);
    free(seen);
    // The same seed gives the same split; another seed another one.
    assert_int_equal(dataset_split(&src, 0.1, 7, &tr2, &va2, NULL), 0);
    assert_memory_equal(va.images, va2.images, (size_t)va.n * 4);
    dataset_free(&tr2);
    dataset_free(&va2);
    assert_int_equal(dataset_split(&src, 0.1, 8, &tr2, &va2, NULL), 0);
    assert_int_equal(va2.n, 100);
    assert_true(memcmp(va.images, va2.images, (size_t)va.n * 4) != 0);
    dataset_free(&tr2);
    dataset_free(&va2);
    dataset_free(&tr);
    dataset_free(&va);
    // Rounding and the edges.
    assert_int_equal(dataset_split(&src, 0.0, 1, &tr, &va, NULL), 0);
    assert_int_equal(va.n, 0);
    assert_int_equal(tr.n, 1003);
    assert_memory_equal(tr.images, src.images, 1003 * 4);
    dataset_free(&tr);
    dataset_free(&va);
    assert_int_equal(dataset_split(&src, 1.0, 1, &tr, &va, NULL), 0);
    assert_int_equal(tr.n, 0);
    assert_int_equal(va.n, 1003);
    dataset_free(&tr);
    dataset_free(&va);
    dataset_free(&src);
    tag_set(&src, 10);
    assert_int_equal(dataset_split(&src, 0.25, 3, &tr, &va, NULL), 0);
    assert_int_equal(va.n, 3);  // round(2.5) = 3
    assert_int_equal(tr.n, 7);
    dataset_free(&tr);
    dataset_free(&va);
    dataset_free(&src);
}

static void test_head(void **state) {
    (void)state;
    Dataset src, h;
    make_set(&src, 20, 3, 4, 5, 7);
    assert_int_equal(dataset_head(&src, 6, &h, NULL), 0);
    assert_int_equal(h.n, 6);
    assert_int_equal(h.c, 3);
    assert_int_equal(h.n_classes, 7);
    assert_memory_equal(h.images, src.images, 6 * 60);
    assert_memory_equal(h.labels, src.labels, 6);
    dataset_free(&h);
    dataset_free(&src);
}

// A dataset the machine cannot hold: -1 with the message, and d left empty.
static void test_alloc_out_of_memory(void **state) {
    (void)state;
    Dataset d;
    HpErr err = {{0}};
    assert_int_equal(dataset_alloc(&d, 1 << 30, 3, 4096, 4096, 10, &err), -1);  // 54 PB of images
    assert_string_equal(err.msg, "the images: out of memory: cannot allocate 54.0 PB");
    assert_null(d.images);
    assert_null(d.labels);
    assert_int_equal(d.n, 0);
    dataset_free(&d);
}

static void test_channel_stats(void **state) {
    (void)state;
    Dataset d;
    assert_int_equal(dataset_alloc(&d, 2, 3, 1, 2, 10, NULL), 0);
    // Image 0 then image 1; channels 0, 1, 2 of two pixels each.
    const uint8_t px[12] = {0, 0, 0, 255, 51, 51, /**/ 0, 0, 255, 0, 51, 51};
    memcpy(d.images, px, 12);
    float mean[3], std[3];
    dataset_channel_stats(&d, mean, std);
    assert_float_equal(mean[0], 0.0f, 1e-7);
    assert_float_equal(std[0], 0.0f, 1e-7);
    assert_float_equal(mean[1], 0.5f, 1e-7);
    assert_float_equal(std[1], 0.5f, 1e-7);
    assert_float_equal(mean[2], 0.2f, 1e-7);
    assert_float_equal(std[2], 0.0f, 1e-7);
    dataset_free(&d);
}

// Normalisation is exactly (pixel/255 - mean[c]) / std[c]; labels follow idx.
static void test_normalise(void **state) {
    (void)state;
    Dataset d;
    make_set(&d, 9, 2, 3, 4, 5);
    const float mean[2] = {0.3f, 0.6f}, std[2] = {0.2f, 0.7f};
    const int idx[4] = {8, 0, 3, 3};
    float x[4 * 24];
    int y[4];
    data_batch(&d, idx, 4, mean, std, NULL, NULL, x, y);
    for (int b = 0; b < 4; b++) {
        assert_int_equal(y[b], idx[b] % 5);
        for (int k = 0; k < 24; k++) {
            int c = k / 12;
            float want = ((float)d.images[idx[b] * 24 + k] / 255.0f - mean[c]) / std[c];
            if (x[b * 24 + k] != want) fail_msg("image %d value %d: %.9g != %.9g", b, k, x[b * 24 + k], want);
        }
    }
    dataset_free(&d);
}

// An augmentation that does nothing (pad 0, no flip) is the identity, and draws nothing.
static void test_crop_pad0_identity(void **state) {
    (void)state;
    Dataset d;
    make_set(&d, 5, 3, 6, 7, 10);
    const float mean[3] = {0.1f, 0.2f, 0.3f}, std[3] = {0.5f, 0.6f, 0.7f};
    const int idx[5] = {4, 3, 2, 1, 0};
    float x0[5 * 126], x1[5 * 126];
    int y0[5], y1[5];
    Rng rng, ref;
    rng_seed(&rng, 1, 2);
    ref = rng;
    const Augment none = {0, false};
    data_batch(&d, idx, 5, mean, std, NULL, NULL, x0, y0);
    data_batch(&d, idx, 5, mean, std, &none, &rng, x1, y1);
    assert_memory_equal(x0, x1, sizeof x0);
    assert_memory_equal(y0, y1, sizeof y0);
    assert_memory_equal(&rng, &ref, sizeof rng);
    dataset_free(&d);
}

// Returns true if out (c, h, w) is image src shifted by (dy, dx) inside zero padding pad,
// with padded positions equal to pad_val[c] and the rest equal to the unpadded output ref.
static bool is_shift(const float *out, const float *ref, const float *pad_val, int c, int h, int w,
                     int pad, int dy, int dx) {
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int sy = y + dy - pad, sx = x + dx - pad;
                float want = (sy < 0 || sy >= h || sx < 0 || sx >= w) ? pad_val[ch]
                                                                     : ref[(ch * h + sy) * w + sx];
                if (out[(ch * h + y) * w + x] != want) return false;
            }
    return true;
}

// Random crops: each output is one of the (2p+1)^2 shifts with raw-zero padding, and
// across a batch several different shifts occur.
static void test_crop(void **state) {
    (void)state;
    enum { N = 64, C = 2, H = 5, W = 6, P = 2 };
    Dataset d;
    make_set(&d, N, C, H, W, 10);
    const float mean[C] = {0.4f, 0.5f}, std[C] = {0.25f, 0.3f};
    const float pad_val[C] = {(0.0f - mean[0]) / std[0], (0.0f - mean[1]) / std[1]};
    float *ref = malloc(sizeof(float) * N * C * H * W), *x = malloc(sizeof(float) * N * C * H * W);
    int y[N];
    Rng rng;
    rng_seed(&rng, 5, 0);
    const Augment aug = {P, false};
    data_batch(&d, NULL, N, mean, std, NULL, NULL, ref, y);
    data_batch(&d, NULL, N, mean, std, &aug, &rng, x, y);
    int used[2 * P + 1][2 * P + 1] = {{0}};
    for (int b = 0; b < N; b++) {
        int found = 0;
        for (int dy = 0; dy <= 2 * P && !found; dy++)
            for (int dx = 0; dx <= 2 * P && !found; dx++)
                if (is_shift(x + b * C * H * W, ref + b * C * H * W, pad_val, C, H, W, P, dy, dx)) {
                    used[dy][dx]++;
                    found = 1;
                }
        if (!found) fail_msg("image %d is no shift of its original", b);
    }
    int distinct = 0;
    for (int i = 0; i <= 2 * P; i++)
        for (int j = 0; j <= 2 * P; j++) distinct += used[i][j] > 0;
    assert_true(distinct >= 10);
    free(ref);
    free(x);
    dataset_free(&d);
}

// Flips: each output is the original or its mirror; mirroring the flipped ones back gives
// the unaugmented batch (flip twice is the identity); both cases occur.
static void test_flip(void **state) {
    (void)state;
    enum { N = 64, C = 3, H = 4, W = 5 };
    Dataset d;
    make_set(&d, N, C, H, W, 10);
    const float mean[C] = {0.4f, 0.5f, 0.6f}, std[C] = {0.25f, 0.3f, 0.2f};
    float *ref = malloc(sizeof(float) * N * C * H * W), *x = malloc(sizeof(float) * N * C * H * W);
    int y[N];
    Rng rng;
    rng_seed(&rng, 9, 0);
    const Augment aug = {0, true};
    data_batch(&d, NULL, N, mean, std, NULL, NULL, ref, y);
    data_batch(&d, NULL, N, mean, std, &aug, &rng, x, y);
    int flipped = 0;
    for (int b = 0; b < N; b++) {
        float *o = x + b * C * H * W;
        const float *r = ref + b * C * H * W;
        if (memcmp(o, r, sizeof(float) * C * H * W) == 0) continue;
        flipped++;
        for (int row = 0; row < C * H; row++)
            for (int i = 0; i < W / 2; i++) {
                float t = o[row * W + i];
                o[row * W + i] = o[row * W + W - 1 - i];
                o[row * W + W - 1 - i] = t;
            }
        if (memcmp(o, r, sizeof(float) * C * H * W) != 0) fail_msg("image %d neither kept nor mirrored", b);
    }
    assert_true(flipped > 8 && flipped < N - 8);
    free(ref);
    free(x);
    dataset_free(&d);
}

// The same seed gives the same batch; another seed another; and the result does not depend
// on the thread count nor on splitting a batch into single images (draws are serial).
static void test_determinism(void **state) {
    (void)state;
    enum { N = 400, C = 3, H = 32, W = 32 };  // over 2^20 floats: assembled multi-threaded
    const size_t NB = (size_t)C * H * W;
    Dataset d;
    make_set(&d, N, C, H, W, 10);
    const float mean[C] = {0.49f, 0.48f, 0.45f}, std[C] = {0.25f, 0.24f, 0.26f};
    int idx[N], y[N], y1[N];
    for (int i = 0; i < N; i++) idx[i] = (i * 7) % N;
    float *a = malloc(sizeof(float) * N * NB), *b = malloc(sizeof(float) * N * NB);
    const Augment aug = {4, true};
    Rng r1, r2;
    rng_seed(&r1, 123, 1);
    rng_seed(&r2, 123, 1);
    int threads = omp_get_max_threads();
    data_batch(&d, idx, N, mean, std, &aug, &r1, a, y);
    omp_set_num_threads(1);
    data_batch(&d, idx, N, mean, std, &aug, &r2, b, y1);
    omp_set_num_threads(threads);
    assert_memory_equal(a, b, sizeof(float) * N * NB);
    assert_memory_equal(y, y1, sizeof y);
    assert_memory_equal(&r1, &r2, sizeof r1);  // the same draws were consumed
    // One image at a time from the same stream gives the same batch.
    rng_seed(&r2, 123, 1);
    for (int i = 0; i < N; i++) data_batch(&d, idx + i, 1, mean, std, &aug, &r2, b + i * NB, y1 + i);
    assert_memory_equal(a, b, sizeof(float) * N * NB);
    assert_memory_equal(y, y1, sizeof y);
    rng_seed(&r2, 124, 1);
    data_batch(&d, idx, N, mean, std, &aug, &r2, b, y1);
    assert_true(memcmp(a, b, sizeof(float) * N * NB) != 0);
    free(a);
    free(b);
    dataset_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),     cmocka_unit_test(test_head), cmocka_unit_test(test_alloc_out_of_memory),
        cmocka_unit_test(test_channel_stats), cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_crop_pad0_identity), cmocka_unit_test(test_crop),
        cmocka_unit_test(test_flip),      cmocka_unit_test(test_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
