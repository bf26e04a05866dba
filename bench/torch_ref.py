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


# ---- the networks, named as hprune's built-in architectures (PyTorch state_dict paths) ----

class LeNet5(nn.Module):
    """conv1 6@5x5 pad 2, relu, maxpool 2, conv2 16@5x5, relu, maxpool 2, fc 120, 84, classes."""

    def __init__(self, in_ch, hw, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        side = ((hw // 2) - 4) // 2
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """conv3x3-bn-relu-conv3x3-bn plus identity or a 1x1 conv-bn projection, add, relu."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet of depth 6n+2: stages of 16, 32, 64 channels, global pool, fc."""

    def __init__(self, depth, in_ch, classes):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_ch, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for s, planes in enumerate((16, 32, 64)):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(cin, planes, 2 if (s > 0 and b == 0) else 1))
                cin = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def build(arch, in_ch=1, hw=28, classes=10):
    """Returns the named architecture as an nn.Module; raises ValueError if unknown."""
    if arch == "lenet5":
        return LeNet5(in_ch, hw, classes)
    if arch in ("resnet20", "resnet32", "resnet56"):
        return CifarResNet(int(arch[6:]), in_ch, classes)
    raise ValueError(f"unknown architecture '{arch}' (known: lenet5, resnet20, resnet32, resnet56)")


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
