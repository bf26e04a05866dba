// test_safetensors.c: safetensors writer/reader round trip and rejection of corrupt files.
#include "testutil.h"

#include "formats/safetensors.h"

// Writes a hand-made safetensors file: the length field (hlen, or strlen(header) if hlen is
// UINT64_MAX), the header text, then data_len bytes of data (counting up from 0).
static void craft(const char *path, uint64_t hlen, const char *header, size_t data_len) {
    size_t n = strlen(header);
    if (hlen == UINT64_MAX) hlen = n;
    size_t total = 8 + n + data_len;
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(buf + 8, header, n);
    for (size_t i = 0; i < data_len; i++) buf[8 + n + i] = (uint8_t)i;
    tu_write(path, buf, total);
    free(buf);
}

// Reads path expecting failure with a message containing want (printed on mismatch).
static void expect_reject(const char *path, const char *want) {
    StFile f;
    HpErr err = {{0}};
    int rc = st_read(path, &f, &err);
    if (rc == 0 || !strstr(err.msg, want))
        fprintf(stderr, "expected an error containing \"%s\", got rc %d: \"%s\"\n", want, rc, err.msg);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, want));
    assert_null(f.entries);
    assert_null(f.bytes);
}

// Writes a few tensors with metadata, reads them back bit-exactly.
static void test_round_trip(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    Rng rng;
    rng_seed(&rng, 1, 0);
    float w[2 * 3 * 5], s[1] = {-0.0f}, v[7];
    tu_fill_uniform(w, 30, -3, 3, &rng);
    tu_fill_uniform(v, 7, -1e30f, 1e30f, &rng);
    v[3] = NAN;
    StTensorOut t[4] = {
        {.name = "layer1.0.conv1.weight", .ndim = 3, .shape = {2, 3, 5}, .data = w},
        {.name = "scalar", .ndim = 0, .data = s},
        {.name = "empty", .ndim = 2, .shape = {0, 4}, .data = NULL},
        {.name = "fc.bias \"quoted\" \xc3\xa9", .ndim = 1, .shape = {7}, .data = v},
    };
    const char *keys[2] = {"hprune.graph", "note"};
    const char *vals[2] = {"{\"a\": [1, 2]}", "line\nbreak \"q\" \\"};
    HpErr err = {{0}};
    assert_int_equal(st_write(path, t, 4, keys, vals, 2, &err), 0);

    StFile f;
    assert_int_equal(st_read(path, &f, &err), 0);
    assert_int_equal(f.n, 4);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f.bytes[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(f.data_len, 4 * (30 + 1 + 0 + 7));
    for (int i = 0; i < 4; i++) {
        const StEntry *e = st_find(&f, t[i].name);
        assert_non_null(e);
        assert_int_equal(e->ndim, t[i].ndim);
        for (int d = 0; d < e->ndim; d++) assert_int_equal(e->shape[d], t[i].shape[d]);
        float got[30];
        st_copy_f32(&f, e, got);
        if (e->numel) assert_memory_equal(got, t[i].data, 4 * e->numel);
    }
    assert_null(st_find(&f, "missing"));
    assert_string_equal(st_meta(&f, "hprune.graph"), vals[0]);
    assert_string_equal(st_meta(&f, "note"), vals[1]);
    assert_null(st_meta(&f, "other"));
    st_free(&f);
    assert_null(f.entries);

    // no metadata, no tensors
    assert_int_equal(st_write(path, NULL, 0, NULL, NULL, 0, &err), 0);
    assert_int_equal(st_read(path, &f, &err), 0);
    assert_int_equal(f.n, 0);
    assert_null(st_meta(&f, "x"));
    st_free(&f);
    tu_rmtree(dir);
}

// The writer refuses what it could not write as a valid file.
static void test_writer_rejects(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    float x[2] = {1, 2};
    StTensorOut t[2] = {{.name = "a", .ndim = 1, .shape = {2}, .data = x},
                        {.name = "a", .ndim = 1, .shape = {2}, .data = x}};
    HpErr err = {{0}};
    assert_int_equal(st_write(path, t, 2, NULL, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, "duplicate tensor 'a'"));
    t[1].name = "__metadata__";
    assert_int_equal(st_write(path, t, 2, NULL, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, "reserved"));
    const char *k[2] = {"k", "k"}, *v[2] = {"1", "2"};
    assert_int_equal(st_write(path, t, 1, k, v, 2, &err), -1);
    assert_non_null(strstr(err.msg, "duplicate metadata key 'k'"));
    assert_int_equal(access(path, F_OK), -1);  // nothing left behind
    tu_rmtree(dir);
}

// Hand-made files that follow the format are accepted, including trailing header spaces.
static void test_hand_made_valid(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/v.safetensors", dir);
    // listed out of order, padded with spaces, zero-size tensor in the middle
    craft(path, UINT64_MAX,
          "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
          "\"z\":{\"data_offsets\":[8,8],\"shape\":[0,3],\"dtype\":\"F32\"},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},"
          "\"__metadata__\":{\"format\":\"pt\"}}        ",
          16);
    StFile f;
    HpErr err = {{0}};
    assert_int_equal(st_read(path, &f, &err), 0);
    assert_int_equal(f.n, 3);
    assert_string_equal(f.entries[0].name, "b");
    assert_int_equal(st_find(&f, "b")->begin, 8);
    assert_string_equal(st_meta(&f, "format"), "pt");
    st_free(&f);
    tu_rmtree(dir);
}

// Files too short, or with a header length that cannot be right.
static void test_reject_length(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    tu_write(path, "", 0);
    expect_reject(path, "file has 0 bytes");
    tu_write(path, "\x02\0\0\0\0\0\0", 7);
    expect_reject(path, "file has 7 bytes");
    craft(path, 1000, "{}", 0);
    expect_reject(path, "header length 1000 is larger than the 2 bytes after it");
    craft(path, (uint64_t)1 << 40, "{}", 0);
    expect_reject(path, "not a safetensors file: header length 1099511627776 (its first 8 bytes) is absurd (limit "
                        "104857600 bytes)");
    craft(path, ((uint64_t)100 << 20) + 1, "{}", 0);
    expect_reject(path, "not a safetensors file: header length 104857601 ");
    tu_write(path, "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);  // a PNG image
    expect_reject(path, "not a safetensors file: header length 727905341920923785 ");
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.safetensors", dir);
    expect_reject(missing, "cannot open");
    tu_rmtree(dir);
}

// Headers that are not a JSON object of valid entries.
static void test_reject_header(void **state) {
    (void)state;
    static const struct {
        const char *header;
        size_t data_len;
        const char *want;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",", 0, "not valid JSON"},
        {"not json at all", 0, "not a safetensors file: header is not a JSON object (does not begin with '{')"},
        {"[1, 2]", 0, "not a safetensors file: header is not a JSON object (does not begin with '{')"},
        {"{} x", 0, "stray bytes"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "dtype 'F16'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,8]}}", 8,
         "span 8 bytes but shape [2, 3] of F32 needs 24"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
         "shape entry 0 is not a non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,2.5],\"data_offsets\":[0,8]}}", 8, "shape entry 1"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "shape entry 0"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "shape is not an array"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "9 dimensions"},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'a': no dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor 'a': no shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "tensor 'a': no data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "unexpected key 'x'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"shape\":[2]}}", 8, "duplicate key 'shape'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before they begin"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "not a pair"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         16, "duplicate tensor 'a'"},
        {"{\"a\":7}", 0, "tensor 'a': entry is not an object"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "value of 'k' is not a string"},
        {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "duplicate metadata key 'k'"},
        {"{\"__metadata__\":[]}", 0, "__metadata__ is not an object"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key '__metadata__'"},
        {"{}", 4, "no tensors but 4 bytes of data"},
        // an escaped NUL, where the JSON reader would cut the name or string short
        {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "header: a key with an escaped NUL (\\u0000): \"a\\u0000b\""},
        {"{\"__metadata__\":{\"k\":\"v\\u0000w\"}}", 0, "header: \"k\" holds a string with an escaped NUL"},
    };
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/h.safetensors", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        craft(path, UINT64_MAX, cases[i].header, cases[i].data_len);
        expect_reject(path, cases[i].want);
    }
    tu_rmtree(dir);
}

// Offsets that do not tile the data buffer exactly.
static void test_reject_tiling(void **state) {
    (void)state;
    static const struct {
        const char *header;
        size_t data_len;
        const char *want;
    } cases[] = {
        // gap of 4 bytes between a and b
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
         20, "gap in data: tensor 'a' ends at byte 8, tensor 'b' begins at byte 12"},
        // b overlaps a
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "tensor 'b' (bytes 4..12) overlaps tensor 'a' (ends at byte 8)"},
        // first tensor not at 0
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
         "first tensor 'a' begins at byte 4, not 0"},
        // last tensor ends before the end of the data
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
         32, "last tensor 'fc.weight' ends at byte 24, file has 32 bytes of data (8 unused)"},
        // last tensor ends past the end of the file
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
         20, "tensor 'fc.weight' ends at byte 24, file has 20 bytes of data"},
        // offsets beyond what a double holds exactly
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 8,
         "not a pair of non-negative integers"},
    };
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        craft(path, UINT64_MAX, cases[i].header, cases[i].data_len);
        expect_reject(path, cases[i].want);
    }
    // a header with a NUL byte inside
    uint8_t buf[8 + 4] = {4, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, ' '};
    tu_write(path, buf, sizeof buf);
    expect_reject(path, "NUL byte at offset 2");
    tu_rmtree(dir);
}

// Every truncation of a valid file is rejected (never read past the end, never crash).
static void test_truncations(void **state) {
    (void)state;
    char dir[64], path[128], cut[140];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/full.safetensors", dir);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    float x[6] = {1, 2, 3, 4, 5, 6};
    StTensorOut t[2] = {{.name = "a", .ndim = 2, .shape = {2, 2}, .data = x},
                        {.name = "b", .ndim = 1, .shape = {2}, .data = x + 4}};
    const char *k[1] = {"m"}, *v[1] = {"v"};
    HpErr err = {{0}};
    assert_int_equal(st_write(path, t, 2, k, v, 1, &err), 0);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t buf[512];
    size_t len = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(len > 8 && len < sizeof buf);
    for (size_t n = 0; n < len; n++) {
        tu_write(cut, buf, n);
        StFile f;
        assert_int_equal(st_read(cut, &f, &err), -1);
    }
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_hand_made_valid), cmocka_unit_test(test_reject_length),
        cmocka_unit_test(test_reject_header),   cmocka_unit_test(test_reject_tiling),
        cmocka_unit_test(test_truncations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
