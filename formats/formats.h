// formats.h: every byte that crosses the disk. Readers validate completely before use and
// return -1 with a message naming the file, the place and the problem; writers write to a
// temporary file and rename it into place, so no half-written output is ever left behind.
#ifndef HP_FORMATS_H
#define HP_FORMATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "../nn/data.h"
#include "../nn/nn.h"

// ---- input files ----

// Opens path for reading ("rb") without blocking (a FIFO without a writer would hang a plain
// open) and refuses anything but a regular file; *size (if not NULL) gets its size in bytes.
// Returns the stream (blocking reads; the caller closes it), or NULL with err set, without the
// path: "cannot open: No such file or directory", "not a regular file".
FILE *fopen_regular(const char *path, uint64_t *size, HpErr *err);
// Returns 0, or -1 with err ("WHAT: a key with an escaped NUL (\u0000): "name"", or "WHAT:
// "name" holds a string with an escaped NUL (\u0000)") if a string of JSON text, which cJSON
// has parsed, holds \u0000: cJSON's copy of that string would end there.
int json_check_nul(const char *text, const char *what, HpErr *err);

// ---- datasets ----

// Reads an IDX images file and an IDX labels file (each gzip-compressed or plain; gzip is
// detected by its magic bytes; one gzip member or several concatenated, and nothing after them)
// into d: images (n, 1, rows, cols), n_classes = 10 or 1 + the largest label. Checks magic, type
// (unsigned byte), dimensions, sizes and counts. FIFOs and other non-regular files are refused.
int idx_load(const char *images_path, const char *labels_path, Dataset *d, HpErr *err);

// Loads Fashion-MNIST or MNIST from a directory holding train-images-idx3-ubyte[.gz],
// train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz].
// Either split may be NULL (not both), as for dataset_load.
int mnist_load_dir(const char *dir, Dataset *train, Dataset *test, HpErr *err);

// Loads CIFAR-10 binary batches from dir (data_batch_1..5.bin, test_batch.bin): records of
// one label byte and 3072 bytes of R, G, B planes of 32x32. Either split may be NULL (not both).
int cifar10_load_dir(const char *dir, Dataset *train, Dataset *test, HpErr *err);

// Loads the dataset named by `name` ("fashion-mnist", "mnist", "cifar10") from dir. Either of
// train and test may be NULL (not both; as for mnist_load_dir and cifar10_load_dir): that
// split is not read and its files need not exist. On failure the splits asked for are empty.
int dataset_load(const char *name, const char *dir, Dataset *train, Dataset *test, HpErr *err);
// Whether dataset_load knows the dataset name (fashion-mnist, mnist, cifar10).
bool dataset_known(const char *name);
// What dataset_load(name, dir) would give, without reading the images: their shape, the class
// count and the training set's size, from the training images' IDX header (Fashion-MNIST,
// MNIST) or the training batch files' sizes (CIFAR-10), so that a command can size its work
// before it loads them. Returns 0, or -1 with err set as dataset_load would for those files.
int dataset_peek(const char *name, const char *dir, Shape *shape, int *n_train, int *n_classes, HpErr *err);
// dataset_peek for Fashion-MNIST or MNIST in dir (shape and training set size).
int mnist_peek_dir(const char *dir, Shape *shape, int *n_train, HpErr *err);
// dataset_peek for CIFAR-10 in dir (the training set's size; the shape is 3x32x32).
int cifar10_peek_dir(const char *dir, int *n_train, HpErr *err);

// ---- model files (safetensors) ----

// Extra state saved with a training checkpoint (all optional).
typedef struct {
    const float *momentum;  // n_params floats, saved as tensors "optim.<name>.momentum_buffer"
    const char *train_state_json;  // JSON text saved under metadata key "hprune.train_state"
} CheckpointExtra;

// Writes the model to path as safetensors: every tensor of model_tensors() as F32, and in
// __metadata__ "hprune.graph" (the graph, input shape, class count, normalisation, as JSON)
// and "hprune.provenance" (m->provenance). Atomic: temporary file, fsync, rename.
int model_save(const Model *m, const char *path, const CheckpointExtra *extra, HpErr *err);

// Reads a model file written by model_save (or any safetensors file carrying the same
// metadata): validates the header completely (length, JSON, dtypes, shapes, offsets that tile
// the data exactly), rebuilds the graph, loads every tensor by name. On failure m is left
// empty. Every weight must be finite, and so must the momentum read. If momentum is not NULL
// and the file has momentum tensors, *momentum gets a new n_params array (else NULL). If
// train_state is not NULL it gets a malloc'd copy of the "hprune.train_state" metadata text or
// NULL.
int model_load(Model *m, const char *path, float **momentum, char **train_state, HpErr *err);

// Graph <-> JSON text (the "hprune.graph" metadata value). graph_to_json returns malloc'd text,
// or NULL with err set (out of memory).
char *graph_to_json(const Model *m, HpErr *err);
// Builds and finalizes m from JSON text; unknown ops, missing or bad attributes are errors.
int graph_from_json(Model *m, const char *json, HpErr *err);

// ---- atomic output ----

// Writes len bytes to path atomically (temporary file in the same directory, fsync, rename).
// This and atomic_open and atomic_reserve refuse a path that exists and is not a regular file
// (a directory, device, FIFO or socket) or is a symbolic link, which the rename would replace.
int write_file_atomic(const char *path, const void *data, size_t len, HpErr *err);

// Opens a temporary file beside path for writing; *tmp_path (caller frees) names it.
// Finish with atomic_commit (rename into place) or atomic_abort (unlink). *fp is a write-only
// stream that keeps the cause of its first failed write for the commit's message: it has no
// file descriptor (fileno is -1) and cannot seek.
int atomic_open(const char *path, char **tmp_path, FILE **fp, HpErr *err);
// Creates an empty temporary file beside path (the same directory, a short hidden name) and
// returns its malloc'd name in *tmp_path: a place to write path's content before renaming it
// into place. On failure nothing is left on disk and *tmp_path is NULL.
int atomic_reserve(const char *path, char **tmp_path, HpErr *err);
int atomic_commit(FILE *fp, char *tmp_path, const char *path, HpErr *err);
void atomic_abort(FILE *fp, char *tmp_path);

// Files written together: each first to a temporary file beside its target (atomic_reserve),
// all renamed into place only once every one is complete, so a failure leaves none of them,
// and no temporary, behind. While they are renamed each target's earlier file is kept aside (a
// hard link) and put back if a later rename fails. Start from (AtomicSet){0}.
enum { ATOMIC_SET_MAX = 8 };
typedef struct {
    int n;
    char *target[ATOMIC_SET_MAX];  // copies of the targets' names
    char *tmp[ATOMIC_SET_MAX];     // their temporary files
} AtomicSet;
// Creates target's temporary file (empty) and returns its name (s keeps it), or NULL with err
// set and s unchanged.
const char *atomic_set_stage(AtomicSet *s, const char *target, HpErr *err);
// Replaces in msg (cap bytes) each temporary file's name by its target's: a writer names the
// file it was given.
void atomic_set_name_targets(const AtomicSet *s, char *msg, size_t cap);
// Removes the staged files and empties s.
void atomic_set_abort(AtomicSet *s);
// Renames every staged file onto its target. If a rename fails, puts the targets renamed before
// it back as they were, removes the other temporaries and returns -1 with err naming the target.
// Empties s either way.
int atomic_set_commit(AtomicSet *s, HpErr *err);

#endif
