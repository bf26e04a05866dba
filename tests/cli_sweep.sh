#!/bin/sh
# cli_sweep.sh: `hprune sweep` and `hprune sensitivity` as a user meets them, on a LeNet-5 trained
# for one epoch on a tiny synthetic Fashion-MNIST-format dataset. A small sweep (2 methods x 2
# targets, 2 fine-tuning epochs) runs to completion (each line of a run in its log naming the run)
# and writes results.csv, .md, .png and .svg;
# the same sweep killed (SIGKILL) in the middle and restarted, split into two shards and
# collected, and run as two parallel jobs, gives the same results.csv but for the timing
# columns; a setting only hap reads (probes), changed, refuses hap's results but not l1's,
# and one every run reads (steps) refuses them all; a --collect that refuses a result file (a
# value out of range, a method name a table cannot hold, data after the JSON object) or cannot
# write an output leaves the earlier results.csv, .md, .png and .svg byte for byte and no
# temporary file; a model file replaced between two runs of a sweep is refused on restart and
# at --collect; failed runs of an unsharded sweep are counted without talk of shards; configs
# with mistakes (a criterion the model cannot use, data that cannot be loaded among them) fail
# before any run and in --list, naming the line; the sensitivity analysis writes its CSV and
# charts with one row per layer and ratio; bad options are usage errors (exit 2), bad files
# runtime errors (exit 1), with one message and no file left behind.
#
#   HPRUNE=./hprune sh tests/cli_sweep.sh      (from the repository root)
#   VERBOSE=1 HPRUNE=./hprune sh tests/cli_sweep.sh   also shows every error message
#
# Prints "ok N - what" / "not ok N - what" and exits non-zero if anything failed. One thread,
# about half a minute on one core.

. "$(dirname "$0")/tap_lib.sh"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
tap_begin cli-sweep
CAP=$T/cap  # captured output of the command under test (not part of the fixtures)
mkdir -p "$CAP" "$T/data" "$T/work" "$T/bad"

cat >"$T/check.py" <<'EOF'
# check.py MODE ARGS...: the checks on the sweep's and the sensitivity analysis' outputs.
import csv, glob, json, sys
mode, args = sys.argv[1], sys.argv[2:]
TIMING = ("latency_ms", "speedup", "seconds")
HEADER = ["id", "method", "target_kind", "target", "seed", "params_original", "params", "macs_original", "macs",
          "macs_removed", "accuracy_original", "accuracy_oneshot", "accuracy_recalibrated", "accuracy_finetuned", "finetune_epochs",
          "best_epoch", "latency_ms", "speedup", "seconds"]
def need(cond, msg):
    if not cond:
        sys.exit(msg)
def table(path):
    rows = list(csv.reader(open(path)))
    need(rows, f"{path} is empty")
    return rows[0], rows[1:]
def without_timing(path):
    head, rows = table(path)
    keep = [i for i, h in enumerate(head) if h not in TIMING]
    return [[r[i] for i in keep] for r in [head] + rows]

if mode == "results":  # DIR: the merged outputs of the 2 x 2 sweep
    d = args[0]
    head, rows = table(d + "/results.csv")
    need(head == HEADER, f"header {head}")
    ids = [r[0] for r in rows]
    need(ids == ["hap-flops0.30-s1", "hap-flops0.60-s1", "l1-flops0.30-s1", "l1-flops0.60-s1"], f"ids {ids}")
    for r in rows:
        x = dict(zip(head, r))
        need(x["method"] in ("l1", "hap") and x["target_kind"] == "flops" and x["seed"] == "1", f"row {r}")
        removed, target = float(x["macs_removed"]), float(x["target"])
        need(removed >= target - 1e-6 and int(x["macs"]) < int(x["macs_original"]) == 416520, f"MACs in {r}")
        need(abs(removed - (1 - int(x["macs"]) / int(x["macs_original"]))) < 1e-5, f"macs_removed in {r}")
        need(int(x["params"]) < int(x["params_original"]) == 61706, f"params in {r}")
        for k in ("accuracy_original", "accuracy_oneshot", "accuracy_recalibrated", "accuracy_finetuned"):
            need(0 <= float(x[k]) <= 1, f"{k} in {r}")
        need(x["finetune_epochs"] == "2" and x["best_epoch"] in ("1", "2"), f"epochs in {r}")
        need(float(x["latency_ms"]) > 0 and float(x["seconds"]) >= 0, f"timing in {r}")
    md = open(d + "/results.md").read()
    need(md.startswith("# hprune sweep: "), "results.md title")
    need(sum(1 for l in md.splitlines() if l.startswith("| hap |") or l.startswith("| l1 |")) == 4, "results.md rows")
    svg = open(d + "/accuracy_vs_macs.svg").read()
    need("<svg" in svg and svg.count("<polyline") == 2 and "MACs removed" in svg and ">hap<" in svg and ">l1<" in svg,
         "the SVG has no two lines with legend and axis label")
    png = open(d + "/accuracy_vs_macs.png", "rb").read()
    need(png[:8] == b"\x89PNG\r\n\x1a\n" and png[-8:-4] == b"IEND", "accuracy_vs_macs.png is not a complete PNG")
    files = sorted(p.split("/")[-1] for p in glob.glob(d + "/runs/*.json"))
    need(files == sorted(i + ".json" for i in ids), f"run files {files}")
elif mode == "same":  # A.csv B.csv: equal but for the timing columns
    a, b = without_timing(args[0]), without_timing(args[1])
    need(a == b, f"differ: {[(x, y) for x, y in zip(a, b) if x != y][:2]}")
elif mode == "runs":  # DIR LO HI: between LO and HI result files, each complete JSON
    files = glob.glob(args[0] + "/runs/*.json")
    need(int(args[1]) <= len(files) <= int(args[2]), f"{len(files)} result files")
    for f in files:
        j = json.load(open(f))
        need(j["id"] + ".json" == f.split("/")[-1], f"{f}: id {j['id']}")
elif mode == "sens":  # CSV RATIOS...: one row per layer and ratio
    head, rows = table(args[0])
    want = ["group", "channels", "params", "trace", "trace_per_param", "ratio", "removed", "accuracy", "accuracy_drop"]
    need(head == want, f"header {head}")
    ratios = [float(r) for r in args[1:]]
    layers = ["conv1", "conv2", "fc1", "fc2"]
    need([r[0] for r in rows] == [l for l in layers for _ in ratios], f"groups {[r[0] for r in rows]}")
    need([float(r[5]) for r in rows] == ratios * len(layers), f"ratios {[r[5] for r in rows]}")
    for r in rows:
        x = dict(zip(head, r))
        ch, rm = int(x["channels"]), int(x["removed"])
        need(rm == min(ch - 1, int(float(x["ratio"]) * ch + 0.5)), f"removed in {r}")
        need(0 <= float(x["accuracy"]) <= 1 and int(x["params"]) > 0, f"row {r}")
        need(abs(float(x["trace_per_param"]) - float(x["trace"]) / int(x["params"])) <= 1e-6 * abs(float(x["trace"]) / int(x["params"])) + 1e-12,
             f"trace_per_param in {r}")
    need({r[0]: r[1] for r in rows} == {"conv1": "6", "conv2": "16", "fc1": "120", "fc2": "84"}, "channel counts")
elif mode == "ranking":  # OUT CSV: the ranking's mean and max drop are those of the CSV's accuracy_drop
    head, rows = table(args[1])
    drops = {}
    for r in rows:
        drops.setdefault(r[0], []).append(100 * float(r[head.index("accuracy_drop")]))
    lines = [l.split() for l in open(args[0]) if l[:1].isdigit()]
    need(sorted(l[1] for l in lines) == sorted(drops), f"layers {[l[1] for l in lines]}")
    for l in lines:
        d, mean, worst = drops[l[1]], float(l[3].rstrip("%")), float(l[4].rstrip("%"))
        need(abs(mean - sum(d) / len(d)) < 0.006 and abs(worst - max(d)) < 0.006,
             f"{l[1]}: mean drop {l[3]}, max drop {l[4]}; the CSV's drops are {d}")
        need(len(d) > 1 or l[3] == l[4], f"{l[1]}: one ratio, yet mean drop {l[3]} and max drop {l[4]}")
elif mode == "png":  # FILE...: each a complete PNG
    for p in args:
        b = open(p, "rb").read()
        need(b[:8] == b"\x89PNG\r\n\x1a\n" and b[-8:-4] == b"IEND", f"{p}: not a complete PNG")
else:
    sys.exit("check.py: unknown mode " + mode)
EOF

# pycheck DESC MODE ARGS...: ok if `check.py MODE ARGS...` exits 0, else not ok with its words.
pycheck() {
  desc=$1; shift
  if python3 "$T/check.py" "$@" >"$CAP/py" 2>&1; then
    ok "$desc"
  else
    not_ok "$desc"; sed -n '1,8s/^/#   /p' "$CAP/py"
  fi
}
rc_is() { [ "$rc" -eq "$1" ]; }
out_has() { grep -q -E -- "$1" "$CAP/out"; }
err_has() { grep -q -E -- "$1" "$CAP/err"; }

# ---- fixtures: a tiny dataset, a LeNet-5 trained for one epoch, a sweep config ----

tap_tiny_model 1024 200 --seed 2024 --wrong 0.1

# config NAME [LINES...]: writes $T/NAME.ini, the small sweep with LINES added to [sweep] (a
# line among them setting one of the sweep's keys replaces the sweep's: a key set twice is an
# error of its own).
config() {
  name=$1; shift
  lines=$(printf '%s\n' "$@")
  {
    echo "# a tiny sweep: 2 methods x 2 targets"
    echo "[sweep]"
    printf '%s\n' "$lines" | grep -q "^model =" || echo "model = $MODEL"
    for l in "$@"; do echo "$l"; done  # from line 4 (line 3 if they set the model)
    for kv in "methods = l1, hap" "targets = 0.3, 0.6" "seeds = 1" "samples = 64" "probes = 4" "threads = 1"; do
      printf '%s\n' "$lines" | grep -q "^${kv%% =*} =" || echo "$kv"
    done
    echo "[finetune]"
    echo "epochs = 2"
    echo "batch_size = 64"
  } >"$T/$name.ini"
}
config sweep
CFG=$T/sweep.ini

# ---- a sweep to completion ----

run "$HPRUNE" sweep "$CFG" --out "$T/a"
check "sweep: exits 0 and collects the 4 runs" eval 'rc_is 0 && out_has "^collected 4 runs: "'
# in a log (stderr is a file), every line of a run starts "RUNID: ", its scoring progress and its
# fine-tuning epochs too
check "sweep: in a log, the scoring progress and the epoch lines of a run start with its id and a colon" \
  eval 'err_has "^hap-flops0.30-s1: scoring: [0-9]+/[0-9]+ products" && ! err_has "^hap-flops0.30-s1 scoring" &&
        err_has "^l1-flops0.60-s1: epoch 2/2  loss " && ! err_has "^epoch "'
pycheck "sweep: results.csv (sorted by method, then target), results.md, the PNG and SVG charts, one file per run" \
  results "$T/a"
cp "$T/a/results.csv" "$T/a.csv"
run "$HPRUNE" sweep "$CFG" --out "$T/a"
check "sweep again: nothing to run, collects again" eval 'rc_is 0 && err_has "4 done earlier, 0 to run" && out_has "^collected 4 runs"'
pycheck "sweep again: the same results.csv (timing columns aside)" same "$T/a.csv" "$T/a/results.csv"

# ---- a setting only some methods read, or one every run reads, changed ----

# probes is read by hap only: l1's results (checked first) stay this sweep's, hap's are refused
config probes5 "probes = 5"
expect 1 "probes changed (read by hap only): the l1 results are reused, hap's result is refused, naming the setting" \
  "$T/a/runs/hap-flops0.30-s1.json" "made with other settings \(it has probes=4 where this config has probes=5\)" \
  "$HPRUNE" sweep "$T/probes5.ini" --out "$T/a"
cp -R "$T/a" "$T/a5"
rm "$T/a5/runs/hap-"*.json "$T/a5/results.csv"
run "$HPRUNE" sweep "$T/probes5.ini" --out "$T/a5"
check "probes changed, hap's results deleted: the 2 l1 results reused as they are, hap's redone with probes=5" \
  eval 'rc_is 0 && err_has "2 done earlier, 2 to run" && out_has "^collected 4 runs" &&
        cmp -s "$T/a/runs/l1-flops0.30-s1.json" "$T/a5/runs/l1-flops0.30-s1.json" &&
        cmp -s "$T/a/runs/l1-flops0.60-s1.json" "$T/a5/runs/l1-flops0.60-s1.json" &&
        grep -q "probes=5;" "$T/a5/runs/hap-flops0.30-s1.json" && ! grep -q "probes=" "$T/a5/runs/l1-flops0.30-s1.json"'
config steps2 "steps = 2"
expect 1 "steps changed (read by every run): the first run's result, l1's, is refused, naming the setting" \
  "$T/a/runs/l1-flops0.30-s1.json" "made with other settings \(it has steps=1 where this config has steps=2\)" \
  "$HPRUNE" sweep "$T/steps2.ini" --out "$T/a"

# ---- killed in the middle of a run (SIGKILL), then restarted ----

"$HPRUNE" sweep "$CFG" --out "$T/b" >"$CAP/bg_out" 2>"$CAP/bg_err" &
pid=$!
i=0
while [ $i -lt 1200 ] && ! ls "$T/b/runs/"*.json >/dev/null 2>&1; do sleep 0.05; i=$((i + 1)); done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
killed=$(ls "$T/b/runs/"*.json 2>/dev/null | wc -l)
pycheck "SIGKILL after the first result file: $killed complete result file(s), no partial one" runs "$T/b" 1 4
run "$HPRUNE" sweep "$CFG" --out "$T/b"
check "restarted: skips the $killed finished run(s), redoes the rest, collects" \
  eval 'rc_is 0 && err_has "$killed done earlier, $((4 - killed)) to run" && out_has "^collected 4 runs"'
pycheck "killed and restarted: the same results.csv as the uninterrupted sweep (timing columns aside)" \
  same "$T/a.csv" "$T/b/results.csv"
[ "$killed" -lt 4 ] || echo "# (the kill came after the last run: the restart had nothing to redo)"

# ---- two shards into one directory, then --collect ----

run "$HPRUNE" sweep "$CFG" --out "$T/c" --shard 0/2
check "--shard 0/2: runs 2 of the 4, does not collect yet" \
  eval 'rc_is 0 && out_has "^2 of 4 runs done" && [ ! -e "$T/c/results.csv" ]'
run "$HPRUNE" sweep "$CFG" --out "$T/c" --shard 1/2
check "--shard 1/2: runs the other 2 and, all being done, collects" eval 'rc_is 0 && out_has "^collected 4 runs"'
rm -f "$T/c/results.csv"
run "$HPRUNE" sweep --collect "$T/c"
check "--collect DIR: exits 0 and merges 4 runs" eval 'rc_is 0 && out_has "^collected 4 runs" && [ -s "$T/c/results.csv" ]'
pycheck "two shards + --collect: the same results.csv as one process (timing columns aside)" \
  same "$T/a.csv" "$T/c/results.csv"

# ---- a --collect that fails leaves the earlier outputs as they were ----

OUTS="results.csv results.md accuracy_vs_macs.png accuracy_vs_macs.svg"
mkdir -p "$T/c-before"
for f in $OUTS; do cp "$T/c/$f" "$T/c-before/$f"; done
# untouched: the outputs in $T/c are those kept in $T/c-before, byte for byte, and no temporary is left
untouched() {
  for f in $OUTS; do cmp -s "$T/c/$f" "$T/c-before/$f" || return 1; done
  ! ls -A "$T/c" "$T/c/runs" | grep -q '^\.hprune-'
}
sed -e 's/"accuracy_original":[^,]*,/"accuracy_original":\t1e308,/' \
  -e 's/"accuracy_finetuned":[^,]*,/"accuracy_finetuned":\t1e308,/' "$T/c/runs/l1-flops0.30-s1.json" >"$T/c/runs/a.json"
expect 1 "--collect: a result out of range (a copy with accuracies of 1e308) is refused, naming the file and the key" \
  "$T/c/runs/a.json" "accuracy_original 1e\+308 is not in \[0, 1\]" "$HPRUNE" sweep --collect "$T/c"
check "--collect refused: results.csv, results.md, the PNG and the SVG as they were, no temporary file" untouched
sed 's/"method":\t"l1"/"method":\t"l1|x"/' "$T/c/runs/l1-flops0.30-s1.json" >"$T/c/runs/a.json"
expect 1 "--collect: a method name a table cannot hold is refused" "$T/c/runs/a.json" "method is not a method name" \
  "$HPRUNE" sweep --collect "$T/c"
sed 's/"seed":\t"1"/"seed":\t"1\\u00002"/' "$T/c/runs/l1-flops0.30-s1.json" >"$T/c/runs/a.json"
expect 1 "--collect: a string with an escaped NUL (where the JSON reader would cut it) is refused, naming the key" \
  "$T/c/runs/a.json" '"seed" holds a string with an escaped NUL \(\\u0000\)' "$HPRUNE" sweep --collect "$T/c"
{ cat "$T/c/runs/l1-flops0.30-s1.json"; echo garbage; } >"$T/c/runs/a.json"
expect 1 "--collect: data after the JSON object is refused" "$T/c/runs/a.json" "data after the JSON object" \
  "$HPRUNE" sweep --collect "$T/c"
rm "$T/c/runs/a.json"
mkfifo "$T/c/runs/a.json"  # refused, not waited on (expect's timeout ends a hang)
expect 1 "--collect: a FIFO among the results is refused, not waited on" "$T/c/runs/a.json" "not a regular file" \
  "$HPRUNE" sweep --collect "$T/c"
rm "$T/c/runs/a.json"
mv "$T/c/accuracy_vs_macs.svg" "$T/c/svg" && mkdir "$T/c/accuracy_vs_macs.svg"
expect 1 "--collect: an output it cannot write (a directory in the way): none of the four is written" \
  "$T/c/accuracy_vs_macs.svg" "cannot write: it is a directory" "$HPRUNE" sweep --collect "$T/c"
rmdir "$T/c/accuracy_vs_macs.svg" && mv "$T/c/svg" "$T/c/accuracy_vs_macs.svg"
check "--collect failed: the earlier outputs as they were, no temporary file" untouched

# ---- two parallel jobs ----

run "$HPRUNE" sweep "$CFG" --out "$T/d" --jobs 2
check "--jobs 2: exits 0 and collects" eval 'rc_is 0 && out_has "^collected 4 runs"'
pycheck "--jobs 2: the same results.csv (timing columns aside)" same "$T/a.csv" "$T/d/results.csv"

# ---- [method NAME] sections: the same runs as hprune prune with those options ----

cat >"$T/methods.ini" <<EOF
[sweep]
model = $MODEL
methods = l1-pc, obs-small
targets = 0.4
samples = 64
threads = 1
[method l1-pc]
criterion = l1
rank = per-cost
steps = 2
[method obs-small]
criterion = obs
fisher_grads = 48
block_size = 50
damp = 0.05
EOF
run "$HPRUNE" sweep "$T/methods.ini" --out "$T/m"
check "[method NAME] sections: exits 0, runs named after the sections" \
  eval 'rc_is 0 && out_has "^l1-pc-flops0.40-s1 " && out_has "^obs-small-flops0.40-s1 " && out_has "^collected 2 runs"'
check "results.md says what each method stands for" \
  eval 'grep -q -F -- "- \`l1-pc\`: l1, rank per-cost, 2 steps" "$T/m/results.md" &&
        grep -q -F -- "- \`obs-small\`: obs, 48 Fisher gradients, Fisher blocks of 50, damp 0.05" "$T/m/results.md"'
# same_as_prune ID PRUNE-OPTIONS...: the sweep's run ID removed the same parameters and gave the
# same accuracies as hprune prune with those options.
same_as_prune() {
  id=$1; shift
  "$HPRUNE" prune "$MODEL" --data "$DATA" --samples 64 --threads 1 --target-flops 0.4 "$@" \
    -o "$T/m/$id.safetensors" --report "$T/m/$id-prune.json" >/dev/null 2>"$CAP/err" || return 1
  python3 - "$T/m/runs/$id.json" "$T/m/$id-prune.json" >"$CAP/py" 2>&1 <<'PY'
import json, sys
s, p = (json.load(open(f)) for f in sys.argv[1:])
pairs = [("params", "params_after"), ("accuracy_oneshot", "accuracy_pruned"),
         ("accuracy_recalibrated", "accuracy_recalibrated")]
bad = [(a, s[a], p[b]) for a, b in pairs if abs(s[a] - p[b]) > 1e-6]
sys.exit(f"sweep against prune: {bad}" if bad else 0)
PY
}
check "l1-pc: the same model and accuracies as prune --method l1 --rank per-cost --steps 2" \
  same_as_prune l1-pc-flops0.40-s1 --method l1 --rank per-cost --steps 2
check "obs-small: the same as prune --method obs --fisher-grads 48 --block-size 50 --damp 0.05" \
  same_as_prune obs-small-flops0.40-s1 --method obs --fisher-grads 48 --block-size 50 --damp 0.05
sed 's/^damp = 0.05$/damp = 0.1/' "$T/methods.ini" >"$T/methods2.ini"
{ cat "$T/methods.ini"; printf '[method spare]\ncriterion = taylor\n'; } >"$T/methods3.ini"
run "$HPRUNE" sweep "$T/methods3.ini" --out "$T/m" --list
check "a [method] section 'methods' does not list: one warning naming its line, not run" \
  eval 'rc_is 0 && [ "$(grep -c "warning" "$CAP/err")" = 1 ] &&
        grep -q "^hprune: warning: $T/methods3.ini:16: \[method spare\] is not run: .methods. (line 3) does not list it$" "$CAP/err" &&
        ! grep -q spare "$CAP/out" && out_has "obs-small-flops0.40-s1 +done"'
expect 1 "a changed method option: the earlier result is refused, naming the setting" \
  "$T/m/runs/obs-small-flops0.40-s1.json" "damp 0.05 where this config has .*damp 0.1" \
  "$HPRUNE" sweep "$T/methods2.ini" --out "$T/m"

# ---- the base model replaced between two runs of a sweep ----

sed -e "s/^seed = .*/seed = 4/" -e "s|^output = .*|output = $T/other.safetensors|" "$T/tiny.ini" >"$T/other.ini"
"$HPRUNE" train --config "$T/other.ini" >/dev/null 2>"$CAP/err"
check "fixtures: a second LeNet-5 (another seed) of the same shape" eval '[ -s "$T/other.safetensors" ] && ! cmp -s "$MODEL" "$T/other.safetensors"'
cp "$MODEL" "$T/base.safetensors"
config base "model = $T/base.safetensors" "methods = l1" "targets = 0.3, 0.5"
run "$HPRUNE" sweep "$T/base.ini" --out "$T/e" --shard 0/2
check "a result file records the CRC-32 of the model file it was made from" \
  eval 'rc_is 0 && [ "$(sed -n "s/.*\"model_crc32\":.*\"\([0-9a-f]*\)\".*/\1/p" "$T/e/runs/l1-flops0.30-s1.json")" = \
        "$(python3 -c "import sys, zlib; print(\"%08x\" % zlib.crc32(open(sys.argv[1], \"rb\").read()))" "$T/base.safetensors")" ]'
cp "$T/other.safetensors" "$T/base.safetensors"
expect 1 "the model file replaced: the earlier run is refused, naming the run file and the model" \
  "$T/e/runs/l1-flops0.30-s1.json" "made from another model: $T/base.safetensors with CRC-32 [0-9a-f]{8}, where this sweep's model $T/base.safetensors has CRC-32 [0-9a-f]{8} \(the file changed since\)" \
  "$HPRUNE" sweep "$T/base.ini" --out "$T/e" --shard 1/2
expect 1 "the model file replaced: --list refuses it too" "$T/e/runs/l1-flops0.30-s1.json" "made from another model" \
  "$HPRUNE" sweep "$T/base.ini" --out "$T/e" --list
config base2 "model = $T/base.safetensors" "methods = l1" "targets = 0.3, 0.99"
expect 1 "a config error (a target out of reach) is reported before a refused result file in --out" \
  "$T/base2.ini:5:" "out of reach" "$HPRUNE" sweep "$T/base2.ini" --out "$T/e" --list
run "$HPRUNE" sweep "$T/base.ini" --out "$T/e2" --shard 1/2
cp "$T/e2/runs/l1-flops0.50-s1.json" "$T/e/runs/"
expect 1 "--collect: runs of two models are not merged, naming both files and models" \
  "$T/e/runs: l1-flops0.30-s1.json and l1-flops0.50-s1.json" "come from different base models, .*base.safetensors \(CRC-32 [0-9a-f]{8}, 61706 parameters, 416520 MACs, test accuracy [0-9.]+%\) and .*: collect the runs of one model only" \
  "$HPRUNE" sweep --collect "$T/e"
rm "$T/e/runs/l1-flops0.50-s1.json"
for f in "$T/e/runs/"*.json; do grep -v '"model_crc32"' "$f" >"$f.old" && mv "$f.old" "$f"; done
cp "$MODEL" "$T/base.safetensors"
run "$HPRUNE" sweep "$T/base.ini" --out "$T/e"
check "a result written before results recorded the CRC-32: reused with one warning naming it, the sweep completes" \
  eval 'rc_is 0 && [ "$(grep -c "warning" "$CAP/err")" = 1 ] && err_has "^hprune: warning: $T/e/runs/l1-flops0.30-s1.json: written before sweeps recorded the model.s CRC-32" &&
        err_has "1 done earlier, 1 to run" && out_has "^collected 2 runs"'
for f in "$T/e/runs/"*.json; do grep -v '"model_crc32"' "$f" >"$f.old" && mv "$f.old" "$f"; done
run "$HPRUNE" sweep "$T/base.ini" --out "$T/e2"
cp "$T/e/runs/l1-flops0.30-s1.json" "$T/e2/runs/"
rm -f "$T/e2/results.csv"
expect 1 "--collect: an older result (no CRC-32) of another model is caught by its accuracy before pruning" \
  "l1-flops0.30-s1.json and l1-flops0.50-s1.json" "CRC-32 not recorded.*CRC-32 [0-9a-f]{8}" \
  "$HPRUNE" sweep --collect "$T/e2"

# ---- runs that fail in an unsharded sweep ----

config diverge "methods = l1" "targets = 0.3, 0.6"
sed -i 's/^epochs = 2$/epochs = 3\nlr = 100/' "$T/diverge.ini"  # a learning rate that diverges
run "$HPRUNE" sweep "$T/diverge.ini" --out "$T/f"
check "failed runs (training diverged) without --shard: counts the runs done, says nothing of shards" \
  eval 'rc_is 1 && err_has "^hprune: error: run l1-flops0.[36]0-s1: training diverged" &&
        out_has "^[01] of 2 runs done in $T/f$" && ! grep -q -i shard "$CAP/out" "$CAP/err" &&
        err_has "^hprune: error: [12] runs? failed \(see above\); run the sweep again to retry$"'

# ---- configs with mistakes: one message naming file:line, no run, no file ----

# bad NAME LINE...: a config with the lines added to [sweep] (line 4 onwards).
bad() { name=$1; shift; config "bad/$name" "$@"; }
bad key "methodz = l1"
bad range "targets = 0.5, 1.5"
bad method "methods = l1, magic"
bad section "[extra]" "x = 1"
bad frac "max_layer_frac = 0.05"
bad kind "target = gates"
printf '[sweep]\nmodel = %s\nmethods = l1, fine\n[method fine]\ncriterion = obs\nrank = per-cost\nggn = true\n' "$MODEL" \
  >"$T/bad/option.ini"
printf '[sweep]\nmethods = l1\n' >"$T/bad/nomodel.ini"
config bad/nomodelfile "model = $T/missing.safetensors"
O=$T/out_bad  # must not appear
expect 1 "config: unknown key" "$T/bad/key.ini:4:" "unknown key 'methodz' in \[sweep\]" \
  "$HPRUNE" sweep "$T/bad/key.ini" --out "$O"
expect 1 "config: a target out of range" "$T/bad/range.ini:4:" "'1.5' in 'targets'.*\(0, 1\)" \
  "$HPRUNE" sweep "$T/bad/range.ini" --out "$O"
expect 1 "config: an unknown method" "$T/bad/method.ini:4:" "unknown method 'magic'" \
  "$HPRUNE" sweep "$T/bad/method.ini" --out "$O"
expect 1 "config: an unknown section" "$T/bad/section.ini:4:" "unknown section \[extra\]" \
  "$HPRUNE" sweep "$T/bad/section.ini" --out "$O"
expect 1 "config: a bad target kind" "$T/bad/kind.ini:4:" "'gates' for 'target'" \
  "$HPRUNE" sweep "$T/bad/kind.ini" --out "$O"
expect 1 "config: an option the method's criterion does not use" "$T/bad/option.ini:7:" \
  "'ggn' applies to hap and obd, not obs \(in \[method fine\]\)" "$HPRUNE" sweep "$T/bad/option.ini" --out "$O"
expect 1 "config: no model" "$T/bad/nomodel.ini" "model is required" "$HPRUNE" sweep "$T/bad/nomodel.ini" --out "$O"
expect 1 "config: targets the layer cap cannot reach, named at the targets line" "$T/bad/frac.ini:6:" "out of reach" \
  "$HPRUNE" sweep "$T/bad/frac.ini" --out "$O"
expect 1 "config: a model file that does not exist, named with the config and the line of [sweep] model" \
  "$T/missing.safetensors" "nomodelfile.ini:3: \\[sweep\\] model: .*no such file" \
  "$HPRUNE" sweep "$T/bad/nomodelfile.ini" --out "$O"
config bad/bn "methods = l1, bn"
expect 1 "config: a criterion the model cannot use (bn, no batchnorm), named at the methods line, before any run" \
  "$T/bad/bn.ini:4:" "method bn cannot run on $MODEL: criterion bn: channel group 'conv1' has no batchnorm" \
  "$HPRUNE" sweep "$T/bad/bn.ini" --out "$O"
expect 1 "--list: the same criterion the model cannot use" "$T/bad/bn.ini:4:" "method bn cannot run" \
  "$HPRUNE" sweep "$T/bad/bn.ini" --out "$O" --list
printf '[sweep]\nmodel = %s\nmethods = l1, slim\n[method slim]\ncriterion = bn\n' "$MODEL" >"$T/bad/slim.ini"
expect 1 "config: a [method] section whose criterion the model cannot use, named at its criterion line" \
  "$T/bad/slim.ini:5:" "method slim cannot run on .*: criterion bn" "$HPRUNE" sweep "$T/bad/slim.ini" --out "$O" --list
{ cat "$CFG"; printf '[data]\ndir = %s/nonexistent\n' "$T"; } >"$T/bad/nodata.ini"
expect 1 "config: a [data] dir that does not exist, named at its line" "$T/bad/nodata.ini:14:" \
  "\[data\] dir: cannot load fashion-mnist: .*nonexistent" "$HPRUNE" sweep "$T/bad/nodata.ini" --out "$O"
expect 1 "--list: the same [data] dir" "$T/bad/nodata.ini:14:" "\[data\] dir: cannot load" \
  "$HPRUNE" sweep "$T/bad/nodata.ini" --out "$O" --list
{ cat "$CFG"; printf '[data]\ndataset = cifar10\n'; } >"$T/bad/cifar.ini"
expect 1 "config: a [data] dataset other than the model's, without [data] dir: named at its line" \
  "$T/bad/cifar.ini:14:" "\[data\] dataset cifar10: give its directory with \[data\] dir \(the model was trained on fashion-mnist in " \
  "$HPRUNE" sweep "$T/bad/cifar.ini" --out "$O" --list
expect 1 "config: a file that does not exist" "$T/bad/none.ini" "cannot open" "$HPRUNE" sweep "$T/bad/none.ini" --out "$O"
expect 1 "--out DIR whose parent is missing: refused first, naming it (made one level only, as train's -o)" \
  "$T/nodir/sub" "cannot write: directory $T/nodir: No such file or directory$" \
  "$HPRUNE" sweep "$CFG" --out "$T/nodir/sub"
expect 1 "--list: the same" "$T/nodir/sub" "cannot write: directory $T/nodir: No such file or directory$" \
  "$HPRUNE" sweep "$CFG" --out "$T/nodir/sub" --list
expect 1 "--out naming a file" "$CFG" "not a directory$" "$HPRUNE" sweep "$CFG" --out "$CFG"
expect 1 "--collect: a directory without results" "$T/bad" "cannot open|no result files" "$HPRUNE" sweep --collect "$T/bad"
expect 2 "no CONFIG" "" "CONFIG is required" "$HPRUNE" sweep --out "$O"
expect 2 "--shard 2/2 (shards count from 0)" "2/2" "numbered from 0" "$HPRUNE" sweep "$CFG" --out "$O" --shard 2/2
expect 2 "--shard 1" "'1'" "I/N" "$HPRUNE" sweep "$CFG" --out "$O" --shard 1
expect 2 "--jobs 0" "--jobs" "'0'" "$HPRUNE" sweep "$CFG" --out "$O" --jobs 0
expect 2 "--collect with a CONFIG" "" "takes no CONFIG" "$HPRUNE" sweep --collect "$T/a" "$CFG"
expect 2 "no output directory" "$CFG" "--out DIR" "$HPRUNE" sweep "$CFG"
expect 2 "--out given twice" "--out given twice" "^hprune sweep: --out given twice$" \
  "$HPRUNE" sweep "$CFG" --out "$O" --out "$T/o2"
expect 2 "--jobs with --list (which runs nothing)" "--jobs" "applies to a sweep that runs, not --list" \
  "$HPRUNE" sweep "$CFG" --out "$O" --list --jobs 2
config one "methods = l1" "targets = 0.3"
run "$HPRUNE" sweep "$T/one.ini" --out "$T/one" --list
check "--list of a one-run sweep: '1 run' (singular)" eval 'rc_is 0 && out_has "^1 run; 0 done, 1 pending in "'

# ---- sensitivity ----

S="--samples 64 --probes 4 --threads 1 --test-images 100"
run "$HPRUNE" sensitivity "$MODEL" --ratios 0.25:0.75:0.25 $S -o "$T/s"
check "sensitivity: exits 0, ranks the 4 layers with their traces and the rank correlation" \
  eval 'rc_is 0 && [ "$(grep -c -E "^[1-4] +(conv|fc)[12] +[0-9]+ " "$CAP/out")" -eq 4 ] && out_has "^Spearman rank correlation"'
pycheck "sensitivity.csv: one row per layer and ratio (0.25, 0.5, 0.75), removed = round(ratio x channels)" \
  sens "$T/s/sensitivity.csv" 0.25 0.5 0.75
pycheck "sensitivity.png is a complete PNG" png "$T/s/sensitivity.png"
pycheck "sensitivity: each layer's mean and max drop are those of its rows of the CSV" ranking "$CAP/out" "$T/s/sensitivity.csv"
run "$HPRUNE" sensitivity "$MODEL" --ratios 0.5 --method obs-layer $S --out "$T/s2"
check "sensitivity --method obs-layer (with compensation): exits 0" eval 'rc_is 0 && [ -s "$T/s2/sensitivity.png" ]'
pycheck "sensitivity --ratios 0.5: four rows" sens "$T/s2/sensitivity.csv" 0.5
pycheck "sensitivity --ratios 0.5: mean drop = max drop = the CSV's accuracy_drop (negative too, not floored at 0)" \
  ranking "$CAP/out" "$T/s2/sensitivity.csv"
check "sensitivity --ratios 0.5: '1 ratio' (singular) in the summary" \
  out_has "^$MODEL: obs-layer, 1 ratio from 0.5 to 0.5, 100 test images, "
# a model that answers class 0 whatever the image, through one fc2 channel l1 removes first:
# pruning fc2 raises the accuracy, a negative drop, which the max drop must not floor at 0
cat >"$T/skew.py" <<'EOF'
# skew.py SRC DST: SRC with fc2's channel 0 adding 100 to class 0's logit whatever the image, the
# other fc2 channels scaled up 10x and their fc3 columns down 10x (the same function), so that
# channel has the lowest l1 score of fc2.
import json, struct, sys
from array import array
blob = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", blob[:8])
h, data = json.loads(blob[8:8 + n]), bytearray(blob[8 + n:])
def tensor(name):
    b, e = h[name]["data_offsets"]
    return array("f", bytes(data[b:e])), h[name]["shape"]
def put(name, a):
    b, e = h[name]["data_offsets"]
    data[b:e] = a.tobytes()
w2, (o2, i2) = tensor("fc2.weight")
b2, _ = tensor("fc2.bias")
w3, (o3, _) = tensor("fc3.weight")
w2, b2, w3 = array("f", [10 * v for v in w2]), array("f", [10 * v for v in b2]), array("f", [0.1 * v for v in w3])
for k in range(i2):
    w2[k] = 0.0
b2[0] = 10.0
for c in range(o3):
    w3[c * o2] = 10.0 if c == 0 else 0.0
put("fc2.weight", w2), put("fc2.bias", b2), put("fc3.weight", w3)
open(sys.argv[2], "wb").write(blob[:8 + n] + bytes(data))
EOF
python3 "$T/skew.py" "$MODEL" "$T/skew.safetensors"
run "$HPRUNE" sensitivity "$T/skew.safetensors" --ratios 0.1 $S -o "$T/s3"
check "sensitivity of a model that pruning fc2 improves: fc2's mean and max drop both negative" \
  eval 'rc_is 0 && out_has "^[1-4] +fc2 +84 +-[1-9][0-9.]*% +-[1-9][0-9.]*% "'
pycheck "... and equal to the CSV's accuracy_drop (one ratio)" ranking "$CAP/out" "$T/s3/sensitivity.csv"
expect 1 "sensitivity --test-images beyond the test set: an error, not capped" "$MODEL" \
  "asked for 1000 test images, the test set has 200$" "$HPRUNE" sensitivity "$MODEL" --test-images 1000 --threads 1 -o "$O"
expect 2 "sensitivity -o and --out: one option given twice" "-o/--out given twice" "^hprune sensitivity: -o/--out given twice$" \
  "$HPRUNE" sensitivity "$MODEL" -o "$O" --out "$T/o2"
expect 2 "sensitivity --ratios with the start above the end" "--ratios" "start is above the end" \
  "$HPRUNE" sensitivity "$MODEL" --ratios 0.9:0.1:0.1 -o "$O"
expect 2 "sensitivity --ratios reaching 0" "--ratios" "not in \(0, 1\)" "$HPRUNE" sensitivity "$MODEL" --ratios 0:0.5:0.1 -o "$O"
expect 2 "sensitivity --ratios not numbers" "--ratios" "not a number" "$HPRUNE" sensitivity "$MODEL" --ratios abc -o "$O"
expect 2 "sensitivity --ratios as a percentage: the range and a hint, the value once" "" \
  "^hprune sensitivity: --ratios: '50%' is not a number in \(0, 1\): a fraction, e.g. 0.5 for 50%$" \
  "$HPRUNE" sensitivity "$MODEL" --ratios 50% -o "$O"
expect 2 "sensitivity --method foo" "foo" "unknown" "$HPRUNE" sensitivity "$MODEL" --method foo -o "$O"
expect 1 "sensitivity --method bn on a model without batchnorm: refused before any work (the data is not even read)" \
  "$MODEL" "criterion bn: channel group 'conv1' has no batchnorm" \
  "$HPRUNE" sensitivity "$MODEL" --method bn --data "$T/nodata" --threads 1 -o "$O"
expect 2 "sensitivity without MODEL" "" "MODEL is required" "$HPRUNE" sensitivity -o "$O"

echo "1..$n"
[ "$failed" -eq 0 ]
