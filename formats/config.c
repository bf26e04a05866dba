// config.c: INI configuration files and command-line overrides, validated through one key table
// read by formats/ini_table.c. A file is applied to a copy of the config, which replaces the
// caller's only when the whole file is good.
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "ini_table.h"

static const char *const DATASET_NAMES[] = {"fashion-mnist", "mnist", "cifar10", NULL};
static const char *const SCHEDULE_NAMES[] = {"constant", "step", "cosine", NULL};  // Schedule order
static const char *const SECTION_NAMES[] = {"model", "data", "train", NULL};

_Static_assert(SCHED_CONSTANT == 0 && SCHED_STEP == 1 && SCHED_COSINE == 2, "SCHEDULE_NAMES order");

// Returns the dataset names a config accepts.
static const char *const *dataset_names(void) { return DATASET_NAMES; }

// Returns the schedule names, in Schedule order.
static const char *const *schedule_names(void) { return SCHEDULE_NAMES; }

// Parses "30, 60, 90" (ascending epochs, at most HP_MAX_MILESTONES; blank for none) into the
// config; it is untouched on error.
static int set_milestones(void *cfg, const IniSet *s, const char *v) {
    static const char *what = "expected comma-separated epochs in ascending order";
    TrainConfig *c = &((Config *)cfg)->train;
    char toks[HP_MAX_MILESTONES][INI_TOKEN], msg[64];
    int ms[HP_MAX_MILESTONES];
    int n = v[strspn(v, " \t\r\n\f\v")] ? ini_split(v, toks, HP_MAX_MILESTONES) : 0;
    snprintf(msg, sizeof msg, "at most %d milestones", HP_MAX_MILESTONES);
    if (n < 0) return ini_bad_value(s, v, n == INI_SPLIT_MANY ? msg : what);
    for (int i = 0; i < n; i++) {
        int rc = ini_int(toks[i], &ms[i]);
        if (rc != 0) return ini_bad_value(s, v, rc == -2 ? "integer out of range" : what);
        if (ini_check_range(s, ms[i]) != 0) return -1;
        if (i > 0 && ms[i] <= ms[i - 1]) return ini_bad_value(s, v, what);
    }
    memcpy(c->milestones, ms, (size_t)n * sizeof ms[0]);
    c->n_milestones = n;
    return 0;
}

#define FIELD(member) INI_FIELD(Config, member)

// Every key a config knows; the only place that does.
static const IniKey KEYS[] = {
    {"model", "arch", IK_NAME, FIELD(arch), .choices = arch_names},
    {"data", "dataset", IK_NAME, FIELD(dataset), .choices = dataset_names},
    {"data", "dir", IK_STR, FIELD(data_dir), 0, 0, IK_NONEMPTY},
    {"data", "val_split", IK_FLOAT, FIELD(train.val_split), 0, 1, IK_RANGE | IK_MAX_EXCL},
    {"data", "crop_pad", IK_INT, FIELD(train.augment.crop_pad), 0, HP_MAX_CROP_PAD, IK_RANGE},
    {"data", "hflip", IK_BOOL, FIELD(train.augment.hflip)},
    {"train", "epochs", IK_INT, FIELD(train.epochs), 1, 0, IK_MIN},
    {"train", "batch_size", IK_INT, FIELD(train.batch_size), 1, 0, IK_MIN},
    {"train", "lr", IK_FLOAT, FIELD(train.lr), 0, 0, IK_MIN | IK_MIN_EXCL},
    {"train", "momentum", IK_FLOAT, FIELD(train.momentum), 0, 1, IK_RANGE | IK_MAX_EXCL},
    {"train", "nesterov", IK_BOOL, FIELD(train.nesterov)},
    {"train", "weight_decay", IK_FLOAT, FIELD(train.weight_decay), 0, 0, IK_MIN},
    {"train", "schedule", IK_ENUM, FIELD(train.schedule), .choices = schedule_names, .expect = "constant, step or cosine"},
    {"train", "milestones", IK_CUSTOM, FIELD(train.milestones), 1, 0, IK_MIN, .set = set_milestones},
    {"train", "gamma", IK_FLOAT, FIELD(train.gamma), 0, 0, IK_MIN | IK_MIN_EXCL},
    {"train", "warmup_epochs", IK_INT, FIELD(train.warmup_epochs), 0, 0, IK_MIN},
    {"train", "label_smoothing", IK_FLOAT, FIELD(train.label_smoothing), 0, 1, IK_RANGE | IK_MAX_EXCL},
    {"train", "seed", IK_U64, FIELD(train.seed)},
    {"train", "threads", IK_INT, FIELD(train.threads), 0, HP_MAX_THREADS, IK_RANGE},
    {"train", "output", IK_STR, FIELD(output), 0, 0, IK_NONEMPTY | IK_OUTPUT},
};

_Static_assert(sizeof KEYS / sizeof KEYS[0] == CONFIG_N_KEYS, "CONFIG_N_KEYS counts the keys");

// Keys with both bounds name the whole range: "'crop_pad' must be in [0, 64], got 100".
static const IniTable TABLE = {
    .sections = SECTION_NAMES, .keys = KEYS, .n_keys = sizeof KEYS / sizeof KEYS[0], .spans = true};

void config_default(Config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "%s", "lenet5");
    snprintf(c->dataset, sizeof c->dataset, "%s", "fashion-mnist");
    snprintf(c->data_dir, sizeof c->data_dir, "%s", "/usr/share/datasets/fashion-mnist");
    train_config_default(&c->train);
    snprintf(c->output, sizeof c->output, "%s", "runs/model.safetensors");
}

int config_set(Config *c, const char *section, const char *key, const char *value, const char *where, HpErr *err) {
    HP_ASSERT(section && key && value);
    char src[160];
    if (!where) {
        snprintf(src, sizeof src, "[%s] %s", section, key);
        where = src;
    }
    return ini_table_set(&TABLE, c, section, key, value, 0, err) == 0 ? 0 : hp_prefix(err, where);
}

int config_load(Config *c, const char *path, HpErr *err) { return config_load_lines(c, path, NULL, err); }

int config_load_lines(Config *c, const char *path, ConfigLines *lines, HpErr *err) {
    Config tmp = *c;
    if (ini_table_load_lines(&TABLE, &tmp, path, lines ? lines->line : NULL, err) != 0) return -1;
    *c = tmp;
    return 0;
}

int config_line(const ConfigLines *lines, const char *section, const char *key) {
    int i = ini_table_key_index(&TABLE, section, key);
    HP_ASSERT(i >= 0 && "a key the config table knows");
    return lines->line[i];
}
