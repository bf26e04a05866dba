#!/bin/sh
# cli_errors.sh: bad input on purpose. Every case must fail cleanly: the right exit status
# (1 runtime error, 2 usage error), no crash (status < 128), nothing on stdout, exactly one
# message line on stderr ("hprune: error: ..." naming the file and the problem; a usage error
# is "hprune CMD: ..." followed only by the "Try 'hprune CMD --help'." hint), and no file
# left behind (no output, no checkpoint, no .hprune-* temporary).
#
#   HPRUNE=./hprune sh tests/cli_errors.sh      (from the repository root)
#   VERBOSE=1 HPRUNE=./hprune sh tests/cli_errors.sh   also shows every message
#
# Prints "ok N - what" / "not ok N - what" (with "#" diagnostic lines after a failure) and
# exits non-zero if anything failed. Fixtures live in a mktemp -d directory removed at the end.

. "$(dirname "$0")/tap_lib.sh"
tap_begin cli-errors
CAP=$T/cap  # captured output of the command under test (not part of the fixtures)
mkdir -p "$CAP"


# ---- fixtures: a tiny dataset, a tiny trained model, and damaged copies of both ----

mkdir -p "$T/work" "$T/data" "$T/models" "$T/bad"
cat >"$T/craft.py" <<'EOF'
# craft.py MODE SRC DST: writes a damaged copy of the model file SRC (or a new file) to DST.
import gzip, json, struct, sys
mode, src, dst = sys.argv[1:4]

def read(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]

def write(path, header, data):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + data)

def graph_edit(header, fn):
    g = json.loads(header["__metadata__"]["hprune.graph"])
    fn(g)
    header["__metadata__"]["hprune.graph"] = json.dumps(g)

h, d = read(src)
tensors = [k for k in h if k != "__metadata__"]
if mode == "hdr-too-long":      # header length larger than the file
    blob = open(src, "rb").read()
    open(dst, "wb").write(struct.pack("<Q", len(blob) + 100) + blob[8:])
elif mode == "bad-json":        # a header that is not JSON
    text = b'{"conv1.weight": {"dtype": "F32", "shape": [6, 1, 5, 5], ' + b" " * 6
    open(dst, "wb").write(struct.pack("<Q", len(text)) + text + d)
elif mode == "f16":             # one tensor stored as F16 (and sized so)
    e = h["conv1.weight"]
    e["dtype"] = "F16"
    write(dst, h, d)
elif mode == "gap":             # 4 unused bytes between two tensors
    cut = sorted(h[k]["data_offsets"][0] for k in tensors)[3]
    for k in tensors:
        b, e = h[k]["data_offsets"]
        if b >= cut:
            h[k]["data_offsets"] = [b + 4, e + 4]
    write(dst, h, d[:cut] + b"\0\0\0\0" + d[cut:])
elif mode == "shape-vs-offsets":  # a shape that needs fewer bytes than its offsets span
    h["conv1.weight"]["shape"] = [6, 1, 5, 4]
    write(dst, h, d)
elif mode in ("state-epoch", "state-best", "state-seconds", "state-seconds-text"):  # a checkpoint whose train state is out of range
    bad = {"state-epoch": {"next_epoch": 1e10, "best_val_acc": 0.5}, "state-best": {"next_epoch": 1, "best_val_acc": 1e300},
           "state-seconds": {"next_epoch": 1, "best_val_acc": 0.5, "train_seconds": -5},
           "state-seconds-text": {"next_epoch": 1, "best_val_acc": 0.5, "train_seconds": "an hour"}}
    h["__metadata__"]["hprune.train_state"] = json.dumps(bad[mode])
    write(dst, h, d)
elif mode == "prov-imagenet":   # the provenance names a dataset hprune does not know
    p = json.loads(h["__metadata__"]["hprune.provenance"])
    p["dataset"] = "imagenet"
    h["__metadata__"]["hprune.provenance"] = json.dumps(p)
    write(dst, h, d)
elif mode == "nan-weight":      # one weight is NaN: a ReLU would hide it (0), so it is refused
    b = h["conv2.weight"]["data_offsets"][0] + 4 * 7
    d = d[:b] + struct.pack("<f", float("nan")) + d[b + 4:]
    write(dst, h, d)
elif mode == "prov-mnist-nodir":  # the provenance names mnist and no directory
    p = json.loads(h["__metadata__"]["hprune.provenance"])
    p["dataset"] = "mnist"
    p.pop("data_dir", None)
    h["__metadata__"]["hprune.provenance"] = json.dumps(p)
    write(dst, h, d)
elif mode == "nan-momentum":    # a training checkpoint whose momentum holds a NaN (fc3.bias, value 0)
    extra = b""
    for k in tensors:
        b, end = h[k]["data_offsets"]
        buf = bytearray(end - b)
        if k == "fc3.bias":
            buf[0:4] = struct.pack("<f", float("nan"))
        at = len(d) + len(extra)
        h["optim." + k + ".momentum_buffer"] = {"dtype": "F32", "shape": h[k]["shape"],
                                                "data_offsets": [at, at + len(buf)]}
        extra += bytes(buf)
    h["__metadata__"]["hprune.train_state"] = json.dumps({"next_epoch": 0, "best_val_acc": 0})
    write(dst, h, d + extra)
elif mode == "no-graph":        # valid safetensors, but not an hprune model
    del h["__metadata__"]["hprune.graph"]
    write(dst, h, d)
elif mode == "unknown-op":      # the graph names an op hprune does not know
    graph_edit(h, lambda g: g["nodes"][0].update(op="conv3d"))
    write(dst, h, d)
elif mode == "graph-json":      # hprune.graph is not JSON
    h["__metadata__"]["hprune.graph"] = '{"format": "hprune-graph", "nodes": ['
    write(dst, h, d)
elif mode == "wrong-shape":     # a consistent file whose tensor does not fit the graph
    h["fc3.bias"]["shape"] = [2, 5]
    write(dst, h, d)
elif mode == "missing-tensor":  # a tensor of the graph is absent
    e = h.pop("fc3.bias")
    b, end = e["data_offsets"]
    for k in tensors:
        if k != "fc3.bias" and h[k]["data_offsets"][0] >= end:
            h[k]["data_offsets"] = [x - (end - b) for x in h[k]["data_offsets"]]
    write(dst, h, d[:b] + d[end:])
elif mode == "big-input":      # a new model (SRC unused): 170 parameters, but 8x2048x2048 activations per image
    g = {"format": "hprune-graph", "version": 1, "arch": "custom", "input": [1, 2048, 2048], "classes": 10,
         "normalize": {"mean": [0.0], "std": [1.0]},
         "nodes": [{"name": "conv1", "op": "conv2d", "inputs": ["input"], "out_channels": 8, "kernel": 3,
                    "stride": 1, "padding": 1, "groups": 1, "bias": True},
                   {"name": "relu1", "op": "relu", "inputs": ["conv1"]},
                   {"name": "pool", "op": "global_avgpool", "inputs": ["relu1"]},
                   {"name": "flatten", "op": "flatten", "inputs": ["pool"]},
                   {"name": "fc", "op": "linear", "inputs": ["flatten"], "out_features": 10, "bias": True}]}
    h, at = {"__metadata__": {"hprune.graph": json.dumps(g)}}, 0
    for k, n in (("conv1.weight", [8, 1, 3, 3]), ("conv1.bias", [8]), ("fc.weight", [10, 8]), ("fc.bias", [10])):
        size = 4
        for x in n:
            size *= x
        h[k] = {"dtype": "F32", "shape": n, "data_offsets": [at, at + size]}
        at += size
    write(dst, h, b"".join(struct.pack("<f", 0.01 * (i % 7 + 1)) for i in range(at // 4)))
else:
    sys.exit("craft.py: unknown mode " + mode)
EOF
cat >"$T/damage.py" <<'EOF'
# damage.py MODE DIR: damages one file of the IDX dataset in DIR.
import gzip, os, struct, sys
mode, d = sys.argv[1:3]
img, lab = f"{d}/train-images-idx3-ubyte.gz", f"{d}/train-labels-idx1-ubyte.gz"
def raw(p): return gzip.open(p).read()
def put(p, b): open(p, "wb").write(gzip.compress(b, mtime=0))
if mode == "idx-truncated":     # a plain (not gzipped) images file cut short in its data
    b = raw(img)
    os.remove(img)
    open(img[:-3], "wb").write(b[:len(b) // 2])
elif mode == "gz-truncated":    # the gzip stream cut short
    b = open(img, "rb").read()
    open(img, "wb").write(b[:len(b) // 2])
elif mode == "gz-corrupt":      # bytes flipped in the middle of the compressed stream
    b = bytearray(open(img, "rb").read())
    for i in range(len(b) // 2, len(b) // 2 + 16):
        b[i] ^= 0xA5
    open(img, "wb").write(bytes(b))
elif mode == "gz-trailing":     # bytes after the end of the gzip stream (gzread would skip them)
    open(img, "ab").write(b"junk")
elif mode == "bad-magic":       # the labels magic on an images file
    b = raw(img)
    put(img, struct.pack(">I", 0x801) + b[4:])
elif mode == "count":           # one label fewer than images
    b = raw(lab)
    (n,) = struct.unpack(">I", b[4:8])
    put(lab, struct.pack(">II", 0x801, n - 1) + b[8:-1])
elif mode == "label-range":     # a label of 12 in a 10-class dataset
    b = bytearray(raw(lab))
    b[8 + 5] = 12
    put(lab, bytes(b))
elif mode == "small-test":      # test images 32x32 while training images are 28x28
    n = 64
    put(f"{d}/t10k-images-idx3-ubyte.gz", struct.pack(">IIII", 0x803, n, 32, 32) + bytes(1024 * n))
    put(f"{d}/t10k-labels-idx1-ubyte.gz", struct.pack(">II", 0x801, n) + bytes(n))
else:
    sys.exit("damage.py: unknown mode " + mode)
EOF

DATA=$T/data
GOOD=$T/models/good.safetensors
fixtures_ok=1
python3 "$(dirname "$0")/gen_fmnist.py" "$DATA" 256 64 || fixtures_ok=""
cat >"$T/good.ini" <<EOF
[model]
arch = lenet5

[data]
dataset = fashion-mnist
dir = $DATA

[train]
epochs = 1
batch_size = 64
lr = 0.05
seed = 1
threads = 1
output = $T/out/never.safetensors
EOF
[ -n "$fixtures_ok" ] && "$HPRUNE" train --config "$T/good.ini" -o "$GOOD" >/dev/null 2>"$CAP/err" || fixtures_ok=""
tap_fixtures_made "fixtures: a tiny dataset and a trained model" "$GOOD"

B=$T/bad
: >"$B/empty.safetensors"
printf 'hprune!' >"$B/seven.safetensors"
printf '\211PNG\r\n\032\n\000\000\000\rIHDR\000\000\000\001\000\000\000\001\010\006\000\000\000' >"$B/chart.png"
printf 'notes on the run\n' >"$B/notes.txt"
printf '\020\000\000\000\000\000\000\000[1, 2, 3, 4, 5] ' >"$B/list.bin"
for mode in hdr-too-long bad-json f16 gap shape-vs-offsets no-graph unknown-op graph-json wrong-shape missing-tensor \
  nan-weight; do
  python3 "$T/craft.py" $mode "$GOOD" "$B/$mode.safetensors" || not_ok "craft $mode"
done

# ---- eval and info on bad model files ----

# bad_model DESC FILE PROBLEM: eval and info must both refuse FILE.
bad_model() {
  expect 1 "eval: $1" "$2" "$3" "$HPRUNE" eval "$2" --data "$DATA" --threads 1
  expect 1 "info: $1" "$2" "$3" "$HPRUNE" info "$2"
}
bad_model "missing file" "$B/missing.safetensors" "no such file"
bad_model "empty file" "$B/empty.safetensors" "0 bytes.*too short"
bad_model "7-byte file" "$B/seven.safetensors" "7 bytes.*too short"
bad_model "a PNG image given as the model" "$B/chart.png" \
  "chart.png: not a safetensors file: header length 727905341920923785 \(its first 8 bytes\) is absurd \(limit [0-9]+ bytes\)$"
bad_model "a text file given as the model" "$B/notes.txt" "notes.txt: not a safetensors file: header length [0-9]+ .* is absurd"
bad_model "a file whose header is JSON but not an object" "$B/list.bin" \
  "list.bin: not a safetensors file: header is not a JSON object \(does not begin with '\{'\)$"
bad_model "a directory" "$B" "not a regular file"
bad_model "header length beyond the end of the file" "$B/hdr-too-long.safetensors" "header length [0-9]+ is larger"
bad_model "header that is not JSON" "$B/bad-json.safetensors" "header is not valid JSON"
bad_model "F16 tensor" "$B/f16.safetensors" "conv1.weight.*F16.*not supported"
bad_model "offsets with a gap" "$B/gap.safetensors" "gap in data"
bad_model "shape that disagrees with its offsets" "$B/shape-vs-offsets.safetensors" "conv1.weight.*data_offsets span [0-9]+ bytes but shape \[6, 1, 5, 4\]"
bad_model "no hprune.graph" "$B/no-graph.safetensors" "not an hprune model.*hprune.graph"
bad_model "graph naming an unknown op" "$B/unknown-op.safetensors" "hprune.graph.*node 1 'conv1'.*unknown op 'conv3d'"
bad_model "graph that is not JSON" "$B/graph-json.safetensors" "hprune.graph.*not valid JSON"
bad_model "tensor shaped otherwise than the graph says" "$B/wrong-shape.safetensors" "fc3.bias.*expected shape \[10\], found \[2, 5\]"
bad_model "tensor of the graph missing" "$B/missing-tensor.safetensors" "fc3.bias.*missing"
bad_model "a NaN weight" "$B/nan-weight.safetensors" "tensor 'conv2.weight': value 7 is nan \(not finite\)"

# ---- eval: data that does not fit the model ----

mkdir -p "$T/cifar"
python3 -c '
import sys
for name in ["data_batch_%d.bin" % i for i in range(1, 6)] + ["test_batch.bin"]:
    open(sys.argv[1] + "/" + name, "wb").write(bytes([3]) + bytes(3072))
' "$T/cifar"
expect 1 "eval: CIFAR-10 data for an MNIST-shaped model" "$GOOD" "takes 1x28x28 inputs.*cifar10.*3x32x32" \
  "$HPRUNE" eval "$GOOD" --data "$T/cifar" --dataset cifar10 --threads 1
expect 1 "eval: a CIFAR-10 directory read as Fashion-MNIST" "$T/cifar" "no such file.*t.*-idx" \
  "$HPRUNE" eval "$GOOD" --data "$T/cifar" --threads 1
expect 1 "eval: --data /nonexistent" "/nonexistent" "no such directory" \
  "$HPRUNE" eval "$GOOD" --data /nonexistent --threads 1
python3 "$T/craft.py" prov-imagenet "$GOOD" "$T/models/imagenet.safetensors"
expect 1 "eval: a model whose provenance names an unknown dataset" "$T/models/imagenet.safetensors" \
  "its provenance names dataset 'imagenet', which hprune does not know \(--dataset chooses another\)" \
  "$HPRUNE" eval "$T/models/imagenet.safetensors" --data "$DATA" --threads 1
expect 2 "eval: --dataset other than the model's, without --data: a usage error, not read from the model's directory" \
  "$GOOD" "--dataset mnist: give its directory with --data DIR \(the model was trained on fashion-mnist in " \
  "$HPRUNE" eval "$GOOD" --dataset mnist --threads 1
# prune --config: data its [data] section names, named at the line that chose it
FT="--method l1 --target-flops 0.5 --finetune-epochs 1 --threads 1 -o $T/never.safetensors"
printf '[data]\ndataset = cifar10\ndir = %s\n' "$T/cifar" >"$T/ft_cifar.ini"
expect 1 "prune: a --config naming CIFAR-10 for an MNIST-shaped model, at [data] dataset's line" "$T/ft_cifar.ini:2: " \
  "\[data\] dataset: .*good\.safetensors takes 1x28x28 inputs and 10 classes, cifar10 in .*/cifar has 3x32x32 and 10" \
  "$HPRUNE" prune "$GOOD" $FT --config "$T/ft_cifar.ini"
printf '[data]\ndir = %s\n' "$T/cifar" >"$T/ft_cifar_dir.ini"
expect 1 "prune: a --config [data] dir without the model's dataset in it, at its line" "$T/ft_cifar_dir.ini:2: " \
  "\[data\] dir: cannot load fashion-mnist: .*/cifar/train-images-idx3-ubyte: no such file" \
  "$HPRUNE" prune "$GOOD" $FT --config "$T/ft_cifar_dir.ini"
printf '[data]\ndir = %s\n' "$DATA" >"$T/ft_dir.ini"
expect 1 "prune: a --config [data] dir for a model whose provenance names an unknown dataset (no crash)" \
  "$T/models/imagenet.safetensors" "its provenance names dataset 'imagenet', which hprune does not know" \
  "$HPRUNE" prune "$T/models/imagenet.safetensors" $FT --config "$T/ft_dir.ini"
python3 "$T/craft.py" prov-mnist-nodir "$GOOD" "$T/models/mnist-nodir.safetensors"
expect 1 "eval: a provenance naming mnist and no directory (not read from Fashion-MNIST's)" \
  "$T/models/mnist-nodir.safetensors" "its provenance names dataset mnist but no directory: give it with --data DIR" \
  "$HPRUNE" eval "$T/models/mnist-nodir.safetensors" --threads 1
# a FIFO in the data directory: refused, not waited on for ever (the inner timeout ends a hang)
mkdir -p "$T/data_fifo" "$T/cifar_fifo"
cp "$DATA"/* "$T/data_fifo"/ && rm "$T/data_fifo/t10k-labels-idx1-ubyte.gz" &&
  mkfifo "$T/data_fifo/t10k-labels-idx1-ubyte"
expect 1 "eval: a FIFO in an IDX data directory is refused, not waited on" "$T/data_fifo/t10k-labels-idx1-ubyte" \
  "not a regular file" timeout 10 "$HPRUNE" eval "$GOOD" --data "$T/data_fifo" --threads 1
cp "$T/cifar"/data_batch_* "$T/cifar_fifo"/ && mkfifo "$T/cifar_fifo/test_batch.bin"
expect 1 "eval: a FIFO in a CIFAR-10 data directory is refused, not waited on" "$T/cifar_fifo/test_batch.bin" \
  "not a regular file" timeout 10 "$HPRUNE" eval "$GOOD" --data "$T/cifar_fifo" --dataset cifar10 --threads 1
expect 2 "eval: --dataset unknown" "imagenet" "dataset" \
  "$HPRUNE" eval "$GOOD" --data "$DATA" --dataset imagenet
expect 2 "eval: --batch-size 0" "--batch-size" "'0'" \
  "$HPRUNE" eval "$GOOD" --batch-size 0

# ---- an option given twice is a usage error (not the last one winning); info's options for an
# architecture name are refused for a model file ----

expect 2 "eval: --batch-size given twice" "--batch-size given twice" "^hprune eval: --batch-size given twice$" \
  "$HPRUNE" eval "$GOOD" --batch-size 100 --batch-size 200
expect 2 "eval: --json given twice" "--json given twice" "^hprune eval: --json given twice$" \
  "$HPRUNE" eval "$GOOD" --json --json
expect 2 "info: --groups given twice" "--groups given twice" "^hprune info: --groups given twice$" \
  "$HPRUNE" info lenet5 --groups --groups
expect 1 "info: a name that is neither a file nor a built-in architecture: the names listed" "lenet6" \
  "^hprune: error: lenet6: neither a model file \(cannot open: No such file or directory\) nor a built-in architecture \(lenet5, vgg11, resnet20, resnet32, resnet56\)$" \
  "$HPRUNE" info lenet6
expect 1 "info: ... with --input too (a file is looked for first)" "lenet6" "nor a built-in architecture \(lenet5, " \
  "$HPRUNE" info lenet6 --input 3x32x32
expect 1 "info: a missing path (not a name) is only a missing file" "$T/bad/lenet6" "cannot open: No such file or directory$" \
  "$HPRUNE" info "$T/bad/lenet6"
expect 2 "info: --input with a model file" "$GOOD" "^hprune info: --input is for an architecture name; .* is a model file$" \
  "$HPRUNE" info "$GOOD" --input 3x32x32
expect 2 "info: --classes with a model file" "$GOOD" "^hprune info: --classes is for an architecture name; .* is a model file$" \
  "$HPRUNE" info "$GOOD" --classes 5 --json

# ---- train: bad configurations ----

OUT=$T/out/model.safetensors
mkdir -p "$T/out"
# cfg NAME LINE...: a config file holding the good one with LINE... appended to [train]; a key
# the good one sets is commented out there (a key set twice is an error of its own).
cfg() {
  f=$T/cfg_$1.ini; shift
  cp "$T/good.ini" "$f"
  for l in "$@"; do
    k=$(printf '%s\n' "$l" | sed -n 's/^\([a-z_]*\) *=.*/\1/p')
    [ -z "$k" ] || sed -i "s/^$k *=/; &/" "$f"
    printf '%s\n' "$l" >>"$f"
  done
}
good_lines=$(wc -l <"$T/good.ini")
L=$((good_lines + 1))
cfg unknown_key "lr_decay = 0.1"
expect 1 "train: unknown key" "$T/cfg_unknown_key.ini:$L:" "unknown key 'lr_decay' in \[train\]" \
  "$HPRUNE" train --config "$T/cfg_unknown_key.ini" -o "$OUT"
cfg escape_key "$(printf '\033[2Jlr')= 0.1"
expect 1 "train: a key with a terminal escape is shown escaped, on one line" "$T/cfg_escape_key.ini:$L:" \
  "unknown key '\\\\x1b\\[2Jlr' in \\[train\\]" "$HPRUNE" train --config "$T/cfg_escape_key.ini" -o "$OUT"
expect 1 "train: an output path with a newline in it, on one line" "nodir\\x0a" "director" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/nodir
x/model.safetensors"
cp "$T/good.ini" "$T/good.conf"
expect 2 "train: an output model that would overwrite the config" "$T/good.conf" "would overwrite the config" \
  "$HPRUNE" train --config "$T/good.conf" -o "$T/good.conf"
expect 2 "train: an output model named as a config" "" "-o $T/good.ini: the model is written as safetensors" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/good.ini"
mkfifo "$T/fifo"
expect 1 "train: an output that is a FIFO (a rename would replace it)" "$T/fifo" "not a regular file" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/fifo"
check "the FIFO is still a FIFO" test -p "$T/fifo"
rm -f "$T/fifo"
cfg unknown_section "" "[optimizer]" "kind = sgd"
expect 1 "train: unknown section" "$T/cfg_unknown_section.ini:$((L + 1)):" "unknown section \[optimizer\]" \
  "$HPRUNE" train --config "$T/cfg_unknown_section.ini" -o "$OUT"
cfg bad_value "lr = abc"
expect 1 "train: malformed value (lr = abc)" "$T/cfg_bad_value.ini:$L:" "'abc'.*'lr'" \
  "$HPRUNE" train --config "$T/cfg_bad_value.ini" -o "$OUT"
cfg out_of_range "epochs = 0"
expect 1 "train: out-of-range value (epochs = 0)" "$T/cfg_out_of_range.ini:$L:" "epochs.*at least 1" \
  "$HPRUNE" train --config "$T/cfg_out_of_range.ini" -o "$OUT"
cfg bad_arch "" "[model]" "arch = lenet7"
expect 1 "train: unknown architecture" "$T/cfg_bad_arch.ini:$((L + 2)):" "lenet7" \
  "$HPRUNE" train --config "$T/cfg_bad_arch.ini" -o "$OUT"
cfg no_equals "warmup_epochs"
expect 1 "train: a line without '='" "$T/cfg_no_equals.ini:$L" "" \
  "$HPRUNE" train --config "$T/cfg_no_equals.ini" -o "$OUT"
cfg crop_pad "" "[data]" "crop_pad = 268435457"
expect 1 "train: crop_pad beyond its limit (was an assertion failure)" "$T/cfg_crop_pad.ini:$((L + 2)):" \
  "'crop_pad' must be in \[0, 64\], got 268435457" "$HPRUNE" train --config "$T/cfg_crop_pad.ini" -o "$OUT"
expect 1 "prune: a fine-tuning config with crop_pad beyond its limit" "$T/cfg_crop_pad.ini:$((L + 2)):" \
  "'crop_pad' must be in \[0, 64\]" "$HPRUNE" prune "$GOOD" --method l1 --target-flops 0.5 --finetune-epochs 1 \
  --config "$T/cfg_crop_pad.ini" --data "$DATA" --threads 1 -o "$T/out/pruned.safetensors"
cfg threads "threads = 2147483647"
expect 1 "train: threads beyond 1024" "$T/cfg_threads.ini:$L:" "'threads' must be in \[0, 1024\], got 2147483647" \
  "$HPRUNE" train --config "$T/cfg_threads.ini" -o "$OUT"
cfg after_header "" "[model] arch = lenet7"
expect 1 "train: a key after a section header, on its line (inih would drop it)" "$T/cfg_after_header.ini:$((L + 1)):" \
  "text after the section header: 'arch = lenet7'" "$HPRUNE" train --config "$T/cfg_after_header.ini" -o "$OUT"
printf '[model]\rarch = nonsense\r[train]\repochs = 0\r' >"$T/cr_only.ini"
expect 1 "train: a config with CR line endings (read as one line before)" "$T/cr_only.ini:1:" "CR line endings" \
  "$HPRUNE" train --config "$T/cr_only.ini" -o "$OUT"
expect 1 "train: missing config file" "$T/missing.ini" "no such file|cannot open" \
  "$HPRUNE" train --config "$T/missing.ini" -o "$OUT"
expect 2 "train: --epochs 0" "--epochs" "at least 1" \
  "$HPRUNE" train --config "$T/good.ini" --epochs 0 -o "$OUT"
expect 2 "train: --lr abc" "--lr" "abc" \
  "$HPRUNE" train --config "$T/good.ini" --lr abc -o "$OUT"
expect 2 "train: --threads abc" "--threads" "abc" \
  "$HPRUNE" train --config "$T/good.ini" --threads abc -o "$OUT"
expect 2 "train: --threads 5000" "--threads" "'threads' must be in \[0, 1024\], got 5000" \
  "$HPRUNE" train --config "$T/good.ini" --threads 5000 -o "$OUT"
expect 1 "train: a training set smaller than one batch, naming the data" "$DATA:" \
  "fashion-mnist training set has 256 images, fewer than one batch of 512" \
  "$HPRUNE" train --config "$T/good.ini" --batch-size 512 -o "$OUT"
expect 2 "train: an extra argument" "stray" "unexpected argument" \
  "$HPRUNE" train --config "$T/good.ini" stray -o "$OUT"
expect 2 "train: -c and --config (one option) given twice" "-c/--config given twice" "^hprune train: -c/--config given twice$" \
  "$HPRUNE" train -c "$T/good.ini" --config "$T/good.ini" -o "$OUT"
expect 2 "train: -o given twice" "-o/--output given twice" "^hprune train: -o/--output given twice$" \
  "$HPRUNE" train --config "$T/good.ini" -o "$OUT" -o "$T/out/b.safetensors"
expect 2 "train: --epochs given twice" "--epochs given twice" "^hprune train: --epochs given twice$" \
  "$HPRUNE" train --config "$T/good.ini" --epochs 1 --epochs 2 -o "$OUT"
expect 2 "train: --resume given twice" "--resume given twice" "^hprune train: --resume given twice$" \
  "$HPRUNE" train --config "$T/good.ini" --resume --resume -o "$OUT"
long_name=$(printf '%0240d' 0 | tr 0 a).safetensors  # 252 bytes: the model fits, its .ckpt (257) does not
expect 1 "train: an output whose checkpoint's name would be too long, refused before training" \
  "$long_name.ckpt" "file name is longer than 255 bytes" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/out/$long_name"
# (training prints its header line first, so not `expect`'s one line)
run "$HPRUNE" train --config "$T/good.ini" --lr 1e9 -o "$OUT"
check "train: a rate that makes the loss diverge stops at its first NaN step, exit 1, no model" \
  sh -c '[ "$0" -eq 1 ] && tail -n 1 "$1" | grep -q -E "^hprune: error: training diverged: the loss is (nan|inf) at step [0-9]+ of epoch 1 \(learning rate" &&
    [ ! -e "$2" ] && [ ! -e "$2.ckpt" ]' "$rc" "$CAP/err" "$OUT"

# one step an epoch: the step's loss is finite, its update is what diverges (caught by the
# evaluation after the epoch)
run "$HPRUNE" train --config "$T/good.ini" --batch-size 256 --lr 3e38 -o "$OUT"
check "train: a last update that diverges is caught after its epoch, exit 1, no model" \
  sh -c '[ "$0" -eq 1 ] && tail -n 1 "$1" | grep -q -E "^hprune: error: training diverged: the (test|validation) loss is (nan|inf) after epoch 1" &&
    [ ! -e "$2" ] && [ ! -e "$2.ckpt" ]' "$rc" "$CAP/err" "$OUT"

# ---- numbers on the command line: plain decimal only, the INI reader's grammar (no blanks, no
# leading '+', no hexadecimal), in every command; a usage error naming the option and the value
# (the outputs are in a missing directory: a number read by mistake cannot leave a file) ----

NUMOUT=$T/nodir

for v in " 5" "+5" "0x10"; do
  expect 2 "eval: --batch-size '$v' is not a number" "--batch-size: '$v'" "is not an integer in \[1, 65536\]$" \
    "$HPRUNE" eval "$GOOD" --batch-size "$v"
  expect 2 "train: --epochs '$v' is not a number" "--epochs: bad value '$v'" "expected an integer$" \
    "$HPRUNE" train --config "$T/good.ini" --epochs "$v" -o "$NUMOUT/m.safetensors"
done
for v in " 0.1" "+0.1" "0x1" "0x1p-3"; do
  expect 2 "prune: --lr '$v' is not a number" "--lr: '$v'" "is not a number in \[1e-08, 100\]$" \
    "$HPRUNE" prune "$GOOD" --method l1 --target-flops 0.5 --finetune-epochs 1 --lr "$v" -o "$NUMOUT/p.safetensors"
  expect 2 "hessian: --tol '$v' is not a number" "--tol: '$v'" "is not a number in \[1e-12, 1\]$" \
    "$HPRUNE" hessian "$GOOD" --tol "$v"
  expect 2 "train: --lr '$v' is not a number" "--lr: bad value '$v'" "expected a number$" \
    "$HPRUNE" train --config "$T/good.ini" --lr "$v" -o "$NUMOUT/m.safetensors"
done
for v in "+0.5" "0x1p-1" "0.25, 0.5" "0.1: 0.9:0.1"; do
  expect 2 "sensitivity: --ratios '$v' is not a list of numbers" "--ratios: '$v'" "not a number|three numbers" \
    "$HPRUNE" sensitivity "$GOOD" --ratios "$v" -o "$NUMOUT/s"
done
for v in " 0/2" "+0/2" "0/+2" "0x0/2"; do
  expect 2 "sweep: --shard '$v' is not I/N" "--shard: '$v'" "is not I/N" "$HPRUNE" sweep "$T/good.ini" --shard "$v"
done
for v in " 1x28x28" "+1x28x28" "1x+28x28"; do
  expect 2 "info: --input '$v' is not CxHxW" "--input: '$v'" "is not CxHxW" "$HPRUNE" info lenet5 --input "$v"
done
# a fraction's message gives its real range, open, and a hint (it gave "[-1e+300, 1e+300]")
for opt in --target-flops --target-params --target-channels --max-layer-frac; do
  for v in "50%" "1" "0"; do
    extra="--target-flops 0.5"
    [ "$opt" = --max-layer-frac ] || extra=""
    expect 2 "prune: $opt '$v' is not a fraction in (0, 1)" "$opt: '$v'" \
      "is not a number in \(0, 1\): a fraction, e.g. 0.5 for 50%$" \
      "$HPRUNE" prune "$GOOD" --method l1 $extra "$opt" "$v" -o "$NUMOUT/p.safetensors"
  done
done
expect 2 "prune: --lr 1e-2, an exponent, is a number (refused only for want of fine-tuning)" "" \
  "--lr applies to fine-tuning" "$HPRUNE" prune "$GOOD" --method l1 --target-flops 0.5 --lr 1e-2 -o "$NUMOUT/p.safetensors"

# ---- an output named "-" is a usage error in every command (it wrote a file named "-", not
# standard output); nothing is written, in the working directory either ----

# dash_output DESC OPTION KIND CMD...: CMD is a usage error "OPTION -: writing to standard output is
# not supported; name a KIND".
dash_output() {
  desc=$1 opt=$2 kind=$3
  shift 3
  expect 2 "$desc" "$opt -:" "writing to standard output is not supported; name a $kind$" "$@"
}
dash_output "train: -o -" -o file "$HPRUNE" train --config "$T/good.ini" -o -
dash_output "train: --output -, named as given" --output file "$HPRUNE" train --config "$T/good.ini" --output -
dash_output "train: --output=-, named as given" --output file "$HPRUNE" train --config "$T/good.ini" --output=-
dash_output "train: -o-, named as given" -o file "$HPRUNE" train --config "$T/good.ini" -o-
dash_output "prune: -o -" -o file "$HPRUNE" prune "$GOOD" --method l1 --target-flops 0.5 --threads 1 -o -
dash_output "prune: --output -, named as given" --output file \
  "$HPRUNE" prune "$GOOD" --method l1 --target-flops 0.5 --threads 1 --output -
dash_output "prune: --report -" --report file \
  "$HPRUNE" prune "$GOOD" --method l1 --target-flops 0.5 --threads 1 -o "$T/nodir/p.safetensors" --report -
for opt in --csv --density --landscape; do
  dash_output "hessian: $opt -" "$opt" file "$HPRUNE" hessian "$GOOD" --samples 32 --threads 1 "$opt" -
done
for opt in --density --landscape; do
  expect 2 "hessian: $opt with a name not ending in .png" "" "$opt d.jpg: the name must end in .png" \
    "$HPRUNE" hessian "$GOOD" --samples 32 --threads 1 "$opt" d.jpg
done
dash_output "sensitivity: -o -" -o directory "$HPRUNE" sensitivity "$GOOD" --ratios 0.5 --threads 1 -o -
dash_output "sensitivity: --out -, named as given" --out directory \
  "$HPRUNE" sensitivity "$GOOD" --ratios 0.5 --threads 1 --out -
dash_output "sweep: --out -" --out directory "$HPRUNE" sweep "$T/good.ini" --out -
dash_output "sweep: --collect -" --collect directory "$HPRUNE" sweep --collect -
check "no file named '-' was written" test ! -e "$T/work/-"

# ---- a result that cannot reach standard output is a failure ----

for c in train eval info hessian prune sweep sensitivity; do
  run sh -c 'exec "$@" >/dev/full' sh "$HPRUNE" $c --help
  check "$c --help to a full device: exit 1" eval '[ "$rc" -eq 1 ] && grep -q "^hprune: error: standard output" "$CAP/err"'
done

run "$HPRUNE" eval "$GOOD" --data "$DATA" --threads 1 --json
check "eval --json to a full device: exit 1, one line naming standard output" \
  sh -c '"$0" eval "$1" --data "$2" --threads 1 --json >/dev/full 2>"$3"; [ $? -eq 1 ] &&
    [ "$(wc -l <"$3")" -eq 1 ] && grep -q "^hprune: error: standard output: cannot write: No space left" "$3"' \
  "$HPRUNE" "$GOOD" "$DATA" "$CAP/full_err"

# ---- a file-size limit (ulimit -f, in blocks of 512 or 1024 bytes: 8 of them hold the
# captured messages, not the model): the write fails with its cause, and neither the output nor
# a temporary file is left ----

run sh -c 'ulimit -f 8 && exec "$@"' sh \
  "$HPRUNE" prune "$GOOD" --method l1 --target-flops 0.5 --data "$DATA" --threads 1 -o "$T/out/limit.safetensors"
check "prune under a file-size limit of 8 blocks: exit 1, 'File too large' naming the output, no file left" \
  sh -c '[ "$0" -eq 1 ] && tail -n 1 "$1" | grep -q "^hprune: error: $2: .*File too large$" &&
    [ -z "$(ls -A "$3")" ]' "$rc" "$CAP/err" "$T/out/limit.safetensors" "$T/out"

# ---- memory: a command whose buffers would not fit is refused before it reads any data or
# allocates them, in one line naming what sets their size and the option that lowers it.
# ulimit -v (in kB) makes the limit the same on every machine: 4000000 kB allows 80% of 4.1 GB.
# The data directory holds IDX headers without their images (60000 of 28x28; one of 40000x40000),
# so a command that went on would fail on the data instead (skipped when the binary cannot run
# under the limit at all, as a sanitizer build cannot) ----

mkdir -p "$T/headers" "$T/huge"
printf '\000\000\010\003\000\000\352\140\000\000\000\034\000\000\000\034' >"$T/headers/train-images-idx3-ubyte"
printf '\000\000\010\001\000\000\352\140' >"$T/headers/train-labels-idx1-ubyte"
printf '\000\000\010\003\000\000\000\001\000\000\234\100\000\000\234\100' >"$T/huge/train-images-idx3-ubyte"
printf '\000\000\010\001\000\000\000\001' >"$T/huge/train-labels-idx1-ubyte"
printf '[train]\nbatch_size = 60000\n' >"$T/bigbatch.ini"
LIMIT="over the limit of 3.3 GB \(80% of the 4.1 GB address-space limit, ulimit -v\)"
UL='ulimit -v 4000000 && exec "$@"'  # sh -c "$UL" sh CMD...: CMD under the limit
if sh -c "$UL" sh "$HPRUNE" info lenet5 >/dev/null 2>&1; then
  expect 1 "train --batch-size 60000: its workspace over the limit, refused before the data is read" "$T/good.ini" \
    "training lenet5 on 1x28x28 images in batches of 60000 needs about [0-9.]+ GB of memory, $LIMIT: lower --batch-size" \
    sh -c "$UL" sh "$HPRUNE" train --config "$T/good.ini" --data "$T/headers" --batch-size 60000 -o "$OUT"
  expect 1 "train on 40000x40000 images: the parameters alone over the limit, before the data is read" "$T/good.ini" \
    "lenet5 on 1x40000x40000 images would have 191923221386 parameters, .* about [0-9.]+ TB of memory, $LIMIT: use smaller images" \
    sh -c "$UL" sh "$HPRUNE" train --config "$T/good.ini" --data "$T/huge" --batch-size 1 -o "$OUT"
  expect 1 "info lenet5 --input 1x4096x4096: 2 billion parameters over the limit, refused before allocating" \
    "lenet5 at 1x4096x4096" "its 2005422986 parameters would need about 8.0 GB of memory, $LIMIT: give a smaller --input" \
    sh -c "$UL" sh "$HPRUNE" info lenet5 --input 1x4096x4096
  expect 1 "eval --batch-size 65536: its workspace over the limit, refused before the data is read" "$GOOD" \
    "evaluating in batches of 65536 needs about [0-9.]+ GB of memory, $LIMIT: lower --batch-size$" \
    sh -c "$UL" sh "$HPRUNE" eval "$GOOD" --data "$T/headers" --batch-size 65536 --threads 1
  expect 1 "prune: fine-tuning in batches of 60000 (the --config) over the limit, before the data is read" "$GOOD" \
    "fine-tuning in batches of 60000 needs about [0-9.]+ GB of memory, $LIMIT: lower \[train\] batch_size in --config" \
    sh -c "$UL" sh "$HPRUNE" prune "$GOOD" --data "$T/headers" --method l1 --target-flops 0.5 --finetune-epochs 1 \
    --config "$T/bigbatch.ini" --threads 1 -o "$T/out/slim.safetensors"
  expect 1 "prune: hap's curvature passes in batches of 65536 over the limit, before the data is read" "$GOOD" \
    "the curvature passes over 65536 training images in batches of 65536 need about [0-9.]+ GB of memory, $LIMIT: lower --batch-size" \
    sh -c "$UL" sh "$HPRUNE" prune "$GOOD" --data "$T/headers" --method hap --samples 65536 --batch-size 65536 \
    --target-flops 0.5 --threads 1 -o "$T/out/slim.safetensors"
  expect 1 "sensitivity: the trace's passes in batches of 65536 over the limit, before the data is read" "$GOOD" \
    "the curvature passes over 65536 training images in batches of 65536 need .*$LIMIT: lower --batch-size" \
    sh -c "$UL" sh "$HPRUNE" sensitivity "$GOOD" --data "$T/headers" --samples 65536 --batch-size 65536 --threads 1 \
    -o "$T/out/sens"
  printf '[sweep]\nmodel = %s\nout = %s\n[data]\ndir = %s\n[finetune]\nepochs = 1\nbatch_size = 60000\n' \
    "$GOOD" "$T/out/sweep" "$T/headers" >"$T/bigsweep.ini"
  expect 1 "sweep: fine-tuning in batches of 60000 over the limit, before the data is read, naming the config line" \
    "$T/bigsweep.ini:8: [finetune]" \
    "fine-tuning in batches of 60000 needs about [0-9.]+ GB of memory, $LIMIT: lower \[finetune\] batch_size$" \
    sh -c "$UL" sh "$HPRUNE" sweep "$T/bigsweep.ini" --threads 1
  python3 "$T/craft.py" big-input "$GOOD" "$T/models/big-input.safetensors" || not_ok "craft big-input"
  printf '[sweep]\nmodel = %s\nout = %s\nmethods = l1, hap\n[data]\ndir = %s\n' \
    "$T/models/big-input.safetensors" "$T/out/sweep" "$T/headers" >"$T/calsweep.ini"
  expect 1 "sweep: hap's curvature passes over the limit (a model of 2048x2048 inputs), before the data is read" \
    "$T/calsweep.ini:4: method hap" \
    "the curvature passes over 512 training images in batches of 128 need about [0-9.]+ GB of memory, $LIMIT: lower \[sweep\] samples$" \
    sh -c "$UL" sh "$HPRUNE" sweep "$T/calsweep.ini" --threads 1 --list
  rm -f "$T/models/big-input.safetensors"
  expect 1 "hessian --obs: a Fisher of 60000 gradients over the limit, before the data is read" "$GOOD" \
    "the Fisher inverse \(60000 gradients, blocks of [0-9]+\) needs about [0-9.]+ GB of memory, $LIMIT: lower --fisher-grads or --block-size$" \
    sh -c "$UL" sh "$HPRUNE" hessian "$GOOD" --data "$T/headers" --obs --fisher-grads 60000 --memory-budget 0 --threads 1
  printf '\211PNG\r\n\032\n' >"$T/huge.png" && truncate -s 5G "$T/huge.png"  # sparse: no disk space
  expect 1 "info on a 5 GB file that is not a model: refused from its first 8 bytes, not read whole" "$T/huge.png" \
    "not a safetensors file: header length [0-9]+ \(its first 8 bytes\) is absurd" \
    sh -c "$UL" sh "$HPRUNE" info "$T/huge.png"
  rm -f "$T/huge.png"
  run sh -c "$UL" sh "$HPRUNE" train --config "$T/good.ini" --epochs 1 --batch-size 64 -o "$T/out/limited.safetensors"
  check "train under the same limit with batches that fit: it runs" sh -c '[ "$0" -eq 0 ] && [ -s "$1" ]' "$rc" \
    "$T/out/limited.safetensors"
  rm -f "$T/out/limited.safetensors"
else
  ok "memory refusals under ulimit -v # skip hprune does not run under ulimit -v"
fi

# ---- train: bad data ----

expect 1 "train: --data /nonexistent" "/nonexistent" "no such directory" \
  "$HPRUNE" train --config "$T/good.ini" --data /nonexistent -o "$OUT"
mkdir -p "$T/nodata"
expect 1 "train: a data directory without the IDX files" "$T/nodata/train-images-idx3-ubyte" "no such file" \
  "$HPRUNE" train --config "$T/good.ini" --data "$T/nodata" -o "$OUT"
# the config's [data] dir: named at its line, as a sweep names it
dir_line=$(grep -n '^dir *=' "$T/good.ini" | cut -d: -f1)
sed 's|^dir *=.*|dir = /nonexistent|' "$T/good.ini" >"$T/cfg_nodir.ini"
expect 1 "train: [data] dir = /nonexistent, named at its line" "$T/cfg_nodir.ini:$dir_line: " \
  "\[data\] dir: cannot load fashion-mnist: /nonexistent: no such directory" \
  "$HPRUNE" train --config "$T/cfg_nodir.ini" -o "$OUT"
sed "s|^dir *=.*|dir = $T/nodata|" "$T/good.ini" >"$T/cfg_nodata.ini"
expect 1 "train: a [data] dir without the IDX files, named at its line" "$T/cfg_nodata.ini:$dir_line: " \
  "\[data\] dir: cannot load fashion-mnist: .*/nodata/train-images-idx3-ubyte: no such file" \
  "$HPRUNE" train --config "$T/cfg_nodata.ini" -o "$OUT"
# another dataset than Fashion-MNIST without a directory: the default directory is Fashion-MNIST's
sed -e '/^dir *=/d' -e 's|^dataset *=.*|dataset = mnist|' "$T/good.ini" >"$T/cfg_mnist_nodir.ini"
name_line=$(grep -n '^dataset *=' "$T/cfg_mnist_nodir.ini" | cut -d: -f1)
expect 1 "train: [data] dataset = mnist without a dir, named at its line" "$T/cfg_mnist_nodir.ini:$name_line: " \
  "\[data\] dataset mnist: give its directory with \[data\] dir or --data DIR" \
  "$HPRUNE" train --config "$T/cfg_mnist_nodir.ini" -o "$OUT"
# bad_data MODE DESC FILE PROBLEM: train on a copy of the data damaged by damage.py MODE.
bad_data() {
  dir=$T/data_$1
  mkdir -p "$dir"
  cp "$DATA"/* "$dir"/
  python3 "$T/damage.py" "$1" "$dir" || not_ok "damage $1"
  expect 1 "train: $2" "$dir/$3" "$4" "$HPRUNE" train --config "$T/good.ini" --data "$dir" -o "$OUT"
}
bad_data idx-truncated "IDX file truncated" train-images-idx3-ubyte "truncated: header says 256 images of 28x28"
bad_data gz-truncated "gzip file truncated" train-images-idx3-ubyte.gz "truncated"
bad_data gz-corrupt "gzip file corrupted" train-images-idx3-ubyte.gz "corrupt gzip data|truncated|trailing"
bad_data gz-trailing "bytes after the gzip stream" train-images-idx3-ubyte.gz "4 bytes after the end of the gzip stream"
bad_data bad-magic "wrong magic" train-images-idx3-ubyte.gz "bad magic 0x00000801"
bad_data count "label count differs from image count" train-labels-idx1-ubyte.gz "255 labels for 256 images"
bad_data label-range "label out of range" train-labels-idx1-ubyte.gz "label 12 .*out of range"
bad_data small-test "test images of another size" t10k-images-idx3-ubyte.gz "32x32.*28x28"

# ---- train: output that cannot be written ----

expect 1 "train: output in a directory that does not exist" "$T/nodir/model.safetensors" "director" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/nodir/model.safetensors"
expect 1 "train: output path that is a directory" "$T/out" "is a directory" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/out"
expect 1 "train: output in a path through a regular file" "$T/good.ini/model.safetensors" "not a directory" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/good.ini/model.safetensors"
expect 1 "train: --resume without a checkpoint" "$OUT.ckpt" "cannot open|no such file" \
  "$HPRUNE" train --config "$T/good.ini" -o "$OUT" --resume
cp "$GOOD" "$T/out/plain.safetensors.ckpt"
expect 1 "train: --resume from a model file that is not a checkpoint" "$T/out/plain.safetensors.ckpt" "not a training checkpoint" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/out/plain.safetensors" --resume
rm -f "$T/out/plain.safetensors.ckpt"
python3 "$T/craft.py" state-epoch "$GOOD" "$T/out/epoch.safetensors.ckpt"
expect 1 "train: --resume with next_epoch out of range" "$T/out/epoch.safetensors.ckpt" "next_epoch 1e\\+10 is not a whole number" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/out/epoch.safetensors" --resume
python3 "$T/craft.py" state-best "$GOOD" "$T/out/best.safetensors.ckpt"
expect 1 "train: --resume with best_val_acc out of range" "$T/out/best.safetensors.ckpt" "best_val_acc 1e\\+300 is not an accuracy" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/out/best.safetensors" --resume
rm -f "$T/out/epoch.safetensors.ckpt" "$T/out/best.safetensors.ckpt"
python3 "$T/craft.py" state-seconds "$GOOD" "$T/out/secs.safetensors.ckpt"
expect 1 "train: --resume with train_seconds below 0" "$T/out/secs.safetensors.ckpt" \
  "hprune.train_state: train_seconds -5 is not a number of seconds in \[0, 1e10\]$" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/out/secs.safetensors" --resume
python3 "$T/craft.py" state-seconds-text "$GOOD" "$T/out/secs.safetensors.ckpt"
expect 1 "train: --resume with train_seconds not a number" "$T/out/secs.safetensors.ckpt" \
  "hprune.train_state: train_seconds is not a number$" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/out/secs.safetensors" --resume
rm -f "$T/out/secs.safetensors.ckpt"
python3 "$T/craft.py" nan-momentum "$GOOD" "$T/out/mom.safetensors.ckpt"
expect 1 "train: --resume from a checkpoint whose momentum holds a NaN, naming it" "$T/out/mom.safetensors.ckpt" \
  "tensor 'optim.fc3.bias.momentum_buffer': value 0 is nan \(not finite\)" \
  "$HPRUNE" train --config "$T/good.ini" -o "$T/out/mom.safetensors" --resume
rm -f "$T/out/mom.safetensors.ckpt"

echo "1..$n"
[ "$failed" -eq 0 ]
