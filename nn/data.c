// data.c: the in-memory image dataset (allocation, split, head, channel statistics) and batch
// assembly with normalisation and augmentation (random crop from a zero-padded image, hflip).
#include "data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Stream id of the generator that permutes a dataset for the train/validation split.
#define SPLIT_STREAM 0x5011u

// Below this many output floats a batch is assembled on one thread: a serial pass costs a few
// ns per float (under 1 ms for 128 CIFAR images), less than waking threads on a busy machine.
#define BATCH_PARALLEL_MIN (1u << 20)

// Bytes of one image (c * h * w).
static size_t image_bytes(const Dataset *d) { return (size_t)d->c * (size_t)d->h * (size_t)d->w; }

void dataset_free(Dataset *d) {
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

int dataset_alloc(Dataset *d, int n, int c, int h, int w, int n_classes, HpErr *err) {
    HP_ASSERT(n >= 0 && c > 0 && h > 0 && w > 0 && n_classes > 0);
    memset(d, 0, sizeof *d);
    d->n = n;
    d->c = c;
    d->h = h;
    d->w = w;
    d->n_classes = n_classes;
    d->images = hp_zalloc((size_t)n, image_bytes(d), err);
    d->labels = d->images ? hp_zalloc((size_t)n, 1, err) : NULL;
    if (!d->labels) {
        dataset_free(d);
        return hp_prefix(err, "the images");
    }
    return 0;
}

// Copies image i of src into slot j of dst (same image shape).
static void copy_image(const Dataset *src, int i, Dataset *dst, int j) {
    size_t nb = image_bytes(src);
    memcpy(dst->images + (size_t)j * nb, src->images + (size_t)i * nb, nb);
    dst->labels[j] = src->labels[i];
}

int dataset_val_count(int n, double val_fraction) {
    int n_val = (int)llround((double)n * val_fraction);
    return n_val > n ? n : n_val;
}

int dataset_split(const Dataset *src, double val_fraction, uint64_t seed, Dataset *train, Dataset *val,
                  HpErr *err) {
    HP_ASSERT(val_fraction >= 0.0 && val_fraction <= 1.0);
    int n = src->n;
    int n_val = dataset_val_count(n, val_fraction);
    memset(val, 0, sizeof *val);
    if (dataset_alloc(train, n - n_val, src->c, src->h, src->w, src->n_classes, err) < 0) return -1;
    if (dataset_alloc(val, n_val, src->c, src->h, src->w, src->n_classes, err) < 0) {
        dataset_free(train);
        return -1;
    }
    if (n == 0) return 0;
    // The first n_val entries of a seeded permutation go to validation; both parts keep
    // the original (file) order.
    int *perm = hp_alloc((size_t)n, sizeof *perm, err);
    uint8_t *is_val = perm ? hp_zalloc((size_t)n, 1, err) : NULL;
    if (!is_val) {
        free(perm);
        dataset_free(train);
        dataset_free(val);
        return -1;
    }
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng rng;
    rng_seed(&rng, seed, SPLIT_STREAM);
    rng_shuffle(&rng, perm, n);
    for (int i = 0; i < n_val; i++) is_val[perm[i]] = 1;
    int jt = 0, jv = 0;
    for (int i = 0; i < n; i++) {
        if (is_val[i])
            copy_image(src, i, val, jv++);
        else
            copy_image(src, i, train, jt++);
    }
    HP_ASSERT(jt == train->n && jv == val->n);
    free(perm);
    free(is_val);
    return 0;
}

int dataset_head(const Dataset *src, int n, Dataset *dst, HpErr *err) {
    HP_ASSERT(n >= 0 && n <= src->n);
    if (dataset_alloc(dst, n, src->c, src->h, src->w, src->n_classes, err) < 0) return -1;
    if (n == 0) return 0;
    memcpy(dst->images, src->images, (size_t)n * image_bytes(src));
    memcpy(dst->labels, src->labels, (size_t)n);
    return 0;
}

// mean[c], std[c]: population mean and standard deviation of pixel/255 over every pixel of
// channel c, computed exactly from a per-channel histogram of byte values.
void dataset_channel_stats(const Dataset *d, float *mean, float *std) {
    size_t plane = (size_t)d->h * (size_t)d->w;
    for (int c = 0; c < d->c; c++) {
        uint64_t hist[256] = {0};
        for (int i = 0; i < d->n; i++) {
            const uint8_t *p = d->images + ((size_t)i * d->c + c) * plane;
            for (size_t k = 0; k < plane; k++) hist[p[k]]++;
        }
        uint64_t count = (uint64_t)d->n * plane, s1 = 0, s2 = 0;
        for (uint64_t v = 0; v < 256; v++) {
            s1 += v * hist[v];
            s2 += v * v * hist[v];
        }
        if (count == 0) {
            mean[c] = 0.0f;
            std[c] = 0.0f;
            continue;
        }
        double m = (double)s1 / (double)count;
        double var = (double)s2 / (double)count - m * m;
        mean[c] = (float)(m / 255.0);
        std[c] = (float)(sqrt(var > 0.0 ? var : 0.0) / 255.0);
    }
}

// The random choices for one image of a batch: crop offsets in [0, 2 * pad] and a flip.
typedef struct {
    int dy, dx;
    int flip;
} ImageAug;

// Writes one augmented, normalised image: src is (c, h, w) bytes, out is (c, h, w) floats.
// lut[c * 256 + v] is the normalised value of byte v in channel c; a padded pixel is byte 0.
static void assemble_image(const uint8_t *src, int c, int h, int w, int pad, ImageAug a,
                           const float *lut, float *out) {
    for (int ch = 0; ch < c; ch++) {
        const float *l = lut + ch * 256;
        const uint8_t *s = src + (size_t)ch * h * w;
        float *o = out + (size_t)ch * h * w;
        for (int y = 0; y < h; y++) {
            int sy = y + a.dy - pad;
            float *orow = o + (size_t)y * w;
            if (sy < 0 || sy >= h) {
                for (int x = 0; x < w; x++) orow[x] = l[0];
                continue;
            }
            const uint8_t *srow = s + (size_t)sy * w;
            for (int x = 0; x < w; x++) {
                int sx = (a.flip ? w - 1 - x : x) + a.dx - pad;
                orow[x] = (sx >= 0 && sx < w) ? l[srow[sx]] : l[0];
            }
        }
    }
}

// x is (count, c, h, w), y is (count). idx may be NULL for images 0..count-1. Random numbers
// are drawn serially in image order (crop dy, crop dx, then flip), so the result does not
// depend on the number of threads.
void data_batch(const Dataset *d, const int *idx, int count, const float *mean, const float *std,
                const Augment *aug, Rng *rng, float *x, int *y) {
    HP_ASSERT(count >= 0 && d->c <= HP_MAX_CHANNELS_IN);
    if (count == 0) return;
    float lut[HP_MAX_CHANNELS_IN * 256];
    for (int c = 0; c < d->c; c++)
        for (int v = 0; v < 256; v++) lut[c * 256 + v] = ((float)v / 255.0f - mean[c]) / std[c];

    int pad = aug ? aug->crop_pad : 0;
    int flip = aug ? aug->hflip : 0;
    HP_ASSERT(pad >= 0 && pad <= HP_MAX_CROP_PAD);  // the configs bound it, and train() checks it
    HP_ASSERT(rng || (pad == 0 && !flip));
    size_t nb = image_bytes(d);
    enum { CHUNK = 256 };  // images whose random choices are drawn before they are assembled
    ImageAug ia[CHUNK];    // on the stack: no allocation per batch
    for (int b0 = 0; b0 < count; b0 += CHUNK) {
        int nc = count - b0 < CHUNK ? count - b0 : CHUNK;
        for (int j = 0; j < nc; j++) {
            int b = b0 + j, i = idx ? idx[b] : b;
            HP_ASSERT(i >= 0 && i < d->n);
            ia[j].dy = pad > 0 ? (int)rng_below(rng, 2 * (uint64_t)pad + 1) : 0;
            ia[j].dx = pad > 0 ? (int)rng_below(rng, 2 * (uint64_t)pad + 1) : 0;
            ia[j].flip = flip ? (int)(rng_u64(rng) >> 63) : 0;
            y[b] = d->labels[i];
        }
#pragma omp parallel for schedule(static) if ((size_t)nc * nb >= BATCH_PARALLEL_MIN)
        for (int j = 0; j < nc; j++) {
            int b = b0 + j, i = idx ? idx[b] : b;
            assemble_image(d->images + (size_t)i * nb, d->c, d->h, d->w, pad, ia[j], lut, x + (size_t)b * nb);
        }
    }
}
