#!/usr/bin/python3
"""Reads an hprune model file as plain safetensors, with only struct, json and torch (Debian's
python3-torch; the python safetensors package is not needed), and lists its tensors.

    /usr/bin/python3 bench/check_safetensors.py MODEL.safetensors [--arch resnet20]

With --arch NAME (lenet5, vgg11, resnet20, resnet32, resnet56) it also builds that network as
an ordinary PyTorch module, written here independently of hprune, checks that the file holds
exactly its state_dict (same names, same shapes; optim.* tensors are skipped), loads the
weights into it by name and runs one forward pass. Exit status 0 when everything holds.
"""
import argparse
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import build  # noqa: E402

MAX_HEADER = 100 << 20


def read_safetensors(path):
    """Returns (tensors: {name: torch.Tensor}, metadata: {str: str}); raises ValueError."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: {len(blob)} bytes, too short")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or n > len(blob) - 8:
        raise ValueError(f"{path}: header length {n} does not fit the file")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    spans, tensors = [], {}
    for name, e in header.items():
        if e["dtype"] != "F32":
            raise ValueError(f"{path}: tensor '{name}' has dtype {e['dtype']}, expected F32")
        begin, end = e["data_offsets"]
        numel = 1
        for d in e["shape"]:
            numel *= d
        if end - begin != 4 * numel:
            raise ValueError(f"{path}: tensor '{name}' spans {end - begin} bytes, shape needs {4 * numel}")
        spans.append((begin, end, name))
        buf = bytearray(data[begin:end])
        t = torch.frombuffer(buf, dtype=torch.float32) if buf else torch.empty(0)
        tensors[name] = t.reshape(e["shape"]).clone()
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise ValueError(f"{path}: tensor '{name}' begins at byte {begin}, expected {pos}")
        pos = end
    if pos != len(data):
        raise ValueError(f"{path}: tensors end at byte {pos}, data has {len(data)}")
    return tensors, meta


# ---- checking against the reference networks (torch_models.py) ----

def check_against(arch, tensors, graph):
    """Compares the file with the reference module's state_dict; returns a list of problems."""
    c, h, w = graph["input"]
    net = build(arch, c, h, w, graph["classes"])
    want = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    have = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    problems = [f"missing in file: {k} {list(want[k].shape)}" for k in want if k not in have]
    problems += [f"not in {arch}: {k} {list(have[k].shape)}" for k in have if k not in want]
    problems += [f"shape of {k}: file {list(have[k].shape)}, {arch} {list(want[k].shape)}"
                 for k in want if k in have and have[k].shape != want[k].shape]
    if graph.get("arch") != arch:
        problems.append(f"graph says arch '{graph.get('arch')}', not '{arch}'")
    if problems:
        return problems
    net.load_state_dict(have, strict=False)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, c, h, w))
    print(f"loaded into a PyTorch {arch} by name; forward of 2 samples gives {list(out.shape)}")
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--arch", help="check names and shapes against this PyTorch network")
    args = ap.parse_args()
    try:
        tensors, meta = read_safetensors(args.model)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, t in tensors.items():
        print(f"{name:48s} {str(list(t.shape)):20s} {t.numel()}")
    n = sum(t.numel() for k, t in tensors.items() if not k.startswith("optim."))
    print(f"{len(tensors)} tensors, {n} values (optim.* excluded); metadata keys: {sorted(meta)}")
    graph = json.loads(meta["hprune.graph"]) if "hprune.graph" in meta else None
    if graph:
        print(f"graph: arch {graph['arch']}, input {graph['input']}, {graph['classes']} classes, "
              f"{len(graph['nodes'])} nodes")
    if args.arch:
        if not graph:
            print("error: no hprune.graph in __metadata__", file=sys.stderr)
            return 1
        problems = check_against(args.arch, tensors, graph)
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
