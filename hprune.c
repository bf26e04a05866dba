// hprune.c: the command line. The only place that parses arguments, prints, shows progress
// and exits. Exit codes: 0 success, 1 runtime error, 2 usage error.
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "formats/config.h"
#include "formats/formats.h"
#include "formats/ini_table.h"
#include "nn/data.h"
#include "nn/nn.h"
#include "nn/train.h"
#include "prune/prune.h"

// ---- help texts ----

static const char *const HELP_MAIN =
    "hprune: Hessian-aware channel pruning for convolutional networks\n"
    "\n"
    "usage: hprune COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  train   train a built-in architecture from an INI config\n"
    "  eval    test accuracy and loss of a model file\n"
    "  info    per-layer table of a model: shapes, parameters, MACs\n"
    "  hessian curvature of the loss: trace per model, layer or channel, eigenvalues,\n"
    "          spectral density, loss landscape\n"
    "  prune   remove the least important channels to a MACs, parameter or channel\n"
    "          target, fine-tune, write the smaller model and a report\n"
    "  sweep   a pruning study from a config: methods x targets x seeds, restartable and\n"
    "          shardable, merged into a CSV, a Markdown table and an accuracy-vs-MACs chart\n"
    "  sensitivity  each layer pruned alone at a range of ratios, accuracy beside its\n"
    "          Hessian trace\n"
    "\n"
    "Run 'hprune COMMAND --help' for a command's options.\n"
    "Exit status: 0 success, 1 runtime error, 2 usage error.\n";

static const char *const HELP_TRAIN =
    "usage: hprune train --config FILE [options]\n"
    "\n"
    "Trains the architecture named in FILE ([model], [data], [train] sections) and writes\n"
    "the model as safetensors. A checkpoint (OUTPUT.ckpt) is written atomically after every\n"
    "epoch; --resume continues from it exactly (same seed and threads give the same model).\n"
    "The checkpoint is removed once the model is written: --resume is for an interrupted run.\n"
    "\n"
    "options:\n"
    "  -c, --config FILE     INI configuration (required)\n"
    "  -o, --output FILE     model file to write (default: [train] output)\n"
    "      --epochs N        override [train] epochs\n"
    "      --lr X            override [train] lr\n"
    "      --batch-size B    override [train] batch_size\n"
    "      --seed S          override [train] seed\n"
    "      --data DIR        override [data] dir\n"
    "      --threads N       OpenMP threads (default: all cores)\n"
    "      --resume          continue from OUTPUT.ckpt\n"
    "  -h, --help            this text\n";

static const char *const HELP_EVAL =
    "usage: hprune eval MODEL [options]\n"
    "\n"
    "Test accuracy and mean loss of MODEL on the test split of its dataset.\n"
    "\n"
    "options:\n"
    "      --data DIR        dataset directory (default: the one the model was trained on,\n"
    "                        else " DEFAULT_DATA_DIR ")\n"
    "      --dataset NAME    fashion-mnist, mnist or cifar10 (default: from the model)\n"
    "      --batch-size B    evaluation batch size (default 256)\n"
    "      --threads N       OpenMP threads (default: all cores)\n"
    "      --json            one JSON object on stdout\n"
    "  -h, --help            this text\n";

static const char *const HELP_INFO =
    "usage: hprune info MODEL [--groups] [--json]\n"
    "\n"
    "Per-layer table of MODEL (name, op, output shape, parameters, MACs per image) and totals.\n"
    "MODEL is a model file, or a built-in architecture name (lenet5, vgg11, resnet20,\n"
    "resnet32, resnet56) shown for --input (default 1x28x28) and --classes (default 10).\n"
    "\n"
    "options:\n"
    "      --groups          the channel groups instead: channels removed together, one line\n"
    "                        per group (name, channels, prunable or why not, and its members:\n"
    "                        producers, per-channel layers, consumers; \"(xN)\": N features\n"
    "                        per channel after a flatten)\n"
    "      --json            one JSON object with top-level \"params\" and \"macs\" (and with\n"
    "                        --groups a \"groups\" array)\n"
    "      --input CxHxW     input shape for an architecture name\n"
    "      --classes K       class count for an architecture name\n"
    "  -h, --help            this text\n";

// ---- train ----

// Saves the per-epoch checkpoint (model, momentum, next epoch, the training's seconds so far,
// this run's and those before it) atomically.
static int on_checkpoint(const Model *m, const TrainState *s, void *user, HpErr *err) {
    TrainUi *ui = user;
    char state[200];
    snprintf(state, sizeof state, "{\"next_epoch\":%d,\"best_val_acc\":%.9g,\"seed\":%llu,\"train_seconds\":%.3f}",
             s->next_epoch, (double)s->best_val_acc, (unsigned long long)ui->cfg->seed,
             ui->earlier_s + now_s() - ui->started);
    CheckpointExtra extra = {.momentum = s->momentum, .train_state_json = state};
    return model_save(m, ui->ckpt_path, &extra, err);
}

// Reads next_epoch and best_val_acc from a checkpoint's train state JSON, and into *seconds
// the training seconds before it (its train_seconds; 0 in a checkpoint from before hprune
// recorded them), or exits.
static void parse_train_state(const char *path, const char *json, TrainState *s, double *seconds) {
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *ne = cJSON_GetObjectItemCaseSensitive(root, "next_epoch");
    const cJSON *bv = cJSON_GetObjectItemCaseSensitive(root, "best_val_acc");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "train_seconds");
    const double next = cJSON_IsNumber(ne) ? ne->valuedouble : -1, best = cJSON_IsNumber(bv) ? bv->valuedouble : -1;
    const double secs = ts == NULL ? 0 : cJSON_IsNumber(ts) ? ts->valuedouble : -1;
    const bool numbers = cJSON_IsNumber(ne) && cJSON_IsNumber(bv), secs_number = ts == NULL || cJSON_IsNumber(ts);
    cJSON_Delete(root);
    if (!numbers) die("%s: not a training checkpoint: no valid 'hprune.train_state' in __metadata__", path);
    if (!(next >= 0 && next <= 1e6 && next == floor(next)))
        die("%s: hprune.train_state: next_epoch %g is not a whole number in [0, 1000000]", path, next);
    if (!(best >= 0 && best <= 1))
        die("%s: hprune.train_state: best_val_acc %g is not an accuracy in [0, 1]", path, best);
    if (!secs_number) die("%s: hprune.train_state: train_seconds is not a number", path);
    if (!(secs >= 0 && secs <= 1e10))
        die("%s: hprune.train_state: train_seconds %g is not a number of seconds in [0, 1e10]", path, secs);
    s->next_epoch = (int)next;
    s->best_val_acc = (float)best;
    *seconds = secs;
}

// Writes the provenance JSON of a finished run into m->provenance.
static void set_provenance(Model *m, const Config *cfg, const char *config_path, float test_acc, float test_loss,
                           double seconds) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "tool", "hprune " HPRUNE_VERSION);
    cJSON_AddStringToObject(p, "dataset", cfg->dataset);
    cJSON_AddStringToObject(p, "data_dir", cfg->data_dir);
    cJSON_AddStringToObject(p, "config", config_path);
    cJSON_AddNumberToObject(p, "epochs", cfg->train.epochs);
    cJSON_AddNumberToObject(p, "batch_size", cfg->train.batch_size);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)cfg->train.seed);
    cJSON_AddStringToObject(p, "seed", seed);
    cJSON_AddNumberToObject(p, "test_accuracy", round(test_acc * 1e6) / 1e6);
    cJSON_AddNumberToObject(p, "test_loss", round(test_loss * 1e6) / 1e6);
    cJSON_AddNumberToObject(p, "train_seconds", round(seconds * 10) / 10);
    time_t t = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    cJSON_AddStringToObject(p, "date", date);
    free(m->provenance);
    m->provenance = json_text(p, false, NULL);
    cJSON_Delete(p);
}

// Applies a command-line override through the config's own validation, or exits (usage).
static void override(Config *cfg, const char *section, const char *key, const char *value, const char *flag) {
    HpErr err;
    if (config_set(cfg, section, key, value, flag, &err) < 0) usage_error("train", "%s", err.msg);
}

// Formats a shape as "1x28x28" into buf (cap bytes); returns buf.
static const char *shape_text(Shape s, char *buf, size_t cap) {
    snprintf(buf, cap, "%dx%dx%d", s.c, s.h, s.w);
    return buf;
}

// Exits before any data is read or buffer allocated when training cfg's architecture on n_all
// images of shape `in` (n_train of them trained on) would not fit in memory: first its
// parameters alone (the model, its momentum and its gradient), then everything (those, the
// training images and what train() allocates for a batch: train_bytes). path names the config.
static void check_train_memory(const Config *cfg, const char *path, Shape in, int classes, int n_all, int n_train) {
    Model m;
    HpErr err;
    if (arch_layout(&m, cfg->arch, in, classes, &err) < 0) die("%s: %s", path, err.msg);
    char what[256], shape[48];
    double params = 3.0 * (double)model_bytes(&m);  // the model, the momentum, the gradient
    snprintf(what, sizeof what, "%s on %s images would have %zu parameters, which with their momentum and gradient need",
             m.arch, shape_text(in, shape, sizeof shape), m.n_params);
    check_memory_fits(path, what, params, "use smaller images or a smaller architecture");
    double data = (double)n_all * (double)shape_numel(in);
    double need = params - 4.0 * (double)m.n_params + data + (double)train_bytes(&m, cfg->train.batch_size, n_train, 0);
    snprintf(what, sizeof what, "training %s on %s images in batches of %d needs", m.arch, shape, cfg->train.batch_size);
    check_memory_fits(path, what, need, "lower --batch-size (or [train] batch_size)");
    model_free(&m);
}

// Exits with the failure to read the training data (problem), naming the config line that chose
// it: "CONFIG:LINE: [data] dir: cannot load NAME: problem", or [data] dataset's line when the
// config names the dataset but not its directory, or "CONFIG: no [data] dir: ..." when it names
// neither; a directory given by --data (dir_given) is named by problem alone.
__attribute__((noreturn)) static void train_data_error(const Config *cfg, const char *path, const ConfigLines *lines,
                                                       bool dir_given, const char *problem) {
    if (dir_given) die("%s", problem);
    int dir_line = config_line(lines, "data", "dir"), name_line = config_line(lines, "data", "dataset");
    if (dir_line) die("%s:%d: [data] dir: cannot load %s: %s", path, dir_line, cfg->dataset, problem);
    if (name_line) die("%s:%d: [data] dataset: cannot load %s: %s", path, name_line, cfg->dataset, problem);
    die("%s: no [data] dir: cannot load %s: %s", path, cfg->dataset, problem);
}

static int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"output", required_argument, 0, 'o'},
        {"epochs", required_argument, 0, 'e'}, {"lr", required_argument, 0, 'l'},
        {"batch-size", required_argument, 0, 'b'}, {"seed", required_argument, 0, 's'},
        {"data", required_argument, 0, 'd'}, {"threads", required_argument, 0, 't'},
        {"resume", no_argument, 0, 'r'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    // options that override a config key: option code -> (section, key, flag)
    static const struct {
        int code;
        const char *section, *key, *flag;
    } keys[] = {{'o', "train", "output", "--output"},     {'e', "train", "epochs", "--epochs"},
                {'l', "train", "lr", "--lr"},             {'b', "train", "batch_size", "--batch-size"},
                {'s', "train", "seed", "--seed"},         {'d', "data", "dir", "--data"},
                {'t', "train", "threads", "--threads"}};
    const char *config_path = NULL, *values[sizeof keys / sizeof keys[0]] = {0};
    bool resume = false, seen[sizeof opts / sizeof opts[0]] = {0};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:o:h", opts, NULL)) != -1) {
        option_once("train", ":c:o:h", opts, seen, c);
        switch (c) {
        case 'c': config_path = optarg; continue;
        case 'r': resume = true; continue;
        case 'o': model_output_option("train", option_form(argv, "-o", "--output"), optarg); break;
        case 'h': fputs(HELP_TRAIN, stdout); return 0;
        case ':': usage_error("train", "option '%s' needs a value", argv[optind - 1]);
        case '?': bad_option("train", argv, opts);
        }
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (keys[k].code == c) values[k] = optarg;
    }
    if (optind < argc) usage_error("train", "unexpected argument '%s'", argv[optind]);
    if (!config_path) usage_error("train", "--config FILE is required");

    Config cfg;
    ConfigLines lines;
    HpErr err;
    config_default(&cfg);
    if (config_load_lines(&cfg, config_path, &lines, &err) < 0) die("%s", err.msg);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (values[k]) override(&cfg, keys[k].section, keys[k].key, values[k], keys[k].flag);
    if (!cfg.output[0]) usage_error("train", "no output file: give -o FILE or [train] output");
    char ckpt[600];
    if ((size_t)snprintf(ckpt, sizeof ckpt, "%s.ckpt", cfg.output) >= sizeof ckpt) die("%s: path too long", cfg.output);
    const char *outs[] = {cfg.output, ckpt}, *labels[] = {"the output model", "its checkpoint"};
    check_spares_inputs("train", outs, labels, 2, &config_path, (const char *const[]){"the config"}, 1);
    check_output_path(cfg.output);
    check_output_path(ckpt);  // written after every epoch: its name must fit too
    int threads = set_threads(cfg.train.threads, 1);

    // sized from the files' headers before the images are read
    Shape in;
    int n_all, classes;
    bool dir_given = false;  // --data, not the config, names the directory
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) dir_given |= keys[k].code == 'd' && values[k];
    int name_line = config_line(&lines, "data", "dataset");
    if (!dir_given && !config_line(&lines, "data", "dir") && strcmp(cfg.dataset, "fashion-mnist") != 0)
        die("%s:%d: [data] dataset %s: give its directory with [data] dir or --data DIR (the default, %s, is "
            "Fashion-MNIST's)", config_path, name_line, cfg.dataset, DEFAULT_DATA_DIR);
    if (dataset_peek(cfg.dataset, cfg.data_dir, &in, &n_all, &classes, &err) < 0)
        train_data_error(&cfg, config_path, &lines, dir_given, err.msg);
    int n_val = dataset_val_count(n_all, cfg.train.val_split);
    if (n_all - n_val < cfg.train.batch_size)  // train() would say so too, without naming the data
        die("%s: the %s training set has %d images%s, fewer than one batch of %d", cfg.data_dir, cfg.dataset,
            n_all - n_val, n_val > 0 ? " after the validation split" : "", cfg.train.batch_size);
    check_train_memory(&cfg, config_path, in, classes, n_all, n_all - n_val);

    Dataset all, test, tr, val;
    if (dataset_load(cfg.dataset, cfg.data_dir, &all, &test, &err) < 0)
        train_data_error(&cfg, config_path, &lines, dir_given, err.msg);
    if (dataset_split(&all, cfg.train.val_split, cfg.train.seed, &tr, &val, &err) < 0) die("%s", err.msg);
    dataset_free(&all);
    if (tr.n < cfg.train.batch_size)  // the files changed since they were peeked at
        die("%s: the %s training set has %d images%s, fewer than one batch of %d", cfg.data_dir, cfg.dataset, tr.n,
            val.n > 0 ? " after the validation split" : "", cfg.train.batch_size);

    Model m;
    TrainState state = {0};
    double earlier_s = 0;  // the training seconds of the runs before this one (resumed)
    if (resume) {
        char *ts = NULL;
        if (model_load(&m, ckpt, &state.momentum, &ts, &err) < 0) die("--resume: %s", err.msg);
        parse_train_state(ckpt, ts, &state, &earlier_s);
        free(ts);
        if (strcmp(m.arch, cfg.arch) != 0) die("%s: checkpoint is a %s, the config trains a %s", ckpt, m.arch, cfg.arch);
        if (!state.momentum) state.momentum = xcalloc(m.n_params, sizeof(float));
        fprintf(stderr, "resuming %s from epoch %d of %d\n", ckpt, state.next_epoch + 1, cfg.train.epochs);
    } else {
        Shape in = {tr.c, tr.h, tr.w};
        if (arch_build(&m, cfg.arch, in, tr.n_classes, &err) < 0) die("%s: %s", config_path, err.msg);
        Rng rng;
        rng_seed(&rng, cfg.train.seed, 0);
        model_init_params(&m, &rng);
        dataset_channel_stats(&tr, m.norm_mean, m.norm_std);
        state.momentum = xcalloc(m.n_params, sizeof(float));
    }
    if (m.input.c != tr.c || m.input.h != tr.h || m.input.w != tr.w)
        die("%s: model takes %dx%dx%d inputs, dataset has %dx%dx%d", resume ? ckpt : config_path, m.input.c, m.input.h,
            m.input.w, tr.c, tr.h, tr.w);

    fprintf(stderr, "training %s on %s (%d train, %d val, %d test images), %zu parameters, %d thread%s\n", m.arch,
            cfg.dataset, tr.n, val.n, test.n, m.n_params, threads, plural(threads));
    double t0 = now_s();
    TrainUi ui = {.tty = isatty(STDERR_FILENO), .ckpt_path = ckpt, .started = t0, .earlier_s = earlier_s,
                  .cfg = &cfg.train, .last_test_acc = -1, .last_val_acc = -1};
    int rc = train(&m, &cfg.train, &tr, &val, &test, &state, train_progress_print, on_checkpoint, &ui, &err);
    if (rc < 0) die("%s", err.msg);
    if (ui.last_test_acc < 0) {  // nothing left to train: report the model as it is
        Workspace ws;
        if (ws_init(&ws, &m, 256, threads, &err) < 0 ||
            evaluate(&m, &ws, &test, &ui.last_test_loss, &ui.last_test_acc, &err) < 0)
            die("%s", err.msg);
        ws_free(&ws);
    }
    set_provenance(&m, &cfg, config_path, ui.last_test_acc, ui.last_test_loss, earlier_s + now_s() - t0);
    if (model_save(&m, cfg.output, NULL, &err) < 0) die("%s", err.msg);
    unlink(ckpt);
    printf("wrote %s: test accuracy %.2f%%, loss %.4f\n", cfg.output, 100.0 * ui.last_test_acc, ui.last_test_loss);
    free(state.momentum);
    model_free(&m);
    dataset_free(&tr);
    dataset_free(&val);
    dataset_free(&test);
    return 0;
}

// ---- eval ----

static int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {{"data", required_argument, 0, 'd'}, {"dataset", required_argument, 0, 'n'},
                                         {"batch-size", required_argument, 0, 'b'},
                                         {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *data = NULL, *dataset = NULL;
    int batch = 256, threads = 0;
    bool json = false, seen[sizeof opts / sizeof opts[0]] = {0};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        option_once("eval", ":h", opts, seen, c);
        switch (c) {
        case 'd': data = optarg; break;
        case 'n': dataset = optarg; break;
        case 'b': batch = (int)parse_int("eval", "--batch-size", optarg, 1, 65536); break;
        case 't': threads = (int)parse_int("eval", "--threads", optarg, 0, HP_MAX_THREADS); break;
        case 'j': json = true; break;
        case 'h': fputs(HELP_EVAL, stdout); return 0;
        case ':': usage_error("eval", "option '%s' needs a value", argv[optind - 1]);
        default: bad_option("eval", argv, opts);
        }
    }
    if (optind != argc - 1) usage_error("eval", optind >= argc ? "MODEL is required" : "one MODEL only");
    if (dataset) {  // the config's own check of the name
        Config tmp;
        HpErr err;
        config_default(&tmp);
        if (config_set(&tmp, "data", "dataset", dataset, "--dataset", &err) < 0) usage_error("eval", "%s", err.msg);
    }
    const char *path = argv[optind];
    threads = set_threads(threads, 1);
    Model m;
    load_model_or_die(&m, path);
    char what[96];
    snprintf(what, sizeof what, "evaluating in batches of %d needs", batch);
    check_memory_fits(path, what, (double)ws_bytes(&m, batch, threads) + (double)evaluate_bytes(&m, batch),
                      "lower --batch-size");
    Dataset test;
    char name[64];
    load_model_dataset_or_die("eval", &m, path, dataset, data, NULL, &test, name, sizeof name);  // the test split alone
    Workspace ws;
    HpErr err;
    if (ws_init(&ws, &m, batch, threads, &err) < 0) die("%s: %s (lower --batch-size)", path, err.msg);
    double t0 = now_s();
    float loss, acc;
    if (evaluate(&m, &ws, &test, &loss, &acc, &err) < 0) die("%s: %s", path, err.msg);
    double dt = now_s() - t0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", path);
        cJSON_AddStringToObject(o, "dataset", name);
        cJSON_AddNumberToObject(o, "images", test.n);
        cJSON_AddNumberToObject(o, "accuracy", round(acc * 1e6) / 1e6);
        cJSON_AddNumberToObject(o, "loss", round(loss * 1e6) / 1e6);
        cJSON_AddNumberToObject(o, "seconds", round(dt * 1e3) / 1e3);
        char *text = json_text(o, false, NULL);
        puts(text);
        free(text);
        cJSON_Delete(o);
    } else
        printf("%s on %s test (%d images): accuracy %.2f%%, loss %.4f  (%.2fs, %.0f img/s)\n", path, name, test.n,
               100.0 * acc, loss, dt, test.n / dt);
    ws_free(&ws);
    dataset_free(&test);
    model_free(&m);
    return 0;
}

// ---- info ----

// Formats a node's output shape as "16x28x28" (or "10" for a vector).
static const char *fmt_shape(Shape s, char *buf, size_t cap) {
    if (s.h == 1 && s.w == 1)
        snprintf(buf, cap, "%d", s.c);
    else
        snprintf(buf, cap, "%dx%dx%d", s.c, s.h, s.w);
    return buf;
}

// Prints the per-layer table and totals.
static void print_info_table(const Model *m, const char *source) {
    char shape[48];
    uint64_t macs = 0;
    size_t params = 0;
    printf("%s: %s, input %dx%dx%d, %d classes\n", source, m->arch, m->input.c, m->input.h, m->input.w, m->n_classes);
    printf("%-22s %-15s %-12s %10s %12s\n", "layer", "op", "output", "params", "MACs");
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        size_t p = node_params(m, i);
        uint64_t mac = node_macs(m, i);
        params += p;
        macs += mac;
        printf("%-22s %-15s %-12s %10zu %12llu\n", n->name, op_kind_name(n->op), fmt_shape(n->out, shape, sizeof shape),
               p, (unsigned long long)mac);
    }
    printf("total: %zu parameters (%.3f M), %llu MACs per image (%.3f M)\n", params, params / 1e6,
           (unsigned long long)macs, macs / 1e6);
}

// A member role as printed ("producer", "per-channel", "consumer").
static const char *role_name(MemberRole r) {
    return r == MEMBER_PRODUCER ? "producer" : r == MEMBER_PERCHANNEL ? "per-channel" : "consumer";
}

// Features per channel a member sees: 1, or H*W of a flattened map (a conv consumer's spread
// also counts its kernel's k*k columns, which this leaves out).
static int member_features(const Model *m, const GroupMember *mb) {
    const Node *n = &m->nodes[mb->node];
    int kk = (mb->role == MEMBER_CONSUMER && n->op == OP_CONV2D) ? n->kernel * n->kernel : 1;
    return mb->spread / kk;
}

// Prints the members of g with one role as "label: a, b (x25)"; returns whether any were printed.
static bool print_members(const Model *m, const ChannelGroup *g, MemberRole role, const char *label, bool sep) {
    bool any = false;
    for (int j = 0; j < g->n_members; j++) {
        const GroupMember *mb = &g->members[j];
        if (mb->role != role) continue;
        printf("%s%s", any ? ", " : sep ? "; " : "", any ? "" : label);
        printf("%s", m->nodes[mb->node].name);
        if (member_features(m, mb) > 1) printf(" (x%d)", member_features(m, mb));
        any = true;
    }
    return any;
}

// Prints one line per channel group and a total line.
static void print_groups_table(const Model *m, const char *source, const GroupSet *gs) {
    int prunable = 0, channels = 0;
    printf("%s: %s, input %dx%dx%d, %d classes, %d channel groups\n", source, m->arch, m->input.c, m->input.h,
           m->input.w, m->n_classes, gs->n_groups);
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        char status[64];
        if (grp->prunable)
            snprintf(status, sizeof status, "prunable");
        else
            snprintf(status, sizeof status, "not prunable (%s)", grp->why_not);
        printf("%-22s %4d ch  %s  ", grp->name, grp->n_channels, status);
        bool sep = print_members(m, grp, MEMBER_PRODUCER, "producers: ", false);
        sep = print_members(m, grp, MEMBER_PERCHANNEL, "per-channel: ", sep) || sep;
        print_members(m, grp, MEMBER_CONSUMER, "consumers: ", sep);
        printf("\n");
        prunable += grp->prunable;
        channels += grp->prunable ? grp->n_channels : 0;
    }
    printf("total: %d groups, %d prunable with %d channels\n", gs->n_groups, prunable, channels);
}

// The channel groups as a JSON array.
static cJSON *groups_json(const Model *m, const GroupSet *gs) {
    cJSON *arr = cJSON_CreateArray();
    for (int g = 0; g < gs->n_groups; g++) {
        const ChannelGroup *grp = &gs->groups[g];
        cJSON *o = cJSON_CreateObject(), *members = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "name", grp->name);
        cJSON_AddNumberToObject(o, "channels", grp->n_channels);
        cJSON_AddBoolToObject(o, "prunable", grp->prunable);
        if (grp->why_not)
            cJSON_AddStringToObject(o, "why_not", grp->why_not);
        else
            cJSON_AddNullToObject(o, "why_not");
        for (int j = 0; j < grp->n_members; j++) {
            cJSON *mb = cJSON_CreateObject();
            cJSON_AddStringToObject(mb, "node", m->nodes[grp->members[j].node].name);
            cJSON_AddStringToObject(mb, "role", role_name(grp->members[j].role));
            cJSON_AddNumberToObject(mb, "spread", grp->members[j].spread);
            cJSON_AddItemToArray(members, mb);
        }
        cJSON_AddItemToObject(o, "members", members);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

// Prints the same as one JSON object (with a "groups" array when gs is not NULL).
static void print_info_json(const Model *m, const char *source, const GroupSet *gs) {
    cJSON *root = cJSON_CreateObject(), *layers = cJSON_CreateArray();
    uint64_t macs = 0;
    size_t params = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const Node *n = &m->nodes[i];
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "name", n->name);
        cJSON_AddStringToObject(l, "op", op_kind_name(n->op));
        int shp[3] = {n->out.c, n->out.h, n->out.w};
        cJSON_AddItemToObject(l, "output", cJSON_CreateIntArray(shp, 3));
        cJSON_AddNumberToObject(l, "params", (double)node_params(m, i));
        cJSON_AddNumberToObject(l, "macs", (double)node_macs(m, i));
        cJSON_AddItemToArray(layers, l);
        params += node_params(m, i);
        macs += node_macs(m, i);
    }
    cJSON_AddStringToObject(root, "model", source);
    cJSON_AddStringToObject(root, "arch", m->arch);
    int in[3] = {m->input.c, m->input.h, m->input.w};
    cJSON_AddItemToObject(root, "input", cJSON_CreateIntArray(in, 3));
    cJSON_AddNumberToObject(root, "classes", m->n_classes);
    cJSON_AddNumberToObject(root, "params", (double)params);
    cJSON_AddNumberToObject(root, "macs", (double)macs);
    cJSON_AddItemToObject(root, "layers", layers);
    if (gs) cJSON_AddItemToObject(root, "groups", groups_json(m, gs));
    if (m->provenance) {
        cJSON *prov = cJSON_Parse(m->provenance);
        if (prov) cJSON_AddItemToObject(root, "provenance", prov);
    }
    char *text = json_text(root, false, NULL);
    puts(text);
    free(text);
    cJSON_Delete(root);
}

// True if s names a built-in architecture.
static bool is_arch_name(const char *s) {
    for (const char *const *a = arch_names(); *a; a++)
        if (strcmp(*a, s) == 0) return true;
    return false;
}

// Parses "CxHxW", three plain decimal integers (ini_int's grammar), into *in; false if s is not that.
static bool parse_shape(const char *s, Shape *in) {
    int v[3];
    for (int i = 0; i < 3; i++) {
        char tok[16];
        size_t len = strcspn(s, "x");
        if (len >= sizeof tok || (s[len] == 'x') != (i < 2)) return false;
        memcpy(tok, s, len);
        tok[len] = '\0';
        if (ini_int(tok, &v[i]) != 0) return false;
        s += len + 1;
    }
    *in = (Shape){.c = v[0], .h = v[1], .w = v[2]};
    return true;
}

static int cmd_info(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {"input", required_argument, 0, 'i'},
                                         {"classes", required_argument, 0, 'k'}, {"groups", no_argument, 0, 'g'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool json = false, groups = false, seen[sizeof opts / sizeof opts[0]] = {0};
    const char *arch_opt = NULL;  // the first of --input, --classes given (for an architecture name)
    Shape in = {1, 28, 28};
    int classes = 10, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        option_once("info", ":h", opts, seen, c);
        if ((c == 'i' || c == 'k') && !arch_opt) arch_opt = c == 'i' ? "--input" : "--classes";
        switch (c) {
        case 'j': json = true; break;
        case 'g': groups = true; break;
        case 'i':
            if (!parse_shape(optarg, &in) || in.c < 1 || in.h < 1 || in.w < 1 || in.c > HP_MAX_CHANNELS_IN ||
                in.h > 4096 || in.w > 4096)
                usage_error("info", "--input: '%s' is not CxHxW (C <= %d, H and W <= 4096)", optarg, HP_MAX_CHANNELS_IN);
            break;
        case 'k': classes = (int)parse_int("info", "--classes", optarg, 2, 100000); break;
        case 'h': fputs(HELP_INFO, stdout); return 0;
        case ':': usage_error("info", "option '%s' needs a value", argv[optind - 1]);
        default: bad_option("info", argv, opts);
        }
    }
    if (optind != argc - 1) usage_error("info", optind >= argc ? "MODEL is required" : "one MODEL only");
    const char *src = argv[optind];
    Model m;
    HpErr err;
    struct stat st;
    if (is_arch_name(src) && stat(src, &st) != 0) {
        if (arch_layout(&m, src, in, classes, &err) < 0) die("%s", err.msg);
        char subject[96], what[96], shape[48];
        snprintf(subject, sizeof subject, "%s at %s", src, shape_text(in, shape, sizeof shape));
        snprintf(what, sizeof what, "its %zu parameters would need", m.n_params);
        check_memory_fits(subject, what, (double)model_bytes(&m), "give a smaller --input");
        if (model_alloc(&m, &err) < 0) die("%s: %s", subject, err.msg);
    } else {
        if (!strchr(src, '/') && stat(src, &st) != 0 && errno == ENOENT) {  // a name, not a path: a misspelt architecture?
            char names[128] = "";
            for (const char *const *a = arch_names(); *a; a++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", a == arch_names() ? "" : ", ", *a);
            die("%s: neither a model file (cannot open: %s) nor a built-in architecture (%s)", src, strerror(ENOENT),
                names);
        }
        load_model_or_die(&m, src);
        if (arch_opt) {  // a file read first: a misspelt architecture name is "no such file"
            model_free(&m);
            usage_error("info", "%s is for an architecture name; %s is a model file", arch_opt, src);
        }
    }
    GroupSet gs = {0};
    if (groups && prune_groups(&m, &gs, &err) < 0) die("%s: channel groups: %s", src, err.msg);
    if (json)
        print_info_json(&m, src, groups ? &gs : NULL);
    else if (groups)
        print_groups_table(&m, src, &gs);
    else
        print_info_table(&m, src);
    groupset_free(&gs);
    model_free(&m);
    return 0;
}

// The command argv[1] names, or NULL.
static int (*command_of(const char *cmd))(int, char **) {
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } commands[] = {{"train", cmd_train},     {"eval", cmd_eval},   {"info", cmd_info},
                    {"hessian", cmd_hessian}, {"prune", cmd_prune}, {"sweep", cmd_sweep},
                    {"sensitivity", cmd_sensitivity}};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0) return commands[i].run;
    return NULL;
}

// The 1-minute load average of the machine (/proc/loadavg), or -1 when it cannot be read.
static double load_average(void) {
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return -1;
    if (fscanf(f, "%lf", &load) != 1) load = -1;
    fclose(f);
    return load;
}

// On a busy machine, runs this program again with OMP_WAIT_POLICY=passive, unless the
// environment sets a policy. libgomp reads the variable when it loads, before main; by default
// its threads spin a while at the end of each parallel loop, which is fastest when they have the
// cores to themselves and much slower when other processes want them (README, "Commands", on
// threads). Busy: a load average of at least the processors this process may use less a half.
// Returns when it does not re-run.
static void prefer_passive_waits(char **argv) {
    cpu_set_t cpus;
    if (getenv("OMP_WAIT_POLICY") || sched_getaffinity(0, sizeof cpus, &cpus) != 0) return;
    double load = load_average();
    if (load < CPU_COUNT(&cpus) - 0.5 || setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("OMP_WAIT_POLICY");  // exec failed: go on with the policy libgomp loaded with
}

int main(int argc, char **argv) {
    prefer_passive_waits(argv);
    if (argc < 2) {
        fputs(HELP_MAIN, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    // past a file-size limit (ulimit -f) a write fails with EFBIG, which is reported and its
    // temporary file removed, instead of the signal killing the process and leaving that file
    signal(SIGXFSZ, SIG_IGN);
    int rc;
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(HELP_MAIN, stdout);
        rc = 0;
    } else if (strcmp(cmd, "--version") == 0) {
        puts("hprune " HPRUNE_VERSION);
        rc = 0;
    } else if (command_of(cmd)) {
        rc = command_of(cmd)(argc - 1, argv + 1);
    } else {
        fprintf(stderr, "hprune: unknown command '%s'\nTry 'hprune --help'.\n", cmd);
        return EXIT_USAGE;
    }
    check_stdout();  // a result that did not reach its file or pipe is a failure
    return rc;
}
