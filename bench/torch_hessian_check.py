#!/usr/bin/python3
"""Cross-checks `hprune hessian` against PyTorch's double-backprop Hessian-vector products (the
way PyHessian computes them) on the same model file and the same images.

    /usr/bin/python3 bench/torch_hessian_check.py MODEL.safetensors [--samples 128]
        [--data /usr/share/datasets/fashion-mnist] [--hprune ./hprune] [--probes 200]

It loads the model into an independent PyTorch network by tensor name (bench/check_safetensors.py),
takes the first N training images in file order, normalised with the model's own statistics,
and computes in eval mode the top eigenvalue by power iteration and the trace by Hutchinson with
Rademacher probes. It then runs `hprune hessian --json` on the same samples and prints both with
their differences; exit status 0 when the eigenvalues agree to 1e-3 and the traces within three
combined standard errors.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_safetensors import read_safetensors  # noqa: E402
from torch_models import build  # noqa: E402


def read_idx_images(path, n):
    """First n images of an IDX3 file (gzipped or not) as a uint8 tensor (n, 1, H, W)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(16)
        count, rows, cols = (int.from_bytes(head[i:i + 4], "big") for i in (4, 8, 12))
        n = min(n, count)
        data = f.read(n * rows * cols)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(n, 1, rows, cols)


def read_idx_labels(path, n):
    """First n labels of an IDX1 file as an int64 tensor."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        f.read(8)
        data = f.read(n)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def find(data_dir, stem):
    """The path of stem or stem.gz in data_dir."""
    for name in (stem + ".gz", stem):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(os.path.join(data_dir, stem))


def hvp(loss_grads, params, v):
    """Hessian-vector product by double backprop (PyHessian's method)."""
    return torch.autograd.grad(loss_grads, params, grad_outputs=v, retain_graph=True)


def dot(a, b):
    """Sum of elementwise products over lists of tensors, in double."""
    return sum((x.double() * y.double()).sum() for x, y in zip(a, b)).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--hprune", default="./hprune")
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    torch.manual_seed(0)

    tensors, meta = read_safetensors(args.model)
    graph = json.loads(meta["hprune.graph"])
    c, h, w = graph["input"]
    net = build(graph["arch"], c, h, w, graph["classes"])
    net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optim.")}, strict=True)
    net.eval()
    mean = torch.tensor(graph["normalize"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(graph["normalize"]["std"]).view(1, -1, 1, 1)
    x = (read_idx_images(find(args.data, "train-images-idx3-ubyte"), args.samples).float() / 255 - mean) / std
    y = read_idx_labels(find(args.data, "train-labels-idx1-ubyte"), args.samples)

    params = [p for p in net.parameters()]
    loss = F.cross_entropy(net(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)

    # top eigenvalue by power iteration (PyHessian: tol 1e-3 relative)
    v = [torch.randn_like(p) for p in params]
    norm = dot(v, v) ** 0.5
    v = [t / norm for t in v]
    eig = None
    for it in range(args.iters):
        hv = hvp(grads, params, v)
        new = dot(hv, v)
        norm = dot(hv, hv) ** 0.5
        v = [t / norm for t in hv]
        if eig is not None and abs(new - eig) <= 1e-4 * abs(new):
            eig = new
            break
        eig = new

    # Hutchinson trace with Rademacher probes
    samples = []
    for _ in range(args.probes):
        z = [torch.randint_like(p, 2) * 2 - 1 for p in params]
        samples.append(dot(hvp(grads, params, z), z))
    tr = sum(samples) / len(samples)
    se = (sum((s - tr) ** 2 for s in samples) / (len(samples) - 1)) ** 0.5 / len(samples) ** 0.5

    cmd = [args.hprune, "hessian", args.model, "--data", args.data, "--samples", str(args.samples),
           "--batch-size", str(args.samples), "--eigs", "1", "--eig-tol", "1e-6", "--trace",
           "--max-probes", str(args.probes), "--tol", "1e-9", "--json"]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    h_eig = out["eigenvalues"]["largest"][0]
    h_tr, h_se = out["trace"]["estimate"], out["trace"]["stderr"]
    print(f"model {args.model} ({graph['arch']}), first {args.samples} training images, eval mode")
    print(f"top eigenvalue: PyTorch power iteration {eig:.6g} ({it + 1} HVPs), hprune Lanczos {h_eig:.6g}, "
          f"relative difference {abs(eig - h_eig) / abs(h_eig):.2e}")
    z = abs(tr - h_tr) / (se ** 2 + h_se ** 2) ** 0.5
    print(f"trace: PyTorch {tr:.6g} +- {se:.3g}, hprune {h_tr:.6g} +- {h_se:.3g} "
          f"({args.probes} probes each, independent): difference {z:.2f} combined standard errors")
    ok = abs(eig - h_eig) <= 1e-3 * abs(h_eig) and z <= 3.0
    print("agree" if ok else "DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
