// sweep.h: a pruning study from one INI file. Every method x target x seed of the config is one
// run: prune_run on a fresh copy of the base model. Each finished run is its own JSON file
// (DIR/runs/<id>.json, written atomically, with the settings and the CRC-32 of the model file
// it was made from), so a sweep can be killed and restarted without losing a finished run, and
// split into shards that share DIR; collect merges the result files into DIR/results.csv,
// DIR/results.md and DIR/accuracy_vs_macs.png (and .svg).
//
// The config (every key optional unless marked; unknown sections and keys are errors):
//   [sweep]    model (required: a trained model file), out (the output directory; the command
//              line may give it instead), methods (comma list of criterion names or of the names
//              of [method NAME] sections), target (flops, macs, params or channels), targets
//              (comma list of fractions to remove, in (0, 1)), seeds (comma list), steps,
//              max_layer_frac, samples, probes, threads
//   [method NAME] a method with options: criterion (required unless NAME is a criterion, whose
//              defaults the section then changes: it may not name another), rank (score,
//              per-cost), slices (all, consumers), normalize, ggn, steps, samples, probes,
//              fisher_grads, fisher_batch, block_size, damp, layer_damp, compensate; an option
//              the criterion does not use (or probes with ggn) is an error
//   [data]     dataset, dir (default: the model's)
//   [finetune] epochs, lr, batch_size, val_split, weight_decay, crop_pad (random crop from the
//              image zero-padded by this much; 0: off), hflip (random horizontal flips)
#ifndef HP_SWEEP_H
#define HP_SWEEP_H

#include <stdbool.h>
#include <stdint.h>

#include "pipeline.h"

#define SWEEP_MAX_LIST 32  // entries of a comma list (methods, targets, seeds)
#define SWEEP_PATH 512
#define SWEEP_ID 128  // a run id: a method name (31), a target kind and a fraction (%.17g), a 20-digit seed
#define SWEEP_NAME 32         // a method's name, with its terminator
#define SWEEP_METHOD_KEYS 16  // keys a [method NAME] section knows

// A method of a sweep: a criterion with its options. A criterion's name in `methods` is the
// criterion with prune's defaults; a [method NAME] section defines a method (or, when NAME is
// a criterion, changes that criterion's defaults for the sweep).
typedef struct {
    char name[SWEEP_NAME];        // in run ids, tables and the chart: [A-Za-z0-9._+-], not starting with . _ + -
    Criterion criterion;          // CRIT_COUNT until given
    int line;                     // line of its [method NAME] header (0: a bare criterion)
    int steps, samples, probes;   // 0: [sweep]'s
    bool per_cost;                // rank = per-cost
    bool consumers_only;          // slices = consumers
    bool ggn;                     // hap, obd
    Normalize normalize;
    int fisher_grads, fisher_batch, block_size;  // obs
    double damp;                  // obs: the Fisher's absolute damping
    double layer_damp;            // obs-layer: relative damping
    bool compensate;              // obs, obs-layer
    int key_line[SWEEP_METHOD_KEYS];  // line where each key of the section was set (0: not set)
} SweepMethod;

typedef struct {
    char path[SWEEP_PATH];      // the config file, as given (for messages)
    char model[SWEEP_PATH];     // [sweep] model
    char out[SWEEP_PATH];       // [sweep] out ("" : none)
    char dataset[32];           // [data] dataset ("": the model's)
    char data_dir[SWEEP_PATH];  // [data] dir ("": the model's)
    SweepMethod methods[SWEEP_MAX_LIST];  // [sweep] methods, in order, resolved
    int n_methods;
    SweepMethod defined[SWEEP_MAX_LIST];  // the [method NAME] sections, in file order
    int n_defined;
    char method_names[SWEEP_MAX_LIST][SWEEP_NAME];  // [sweep] methods as written
    int methods_line;       // line of `methods` in the file (0: not given)
    double targets[SWEEP_MAX_LIST];
    int n_targets;
    uint64_t seeds[SWEEP_MAX_LIST];
    int n_seeds;
    TargetKind kind;        // [sweep] target
    double max_layer_frac;  // (0, 1)
    int steps;              // >= 1
    int samples, probes;    // calibration images, Hutchinson probes
    int threads;            // OpenMP threads per run (0: all cores, shared among parallel jobs)
    TrainConfig finetune;   // [finetune] epochs (0: none), lr, batch_size, val_split
    int targets_line;       // line of `targets` in the file (0: not given)
    int model_line, dataset_line, data_dir_line;  // lines of [sweep] model, [data] dataset and dir (0: not given)
    int finetune_epochs_line, finetune_batch_line;  // lines of [finetune] epochs and batch_size (0: not given)
    uint32_t model_crc;     // CRC-32 of the model file's bytes (sweep_fingerprint), recorded in every result
    bool model_crc_known;   // set by sweep_fingerprint; false: results are written and checked without it
} SweepConfig;

// Defaults: no model, methods l1, target flops 0.5, seed 1, one step, cap 0.9, 512 samples,
// 32 probes, threads 0, the fine-tuning of prune_job_defaults with 0 epochs.
void sweep_config_default(SweepConfig *c);

// Reads path over c. Any unknown section or key, malformed value, value out of range, unknown
// method, repeated list entry or section, method without a criterion or option its criterion
// does not use is an error naming "path:line"; a missing model is an error naming path. On
// error c is unchanged. Returns 0, or -1 with err set.
int sweep_config_load(SweepConfig *c, const char *path, HpErr *err);

// The config line that chose method m's criterion, for messages about it: its section's
// `criterion` line, else its [method NAME] header (NAME is the criterion), else the line of
// `methods` (a bare criterion); 0 if none (the default l1).
int sweep_method_line(const SweepConfig *c, const SweepMethod *m);

// Writes where line of config c is, for a message, into buf: "CONFIG:LINE" (or "CONFIG" for line
// 0), followed by ": what" unless what is NULL.
void sweep_config_place(const SweepConfig *c, int line, const char *what, char *buf, size_t cap);

// Whether [method NAME] section i of c->defined is run, i.e. `methods` lists NAME (a section
// that is not listed is checked like the others but runs nothing: the CLI warns of it).
bool sweep_method_listed(const SweepConfig *c, int i);

// Whether name can name a method (as [sweep] methods and [method NAME] require): 1 to
// SWEEP_NAME - 1 of [A-Za-z0-9._+-], starting with a letter or digit.
bool sweep_method_name_ok(const char *name);

// One run of a sweep.
typedef struct {
    int index;         // position in the whole run list (0-based)
    char id[SWEEP_ID]; // stable name: "<method>-<target kind><target>-s<seed>", e.g. "hap-flops0.50-s1"
    const SweepMethod *method;  // in the config's methods
    double target;
    uint64_t seed;
} SweepRun;

// The run list: methods (outer) x targets x seeds (inner), in config order. Returns the count;
// *runs is malloc'd and points into c. -1 with err set if out of memory.
int sweep_runs(const SweepConfig *c, SweepRun **runs, HpErr *err);

// True if run `index` belongs to shard `shard` (0-based) of n_shards: index % n_shards == shard.
bool sweep_in_shard(int index, int shard, int n_shards);

// Parses "I/N" (0 <= I < N <= 100000) into *shard, *n_shards. Returns 0, or -1 with err set.
int sweep_parse_shard(const char *s, int *shard, int *n_shards, HpErr *err);

// The job of one run (hooks unset); threads is the run's OpenMP thread count.
PruneJob sweep_job(const SweepConfig *c, const SweepRun *r, int threads);

// Writes what method m changes from its criterion's defaults in prune, and the steps, samples
// and probes it sets instead of [sweep]'s, into buf, e.g. "rank per-cost, slices consumers, 5
// steps" ("" if nothing).
void sweep_method_options(const SweepMethod *m, char *buf, size_t cap);

// Reads the bytes of c->model into c->model_crc (zlib's CRC-32) and sets c->model_crc_known, so
// that every result records the model it was made from. Returns 0, or -1 with err naming the file.
int sweep_fingerprint(SweepConfig *c, HpErr *err);

// Checks, before any run, what can be checked on the base model m with the training images
// train: every target can be reached (the layer caps allow it; else the error names the config
// line of `targets` and the most that can be removed), obs's inverse Fisher fits its memory
// budget, and every method's criterion can score m: each scores a copy of m once on a tiny
// calibration (SWEEP_PROBE_SAMPLES images of train, 2 probes, SWEEP_PROBE_SAMPLES Fisher
// gradients in blocks of at most SWEEP_PROBE_BLOCK), so whatever the criterion refuses (bn
// without batchnorm, calibration images the model does not take) is named at the method's line
// (sweep_method_line) with the model. Returns 0 or -1.
#define SWEEP_PROBE_SAMPLES 4
#define SWEEP_PROBE_BLOCK 64
int sweep_check(const SweepConfig *c, const Model *m, const Dataset *train, HpErr *err);

// DIR/runs/<id>.json into buf (cap bytes). Returns 0, or -1 if it does not fit.
int sweep_result_path(const char *dir, const char *id, char *buf, size_t cap, HpErr *err);

// Creates DIR and DIR/runs if they do not exist: DIR in one level, as commands make an output
// directory (a missing parent is an error naming it, not made). Returns 0 or -1.
int sweep_make_dirs(const char *dir, HpErr *err);

// Writes run r's outcome to path (JSON, atomic). Returns 0 or -1.
int sweep_result_write(const char *path, const SweepConfig *c, const SweepRun *r, const PruneOutcome *o, HpErr *err);

// Whether run r of c is done: 1 if path holds a complete result of this run with the same
// settings and model, 0 if there is no file, -1 (err set) if the file is unreadable, malformed,
// made with other settings (a different config into the same directory: only the settings
// every run reads and those r's method reads count, so changing probes, which only hap and obd
// read, leaves an l1 result done, as does changing the fine-tuning's lr, batch size and the like
// when it has 0 epochs) or, c's model having its CRC-32 (sweep_fingerprint), made
// from a model with another one (the file was replaced).
// SWEEP_DONE_UNCHECKED: a result of this run with the same settings, but written before results
// recorded the model's CRC-32, so whether its model is c's as it is now cannot be told (the
// caller reuses it and warns; collect still refuses results whose base models disagree).
enum { SWEEP_DONE_UNCHECKED = 2 };
int sweep_result_done(const char *path, const SweepConfig *c, const SweepRun *r, HpErr *err);

// Merges every DIR/runs/*.json into DIR/results.csv, DIR/results.md, DIR/accuracy_vs_macs.png
// and .svg, all or none (each written to a temporary file first, all renamed into place once
// complete: a failure leaves the earlier files as they were). *n_runs gets the number of results
// merged. Fails if there are none, one is malformed or not as a sweep writes it (a value out of
// range, a string a table could not hold, data after the object, a key twice: the error names
// the file and the key), or two were made from different base models: another CRC-32 (where
// both record one), or other parameters, MACs or test accuracy before pruning (the error names
// both files and their models). Returns 0 or -1.
int sweep_collect(const char *dir, int *n_runs, HpErr *err);

// The columns of results.csv; the last SWEEP_TIMING_COLS (latency, speed-up, seconds) vary
// from run to run, the others are reproducible.
#define SWEEP_TIMING_COLS 3
extern const char *const SWEEP_CSV_HEADER[];
extern const int SWEEP_CSV_COLS;

#endif
