#!/usr/bin/env python3
"""Writes a small synthetic Fashion-MNIST-format dataset for the command-line tests.

    python3 tests/gen_fmnist.py DIR N_TRAIN N_TEST [--seed S] [--wrong P] [--test-from-train]

Gzipped IDX files of 28x28 images in 10 classes; class c is a bright 7x6 block at its own place
on a 3x4 grid, over uniform noise, so a LeNet-5 learns it in an epoch. --wrong P draws a test
label at random with probability P (so accuracy is not a trivial 100%); --test-from-train makes
the test set the first N_TEST training images (so `hprune eval` measures the loss on the samples
that `hprune hessian --samples N_TEST` uses).
"""
import argparse
import gzip
import random
import struct

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("n_train", type=int)
ap.add_argument("n_test", type=int)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--wrong", type=float, default=0.0)
ap.add_argument("--test-from-train", action="store_true")
args = ap.parse_args()
rng = random.Random(args.seed)
noise = bytes(b * 60 // 256 for b in range(256))
bright = bytes(180 + b * 76 // 256 for b in range(256))


def image(c):
    """One 28x28 image of class c."""
    px = bytearray(rng.randbytes(784).translate(noise))
    r0, c0 = 2 + (c // 4) * 9, 2 + (c % 4) * 6
    for y in range(r0, r0 + 7):
        px[y * 28 + c0:y * 28 + c0 + 6] = rng.randbytes(6).translate(bright)
    return bytes(px)


def write(prefix, classes, images, p_wrong):
    """Writes PREFIX-images-idx3-ubyte.gz and PREFIX-labels-idx1-ubyte.gz."""
    labels = bytes(rng.randrange(10) if rng.random() < p_wrong else c for c in classes)
    with gzip.open(f"{args.out}/{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(classes), 28, 28) + b"".join(images))
    with gzip.open(f"{args.out}/{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(classes)) + labels)


train = [rng.randrange(10) for _ in range(args.n_train)]
train_images = [image(c) for c in train]
write("train", train, train_images, 0.0)
if args.test_from_train:
    write("t10k", train[:args.n_test], train_images[:args.n_test], 0.0)
else:
    test = [rng.randrange(10) for _ in range(args.n_test)]
    write("t10k", test, [image(c) for c in test], args.wrong)
