#!/bin/sh
# cli_basic.sh: the command line as a user meets it. Help and usage errors, `info` on built-in
# architectures, and a tiny real training run on a synthetic Fashion-MNIST-format dataset:
# the model it writes (eval, info, PyTorch loading), exact resume after kill -9, determinism.
#
#   HPRUNE=./hprune sh tests/cli_basic.sh      (from the repository root)
#
# Prints "ok N - what" / "not ok N - what" (with "#" diagnostic lines after a failure) and
# exits non-zero if anything failed. Every fixture lives in a mktemp -d directory that is
# removed at the end. Runs in a few seconds on one core.

. "$(dirname "$0")/tap_lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
CHECK_ST=$HERE/../bench/check_safetensors.py
TORCH_PY=/usr/bin/python3
tap_begin cli-basic

CAP=$T  # run() captures into $T/out and $T/err
rc_is() { [ "$rc" -eq "$1" ]; }
out_has() { grep -q -- "$1" "$T/out"; }
err_has() { grep -q -- "$1" "$T/err"; }

# ---- help and usage errors ----

run "$HPRUNE" --help
check "hprune --help exits 0 and prints usage" eval 'rc_is 0 && out_has "^usage: hprune COMMAND"'
for cmd in train eval info; do
  run "$HPRUNE" $cmd --help
  check "hprune $cmd --help exits 0 and prints usage" eval "rc_is 0 && out_has '^usage: hprune $cmd'"
done
run "$HPRUNE"
check "no arguments: exit 2 with usage on stderr" eval 'rc_is 2 && err_has "usage: hprune"'
run "$HPRUNE" frobnicate
check "unknown command: exit 2 naming it" eval 'rc_is 2 && err_has "frobnicate"'
for cmd in train eval info; do
  run "$HPRUNE" $cmd --frobnicate x
  check "hprune $cmd --frobnicate: exit 2 naming the option" eval "rc_is 2 && err_has \"^hprune $cmd: .*--frobnicate\""
done
run "$HPRUNE" info -Z lenet5
check "unknown short option: exit 2 naming it" eval 'rc_is 2 && err_has "^hprune info: .*-Z"'
run "$HPRUNE" train -Zc tiny.ini
check "unknown option inside a group of short options: exit 2 naming it" eval 'rc_is 2 && err_has "^hprune train: unknown option .-Z."'
run "$HPRUNE" info --json=yes lenet5
check "a value given to a flag: exit 2 naming the flag" eval 'rc_is 2 && err_has "^hprune info: .*--json.* takes no value"'
run "$HPRUNE" info
check "info without MODEL: exit 2" eval 'rc_is 2 && err_has "^hprune info: .*MODEL"'
run "$HPRUNE" eval
check "eval without MODEL: exit 2" eval 'rc_is 2 && err_has "^hprune eval: .*MODEL"'
run "$HPRUNE" train
check "train without --config: exit 2" eval 'rc_is 2 && err_has "^hprune train: .*--config"'
run "$HPRUNE" eval --threads abc model.safetensors
check "eval --threads abc: exit 2 naming the value" eval 'rc_is 2 && err_has "^hprune eval: .*--threads.*abc"'
run "$HPRUNE" eval model.safetensors --data
check "eval --data without a value: exit 2" eval 'rc_is 2 && err_has "^hprune eval: .*--data"'

# ---- info on built-in architectures ----

run "$HPRUNE" info lenet5
check "info lenet5: total line says 61706 parameters" eval 'rc_is 0 && out_has "^total: 61706 parameters"'
check "info lenet5: table lists conv1 and fc3" eval 'out_has "^conv1 .*conv2d" && out_has "^fc3 .*linear"'

run "$HPRUNE" info resnet20 --json
if [ "$rc" -eq 0 ] && python3 -c '
import json, sys
d = json.load(sys.stdin)
assert isinstance(d["params"], int) and d["params"] > 0, "params is not a positive integer"
assert isinstance(d["macs"], int) and d["macs"] > 0, "macs is not a positive integer"
assert isinstance(d["layers"], list) and len(d["layers"]) > 20, "layers is not a list of the nodes"
assert sum(l["params"] for l in d["layers"]) == d["params"], "layer params do not add up"
assert sum(l["macs"] for l in d["layers"]) == d["macs"], "layer macs do not add up"
' <"$T/out" 2>"$T/py"; then
  ok "info resnet20 --json: valid JSON with integer params, macs and a layers list"
else
  not_ok "info resnet20 --json: valid JSON with integer params, macs and a layers list"
  show_run; sed 's/^/#   python: /' "$T/py"
fi

# ---- channel groups (info --groups) ----

run "$HPRUNE" info resnet20 --groups --input 3x32x32
check "info resnet20 --groups: 14 groups, 12 prunable" eval 'rc_is 0 && out_has "^total: 14 groups, 12 prunable with 448 channels$"'
check "info resnet20 --groups: a block's group is its conv1, bn1 and conv2" eval \
  'out_has "^layer1\.0\.conv1  *16 ch  prunable  producers: layer1\.0\.conv1; per-channel: layer1\.0\.bn1; consumers: layer1\.0\.conv2$"'
check "info resnet20 --groups: the layer2 residual group joins the shortcut and every conv2" eval \
  'out_has "^layer2\.0\.conv2  *32 ch  prunable  producers: layer2\.0\.conv2, layer2\.0\.shortcut\.0, layer2\.1\.conv2, layer2\.2\.conv2; "'
check "info resnet20 --groups: fc (the output) and the input are not prunable" eval \
  'out_has "^fc  *10 ch  not prunable (network output)  producers: fc$" && out_has "^input  *3 ch  not prunable (network input)  consumers: conv1$"'

run "$HPRUNE" info lenet5 --groups
check "info lenet5 --groups: conv2 reaches fc1 through the flatten, 25 features per channel" eval \
  'rc_is 0 && out_has "^conv2  *16 ch  prunable  producers: conv2; consumers: fc1 (x25)$"'

run "$HPRUNE" info resnet20 --groups --json
if [ "$rc" -eq 0 ] && python3 -c '
import json, sys
d = json.load(sys.stdin)
g = d["groups"]
assert isinstance(g, list) and len(g) == 14, "groups is not a list of 14"
assert sum(1 for x in g if x["prunable"]) == 12, "not 12 prunable groups"
assert [x["name"] for x in g][:3] == ["input", "conv1", "layer1.0.conv1"], "groups out of order"
by = {x["name"]: x for x in g}
assert by["fc"]["why_not"] == "network output" and by["conv1"]["why_not"] is None, "why_not wrong"
res3 = by["layer3.0.conv2"]
assert res3["channels"] == 64, "layer3 residual group is not 64 channels"
assert {"node": "fc", "role": "consumer", "spread": 1} in res3["members"], "fc is not a consumer of the layer3 group"
roles = [m["role"] for m in by["layer2.1.conv1"]["members"]]
assert roles == ["producer", "per-channel", "consumer"], "block group roles: %s" % roles
assert d["params"] > 0 and len(d["layers"]) > 20, "the info fields are missing"
' <"$T/out" 2>"$T/py"; then
  ok "info resnet20 --groups --json: a groups array with names, channels, prunability and members"
else
  not_ok "info resnet20 --groups --json: a groups array with names, channels, prunability and members"
  show_run; sed 's/^/#   python: /' "$T/py"
fi
run "$HPRUNE" info resnet20 --json
check "info --json without --groups has no groups array" eval 'rc_is 0 && ! out_has "\"groups\""'

# ---- a tiny synthetic dataset in Fashion-MNIST's format ----

DATA=$T/data
mkdir -p "$DATA"
cat >"$T/same_model.py" <<'EOF'
# same_model.py A B: exit 0 if two model files hold the same tensors (names, shapes, offsets,
# every data byte) and the same metadata, except the provenance's date and train_seconds.
import json, struct, sys
def load(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    prov = json.loads(meta.pop("hprune.provenance", "{}"))
    for k in ("date", "train_seconds"):
        prov.pop(k, None)
    return header, meta, prov, blob[8 + n:]
a, b = load(sys.argv[1]), load(sys.argv[2])
problems = []
if a[0] != b[0]:
    problems.append("tensor entries differ: " + str(sorted(k for k in set(a[0]) | set(b[0]) if a[0].get(k) != b[0].get(k)))[:200])
if a[3] != b[3]:
    first = next((i for i in range(min(len(a[3]), len(b[3]))) if a[3][i] != b[3][i]), min(len(a[3]), len(b[3])))
    differ = sum(1 for i in range(0, min(len(a[3]), len(b[3])), 4) if a[3][i:i + 4] != b[3][i:i + 4])
    problems.append(f"tensor data differs: first at byte {first}, {differ} floats differ")
if a[1] != b[1]:
    problems.append("metadata differs: " + str(sorted(k for k in set(a[1]) | set(b[1]) if a[1].get(k) != b[1].get(k))))
if a[2] != b[2]:
    problems.append(f"provenance differs: {a[2]} vs {b[2]}")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
cat >"$T/state.py" <<'EOF'
# state.py get FILE: prints a model file's hprune.train_state (a checkpoint's) and its provenance's
# train_seconds (or "none") on two lines.
# state.py set SRC DST JSON: writes SRC with hprune.train_state set to JSON into DST.
import json, struct, sys
def read(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]
h, data = read(sys.argv[2])
meta = h.setdefault("__metadata__", {})
if sys.argv[1] == "get":
    print(meta.get("hprune.train_state", "none"))
    print(json.loads(meta.get("hprune.provenance", "{}")).get("train_seconds", "none"))
else:
    meta["hprune.train_state"] = sys.argv[4]
    text = json.dumps(h, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    open(sys.argv[3], "wb").write(struct.pack("<Q", len(text)) + text + data)
EOF

if python3 "$(dirname "$0")/gen_fmnist.py" "$DATA" 1024 256 --seed 12345 --wrong 0.125 2>"$T/py"; then
  ok "synthetic dataset written (1024 train, 256 test images)"
else
  not_ok "synthetic dataset written (1024 train, 256 test images)"
  sed 's/^/#   python: /' "$T/py"
fi

CFG=$T/tiny.ini
cat >"$CFG" <<EOF
# a tiny LeNet-5 run on the synthetic data
[model]
arch = lenet5

[data]
dataset = fashion-mnist
dir = $DATA

[train]
epochs = 2
batch_size = 64
lr = 0.05
seed = 7
threads = 1
output = $T/run/model.safetensors
EOF
mkdir -p "$T/run"
MODEL=$T/run/model.safetensors

# ---- training and the model it writes ----

run "$HPRUNE" train --config "$CFG"
cp "$T/out" "$T/train.out"
check "train --config: exits 0" rc_is 0
check "train: writes the model file" test -s "$MODEL"
check "train: the checkpoint OUTPUT.ckpt does not remain" test ! -e "$MODEL.ckpt"
check "train: no temporary files remain" eval '[ -z "$(find "$T/run" -name ".hprune-*")" ]'
check "train: logs one line per epoch" eval '[ "$(grep -c "^epoch [12]/2 " "$T/err")" -eq 2 ]'
train_acc=$(sed -n 's/^wrote .*: test accuracy \([0-9.]*\)%.*/\1/p' "$T/train.out")
check "train: prints the final test accuracy" test -n "$train_acc"

run "$HPRUNE" eval "$MODEL" --data "$DATA" --json --threads 1
eval_acc=$(python3 -c 'import json,sys; print("%.2f" % (100 * json.load(sys.stdin)["accuracy"]))' <"$T/out" 2>/dev/null)
check "eval --json: exits 0 with a JSON accuracy" eval 'rc_is 0 && [ -n "$eval_acc" ]'
if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 50 else 1)' "${eval_acc:-0}"; then
  ok "eval: accuracy on the synthetic test set is above 0.5 ($eval_acc%)"
else
  not_ok "eval: accuracy on the synthetic test set is above 0.5" "eval says ${eval_acc:-nothing}%"
fi
if [ -n "$eval_acc" ] && [ "$eval_acc" = "$train_acc" ]; then
  ok "eval: accuracy equals the one printed at the end of training"
else
  not_ok "eval: accuracy equals the one printed at the end of training" "train ${train_acc:-?}%, eval ${eval_acc:-?}%"
fi
run "$HPRUNE" eval "$MODEL" --json --threads 1
check "eval without --data uses the data directory recorded in the model" eval \
  'rc_is 0 && python3 -c "import json,sys; sys.exit(0 if \"%.2f\" % (100 * json.load(sys.stdin)[\"accuracy\"]) == \"$eval_acc\" else 1)" <"$T/out"'
run "$HPRUNE" eval "$MODEL" --data "$DATA"
check "eval (text): prints the accuracy" eval "rc_is 0 && out_has 'accuracy $eval_acc%'"
# eval reads the test split alone: a directory with the t10k files only will do
mkdir -p "$T/testonly"
cp "$DATA"/t10k-* "$T/testonly/"
run "$HPRUNE" eval "$MODEL" --data "$T/testonly" --threads 1
check "eval --data DIR holding the test files only: the same accuracy (the training files are not read)" \
  eval "rc_is 0 && out_has 'accuracy $eval_acc%'"
rm -f "$T/testonly"/t10k-labels-*
run "$HPRUNE" eval "$MODEL" --data "$T/testonly" --threads 1
check "eval without the test labels: one line naming the missing file" eval \
  'rc_is 1 && [ "$(wc -l <"$T/err")" -eq 1 ] && err_has "^hprune: error: $T/testonly/t10k-labels-idx1-ubyte: no such file (looked for t10k-labels-idx1-ubyte.gz and t10k-labels-idx1-ubyte)$"'
P=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys those; the processors hprune counts do not
run "$HPRUNE" eval "$MODEL" --data "$DATA" --threads $((P + 1))
check "eval --threads above the processors: one warning naming both counts, the same accuracy" eval \
  "rc_is 0 && [ \"\$(grep -c warning \"\$T/err\")\" = 1 ] &&
   err_has '^hprune: warning: $((P + 1)) threads on the $P processors\\{0,1\\} this process may use' &&
   out_has 'accuracy $eval_acc%'"
run "$HPRUNE" eval "$MODEL" --data "$DATA" --threads "$P"
check "eval --threads as many as the processors: no warning" eval 'rc_is 0 && ! err_has warning'

run "$HPRUNE" info "$MODEL" --json
check "info MODEL --json: params = 61706 and the provenance is there" eval 'rc_is 0 && python3 -c "
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d[\"params\"] == 61706 and d[\"arch\"] == \"lenet5\" and d[\"provenance\"][\"epochs\"] == 2 else 1)" <"$T/out"'
run "$HPRUNE" info "$MODEL"
check "info MODEL: total line says 61706 parameters" eval 'rc_is 0 && out_has "^total: 61706 parameters"'
run "$HPRUNE" info "$MODEL" --groups
check "info MODEL --groups: the trained model's 6 groups, 4 prunable" eval 'rc_is 0 && out_has "^total: 6 groups, 4 prunable"'

if [ -x "$TORCH_PY" ] && "$TORCH_PY" -c 'import torch' >/dev/null 2>&1; then
  run "$TORCH_PY" "$CHECK_ST" "$MODEL" --arch lenet5
  check "bench/check_safetensors.py loads the model into a PyTorch LeNet-5" rc_is 0
else
  ok "bench/check_safetensors.py loads the model into a PyTorch LeNet-5 # skip $TORCH_PY cannot import torch"
fi

# ---- determinism: same seed and threads, same model ----

cp "$CFG" "$T/det.ini"
run "$HPRUNE" train --config "$T/det.ini" --threads 2 -o "$T/run/det1.safetensors"
rc1=$rc
run "$HPRUNE" train --config "$T/det.ini" --threads 2 -o "$T/run/det2.safetensors"
if [ "$rc1" -eq 0 ] && [ "$rc" -eq 0 ] && python3 "$T/same_model.py" "$T/run/det1.safetensors" "$T/run/det2.safetensors" >"$T/py" 2>&1; then
  ok "two fresh runs with the same seed and 2 threads give identical tensors"
else
  not_ok "two fresh runs with the same seed and 2 threads give identical tensors" "exit statuses $rc1, $rc"
  sed 's/^/#   /' "$T/py"
fi
run "$HPRUNE" train --config "$T/det.ini" --threads 2 --seed 8 -o "$T/run/det3.safetensors"
if [ "$rc" -eq 0 ] && ! python3 "$T/same_model.py" "$T/run/det1.safetensors" "$T/run/det3.safetensors" >/dev/null 2>&1; then
  ok "a different seed gives different tensors"
else
  not_ok "a different seed gives different tensors" "exit status $rc"
fi

# ---- resume after kill -9 is exact ----
# A: a straight run. B: the same run killed (kill -9) after its first checkpoint, then
# continued with --resume. The cosine schedule depends on the total epoch count, so both
# runs use the same one; if B finishes before the kill lands, try again with more epochs.

resume_desc="resume after kill -9 gives exactly the tensors of a straight run"
resume_done=""
for epochs in 6 12 24; do
  A=$T/run/A.safetensors B=$T/run/B.safetensors
  rm -f "$A" "$B" "$B.ckpt"
  run "$HPRUNE" train --config "$CFG" --epochs $epochs --lr 0.02 --threads 1 -o "$A"
  if [ "$rc" -ne 0 ]; then not_ok "$resume_desc" "the straight run failed"; show_run; resume_done=1; break; fi
  "$HPRUNE" train --config "$CFG" --epochs $epochs --lr 0.02 --threads 1 -o "$B" >"$T/out" 2>"$T/err" &
  pid=$!
  i=0
  while [ ! -e "$B.ckpt" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 3000 ]; do
    sleep 0.01; i=$((i + 1))
  done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if [ -e "$B" ]; then continue; fi  # finished before the kill: more epochs
  if [ ! -e "$B.ckpt" ]; then
    not_ok "$resume_desc" "no checkpoint $B.ckpt appeared within 30 s"; rc=killed; show_run; resume_done=1; break
  fi
  ckpt_s=$(python3 "$T/state.py" get "$B.ckpt" | python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["train_seconds"])' 2>/dev/null)
  run "$HPRUNE" train --config "$CFG" --epochs $epochs --lr 0.02 --threads 1 -o "$B" --resume
  from=$(sed -n 's/^resuming .* from epoch \([0-9]*\) of .*/\1/p' "$T/err")
  if [ "$rc" -eq 0 ] && [ -n "$from" ] && python3 "$T/same_model.py" "$A" "$B" >"$T/py" 2>&1; then
    ok "$resume_desc (killed in epoch $from of $epochs)"
  else
    not_ok "$resume_desc" "resumed from epoch ${from:-?} of $epochs"; show_run; sed 's/^/#   /' "$T/py"
  fi
  check "resume: the checkpoint does not remain afterwards" test ! -e "$B.ckpt"
  prov_s=$(python3 "$T/state.py" get "$B" | sed -n 2p)
  check "resume: the checkpoint holds the training's seconds so far, the model's provenance those and the resumed run's" \
    python3 -c 'import sys; c, p = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if 0 < c <= p + 0.05 else 1)' \
    "${ckpt_s:-0}" "${prov_s:-0}"
  resume_done=1
  break
done
[ -n "$resume_done" ] || not_ok "$resume_desc" "every run finished before kill -9 landed"

# a checkpoint of a run that had trained 1000 s before it was stopped, one epoch of two left
python3 "$T/state.py" set "$MODEL" "$T/run/sec.safetensors.ckpt" '{"next_epoch":1,"best_val_acc":0,"seed":7,"train_seconds":1000}'
run "$HPRUNE" train --config "$CFG" -o "$T/run/sec.safetensors" --resume
prov_s=$(python3 "$T/state.py" get "$T/run/sec.safetensors" 2>/dev/null | sed -n 2p)
check "resume: train_seconds in the provenance counts the seconds before the checkpoint too (1000 + the last epoch)" \
  eval 'rc_is 0 && [ ! -e "$T/run/sec.safetensors.ckpt" ] &&
        python3 -c "import sys; s = float(sys.argv[1]); sys.exit(0 if 1000 < s < 1600 else 1)" "${prov_s:-0}"'

run "$HPRUNE" train --config "$CFG" -o "$T/run/none.safetensors" --resume
check "--resume without a checkpoint: exit 1 naming the checkpoint" eval \
  'rc_is 1 && err_has "^hprune: error: .*none.safetensors.ckpt" && [ ! -e "$T/run/none.safetensors" ]'

echo "1..$n"
[ "$failed" -eq 0 ]
