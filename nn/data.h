// data.h: an in-memory labelled image dataset and batch assembly (normalisation, augmentation).
#ifndef HP_DATA_H
#define HP_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "nn.h"

// Images as bytes, (n, c, h, w) C-order, and one label byte per image.
typedef struct {
    int n, c, h, w;
    int n_classes;
    uint8_t *images;
    uint8_t *labels;
} Dataset;

// Largest crop_pad the configs accept (CIFAR-style training pads by 4).
#define HP_MAX_CROP_PAD 64

// Augmentation applied when a training batch is assembled.
typedef struct {
    int crop_pad;  // random crop of the original size from the image zero-padded by this much (0: off;
                   // at most HP_MAX_CROP_PAD)
    bool hflip;    // random horizontal flip with probability 1/2
} Augment;

void dataset_free(Dataset *d);
// Allocates an empty (zeroed) dataset of n images of shape (c, h, w). Returns 0, or -1 with err
// set (out of memory; d is then empty).
int dataset_alloc(Dataset *d, int n, int c, int h, int w, int n_classes, HpErr *err);
// Splits src into a training part and a validation part of round(n * val_fraction) images,
// chosen by a permutation seeded by seed. Both are new copies. Returns 0, or -1 with err set
// (out of memory; both are then empty).
int dataset_split(const Dataset *src, double val_fraction, uint64_t seed, Dataset *train, Dataset *val,
                  HpErr *err);
// The validation part's size dataset_split gives for n images: round(n * val_fraction), at most n.
int dataset_val_count(int n, double val_fraction);
// Copies the first n images of src (n <= src->n) into dst. Returns 0, or -1 with err set (out
// of memory; dst is then empty).
int dataset_head(const Dataset *src, int n, Dataset *dst, HpErr *err);
// Per-channel mean and standard deviation of pixel/255 over the whole dataset.
void dataset_channel_stats(const Dataset *d, float *mean, float *std);

// Assembles a batch: images idx[0..count) of d, normalised ((pixel/255 - mean) / std),
// augmented when aug is not NULL (drawing from rng), into x (count, c, h, w) and y (count).
void data_batch(const Dataset *d, const int *idx, int count, const float *mean, const float *std,
                const Augment *aug, Rng *rng, float *x, int *y);

#endif
