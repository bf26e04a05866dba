#!/usr/bin/python3
"""PyTorch reference timings for hprune's benchmark (bench/bench.c): the same networks, the same
inputs shape (1x28x28, 10 classes), the same steps, timed the same way.

    /usr/bin/python3 bench/torch_ref.py [--arch lenet5] [--arch resnet20] [--batch 128]
        [--threads N] [--reps 7] [--warmup 2] [--min-block 0.3] [--hprune ./hprune]
        [--only train|infer|curv]...

One training step: zero_grad, forward (train mode), cross-entropy, backward, SGD step (lr 0.01,
momentum 0.9, weight decay 5e-4). One inference step: forward in eval mode under
torch.inference_mode(). Each figure is the median images/s over R blocks of k steps, k chosen
so a block lasts at least --min-block seconds. Prints one JSON object per architecture.

Curvature products (as bench.c's curvature section; model in eval mode, batchnorm running
statistics taken from one batch, one batch of B seeded random byte images normalised by
0.5/0.25, milliseconds per call):
  grad        forward + torch.autograd.grad of the mean cross-entropy (create_graph=False);
  HVP         double backprop as PyHessian does it over a data loader (per batch, per
              product): forward, autograd.grad(loss, params, create_graph=True), then
              autograd.grad(grads, params, grad_outputs=v);
  HVP cached  only the second autograd.grad, on a graph kept from one first pass
              (retain_graph=True): PyHessian's per-product cost when it holds a single batch;
  Gv          Gauss-Newton product: J v by forward-mode AD (dual parameters, incl. the
              forward), the cross-entropy Hessian on the logits, then J^T by one backward.

With --hprune PATH, the parameter count of every named layer (and the total) is checked
against `PATH info ARCH --json`; a mismatch is an error (exit status 1).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

try:
    from torch.func import functional_call
except ImportError:  # torch < 2.0
    from torch.nn.utils.stateless import functional_call


# ---- the networks (torch_models.py), for 1x28x28 inputs by default ----

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import build as build_net  # noqa: E402


def build(arch, in_ch=1, hw=28, classes=10):
    """Returns the named architecture as an nn.Module; raises ValueError if unknown."""
    return build_net(arch, in_ch, hw, hw, classes)


# ---- checking against hprune ----

def layer_params(model):
    """Returns {module path: parameter count} for every module that owns parameters directly."""
    out = {}
    for name, mod in model.named_modules():
        n = sum(p.numel() for p in mod.parameters(recurse=False))
        if n:
            out[name] = n
    return out


def check_params(model, arch, hprune):
    """Compares per-layer and total parameter counts with `hprune info ARCH --json`.
    Returns a list of mismatch messages (empty when everything agrees)."""
    try:
        res = subprocess.run([hprune, "info", arch, "--json"], capture_output=True, text=True, check=True)
        info = json.loads(res.stdout)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError) as e:
        return [f"{arch}: could not read `{hprune} info {arch} --json`: {e}"]
    theirs = {l["name"]: l["params"] for l in info["layers"] if l["params"]}
    ours = layer_params(model)
    errors = []
    for name in sorted(set(theirs) | set(ours)):
        if theirs.get(name) != ours.get(name):
            errors.append(f"{arch} {name}: hprune {theirs.get(name)}, torch {ours.get(name)}")
    total = sum(p.numel() for p in model.parameters())
    if total != info["params"]:
        errors.append(f"{arch} total: hprune {info['params']}, torch {total}")
    return errors


# ---- timing ----

def time_steps(step, k):
    """Runs step() k times; returns the wall time in seconds."""
    t0 = time.perf_counter()
    for _ in range(k):
        step()
    return time.perf_counter() - t0


def calibrate(step, min_block):
    """Steps per block so a block lasts at least min_block seconds: doubles a trial block until
    it takes an eighth of that, scales, then re-times the block and grows it (at most 3 times)
    if a slow trial step (a cold start, a noisy neighbour) made it too short."""
    k = 1
    t = time_steps(step, k)
    while t < min_block / 8 and k < (1 << 20):
        k *= 2
        t = time_steps(step, k)
    for _ in range(3):
        if t >= min_block:
            break
        nxt = math.ceil(1.05 * min_block / (t / k)) if t > 0 else k + 1
        if nxt <= k:
            break
        k = nxt
        t = time_steps(step, k)
    return k


def measure(step, batch, reps, warmup, min_block):
    """Warms up, calibrates, times reps blocks; returns (median, min, max img/s, steps per block)."""
    time_steps(step, warmup)
    k = calibrate(step, min_block)
    ips = [k * batch / time_steps(step, k) for _ in range(reps)]
    return statistics.median(ips), min(ips), max(ips), k


def cost_ms(step, args):
    """Times step like measure(); returns {median, min, max} milliseconds per call."""
    med, lo, hi, _ = measure(step, 1, args.reps, args.warmup, args.min_block)
    return {"": 1e3 / med, "_min": 1e3 / hi, "_max": 1e3 / lo}


def calibrate_bn(model, x):
    """Sets every batchnorm's running statistics to those of one train-mode pass over x
    (momentum 1 for that pass), then puts the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def ce_hessian_on_logits(logits, r):
    """The mean cross-entropy's Hessian with respect to the logits applied to r:
    (diag(p) - p p^T) r / N per sample, p = softmax(logits)."""
    p = torch.softmax(logits.detach(), dim=1)
    return (p * r - p * (p * r).sum(dim=1, keepdim=True)) / logits.shape[0]


def curv_arch(arch, args):
    """Times gradient, HVP (incl. forward and cached) and Gauss-Newton product of arch in
    eval mode on one seeded batch; returns the result keys."""
    torch.manual_seed(args.seed)
    model = build(arch)
    gen = torch.Generator().manual_seed(args.seed + 0xC0)
    raw = torch.randint(0, 256, (args.batch, 1, 28, 28), generator=gen, dtype=torch.uint8)
    x = (raw.float() / 255.0 - 0.5) / 0.25
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    calibrate_bn(model, x)
    named = list(model.named_parameters())
    params = [p for _, p in named]
    v = [torch.randn(p.shape, generator=gen) for p in params]
    last = {}

    def grad_step():
        loss = F.cross_entropy(model(x), y)
        torch.autograd.grad(loss, params)
        last["loss"] = loss

    def hvp_step():
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        torch.autograd.grad(grads, params, grad_outputs=v)

    kept = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)

    def hvp_cached_step():
        torch.autograd.grad(kept, params, grad_outputs=v, retain_graph=True)

    def gv_step():
        with fwAD.dual_level():
            duals = {name: fwAD.make_dual(p, t) for (name, p), t in zip(named, v)}
            logits, jv = fwAD.unpack_dual(functional_call(model, duals, (x,)))
            jv = jv.clone()
        torch.autograd.grad(logits, params, grad_outputs=ce_hessian_on_logits(logits, jv))

    out = {}
    costs = {"grad": grad_step, "hvp": hvp_step, "hvp_cached": hvp_cached_step, "gv": gv_step}
    for name, step in costs.items():
        for suffix, ms in cost_ms(step, args).items():
            out[f"{name}_ms{suffix}"] = round(ms, 3)
    del kept
    g = out["grad_ms"]
    out["hvp_grad_ratio"] = round(out["hvp_ms"] / g, 3)
    out["hvp_cached_grad_ratio"] = round(out["hvp_cached_ms"] / g, 3)
    out["gv_grad_ratio"] = round(out["gv_ms"] / g, 3)
    out["curv_loss"] = round(float(last["loss"]), 5)
    return out


def bench_arch(arch, args):
    """Times training, inference and curvature products of arch (those args.only picks);
    returns the result dict."""
    torch.manual_seed(args.seed)
    model = build(arch)
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    last = {}

    def train_step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        last["loss"] = loss

    def infer_step():
        with torch.inference_mode():
            model(x)

    res = {
        "engine": "pytorch", "torch": torch.__version__, "arch": arch, "batch": args.batch,
        "threads": torch.get_num_threads(), "reps": args.reps,
        "params": sum(p.numel() for p in model.parameters()),
    }
    if "train" in args.only:
        model.train()
        tr = measure(train_step, args.batch, args.reps, args.warmup, args.min_block)
        res.update({"train_img_s": round(tr[0], 2), "train_img_s_min": round(tr[1], 2),
                    "train_img_s_max": round(tr[2], 2), "train_steps_per_block": tr[3],
                    "final_loss": round(float(last["loss"]), 5)})
    if "infer" in args.only:
        model.eval()
        inf = measure(infer_step, args.batch, args.reps, args.warmup, args.min_block)
        res.update({"infer_img_s": round(inf[0], 2), "infer_img_s_min": round(inf[1], 2),
                    "infer_img_s_max": round(inf[2], 2), "infer_steps_per_block": inf[3]})
    if "curv" in args.only:
        res.update(curv_arch(arch, args))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", action="append", help="architecture (repeatable)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="0: all cores")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-block", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hprune", help="hprune binary to check parameter counts against")
    ap.add_argument("--only", action="append", choices=["train", "infer", "curv"],
                    help="run only this measurement (repeatable; default: all three)")
    args = ap.parse_args()
    args.only = set(args.only or ["train", "infer", "curv"])
    archs = args.arch or ["lenet5", "resnet20"]
    if args.batch < 1 or args.reps < 1 or args.warmup < 0 or args.threads < 0:
        ap.error("batch and reps must be >= 1, warmup and threads >= 0")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    for arch in archs:
        try:
            model = build(arch)
        except ValueError as e:
            print(f"torch_ref: {e}", file=sys.stderr)
            return 2
        if args.hprune:
            errors = check_params(model, arch, args.hprune)
            if errors:
                print("torch_ref: parameter counts differ from hprune's:", file=sys.stderr)
                for e in errors:
                    print("  " + e, file=sys.stderr)
                return 1
        print(json.dumps(bench_arch(arch, args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
