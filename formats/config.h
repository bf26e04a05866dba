// config.h: INI configuration files ([model], [data], [train]) read with inih.
#ifndef HP_CONFIG_H
#define HP_CONFIG_H

#include "../nn/train.h"

typedef struct {
    char arch[HP_MAX_NAME];   // [model] arch
    char dataset[32];         // [data] dataset: fashion-mnist, mnist, cifar10
    char data_dir[512];       // [data] dir
    TrainConfig train;        // [data] val_split, crop_pad, hflip; [train] everything else
    char output[512];         // [train] output: model file path
} Config;

#define CONFIG_N_KEYS 20  // the keys a config knows (formats/config.c checks the count)

// Where one config file set its keys: the line of each key it sets, 0 for the others.
typedef struct {
    int line[CONFIG_N_KEYS];
} ConfigLines;

// Fills c with defaults (lenet5 on fashion-mnist in /usr/share/datasets/fashion-mnist).
void config_default(Config *c);
// Reads path into c (on top of what c holds). Unknown sections or keys and malformed
// values are errors naming the file and line: "cfg.ini:7: unknown key 'lr_decay' in [train]".
// On error c is left unchanged. Lines longer than 198 characters (inih's buffer), CR line endings
// (LF and CRLF are read) and text after a section header other than a comment are refused.
int config_load(Config *c, const char *path, HpErr *err);
// config_load that also records in *lines (on success only) the line at which path sets each key.
int config_load_lines(Config *c, const char *path, ConfigLines *lines, HpErr *err);
// The line at which the file whose lines these are sets [section] key; 0 if it does not. The key
// must be one a config knows.
int config_line(const ConfigLines *lines, const char *section, const char *key);
// Sets one key as if it were read from section [section]; used by command-line overrides.
// where names the source for error messages (e.g. "--lr"; NULL: "[section] key").
// On error c is left unchanged.
int config_set(Config *c, const char *section, const char *key, const char *value, const char *where, HpErr *err);

#endif
