// cli.h: helpers shared by the command-line front end (the only code that prints and exits).
#ifndef HP_CLI_H
#define HP_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "../formats/formats.h"
#include "../hessian/obs.h"
#include "../nn/data.h"
#include "../nn/nn.h"
#include "../nn/train.h"
#include "xalloc.h"

#define HPRUNE_VERSION "0.1.0"
#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

// Prints "hprune: error: <msg>" and exits with status 1.
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
// Prints "hprune: warning: <msg>" and goes on.
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prints "hprune CMD: <msg>" and a pointer to the help, exits with status 2.
void usage_error(const char *cmd, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
// Parses a whole decimal integer in [lo, hi] for option opt, or exits with a usage error. The
// grammar is the INI reader's (ini_long): an optional '-' and digits; no blanks, '+' or hex.
long parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi);
// Parses a finite number in [lo, hi] for option opt, or exits with a usage error. The grammar is
// the INI reader's (ini_number): plain decimal, "0.5", "-2", "1e-3"; no blanks, '+', hex, inf.
double parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi);
// Parses a number strictly between 0 and 1 (parse_double's grammar) for option opt, or exits with
// a usage error: "--target-flops: '50%' is not a number in (0, 1): a fraction, e.g. 0.5 for 50%".
double parse_fraction(const char *cmd, const char *opt, const char *s);
// Returns value, the operand of option opt that names an output (kind: "file", "directory"), or
// exits with a usage error if it is "-" ("-o -: writing to standard output is not supported;
// name a file"): every command writes its outputs to files.
const char *output_option(const char *cmd, const char *opt, const char *value, const char *kind);
// output_option for a model file: also a usage error when the name ends in .json, .md, .csv,
// .png, .svg or .ini, which name reports, tables and plots ("-o r.json" meant --report).
const char *model_output_option(const char *cmd, const char *opt, const char *value);
// output_option for a PNG image: also a usage error unless the name ends in .png.
const char *png_output_option(const char *cmd, const char *opt, const char *value);
// The name under which the option whose value getopt_long just returned (in optarg) was given:
// short_name ("-o") in its short form ("-o F", "-oF"), else long_name ("--output": "--output F",
// "--output=F" or an abbreviation), so a message names the option as the user spelled it.
const char *option_form(char **argv, const char *short_name, const char *long_name);
// Exits with a usage error naming the option getopt_long just rejected with '?'.
void bad_option(const char *cmd, char **argv, const struct option *opts) __attribute__((noreturn));
// Exits with a usage error ("--method given twice", "-o/--output given twice") if the option
// getopt_long returned as c was given before, under any of its names (aliases share a code);
// else marks it in seen (one flag per entry of opts, zeroed by the caller). shortopts is
// getopt's option string (to name a short letter); a code of no option (':', '?') is ignored.
void option_once(const char *cmd, const char *shortopts, const struct option *opts, bool *seen, int c);
// "s" unless n is 1: printf("%d run%s", n, plural(n)).
const char *plural(long n);
// Sets this process's threads as hp_set_threads does (0: one per processor it may use) and warns
// when `workers` processes of that many threads each would outnumber those processors; returns
// the count.
int set_threads(int n, int workers);
// Seconds on a monotonic clock.
double now_s(void);
// Formats a duration as "1h02m", "3m05s" or "12s" into buf; returns buf.
const char *fmt_duration(double s, char *buf, size_t cap);
// Formats a byte count as "12.3 GB" ("2.3 TB" from a terabyte, "456 MB" under a gigabyte) into
// buf; returns buf.
const char *fmt_bytes(double bytes, char *buf, size_t cap);
// Copies a string member of a JSON object text into buf; returns buf, or NULL if absent.
const char *json_get_string(const char *json, const char *key, char *buf, size_t cap);
// Loads a model file or exits with its error.
void load_model_or_die(Model *m, const char *path);
// Loads the named dataset from dir (train or test may be NULL: the other split alone) or exits.
void load_dataset_or_die(const char *name, const char *dir, Dataset *train, Dataset *test);

// The dataset a command on a model reads: name and dir as the user gave them (NULL if not),
// filled in by model_dataset; the prov_* buffers hold what the model's provenance names.
typedef struct {
    const char *name, *dir;
    char prov_name[4096], prov_dir[4096];
    bool has_prov_name, has_prov_dir;  // the provenance names them (and they fit the buffers)
} DatasetChoice;

// What dataset_pick found: a choice, or the rule that forbids one.
typedef enum { PICK_OK, PICK_UNKNOWN_PROVENANCE, PICK_NEEDS_DIR, PICK_PROVENANCE_NO_DIR } DatasetPick;

// Fills in c->name and c->dir: as given, else the model's provenance, else fashion-mnist in
// DEFAULT_DATA_DIR. The provenance's directory is used only for the dataset it names: another
// dataset without a directory is PICK_NEEDS_DIR (its files could be read from the wrong
// directory: MNIST and Fashion-MNIST share file names), or PICK_PROVENANCE_NO_DIR when the
// provenance chose that dataset itself; a provenance naming a dataset hprune does not know, with
// none given, is PICK_UNKNOWN_PROVENANCE.
DatasetPick dataset_pick(const Model *m, DatasetChoice *c);
// "fashion-mnist in DIR", what the model's provenance says it was trained on, into buf.
const char *trained_on(const DatasetChoice *c, char *buf, size_t cap);
// dataset_pick, or exits with its refusal (for --dataset and --data): a --dataset that needs
// --data is a usage error of command cmd; path names the model.
void model_dataset(const char *cmd, const Model *m, const char *path, DatasetChoice *c);

// Loads the dataset a model names in its provenance (or the one given: name, dir may be NULL;
// defaults fashion-mnist in DEFAULT_DATA_DIR), or exits; also exits unless the model takes its
// images and has at least its classes. cmd is the command (for model_dataset's usage error),
// path names the model in messages. used_name (cap bytes, may be NULL) gets the dataset's name.
// train may be NULL: the test split alone is read (its files alone need exist).
void load_model_dataset_or_die(const char *cmd, const Model *m, const char *path, const char *name, const char *dir,
                               Dataset *train, Dataset *test, char *used_name, size_t cap);

// Exits unless path can be written: it is not empty nor a directory, its name fits the file
// system, and a file can be created in the directory that will hold it (one is, and removed, by
// atomic_reserve, which also refuses a path that is not a regular file or is a symbolic link).
// Commands check their outputs first, so no long run fails only when it writes.
void check_output_path(const char *path);
// Exits unless dir can be an output directory: an existing directory, or a missing one that can
// be made in one level (check_output_path of its name: the parent exists and takes a new entry;
// "nop/sub: cannot write: directory nop: No such file or directory" otherwise). Missing parents
// are not made, as no command makes a file's.
void check_output_dir(const char *dir);
// check_output_path for each of the n paths (NULL entries skipped), after a usage error if two
// of them name the same file: paths[i] is the output of the option labels[i] ("--csv",
// "--density's CSV").
void check_outputs(const char *cmd, const char *const *paths, const char *const *labels, int n);
// Exits with a usage error if one of the n outputs (paths[i], of option labels[i]; NULL skipped)
// names one of the n_in input files (inputs[k], NULL skipped, described by what[k]: "the model").
void check_spares_inputs(const char *cmd, const char *const *paths, const char *const *labels, int n,
                         const char *const *inputs, const char *const *what, int n_in);

// The files one command writes, written together (formats.h, AtomicSet): each first to a
// temporary file beside its target, all renamed into place only once every one is complete, so a
// failure leaves none of them (and no temporary) behind; a target's earlier file is kept aside
// (a hard link) while they are renamed, and put back if a later rename fails.
typedef struct {
    AtomicSet set;
    const char *made_dir;        // a directory the command made for them: removed on failure (if empty)
    bool guarded;                // SIGPIPE ignored while files are staged
    void (*saved_sigpipe)(int);  // its handler before
} Outputs;

// Returns the temporary file (already created, empty) to write target's content to; on
// failure removes the others and exits with the error.
const char *outputs_stage(Outputs *o, const char *target);
// Removes every staged file, prints "hprune: error: <msg>" with each temporary name in msg
// replaced by its target's, and exits with status 1.
void outputs_fail(Outputs *o, const char *msg) __attribute__((noreturn));
// Renames every staged file onto its target; if one fails, puts back the targets' earlier files
// (or removes the new ones), removes the rest and exits.
void outputs_commit(Outputs *o);
// count * size bytes (zeroed if zero), or, out of memory, fails o (removes its staged files,
// prints the error, exits with status 1).
void *outputs_alloc(Outputs *o, size_t count, size_t size, bool zero);
// The text of j, formatted (cJSON_Print) or on one line, to free; out of memory, fails o (when
// files are staged) or exits with the error.
struct cJSON;
char *json_text(const struct cJSON *j, bool formatted, Outputs *o);
// The end of a command: flushes standard output (the summary printed before), then commits;
// a standard output that cannot be written fails the outputs too.
void outputs_finish(Outputs *o);

// Where the memory a process may use is bounded.
typedef enum { MEM_UNKNOWN, MEM_MACHINE, MEM_CGROUP, MEM_ULIMIT } MemSource;
// Bytes of memory this process may use: the machine's physical memory, or the memory limit of
// its cgroup (a container) or its address-space limit (ulimit -v) when that is smaller; 0 if
// unknown. *source (may be NULL) gets which bound it is.
double memory_available(MemSource *source);
// The memory a command may plan for: 80% of memory_available() (0 when that is unknown: no
// limit); desc (cap bytes) gets what it is, "80% of the machine's 24.1 GB".
double memory_limit(char *desc, size_t cap);
// Exits with status 1 when need bytes exceed memory_limit(), before the work starts, with
// "SUBJECT: WHAT about 7.9 GB of memory, over the limit of 3.3 GB (80% of the machine's 4.1
// GB): ADVICE" (what ends with its verb, "training in batches of 60000 needs"; advice may be
// NULL).
void check_memory_fits(const char *subject, const char *what, double need, const char *advice);
// check_memory_fits for the curvature passes of a criterion (prune, sensitivity) over `samples`
// training images in batches of `batch` (curv_bytes: the batch runs at most `samples`), with the
// model and a copy of it, in each of `jobs` processes at once (a sweep's --jobs; else 1); path
// names the model (or the place that sets the passes), advice says what lowers them ("lower
// --batch-size").
void check_calibration_memory(const char *path, const Model *m, int samples, int batch, int jobs,
                              const char *advice);
// check_memory_fits for fine-tuning m in batches of `batch` (train_bytes, with the model, its
// copy, its momentum and the best epoch kept) in each of `jobs` processes at once.
void check_finetune_memory(const char *subject, const Model *m, int batch, int jobs, const char *advice);

// Exits with status 1 unless the training set's n_train images hold the N x batch distinct images
// obs's Fisher with fo draws (fisher_check_images), naming the options that set them (grads, batch:
// e.g. "--fisher-grads", "--fisher-batch"): "SUBJECT: --fisher-grads 300 x --fisher-batch 1 needs
// 300 training images, the training set has 256".
void check_fisher_images(const char *subject, const char *grads, const char *batch, const FisherOpts *fo,
                         int n_train);

// Exits with status 1 if standard output could not be written (a full disk, a closed pipe):
// commands call it last, so a script never takes a truncated result for a success.
void check_stdout(void);

// A progress display: a live line (rate, ETA) on a terminal, plain lines in a log. The rate is
// measured from a series' first update, so set-up before it (loading, evaluating, the previous
// step of an iterative job) does not count; a done below the last one, or another unit, starts a
// new series. A series shows a given done once at most.
typedef struct {
    bool tty, shown;
    const char *label;
    bool capped;            // the totals are caps, the work may stop before (the caller sets it):
                            // "2 of at most 100 products ... ETA <= 58s"
    double (*clock)(void);  // seconds (now_s; a test may set its own)
    FILE *out;              // where the lines go (stderr)
    bool started;           // a series has had its first update
    double t0, last;        // time of the series' first update, of the last line shown
    long done0, prev;       // done at the series' first update, at the last update
    long printed;           // done of the series' last line shown (-1: none yet)
    char unit[32];          // the series' unit
} Progress;

void progress_init(Progress *p, const char *label);
// Shows done of total (total 0: unknown) units; the rate and ETA from the second update of a
// series on. In a log, a line when done enters another tenth of the total (2 s apart at least)
// and at the total; every 30 s without a total.
void progress_update(Progress *p, long done, long total, const char *unit);
// A ProgressFn (hessian/linop.h): progress_update of the Progress user in the unit given.
void progress_hook(long done, long total, const char *unit, void *user);
// Clears a live line and ends the series: the next update starts another.
void progress_done(Progress *p);

// State the training callbacks share (train and prune's fine-tuning).
typedef struct {
    bool tty;
    const char *prefix;  // in a log, each epoch's line starts "PREFIX: " (a sweep's run id; NULL: none)
    double last_print;
    const char *ckpt_path;
    double started, earlier_s;  // train: now_s() when this run's training began, and the training
                                // seconds of the runs before it (a resumed checkpoint's)
    const TrainConfig *cfg;
    float last_test_acc, last_test_loss, last_val_acc;
    int epochs_done;
} TrainUi;

// Training progress hook (user is a TrainUi): a live line on a terminal, one plain line per
// epoch in a log.
void train_progress_print(const TrainProgress *p, void *user);

// The commands.
int cmd_hessian(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_sensitivity(int argc, char **argv);

#endif
