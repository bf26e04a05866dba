// test_config.c: INI config files and command-line overrides (formats/config.c), and the
// table-driven reader beneath them (formats/ini_table.c).
#include "testutil.h"

#include "formats/config.h"
#include "formats/ini_table.h"

// A temporary directory holding the config files of one test.
typedef struct {
    char dir[64];
    char path[128];
} Fixture;

static int setup(void **state) {
    Fixture *fx = calloc(1, sizeof *fx);
    tu_tmpdir(fx->dir, sizeof fx->dir);
    snprintf(fx->path, sizeof fx->path, "%s/x.ini", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    Fixture *fx = *state;
    tu_rmtree(fx->dir);
    free(fx);
    return 0;
}

// Writes text to the fixture's config file and loads it into c on top of what c holds.
static int load_text(Fixture *fx, Config *c, const char *text, HpErr *err) {
    tu_write(fx->path, text, strlen(text));
    return config_load(c, fx->path, err);
}

// Asserts that loading text fails, that the message starts with "<path>:<line>: " (line 0:
// "<path>: ") and contains `words`, and that the config is left as it was.
static void expect_load_error(Fixture *fx, const char *text, int line, const char *words) {
    Config c, before;
    config_default(&c);
    before = c;
    HpErr err = {{0}};
    assert_int_equal(load_text(fx, &c, text, &err), -1);
    char prefix[192];
    if (line > 0)
        snprintf(prefix, sizeof prefix, "%s:%d: ", fx->path, line);
    else
        snprintf(prefix, sizeof prefix, "%s: ", fx->path);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || !strstr(err.msg, words)) {
        print_error("message '%s'\nwanted prefix '%s' and words '%s'\n", err.msg, prefix, words);
        fail();
    }
    assert_memory_equal(&c, &before, sizeof c);
}

static void test_defaults(void **state) {
    (void)state;
    Config c;
    config_default(&c);
    assert_string_equal(c.arch, "lenet5");
    assert_string_equal(c.dataset, "fashion-mnist");
    assert_string_equal(c.data_dir, "/usr/share/datasets/fashion-mnist");
    assert_true(c.output[0] != '\0');
    const TrainConfig *t = &c.train;
    assert_int_equal(t->epochs, 10);
    assert_int_equal(t->batch_size, 128);
    assert_float_equal(t->lr, 0.1f, 0);
    assert_float_equal(t->momentum, 0.9f, 0);
    assert_false(t->nesterov);
    assert_float_equal(t->weight_decay, 5e-4f, 0);
    assert_int_equal(t->schedule, SCHED_COSINE);
    assert_int_equal(t->n_milestones, 0);
    assert_float_equal(t->gamma, 0.1f, 0);
    assert_int_equal(t->warmup_epochs, 0);
    assert_float_equal(t->label_smoothing, 0.0f, 0);
    assert_int_equal(t->augment.crop_pad, 0);
    assert_false(t->augment.hflip);
    assert_float_equal(t->val_split, 0.0f, 0);
    assert_int_equal(t->seed, 1);
    assert_int_equal(t->threads, 0);
}

static void test_every_key(void **state) {
    Fixture *fx = *state;
    const char *text =
        "# every key, none at its default\n"
        "[model]\n"
        "arch = resnet20\n"
        "\n"
        "[data]\n"
        "dataset = cifar10\n"
        "dir = /data/cifar-10-batches-bin\n"
        "val_split = 0.1\n"
        "crop_pad = 4\n"
        "hflip = yes\n"
        "[train]\n"
        "epochs = 200\n"
        "batch_size = 64\n"
        "lr = 0.05\n"
        "momentum = 0.8\n"
        "nesterov = true\n"
        "weight_decay = 1e-4\n"
        "schedule = step\n"
        "milestones = 100, 150\n"
        "gamma = 0.2\n"
        "warmup_epochs = 5\n"
        "label_smoothing = 0.1\n"
        "seed = 18446744073709551615\n"
        "threads = 2\n"
        "output = runs/r20.safetensors\n";
    Config c;
    config_default(&c);
    HpErr err = {{0}};
    assert_int_equal(load_text(fx, &c, text, &err), 0);
    assert_string_equal(c.arch, "resnet20");
    assert_string_equal(c.dataset, "cifar10");
    assert_string_equal(c.data_dir, "/data/cifar-10-batches-bin");
    assert_string_equal(c.output, "runs/r20.safetensors");
    const TrainConfig *t = &c.train;
    assert_float_equal(t->val_split, 0.1f, 0);
    assert_int_equal(t->augment.crop_pad, 4);
    assert_true(t->augment.hflip);
    assert_int_equal(t->epochs, 200);
    assert_int_equal(t->batch_size, 64);
    assert_float_equal(t->lr, 0.05f, 0);
    assert_float_equal(t->momentum, 0.8f, 0);
    assert_true(t->nesterov);
    assert_float_equal(t->weight_decay, 1e-4f, 0);
    assert_int_equal(t->schedule, SCHED_STEP);
    assert_int_equal(t->n_milestones, 2);
    assert_int_equal(t->milestones[0], 100);
    assert_int_equal(t->milestones[1], 150);
    assert_float_equal(t->gamma, 0.2f, 0);
    assert_int_equal(t->warmup_epochs, 5);
    assert_float_equal(t->label_smoothing, 0.1f, 0);
    assert_true(t->seed == UINT64_MAX);
    assert_int_equal(t->threads, 2);
}

static void test_comments_and_layering(void **state) {
    Fixture *fx = *state;
    Config c;
    config_default(&c);
    HpErr err = {{0}};
    const char *first =
        "\xEF\xBB\xBF; a byte-order mark, then comments of both kinds\n"
        "# hash comment\n"
        "\n"
        "   \n"
        "[train]\n"
        "  lr=0.02   ; inline comment\n"
        "epochs : 3\n"
        "[data]\n"
        "hflip = ON\n";
    assert_int_equal(load_text(fx, &c, first, &err), 0);
    assert_float_equal(c.train.lr, 0.02f, 0);
    assert_int_equal(c.train.epochs, 3);
    assert_true(c.train.augment.hflip);
    // A second file changes only what it names; an empty file changes nothing.
    assert_int_equal(load_text(fx, &c, "[train]\nepochs = 7\n[model]\n", &err), 0);
    assert_float_equal(c.train.lr, 0.02f, 0);
    assert_int_equal(c.train.epochs, 7);
    Config before = c;
    assert_int_equal(load_text(fx, &c, "", &err), 0);
    assert_memory_equal(&c, &before, sizeof c);
    // The last line may lack its newline.
    assert_int_equal(load_text(fx, &c, "[train]\nbatch_size = 32", &err), 0);
    assert_int_equal(c.train.batch_size, 32);
}

static void test_errors_named_by_line(void **state) {
    Fixture *fx = *state;
    expect_load_error(fx, "[train]\nlr = 0.1\n\n# c\n\nepochs = 3\nlr_decay = 0.5\n", 7, "unknown key 'lr_decay' in [train]");
    expect_load_error(fx, "[train]\nlr = 0.1\n[optim]\nbeta = 0.9\n", 3, "unknown section [optim]");
    expect_load_error(fx, "[train]\nlr = 0.1\n[optim]\n", 3, "unknown section [optim]");  // even when empty
    expect_load_error(fx, "[ train ]\nlr = 0.1\n", 1, "unknown section [ train ]");
    expect_load_error(fx, "lr = 0.1\n", 1, "outside any section");
    expect_load_error(fx, "[train]\nlr = abc\n", 2, "bad value 'abc' for 'lr': expected a number");
    expect_load_error(fx, "[train]\nepochs = 0\n", 2, "'epochs' must be at least 1");
    expect_load_error(fx, "[train]\nepochs = 3\n[model]\nthis line is not ini\n", 4, "syntax error");
    expect_load_error(fx, "[train\nlr = 0.1\n", 1, "syntax error");
    expect_load_error(fx, "\xEF\xBB\xBF[optim]\n", 1, "unknown section [optim] (known: [model], [data], [train])");
}

static void test_first_error_wins(void **state) {
    Fixture *fx = *state;
    expect_load_error(fx, "[train]\nnot ini\nlr = x\n", 2, "syntax error");
    expect_load_error(fx, "[train]\nlr = x\nnot ini\n", 2, "bad value 'x' for 'lr'");
    expect_load_error(fx, "[optim]\nnot ini\n", 1, "unknown section [optim]");
    expect_load_error(fx, "[train]\nepochs = 0\nepochs = x\n", 2, "'epochs' must be at least 1");
}

static void test_strict_numbers(void **state) {
    Fixture *fx = *state;
    static const struct {
        const char *text, *words;
    } cases[] = {
        {"[train]\nlr = 0.1x\n", "bad value '0.1x' for 'lr': expected a number"},
        {"[train]\nlr = 0.1 # not a comment here\n", "expected a number"},
        {"[train]\nlr =\n", "bad value '' for 'lr': expected a number"},
        {"[train]\nlr = nan\n", "expected a number"},
        {"[train]\nlr = inf\n", "expected a number"},
        {"[train]\nlr = 0x1p-3\n", "expected a number"},
        {"[train]\nlr = +0.1\n", "bad value '+0.1' for 'lr': expected a number"},
        {"[train]\nepochs = +5\n", "bad value '+5' for 'epochs': expected an integer"},
        {"[train]\nepochs = 0x10\n", "bad value '0x10' for 'epochs': expected an integer"},
        {"[train]\nlr = 1e999\n", "out of range"},
        {"[train]\nlr = 1e-60\n", "out of range"},
        {"[train]\nlr = 0\n", "'lr' must be greater than 0"},
        {"[train]\nepochs = 12abc\n", "bad value '12abc' for 'epochs': expected an integer"},
        {"[train]\nepochs = 2.5\n", "expected an integer"},
        {"[train]\nepochs = 99999999999\n", "out of range"},
        {"[train]\nbatch_size = -4\n", "'batch_size' must be at least 1"},
        {"[train]\nseed = -1\n", "bad value '-1' for 'seed'"},
        {"[train]\nseed = 18446744073709551616\n", "out of range"},
        {"[train]\nthreads = -1\n", "'threads' must be in [0, 1024], got -1"},
        {"[train]\nthreads = 1025\n", "'threads' must be in [0, 1024], got 1025"},
        {"[train]\nthreads = 2147483647\n", "'threads' must be in [0, 1024], got 2147483647"},
        {"[train]\nwarmup_epochs = -1\n", "'warmup_epochs' must be at least 0"},
        {"[train]\nmomentum = 1\n", "'momentum' must be in [0, 1), got 1"},
        {"[train]\nmomentum = -0.1\n", "'momentum' must be in [0, 1), got -0.1"},
        {"[train]\nweight_decay = -1e-4\n", "'weight_decay' must be at least 0"},
        {"[train]\ngamma = 0\n", "'gamma' must be greater than 0"},
        {"[train]\nlabel_smoothing = 1.0\n", "'label_smoothing' must be in [0, 1), got 1"},
        {"[train]\nnesterov = maybe\n", "bad value 'maybe' for 'nesterov': expected true or false"},
        {"[train]\nschedule = linear\n", "bad value 'linear' for 'schedule': expected constant, step or cosine"},
        {"[train]\noutput =\n", "'output' must not be empty"},
        {"[train]\noutput = -\n", "'output' = -: writing to standard output is not supported; name a path"},
        {"[data]\nval_split = 1\n", "'val_split' must be in [0, 1), got 1"},
        {"[data]\nval_split = -0.5\n", "'val_split' must be in [0, 1), got -0.5"},
        {"[data]\ncrop_pad = -2\n", "'crop_pad' must be in [0, 64], got -2"},
        {"[data]\ncrop_pad = 65\n", "'crop_pad' must be in [0, 64], got 65"},
        {"[data]\ncrop_pad = 268435457\n", "'crop_pad' must be in [0, 64], got 268435457"},
        {"[data]\nhflip = 2\n", "expected true or false"},
        {"[data]\ndataset = imagenet\n", "bad value 'imagenet' for 'dataset': expected one of fashion-mnist, mnist, cifar10"},
        {"[model]\narch = resnet21\n", "bad value 'resnet21' for 'arch': expected one of lenet5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_load_error(fx, cases[i].text, 2, cases[i].words);
}

// The number grammar shared by INI values and command-line options (ini_long, ini_int,
// ini_u64, ini_number): plain decimal only.
static void test_number_grammar(void **state) {
    (void)state;
    static const char *const ints[] = {"0", "5", "-12", "007", "2147483648"};
    static const char *const not_ints[] = {"", " 5", "5 ", "+5", "-", "0x10", "1e3", "1.0", "5-", "--5", "\t5"};
    static const char *const reals[] = {"0", "-2", "0.5", ".5", "5.", "-.5", "1e5", "1E-3", "2.5e+2", "007.50"};
    static const char *const not_reals[] = {"",    " 0.5", "0.5 ", "+0.5", "+1e5", "0x10", "0x1p3", "inf", "nan",
                                            "-inf", ".",    "-",    "e5",   "1e",   "1e+",  "1.2.3", "1,5", "5f"};
    long l;
    int i;
    uint64_t u;
    double d;
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        assert_int_equal(ini_long(ints[k], &l), 0);
        assert_int_equal(ini_number(ints[k], &d), 0);
        assert_true((double)l == d);
    }
    for (size_t k = 0; k < sizeof not_ints / sizeof not_ints[0]; k++) {
        if (ini_long(not_ints[k], &l) != -1 || ini_int(not_ints[k], &i) != -1 || ini_u64(not_ints[k], &u) != -1)
            fail_msg("'%s' read as an integer", not_ints[k]);
    }
    for (size_t k = 0; k < sizeof reals / sizeof reals[0]; k++)
        if (ini_number(reals[k], &d) != 0) fail_msg("'%s' not read as a number", reals[k]);
    for (size_t k = 0; k < sizeof not_reals / sizeof not_reals[0]; k++)
        if (ini_number(not_reals[k], &d) != -1) fail_msg("'%s' read as a number", not_reals[k]);
    assert_int_equal(ini_u64("-1", &u), -1);
    assert_int_equal(ini_int("2147483648", &i), -2);
    assert_int_equal(ini_long("99999999999999999999", &l), -2);
    assert_int_equal(ini_number("1e999", &d), -2);
    assert_int_equal(ini_int("-12", &i), 0);
    assert_int_equal(i, -12);
}

static void test_file_problems(void **state) {
    Fixture *fx = *state;
    Config c;
    config_default(&c);
    HpErr err = {{0}};
    char path[192];
    snprintf(path, sizeof path, "%s/missing.ini", fx->dir);
    assert_int_equal(config_load(&c, path, &err), -1);
    char want[256];
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    assert_string_equal(err.msg, want);
    // A directory opens but does not read.
    assert_int_equal(config_load(&c, fx->dir, &err), -1);
    assert_non_null(strstr(err.msg, fx->dir));
    assert_non_null(strstr(err.msg, "cannot read"));
    // A line longer than inih's buffer is refused at its own line, not split in two.
    char text[600];
    snprintf(text, sizeof text, "[data]\n\ndir = /%0400d\n", 0);
    expect_load_error(fx, text, 3, "line too long");
    // A key set twice, even in a second [train] section, and an indented continuation line
    // (inih would hand it over as a new value of the key above) are refused at their line.
    expect_load_error(fx, "[train]\nlr = 0.1\n[data]\nhflip = true\n[train]\nlr = 0.2\n", 6,
                      "'lr' is set twice in [train] (first at line 2)");
    expect_load_error(fx, "[train]\nlr = 0.1\n  0.2\n", 3, "an indented line continues the value of 'lr' above");
    // The longest line inih holds (198 characters and the newline) is read whole.
    snprintf(text, sizeof text, "[data]\ndir = /%0191d\n", 0);
    assert_int_equal(strlen(text), 7 + 198 + 1);
    Config longest;
    config_default(&longest);
    if (load_text(fx, &longest, text, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(strlen(longest.data_dir), 192);
    // A NUL byte (a binary file) is refused at its line, whether the line goes on after it or
    // starts with it, and not taken for the end of the file.
    static const char nul_mid[] = "[model]\narch = lenet5\0junk\n[train]\nepochs = 1\n";
    static const char nul_start[] = "[model]\narch = lenet5\n\0[train]\nepochs = 1\n";
    const struct {
        const char *bytes;
        size_t len;
        const char *want;
    } nul[] = {{nul_mid, sizeof nul_mid - 1, ":2: NUL byte at column 14 (not a text file)"},
               {nul_start, sizeof nul_start - 1, ":3: NUL byte at column 1 (not a text file)"}};
    for (size_t i = 0; i < sizeof nul / sizeof nul[0]; i++) {
        tu_write(fx->path, nul[i].bytes, nul[i].len);
        Config before = c;
        assert_int_equal(config_load(&c, fx->path, &err), -1);
        char want[256];
        snprintf(want, sizeof want, "%s%s", fx->path, nul[i].want);
        assert_string_equal(err.msg, want);
        assert_memory_equal(&c, &before, sizeof c);
    }
    // A value too long for its field.
    char name[80];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(text, sizeof text, "[model]\narch = %s\n", name);
    expect_load_error(fx, text, 2, "expected one of");
}

// crop_pad and threads have the limits the sweep config and the --threads flags have: 64 and
// 1024 (a larger pad aborted training; a huge thread count asked for gigabytes of scratch).
static void test_limits(void **state) {
    Fixture *fx = *state;
    Config c;
    config_default(&c);
    HpErr err = {{0}};
    if (load_text(fx, &c, "[data]\ncrop_pad = 64\n[train]\nthreads = 1024\n", &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(c.train.augment.crop_pad, HP_MAX_CROP_PAD);
    assert_int_equal(c.train.threads, HP_MAX_THREADS);
    Config before = c;
    assert_int_equal(config_set(&c, "train", "threads", "5000", "--threads", &err), -1);
    assert_string_equal(err.msg, "--threads: 'threads' must be in [0, 1024], got 5000");
    assert_int_equal(config_set(&c, "data", "crop_pad", "65", NULL, &err), -1);
    assert_string_equal(err.msg, "[data] crop_pad: 'crop_pad' must be in [0, 64], got 65");
    assert_memory_equal(&c, &before, sizeof c);
}

// Only blanks and a comment may follow a section header's "]" (inih drops the rest unseen);
// lines end at LF or CRLF, and a CR alone (a file with CR line endings, which would read as one
// long line) is refused at the line where it appears.
static void test_headers_and_line_ends(void **state) {
    Fixture *fx = *state;
    expect_load_error(fx, "[model]\n[train] epochs = 0\n", 2, "text after the section header: 'epochs = 0'");
    expect_load_error(fx, "[train]]\nepochs = 3\n", 1, "text after the section header: ']'");
    expect_load_error(fx, "[train]\nepochs = 3\n[data]x ; c\n", 3, "text after the section header: 'x ; c'");
    Config c;
    config_default(&c);
    HpErr err = {{0}};
    if (load_text(fx, &c, "[train] ; a comment\nepochs = 3\n[data]\t# another\t\nhflip = on\n[model]  \n", &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c.train.epochs, 3);
    assert_true(c.train.augment.hflip);

    expect_load_error(fx, "[model]\rarch = nonsense\r[train]\repochs = 0\r", 1,
                      "a CR not followed by LF at column 8: the file uses CR line endings");
    char text[600] = "[train]\repochs = 3\r";  // longer than a line may be: still the CR, not "too long"
    for (int i = 0; i < 30; i++) strcat(text, "; a comment line\r");
    assert_true(strlen(text) > 400);
    expect_load_error(fx, text, 1, "the file uses CR line endings");
    expect_load_error(fx, "[train]\nepochs = 3\nlr = 0.1\r\n\rbatch_size = 8\n", 4,
                      "a CR not followed by LF at column 1");
    expect_load_error(fx, "[train]\nepochs = 3\r", 2, "a CR not followed by LF at column 11");
    config_default(&c);
    if (load_text(fx, &c, "[train]\r\nepochs = 3\r\nlr = 0.5 ; inline\r\n\r\n[data] ; c\r\nhflip = yes\r\n", &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c.train.epochs, 3);
    assert_float_equal(c.train.lr, 0.5f, 0);
    assert_true(c.train.augment.hflip);

    // 198 characters are the limit with any line end, and on a last line without one.
    snprintf(text, sizeof text, "[data]\r\ndir = /%0191d\r\n", 0);
    if (load_text(fx, &c, text, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(strlen(c.data_dir), 192);
    snprintf(text, sizeof text, "[data]\ndir = /%0191d", 0);
    if (load_text(fx, &c, text, &err) != 0) fail_msg("%s", err.msg);
    snprintf(text, sizeof text, "[data]\ndir = /%0192d", 0);
    assert_int_equal(strlen(text), 7 + 199);
    expect_load_error(fx, text, 2, "line too long (at most 198 characters)");
    snprintf(text, sizeof text, "[data]\ndir = /%0192d\r\n", 0);
    expect_load_error(fx, text, 2, "line too long (at most 198 characters)");
}

static void test_overrides(void **state) {
    (void)state;
    Config c;
    config_default(&c);
    HpErr err = {{0}};
    assert_int_equal(config_set(&c, "train", "lr", "0.01", "--lr", &err), 0);
    assert_float_equal(c.train.lr, 0.01f, 0);
    assert_int_equal(config_set(&c, "data", "hflip", "true", "--hflip", &err), 0);
    assert_true(c.train.augment.hflip);
    assert_int_equal(config_set(&c, "model", "arch", "resnet56", "--arch", &err), 0);
    assert_string_equal(c.arch, "resnet56");
    assert_int_equal(config_set(&c, "train", "output", "out/m.safetensors", "-o", &err), 0);
    assert_string_equal(c.output, "out/m.safetensors");

    Config before = c;
    assert_int_equal(config_set(&c, "train", "lr", "x", "--lr", &err), -1);
    assert_string_equal(err.msg, "--lr: bad value 'x': expected a number");
    assert_int_equal(config_set(&c, "train", "epochs", "0", "--epochs", &err), -1);
    assert_string_equal(err.msg, "--epochs: 'epochs' must be at least 1");
    assert_int_equal(config_set(&c, "train", "lr_decay", "1", "--set", &err), -1);
    assert_non_null(strstr(err.msg, "--set: unknown key 'lr_decay' in [train]"));
    assert_int_equal(config_set(&c, "optim", "beta", "1", "--set", &err), -1);
    assert_non_null(strstr(err.msg, "--set: unknown section [optim]"));
    assert_int_equal(config_set(&c, "train", "lr", " 0.1", "--lr", &err), -1);
    assert_int_equal(config_set(&c, "train", "milestones", "5,3", "--milestones", &err), -1);
    assert_memory_equal(&c, &before, sizeof c);
    // Without a source name, the message names section and key.
    assert_int_equal(config_set(&c, "train", "gamma", "-1", NULL, &err), -1);
    assert_string_equal(err.msg, "[train] gamma: 'gamma' must be greater than 0");
    // A NULL err is allowed.
    assert_int_equal(config_set(&c, "train", "gamma", "-1", "--gamma", NULL), -1);
}

static void test_milestones(void **state) {
    Fixture *fx = *state;
    Config c;
    config_default(&c);
    HpErr err = {{0}};
    assert_int_equal(config_set(&c, "train", "milestones", "30, 60,90", "--m", &err), 0);
    assert_int_equal(c.train.n_milestones, 3);
    assert_int_equal(c.train.milestones[0], 30);
    assert_int_equal(c.train.milestones[1], 60);
    assert_int_equal(c.train.milestones[2], 90);
    assert_int_equal(config_set(&c, "train", "milestones", "1,2,3,4,5,6,7,8", "--m", &err), 0);
    assert_int_equal(c.train.n_milestones, HP_MAX_MILESTONES);
    assert_int_equal(c.train.milestones[7], 8);
    assert_int_equal(config_set(&c, "train", "milestones", "12", "--m", &err), 0);
    assert_int_equal(c.train.n_milestones, 1);
    assert_int_equal(c.train.milestones[0], 12);
    assert_int_equal(config_set(&c, "train", "milestones", "  ", "--m", &err), 0);
    assert_int_equal(c.train.n_milestones, 0);

    static const struct {
        const char *value, *words;
    } bad[] = {
        {"30,20", "ascending"},         {"30,30", "ascending"},       {"30,,60", "comma-separated"},
        {"30,", "comma-separated"},     {",30", "comma-separated"},   {"a", "comma-separated"},
        {"3 0", "comma-separated"},     {"0,5", "'milestones' must be at least 1"},
        {"1,2,3,4,5,6,7,8,9", "at most 8 milestones"},              {"99999999999", "out of range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Config before = c;
        assert_int_equal(config_set(&c, "train", "milestones", bad[i].value, "--milestones", &err), -1);
        if (strncmp(err.msg, "--milestones: ", 14) != 0 || !strstr(err.msg, bad[i].words)) {
            print_error("value '%s': message '%s', wanted '%s'\n", bad[i].value, err.msg, bad[i].words);
            fail();
        }
        assert_memory_equal(&c, &before, sizeof c);
    }
    // In a file, the message names the key and the line.
    expect_load_error(fx, "[train]\nschedule = step\nmilestones = 10, 5\n", 3, "bad value '10, 5' for 'milestones'");
}

// The shared reader on a table of its own: the types and messages neither config uses, the
// range wording of each table style, and the comma-list splitter.
typedef struct {
    double d;
    int e;
    char name[8];
    int n;
} Tiny;

// Returns the names that Tiny's e and name accept.
static const char *const *tiny_names(void) {
    static const char *const names[] = {"ab", "cd", NULL};
    return names;
}

static void test_ini_table(void **state) {
    (void)state;
    static const char *const sections[] = {"s", NULL};
    static const IniKey keys[] = {
        {"s", "d", IK_DOUBLE, INI_FIELD(Tiny, d), 0, 2, IK_RANGE | IK_MIN_EXCL},
        {"s", "e", IK_ENUM, INI_FIELD(Tiny, e), .choices = tiny_names},
        {"s", "name", IK_NAME, INI_FIELD(Tiny, name), .flags = IK_NONEMPTY, .choices = tiny_names, .expect = "ab or cd"},
        {"s", "n", IK_INT, INI_FIELD(Tiny, n), 1, 1 << 24, IK_RANGE},
    };
    IniTable t = {.sections = sections, .keys = keys, .n_keys = 4};
    Tiny x = {0};
    HpErr err = {{0}};
    assert_int_equal(ini_table_set(&t, &x, "s", "d", "1.1", 0, &err), 0);
    assert_true(x.d == 1.1);  // a double, not rounded to float
    assert_int_equal(ini_table_set(&t, &x, "s", "d", "0", 0, &err), -1);
    assert_string_equal(err.msg, "'d' must be greater than 0");
    t.spans = true;
    assert_int_equal(ini_table_set(&t, &x, "s", "d", "2.5", 3, &err), -1);
    assert_string_equal(err.msg, "'d' must be in (0, 2], got 2.5");
    assert_int_equal(ini_table_set(&t, &x, "s", "n", "0", 3, &err), -1);  // whole bounds in full, not %g's 1.67772e+07
    assert_string_equal(err.msg, "'n' must be in [1, 16777216], got 0");
    t.spans = false;
    assert_int_equal(ini_table_set(&t, &x, "s", "n", "16777217", 3, &err), -1);
    assert_string_equal(err.msg, "'n' must be at most 16777216");
    t.spans = true;
    assert_int_equal(ini_table_set(&t, &x, "s", "e", "cd", 0, &err), 0);
    assert_int_equal(x.e, 1);
    assert_int_equal(ini_table_set(&t, &x, "s", "e", "x", 0, &err), -1);
    assert_string_equal(err.msg, "bad value 'x': expected one of ab, cd");
    assert_int_equal(ini_table_set(&t, &x, "s", "name", "x", 5, &err), -1);
    assert_string_equal(err.msg, "bad value 'x' for 'name': expected ab or cd");
    assert_int_equal(ini_table_set(&t, &x, "s", "name", "", 5, &err), -1);
    assert_string_equal(err.msg, "'name' must not be empty");
    assert_int_equal(ini_table_set(&t, &x, "s", "f", "1", 5, &err), -1);
    assert_string_equal(err.msg, "unknown key 'f' in [s] (known: d, e, name, n)");
    assert_true(x.d == 1.1 && x.e == 1 && x.name[0] == '\0' && x.n == 0);  // failed sets change nothing

    char toks[3][INI_TOKEN], long_entry[INI_TOKEN + 1];
    assert_int_equal(ini_split(" a ,b,  c", toks, 3), 3);
    assert_string_equal(toks[0], "a");
    assert_string_equal(toks[2], "c");
    assert_int_equal(ini_split("a,b,c,d", toks, 3), INI_SPLIT_MANY);
    assert_int_equal(ini_split("a, ,c", toks, 3), INI_SPLIT_EMPTY);
    assert_int_equal(ini_split("", toks, 3), INI_SPLIT_EMPTY);
    memset(long_entry, 'x', INI_TOKEN);
    long_entry[INI_TOKEN] = '\0';
    assert_int_equal(ini_split(long_entry, toks, 3), INI_SPLIT_LONG);
}

// config_load_lines records the line at which the file sets each key (0: not set), for the
// callers that name a key's line after the load (prune --config, train's data); a failed load
// leaves the lines as they were, and another file's load replaces them.
static void test_key_lines(void **state) {
    Fixture *fx = *state;
    Config c;
    ConfigLines lines;
    config_default(&c);
    HpErr err = {{0}};
    const char *text = "; a comment\n"
                       "[model]\n"
                       "arch = resnet20\n"
                       "\n"
                       "[data]\n"
                       "dir = /data/fmnist\n"
                       "[train]\n"
                       "epochs = 3\n"
                       "output = m.safetensors\n";
    tu_write(fx->path, text, strlen(text));
    assert_int_equal(config_load_lines(&c, fx->path, &lines, &err), 0);
    assert_int_equal(config_line(&lines, "model", "arch"), 3);
    assert_int_equal(config_line(&lines, "data", "dir"), 6);
    assert_int_equal(config_line(&lines, "train", "epochs"), 8);
    assert_int_equal(config_line(&lines, "train", "output"), 9);
    assert_int_equal(config_line(&lines, "data", "dataset"), 0);  // the default, set by no line
    assert_int_equal(config_line(&lines, "train", "seed"), 0);
    assert_string_equal(c.data_dir, "/data/fmnist");

    ConfigLines before = lines;
    const char *bad = "[train]\nseed = 4\nlr = x\n";
    tu_write(fx->path, bad, strlen(bad));
    assert_int_equal(config_load_lines(&c, fx->path, &lines, &err), -1);
    assert_memory_equal(&lines, &before, sizeof lines);

    const char *second = "[train]\n\nseed = 4\n";
    tu_write(fx->path, second, strlen(second));
    assert_int_equal(config_load_lines(&c, fx->path, &lines, &err), 0);
    assert_int_equal(config_line(&lines, "train", "seed"), 3);
    assert_int_equal(config_line(&lines, "train", "epochs"), 0);  // this file does not set it
    assert_int_equal(c.train.epochs, 3);                         // the value stays the earlier file's
    assert_int_equal(config_load(&c, fx->path, &err), 0);        // the plain load records nothing
}

// The reader beneath: ini_table_key_index finds a key's entry; ini_table_load_lines fills one line
// per entry and takes a NULL array.
static void test_ini_table_lines(void **state) {
    Fixture *fx = *state;
    static const char *const sections[] = {"a", "b", NULL};
    typedef struct {
        int x, y;
    } Pair;
    static const IniKey keys[] = {
        {"a", "x", IK_INT, INI_FIELD(Pair, x)},
        {"b", "x", IK_INT, INI_FIELD(Pair, y)},
    };
    const IniTable t = {.sections = sections, .keys = keys, .n_keys = 2};
    assert_int_equal(ini_table_key_index(&t, "a", "x"), 0);
    assert_int_equal(ini_table_key_index(&t, "b", "x"), 1);
    assert_int_equal(ini_table_key_index(&t, "b", "y"), -1);
    assert_int_equal(ini_table_key_index(&t, "c", "x"), -1);
    const char *text = "[b]\nx = 2\n[a]\n\nx = 1\n";
    tu_write(fx->path, text, strlen(text));
    Pair p = {0, 0};
    int line[2] = {-1, -1};
    HpErr err = {{0}};
    assert_int_equal(ini_table_load_lines(&t, &p, fx->path, line, &err), 0);
    assert_true(p.x == 1 && p.y == 2);
    assert_int_equal(line[0], 5);
    assert_int_equal(line[1], 2);
    assert_int_equal(ini_table_load_lines(&t, &p, fx->path, NULL, &err), 0);
}

// The shipped configs load (the tests run from the repository root) and say what they claim.
static void test_shipped_configs(void **state) {
    (void)state;
    if (access("configs/lenet5_fmnist.ini", R_OK) != 0) skip();
    Config c;
    HpErr err = {{0}};
    config_default(&c);
    if (config_load(&c, "configs/lenet5_fmnist.ini", &err) != 0) fail_msg("%s", err.msg);
    assert_string_equal(c.arch, "lenet5");
    assert_true(c.train.epochs >= 1);  // the recipe may be retuned; the file must stay valid
    assert_string_equal(c.output, "runs/lenet5_fmnist.safetensors");
    config_default(&c);
    if (config_load(&c, "configs/resnet20_fmnist.ini", &err) != 0) fail_msg("%s", err.msg);
    assert_string_equal(c.arch, "resnet20");
    assert_true(c.train.epochs > c.train.warmup_epochs);
    assert_true(c.train.augment.crop_pad > 0);
    assert_string_equal(c.output, "runs/resnet20_fmnist.safetensors");
    // The fine-tuning config sets only what prune uses: no [model], no [train] key that prune's
    // options set instead (each would be warned of).
    ConfigLines lines;
    config_default(&c);
    if (config_load_lines(&c, "configs/finetune_resnet20.ini", &lines, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(config_line(&lines, "model", "arch"), 0);
    static const char *const unused[] = {"epochs", "seed", "threads", "output"};
    for (int i = 0; i < 4; i++)
        if (config_line(&lines, "train", unused[i]) != 0) fail_msg("finetune_resnet20.ini sets [train] %s", unused[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comments_and_layering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_named_by_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_error_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_numbers, setup, teardown),
        cmocka_unit_test(test_number_grammar),
        cmocka_unit_test_setup_teardown(test_file_problems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_headers_and_line_ends, setup, teardown),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test_setup_teardown(test_milestones, setup, teardown),
        cmocka_unit_test(test_ini_table),
        cmocka_unit_test_setup_teardown(test_key_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ini_table_lines, setup, teardown),
        cmocka_unit_test(test_shipped_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
