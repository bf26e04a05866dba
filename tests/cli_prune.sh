#!/bin/sh
# cli_prune.sh: `hprune prune` as a user meets it, on a tiny LeNet-5 trained for one epoch on a
# synthetic Fashion-MNIST-format dataset: every criterion meets a MACs target; the slim model
# loads, is smaller and evaluates to the accuracy the report states; the Markdown and JSON
# reports; parameter and channel targets; steps and fine-tuning; `info --groups` of the slim
# model; determinism; and bad input, which must fail cleanly (exit status 1 runtime, 2 usage,
# one message line, nothing written).
#
#   HPRUNE=./hprune sh tests/cli_prune.sh      (from the repository root)
#
# Small on purpose (256 training images, one thread, few probes): seconds on one core.

. "$(dirname "$0")/tap_lib.sh"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
tap_begin cli-prune
CAP=$T/cap
mkdir -p "$CAP" "$T/data" "$T/out" "$T/work"

cat >"$T/check.py" <<'EOF'
# check.py MODE ARGS...: checks of prune's outputs; exits 1 with the reason.
import json, math, struct, sys
mode, args = sys.argv[1], sys.argv[2:]
def need(cond, msg):
    if not cond:
        sys.exit(msg)
def header(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n])
if mode == "report":  # REPORT.json KIND RATIO: keys, totals, the target met
    r = json.load(open(args[0]))
    for k in ("command", "seed", "method", "slices", "normalize", "rank", "target", "target_ratio", "layers", "params_before", "params_after",
              "macs_before", "macs_after", "accuracy_original", "accuracy_pruned", "accuracy_recalibrated", "latency_ms_before",
              "latency_ms_after", "speedup"):
        need(k in r, f"no key {k!r}: {sorted(r)}")
    kind, ratio = args[1], float(args[2])
    before, after = r[kind + "_before"], r[kind + "_after"]
    need(after <= (1 - ratio) * before + 1e-9, f"{kind}: {after} of {before} left, target -{ratio}")
    need(after >= (1 - ratio - 0.25) * before, f"{kind}: {after} of {before} left: far past the target")
    need(r["params_after"] < r["params_before"] and r["macs_after"] < r["macs_before"], "not smaller")
    names = [l["name"] for l in r["layers"]]
    need(names == ["conv1", "conv2", "fc1", "fc2", "fc3"], f"layers {names}")
    need(r["layers"][-1]["out_after"] == 10, "the output layer lost classes")
    need(all(1 <= l["out_after"] <= l["out_before"] for l in r["layers"]), "a layer grew or vanished")
    need(sum(l["params_after"] for l in r["layers"]) == r["params_after"], "layer params do not add up")
    ratio = r["latency_ms_before"] / r["latency_ms_after"]
    need(abs(r["speedup"] / ratio - 1) < 1e-4, f"speedup {r['speedup']}, the latencies divide to {ratio}")
elif mode == "obs":  # REPORT.json GRADS BLOCK DAMP COMPENSATE: obs's Fisher settings are recorded
    r = json.load(open(args[0]))
    f = r.get("fisher", {})
    want = {"grads": int(args[1]), "batch": 1, "block_size": int(args[2]), "damp": float(args[3])}
    need(f == want, f"fisher {f}, expected {want}")
    need(r.get("compensate") == (args[4] == "true"), f"compensate {r.get('compensate')}")
elif mode == "slim":  # SLIM.safetensors REPORT.json: shapes in the file match the report
    h, r = header(args[0]), json.load(open(args[1]))
    outs = {l["name"]: l["out_after"] for l in r["layers"]}
    need(h["conv1.weight"]["shape"][0] == outs["conv1"], f"conv1.weight {h['conv1.weight']['shape']}")
    need(h["conv2.weight"]["shape"][:2] == [outs["conv2"], outs["conv1"]], f"conv2.weight {h['conv2.weight']['shape']}")
    need(h["fc1.weight"]["shape"] == [outs["fc1"], outs["conv2"] * 25], f"fc1.weight {h['fc1.weight']['shape']}")
    need(h["fc3.weight"]["shape"] == [10, outs["fc2"]], f"fc3.weight {h['fc3.weight']['shape']}")
    prov = json.loads(h["__metadata__"]["hprune.provenance"])
    need(prov["prune"]["method"] == r["method"], f"provenance {prov.get('prune')}")
elif mode == "uniform":  # REPORT.json RATIO [CAP]: every prunable layer lost round(RATIO x its channels),
    # or with CAP kept at least what the cap keeps, ceil((1 - CAP) x its channels)
    r, ratio = json.load(open(args[0])), float(args[1])
    cap = float(args[2]) if len(args) > 2 else 0.9
    for l in r["layers"][:-1]:
        keep = max(round((1 - ratio) * l["out_before"]), math.ceil((1 - cap) * l["out_before"] - 1e-9))
        want = l["out_before"] - keep
        need(l["out_before"] - l["out_after"] == want, f"{l['name']}: {l['out_before']} -> {l['out_after']}, expected -{want}")
elif mode == "uniform_round":  # REPORT.json RATIO R: every prunable layer wider than R keeps the
    # multiple of R nearest to round((1 - RATIO) x its channels); the others round((1 - RATIO) x ...)
    r, ratio, q = json.load(open(args[0])), float(args[1]), int(args[2])
    for l in r["layers"][:-1]:
        want = int((1 - ratio) * l["out_before"] + 0.5)
        if l["out_before"] > q:
            want = max(q, q * int(want / q + 0.5))
        need(l["out_after"] == want, f"{l['name']}: {l['out_before']} -> {l['out_after']}, expected {want}")
elif mode == "acc":  # REPORT.json EVAL.json [SLIM.safetensors]: eval's accuracy equals the report's final
    # accuracy; the slim model's provenance has eval's accuracy and loss, not the unpruned model's
    r, e = json.load(open(args[0])), json.load(open(args[1]))
    final = r.get("accuracy_finetuned", r["accuracy_recalibrated"])
    need(abs(final - e["accuracy"]) <= 1e-6, f"report {final}, eval {e['accuracy']}")
    if len(args) > 2:
        prov = json.loads(header(args[2])["__metadata__"]["hprune.provenance"])
        for k, ek in (("test_accuracy", "accuracy"), ("test_loss", "loss")):
            need(abs(prov[k] - e[ek]) <= 1e-6, f"provenance {k} {prov[k]}, eval {e[ek]}")
elif mode == "keys":  # REPORT.json K=V...: the report's K is the number V
    r = json.load(open(args[0]))
    for kv in args[1:]:
        k, v = kv.split("=")
        need(r.get(k) == float(v), f"{k} is {r.get(k)!r}, expected {v}")
elif mode == "same":  # A B: the same report but for timing and the command
    a, b = json.load(open(args[0])), json.load(open(args[1]))
    for k in ("command", "date", "latency_ms_before", "latency_ms_after", "images_per_s_before",
              "images_per_s_after", "speedup", "score_seconds", "finetune_seconds", "total_seconds", "output"):
        a.pop(k, None), b.pop(k, None)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    need(not diff, f"differ in {diff}")
elif mode == "huge":  # MODEL OUT TENSOR: MODEL with every value of TENSOR 1e38 (finite; its forward
    # pass overflows, so gradients, and the criteria made of them, are not finite)
    b = bytearray(open(args[0], "rb").read())
    n = struct.unpack("<Q", b[:8])[0]
    lo, hi = json.loads(b[8:8 + n])[args[2]]["data_offsets"]
    b[8 + n + lo:8 + n + hi] = struct.pack("<f", 1e38) * ((hi - lo) // 4)
    open(args[1], "wb").write(b)
elif mode == "command":  # REPORT.json ARG...: the recorded command, run by sh with a stand-in hprune,
    # gives back ARG... exactly (in the order typed); MODEL before the options stays there
    import subprocess
    cmd = json.load(open(args[0]))["command"]
    out = subprocess.run(["sh", "-c", 'hprune() { for a; do printf "%s\\0" "$a"; done; }; ' + cmd],
                         capture_output=True, check=True).stdout.decode()
    got = out.split("\0")[:-1]
    need(got == ["prune"] + args[1:], f"command {cmd!r} gives {got}, typed {['prune'] + args[1:]}")
elif mode == "threads":  # REPORT.json N: the report records N threads (N "cpus": the processors there are)
    import os
    r, n = json.load(open(args[0])), args[1]
    want = len(os.sched_getaffinity(0)) if n == "cpus" else int(n)
    need(r.get("threads") == want, f"threads {r.get('threads')}, expected {want}")
elif mode == "nolinear":  # OUT.safetensors: a model with no prunable channel (one linear layer)
    g = {"format": "hprune-graph", "version": 1, "arch": "custom", "input": [1, 28, 28], "classes": 10,
         "normalize": {"mean": [0.5], "std": [0.25]},
         "nodes": [{"name": "flat", "op": "flatten", "inputs": ["input"]},
                   {"name": "fc", "op": "linear", "inputs": ["flat"], "out_features": 10, "bias": True}]}
    tensors = [("fc.weight", [10, 784]), ("fc.bias", [10])]
    head, off = {"__metadata__": {"hprune.graph": json.dumps(g), "format": "pt"}}, 0
    for name, shape in tensors:
        n = 4 * (shape[0] * (shape[1] if len(shape) > 1 else 1))
        head[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(head).encode()
    hb += b" " * (-len(hb) % 8)
    open(args[0], "wb").write(struct.pack("<Q", len(hb)) + hb + bytes(off))
else:
    sys.exit("check.py: unknown mode " + mode)
EOF
pycheck() {
  desc=$1; shift
  if python3 "$T/check.py" "$@" >"$CAP/py" 2>&1; then ok "$desc"; else not_ok "$desc"; sed -n '1,8s/^/#   /p' "$CAP/py"; fi
}
rc_is() { [ "$rc" -eq "$1" ]; }

tap_tiny_model 256 64 --seed 2025 --wrong 0.1
python3 "$T/check.py" nolinear "$T/nolinear.safetensors"
python3 "$T/check.py" huge "$MODEL" "$T/huge.safetensors" fc1.weight

# prune METHOD NAME ARGS...: prunes the fixture model with small settings (those METHOD uses:
# the others are refused) into $T/out/NAME.*, on one thread with the report NAME.json unless
# ARGS give --threads or --report (an option given twice is refused)
prune() {
  method=$1 name=$2; shift 2
  case $method in
  hap | obd) case " $* " in *" --ggn "*) small="" ;; *) small="--probes 4" ;; esac ;;
  obs) small="--fisher-grads 32 --block-size 500" ;;
  *) small="" ;;
  esac
  case " $* " in *" --threads "*) ;; *) small="$small --threads 1" ;; esac
  case " $* " in
  *" --report "*) run "$HPRUNE" prune "$MODEL" --method "$method" --data "$DATA" --samples 64 --batch-size 32 $small \
    -o "$T/out/$name.safetensors" "$@" ;;
  *) run "$HPRUNE" prune "$MODEL" --method "$method" --data "$DATA" --samples 64 --batch-size 32 $small \
    -o "$T/out/$name.safetensors" --report "$T/out/$name.json" "$@" ;;
  esac
}

# ---- every criterion meets a MACs target; the slim model is what the report says ----
for method in random l1 l2 taylor hap obd fisher obs obs-layer; do
  prune "$method" "$method" --target-flops 0.5
  check "$method: prunes 50% of the MACs (exit 0, summary on stdout)" eval 'rc_is 0 && grep -q "^MACs" "$CAP/out"'
  pycheck "$method: report keys, layers, target met" report "$T/out/$method.json" macs 0.5
done
pycheck "obs: the report records the Fisher (block size and grads as given, damp 1e-2 by default)" obs \
  "$T/out/obs.json" 32 500 0.01 true

# ---- the log says how many channels score below zero (they go first): hap's Hutchinson
# estimates can be negative; the Gauss-Newton diagonal and the filter norms cannot ----
prune hap hap-neg --target-flops 0.5
check "hap (4 probes): the log counts the channels scoring below zero, among the prunable ones" \
  eval 'rc_is 0 && grep -E -q "^hap: [1-9][0-9]* of [0-9]+ channels score below zero and go first \(negative curvature estimates" "$CAP/err"'
prune hap hap-ggn-neg --target-flops 0.5 --ggn
check "hap --ggn: no channel scores below zero, and the log says nothing of it" \
  eval 'rc_is 0 && ! grep -q "below zero" "$CAP/err"'
prune l1 l1-neg --target-flops 0.5
check "l1: no channel scores below zero, and the log says nothing of it" eval 'rc_is 0 && ! grep -q "below zero" "$CAP/err"'
check "obs-layer: the report records its damping" grep -q '"layer_damp":[[:space:]]*0.01' "$T/out/obs-layer.json"
check "l1: no OBS settings in its report" python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
sys.exit(any(k in r for k in ("fisher", "layer_damp", "compensate")))' "$T/out/l1.json"
prune obs obs_nocomp --target-flops 0.5 --no-compensate --damp 1e-3 --rank per-cost
pycheck "obs --no-compensate --damp 1e-3: recorded" obs "$T/out/obs_nocomp.json" 32 500 0.001 false
check "--rank per-cost: recorded" grep -q '"rank":[[:space:]]*"per-cost"' "$T/out/obs_nocomp.json"
check "--normalize auto: recorded as what it stands for (mean for l1, none for hap)" eval \
  'grep -q "\"normalize\":[[:space:]]*\"mean\"" "$T/out/l1.json" && grep -q "\"normalize\":[[:space:]]*\"none\"" "$T/out/hap.json"'
prune l1 l1_size --target-flops 0.5 --normalize size
check "--normalize size: recorded in the JSON report" eval \
  'rc_is 0 && grep -q "\"normalize\":[[:space:]]*\"size\"" "$T/out/l1_size.json"'
prune l1 l1_max --target-flops 0.5 --normalize max --report "$T/out/l1_max.md"
check "--normalize max: recorded in the Markdown report's settings" eval \
  'rc_is 0 && grep -q "^slices all, normalize max, rank by score$" "$T/out/l1_max.md"'
for method in taylor fisher; do
  prune "$method" "${method}_consumers" --target-flops 0.5 --slices consumers
  pycheck "$method --slices consumers: report keys, layers, target met" report "$T/out/${method}_consumers.json" macs 0.5
  check "$method --slices consumers: the report says so" grep -q '"slices":[[:space:]]*"consumers"' "$T/out/${method}_consumers.json"
done
prune hap hap_ggn --target-flops 0.5 --ggn
check "hap --ggn (exact Gauss-Newton diagonal): prunes 50% of the MACs" eval 'rc_is 0 && grep -q "^MACs" "$CAP/out"'
pycheck "hap --ggn: report keys, layers, target met" report "$T/out/hap_ggn.json" macs 0.5
pycheck "slim file: tensor shapes match the report, provenance names the method" slim "$T/out/hap.safetensors" "$T/out/hap.json"
run "$HPRUNE" eval "$T/out/hap.safetensors" --data "$DATA" --json --threads 1
cp "$CAP/out" "$T/out/eval.json"
pycheck "eval of the slim model gives the report's accuracy" acc "$T/out/hap.json" "$T/out/eval.json"
run "$HPRUNE" info "$T/out/hap.safetensors" --groups
check "info --groups of the slim model lists its groups" eval 'rc_is 0 && grep -q "conv2" "$CAP/out"'

# ---- other targets, steps, fine-tuning, Markdown report, determinism ----
prune l1 params --target-params 0.6
pycheck "parameter target met" report "$T/out/params.json" params 0.6
prune taylor steps --target-flops 0.4 --steps 2 --between-epochs 1 --finetune-epochs 1 --lr 0.01
check "two steps with fine-tuning between and after" eval 'rc_is 0 && grep -q "step 2/2" "$CAP/err" && grep -q "after 1 fine-tuning epoch$" "$CAP/out"'
check "the summary names the steps and the epochs between them, not one-shot" \
  grep -q "in 2 steps, 1 fine-tuning epoch after each but the last" "$CAP/out"
pycheck "the report counts the epochs between the steps; no batchnorm, so none re-estimated" keys "$T/out/steps.json" \
  between_epochs=1 finetune_epochs=1 bn_samples=0
pycheck "stepped run meets its target" report "$T/out/steps.json" macs 0.4
run "$HPRUNE" eval "$T/out/steps.safetensors" --data "$DATA" --json --threads 1
cp "$CAP/out" "$T/out/eval_steps.json"
pycheck "fine-tuned slim model: its provenance has its own test accuracy and loss (eval's)" acc "$T/out/steps.json" \
  "$T/out/eval_steps.json" "$T/out/steps.safetensors"
run "$HPRUNE" prune "$MODEL" --method hap --data "$DATA" --samples 64 --probes 4 --threads 1 --target-channels 0.3 \
  --round-to 2 -o "$T/out/md.safetensors" --report "$T/out/md.md"
check "Markdown report with the layer table and accuracies" eval \
  'rc_is 0 && grep -q "^| conv2 |" "$T/out/md.md" && grep -q "pruned (one-shot)" "$T/out/md.md"'
check "Markdown report: the scoring settings (hap: --normalize auto stands for none)" \
  grep -q "^slices all, normalize none (auto), rank by score$" "$T/out/md.md"
run "$HPRUNE" prune "$MODEL" --method obs --data "$DATA" --fisher-grads 32 --threads 1 \
  --target-flops 0.5 -o "$T/out/obs_md.safetensors" --report "$T/out/obs.md"
check "Markdown report of obs: the Fisher's settings, by default blocks of 100 and damp 1e-2" \
  grep -q "^slices all, normalize none (auto), rank by score; Fisher of 32 gradients of 1 image, blocks of 100, damp 0.01; weight update applied$" \
  "$T/out/obs.md"
prune l1 uniform --target-channels 0.5 --uniform
pycheck "--uniform: every layer loses half of its own channels" uniform "$T/out/uniform.json" 0.5
prune l1 uniform8 --target-channels 0.5 --uniform --round-to 8
pycheck "--uniform --round-to 8: kept widths the nearest multiples of 8 (fc1 120 -> 64, fc2 84 -> 40)" uniform_round \
  "$T/out/uniform8.json" 0.5 8
prune l1 uniform_cap --target-channels 0.6 --uniform --max-layer-frac 0.6
pycheck "--uniform at the cap: every layer loses 60% of its channels, no more than the cap (conv1 6 -> 3, not 2)" \
  uniform "$T/out/uniform_cap.json" 0.6 0.6
prune hap again --target-flops 0.5
pycheck "the same command gives the same report (but for timing)" same "$T/out/hap.json" "$T/out/again.json"
pycheck "the report records the threads used (--threads 1)" threads "$T/out/hap.json" 1
set -- prune "$MODEL" --method l1 --data "$DATA" --target-flops 0.3 -o "$T/work/it's a.safetensors" \
  --report "$T/work/r\$x \`y\`.json" --seed=7 --rank per-cost
run "$HPRUNE" "$@"
shift
check "MODEL first, a quote, \$ and backquotes in the names: exit 0" rc_is 0
pycheck "the report's command is what was typed, in order, and sh reads it back to the same arguments" command \
  "$T/work/r\$x \`y\`.json" "$@"
pycheck "without --threads, the report records the threads used (every processor)" threads "$T/work/r\$x \`y\`.json" cpus
run "$HPRUNE" prune "$MODEL" --method l1 --data "$DATA" --target-flops 0.3 --threads 1 -o "$T/work/md.safetensors" \
  --report "$T/work/a\`b.md"
check "Markdown report: the command in a code span that holds its backquote; the thread count" eval \
  'rc_is 0 && grep -q -F "\`\` hprune prune " "$T/work/a\`b.md" && grep -q -F "'"'"'$T/work/a\`b.md'"'"' \`\`" "$T/work/a\`b.md" &&
   grep -q "^seed 1, 1 step, 1 thread$" "$T/work/a\`b.md"'
rm -f "$T/work/"*
prune fisher fisher_t2 --target-flops 0.5 --threads 2
prune fisher fisher_t2_again --target-flops 0.5 --threads 2
pycheck "fisher on 2 threads: the same command gives the same report" same "$T/out/fisher_t2.json" \
  "$T/out/fisher_t2_again.json"

# ---- --config: a training config's [model] must be the model's, its [data] names the data
# (under --dataset and --data), and the [train] keys prune does not use are warned of ----
CFGS="--method l1 --target-flops 0.5 --finetune-epochs 1 --threads 1"
mkdir -p "$T/data128"
python3 "$(dirname "$0")/gen_fmnist.py" "$T/data128" 128 64 --seed 2025 --wrong 0.1
printf '[data]\nval_split = 0.05\ndir = %s\n[train]\nbatch_size = 32\n' "$T/data128" >"$T/dir128.ini"
run "$HPRUNE" prune "$MODEL" $CFGS --config "$T/dir128.ini" -o "$T/out/cfg.safetensors"
check "--config: its [data] dir is the data fine-tuned on, not the model's (122 + 6 of 128 images)" eval \
  'rc_is 0 && grep -q "^fine-tuning 1 epoch (lr 0.01, 122 train, 6 validation images)$" "$CAP/err"'
run "$HPRUNE" prune "$MODEL" $CFGS --config "$T/dir128.ini" --data "$DATA" -o "$T/out/cfg.safetensors"
check "--config: --data wins over its [data] dir (243 + 13 of 256 images)" eval \
  'rc_is 0 && grep -q "^fine-tuning 1 epoch (lr 0.01, 243 train, 13 validation images)$" "$CAP/err"'
printf '[data]\ndataset = mnist\ndir = %s\n[train]\nbatch_size = 32\n' "$T/data128" >"$T/mnist128.ini"
run "$HPRUNE" prune "$MODEL" $CFGS --config "$T/mnist128.ini" --dataset fashion-mnist -o "$T/out/cfg.safetensors"
check "--config: a --dataset other than its [data] dataset leaves its dir unused (the model's data), with a warning" \
  eval 'rc_is 0 && grep -q "^fine-tuning 1 epoch (lr 0.01, 243 train, 13 validation images)$" "$CAP/err" &&
  [ "$(grep warning "$CAP/err")" = "hprune: warning: $T/mnist128.ini:3: [data] dir is not used by prune: it is the directory of [data] dataset mnist, and --dataset fashion-mnist chose another" ]'
INI=$(cd "$(dirname "$0")/../configs" && pwd)/lenet5_fmnist.ini
line_of() { grep -n "^$1 *=" "$INI" | cut -d: -f1; }
want="hprune: warning: $INI:$(line_of epochs): [train] epochs is not used by prune (--finetune-epochs sets the epochs)
hprune: warning: $INI:$(line_of seed): [train] seed is not used by prune (--seed sets the seed)
hprune: warning: $INI:$(line_of threads): [train] threads is not used by prune (--threads sets the threads)
hprune: warning: $INI:$(line_of output): [train] output is not used by prune (-o sets the output)"
run "$HPRUNE" prune "$MODEL" $CFGS --config "$INI" --data "$DATA" -o "$T/out/cfg.safetensors"
check "--config configs/lenet5_fmnist.ini (a training config): runs, one warning per [train] key prune does not use" \
  eval 'rc_is 0 && grep -q "^wrote " "$CAP/out" && [ "$(grep warning "$CAP/err")" = "$want" ]'
run "$HPRUNE" prune "$MODEL" $CFGS --config "$(dirname "$INI")/finetune_resnet20.ini" --data "$DATA" \
  -o "$T/out/cfg.safetensors"
check "--config configs/finetune_resnet20.ini: runs without a warning" eval 'rc_is 0 && ! grep -q warning "$CAP/err"'
printf '[data]\nval_split = 0.05\n[train]\nbatch_size = 250\n' >"$T/batch250.ini"
expect 1 "--config: a fine-tuning batch larger than the training images left is refused before scoring" "$MODEL" \
  "fine-tuning in batches of 250 needs that many training images; the training set has 243 after the validation split \(lower \[train\] batch_size in --config\)" \
  "$HPRUNE" prune "$MODEL" $CFGS --config "$T/batch250.ini" --data "$DATA" -o "$T/work/slim.safetensors"
printf '[data]\nval_split = 0\n[train]\nbatch_size = 250\n' >"$T/batch250nv.ini"
run "$HPRUNE" prune "$MODEL" $CFGS --config "$T/batch250nv.ini" --data "$DATA" -o "$T/out/cfg.safetensors"
check "--config: the same batch with no validation split fills one (256 images): runs" eval \
  'rc_is 0 && grep -q "^fine-tuning 1 epoch (lr 0.01, 256 train, 0 validation images)$" "$CAP/err"'
rm -f "$T/out/cfg.safetensors"
SC="-o $T/work/slim.safetensors"
printf '[model]\narch = resnet56\n[data]\ndataset = cifar10\n' >"$T/r56.ini"
expect 1 "--config whose [model] arch is not the model's: refused at its line, before any work" "$T/r56.ini:2: " \
  "\[model\] arch: resnet56, but .*/model\.safetensors is a lenet5$" \
  "$HPRUNE" prune "$MODEL" $CFGS --config "$T/r56.ini" $SC
printf '[data]\ndataset = fashion-mnist\ndir = /nonexistent\n' >"$T/nodir.ini"
expect 1 "--config whose [data] dir does not exist: refused at its line" "$T/nodir.ini:3: " \
  "\[data\] dir: cannot load fashion-mnist: /nonexistent: no such directory" \
  "$HPRUNE" prune "$MODEL" $CFGS --config "$T/nodir.ini" $SC
printf '[data]\ndataset = cifar10\n' >"$T/c10.ini"
expect 1 "--config naming another dataset than the model's, without its dir: refused at its line" "$T/c10.ini:2: " \
  "\[data\] dataset cifar10: give its directory with \[data\] dir or --data DIR \(the model was trained on fashion-mnist in " \
  "$HPRUNE" prune "$MODEL" $CFGS --config "$T/c10.ini" $SC

# ---- bad input: clean failures, nothing written ----
S="--data $DATA --threads 1 -o $T/work/slim.safetensors"
expect 2 "a target of 1 is refused" "" "\(0, 1\)" "$HPRUNE" prune "$MODEL" --method l1 --target-flops 1 $S
expect 2 "a target of 0 is refused" "" "\(0, 1\)" "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0 $S
expect 2 "a target so small that nothing goes (1e-300) is refused" "" "removes nothing: give at least 1e-06" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-flops 1e-300 $S
expect 2 "a learning rate that is infinite in single precision is refused" "1e300" "not a number in \[1e-08, 100\]" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 --finetune-epochs 1 --lr 1e300 $S
expect 2 "a damping that underflows is refused before any work" "1e-300" "not a number in \[1e-12, 1e\+06\]" \
  "$HPRUNE" prune "$MODEL" --method obs --target-flops 0.5 --damp 1e-300 $S
expect 1 "--samples beyond the training set is an error, not a silent cap" "--samples 1000000" \
  "the training set has [0-9]+ images" "$HPRUNE" prune "$MODEL" --method taylor --samples 1000000 --target-flops 0.5 $S
expect 2 "an unknown method is refused" "magic" "unknown" "$HPRUNE" prune "$MODEL" --method magic --target-flops 0.5 $S
expect 2 "--uniform with a MACs target" "" "--uniform needs --target-channels" "$HPRUNE" prune "$MODEL" --method l1 \
  --target-flops 0.5 --uniform $S
expect 2 "--slices with a criterion it does not apply to" "" \
  "--slices consumers applies to l1, l2, taylor, hap, obd and fisher, not obs-layer" "$HPRUNE" prune "$MODEL" \
  --method obs-layer --slices consumers --target-flops 0.5 $S
expect 2 "--slices all with a criterion it does not apply to" "" \
  "--slices all applies to l1, l2, taylor, hap, obd and fisher, not obs" "$HPRUNE" prune "$MODEL" \
  --method obs --slices all --target-flops 0.5 $S
expect 2 "--probes with --ggn (no probes there)" "" "--probes does not apply with --ggn" \
  "$HPRUNE" prune "$MODEL" --method hap --ggn --probes 4 --target-flops 0.5 $S
expect 2 "--ggn with l1" "" "--ggn applies to hap and obd, not l1" \
  "$HPRUNE" prune "$MODEL" --method l1 --ggn --target-flops 0.5 $S
expect 2 "--probes with l1" "" "--probes applies to hap and obd, not l1" \
  "$HPRUNE" prune "$MODEL" --method l1 --probes 8 --target-flops 0.5 $S
expect 2 "--no-compensate with l1" "" "--no-compensate applies to obs and obs-layer, not l1" \
  "$HPRUNE" prune "$MODEL" --method l1 --no-compensate --target-flops 0.5 $S
expect 2 "--fisher-grads with l1" "" "--fisher-grads applies to obs, not l1" \
  "$HPRUNE" prune "$MODEL" --method l1 --fisher-grads 16 --target-flops 0.5 $S
expect 2 "--memory-budget with obs-layer" "" "--memory-budget applies to obs, not obs-layer" \
  "$HPRUNE" prune "$MODEL" --method obs-layer --memory-budget 100 --target-flops 0.5 $S
expect 2 "--layer-damp with obs" "" "--layer-damp applies to obs-layer, not obs" \
  "$HPRUNE" prune "$MODEL" --method obs --layer-damp 0.1 --target-flops 0.5 $S
expect 2 "two options l1 does not use: the first given is named" "" "--layer-damp applies to obs-layer, not l1" \
  "$HPRUNE" prune "$MODEL" --layer-damp 0.1 --block-size 50 --method l1 --target-flops 0.5 $S
expect 2 "--lr without fine-tuning" "" "--lr applies to fine-tuning \(--finetune-epochs E, or --between-epochs E with --steps\)" \
  "$HPRUNE" prune "$MODEL" --method l1 --lr 0.1 --target-flops 0.5 $S
expect 2 "--config without fine-tuning (named when it comes before --lr)" "" "--config applies to fine-tuning" \
  "$HPRUNE" prune "$MODEL" --method l1 --config "$T/none.ini" --lr 0.1 --target-flops 0.5 $S
expect 2 "--between-epochs without --steps" "" "--between-epochs applies between the steps of --steps K.*one step by default" \
  "$HPRUNE" prune "$MODEL" --method l1 --between-epochs 1 --target-flops 0.5 $S
expect 2 "--between-epochs with --steps 1" "" "--between-epochs applies between the steps.*--steps 1 has none" \
  "$HPRUNE" prune "$MODEL" --method l1 --steps 1 --between-epochs 1 --target-flops 0.5 $S
expect 2 "an unknown --slices" "some" "unknown" "$HPRUNE" prune "$MODEL" --method l1 --slices some --target-flops 0.5 $S
expect 2 "no target" "" "target is required" "$HPRUNE" prune "$MODEL" --method l1 $S
expect 2 "two targets" "" "one target" "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 --target-params 0.5 $S
expect 2 "--method given twice (not the last one winning)" "--method given twice" "^hprune prune: --method given twice$" \
  "$HPRUNE" prune "$MODEL" --method l1 --method l2 --target-flops 0.5 $S
expect 2 "-o given twice" "-o/--output given twice" "^hprune prune: -o/--output given twice$" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 $S -o "$T/work/b.safetensors"
expect 2 "--target-flops given twice" "--target-flops/--target-macs given twice" "given twice$" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 --target-flops 0.3 $S
expect 2 "--target-flops and its alias --target-macs: one option given twice" "--target-flops/--target-macs given twice" \
  "given twice$" "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 --target-macs 0.3 $S
expect 2 "--rank per-cost with a channel target (every channel costs one)" "" \
  "--rank per-cost applies to --target-flops and --target-params" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-channels 0.5 --rank per-cost $S
expect 2 "no output" "" "-o" "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 --data "$DATA"
expect 2 "a report that is neither .md nor .json" "x.txt" "\.md or \.json" "$HPRUNE" prune "$MODEL" --method l1 \
  --target-flops 0.5 $S --report x.txt
expect 2 "-o naming a report (it cannot also be --report's file: a report ends in .md or .json)" "" \
  "-o same.json: the model is written as safetensors, and a name ending in .json is a report's" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 --data "$DATA" --threads 1 -o same.json --report same.json
expect 2 "--output naming a plot" "" "--output slim.png: the model is written as safetensors" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 --data "$DATA" --threads 1 --output slim.png
expect 1 "bn on a model without batchnorm: refused before any work, in one line" "$MODEL" \
  "criterion bn: channel group 'conv1' has no batchnorm" "$HPRUNE" prune "$MODEL" --method bn --target-flops 0.5 $S
cp "$MODEL" "$T/work/in.safetensors"
expect 2 "-o naming the input model" "in.safetensors" "-o would overwrite the model" \
  "$HPRUNE" prune in.safetensors --method l1 --target-flops 0.5 --data "$DATA" --threads 1 -o ./in.safetensors
expect 2 "--report naming the --config file" "ft.json" "--report would overwrite the config" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 $S --finetune-epochs 1 --config ft.json --report ft.json
check "the input model is left as it was" cmp -s "$MODEL" "$T/work/in.safetensors"
rm -f "$T/work/in.safetensors"
expect 1 "a report under /sys: refused before any work" "/sys/r.md" "" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 $S --report /sys/r.md
# a write that fails part-way (a file size limit the report fits in and the model does not): the
# report, written first, and every temporary are removed
run sh -c 'trap "" XFSZ; ulimit -f 40; exec "$@"' sh "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 $S \
  --report "$T/work/slim.json"
check "a write that fails part-way leaves neither the model nor the report, nor a temporary" \
  eval 'rc_is 1 && tail -1 "$CAP/err" | grep -q "^hprune: error: .*slim.safetensors: .*too large" &&
        [ -z "$(ls -A "$T/work")" ]'
long=$(printf 'r%.0s' $(seq 250)).md
prune l1 long --target-flops 0.5 --report "$T/work/$long"
check "a report named with 253 characters is written (with the model)" eval 'rc_is 0 && [ -s "$T/work/$long" ]'
rm -f "$T/work/$long"
expect 1 "a target the per-layer cap makes impossible: the cap binds, and what could be removed without it" "" \
  "out of reach: at most [0-9.]+% can be removed; the per-layer cap of 0.5 \(--max-layer-frac.*binds: without it [0-9.]+% could be removed$" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.9 --max-layer-frac 0.5 $S
expect 1 "a target the rounding makes impossible: the rounding binds" "" \
  "out of reach.*the rounding of kept widths to multiples of 64 binds: without it [0-9.]+% could be removed$" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-params 0.9 --round-to 64 $S
expect 1 "a target beyond every layer's last channel: neither the cap nor the rounding binds" "" \
  "out of reach.*the layers that cannot be pruned and the channel every layer keeps bind" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.99 $S
expect 1 "--uniform above the per-layer cap is out of reach (conv2 is not left 1 channel of 16)" "" \
  "removing 95.0% of every layer's channels \(uniform\) is out of reach: the per-layer cap of 0.9" \
  "$HPRUNE" prune "$MODEL" --method l1 --target-channels 0.95 --uniform $S
expect 1 "a model without prunable channels" "nolinear.safetensors" "no prunable channels" \
  "$HPRUNE" prune "$T/nolinear.safetensors" --method l1 --target-flops 0.5 $S
run "$HPRUNE" prune "$T/huge.safetensors" --method taylor --samples 64 --target-flops 0.5 $S
check "a criterion whose scores are not finite says so, naming it and a channel (not 'out of reach'); nothing written" \
  eval 'rc_is 1 && [ ! -e "$T/work/slim.safetensors" ] && tail -1 "$CAP/err" |
        grep -q -E "^hprune: error: .*huge.safetensors: criterion taylor: the scores are not finite \(channel [0-9]+ of fc1: (NaN|[+-]inf)\)"'
expect 1 "a missing model file" "nothere.safetensors" "" "$HPRUNE" prune nothere.safetensors --method l1 --target-flops 0.5 $S
expect 1 "a Fisher that does not fit the memory budget says what would" "" "block size|fit" \
  "$HPRUNE" prune "$MODEL" --method obs --target-flops 0.5 --fisher-grads 100000 --memory-budget 1 $S
expect 2 "a negative damping is refused" "" "damp" "$HPRUNE" prune "$MODEL" --method obs --damp -1 --target-flops 0.5 $S
expect 1 "obs with more Fisher gradients than the 256 training images: one line naming the options, before the model is evaluated" "$MODEL" \
  "--fisher-grads 300 x --fisher-batch 1 needs 300 training images, the training set has 256$" \
  "$HPRUNE" prune "$MODEL" --method obs --target-flops 0.5 --fisher-grads 300 $S
expect 1 "obs with Fisher gradients of 2 images beyond the 256 training images: names --fisher-batch too" "$MODEL" \
  "--fisher-grads 200 x --fisher-batch 2 needs 400 training images, the training set has 256$" \
  "$HPRUNE" prune "$MODEL" --method obs --target-flops 0.5 --fisher-grads 200 --fisher-batch 2 $S

# ---- sensitivity: its directory only when there is something to write ----
SENS="--ratios 0.5 --samples 32 --probes 2 --test-images 50 --data $DATA --threads 1"
head -c 1000 "$MODEL" >"$T/trunc.safetensors"
expect 1 "sensitivity of a model that fails to load creates no directory" "trunc.safetensors" "" \
  "$HPRUNE" sensitivity "$T/trunc.safetensors" $SENS -o "$T/work/x"
expect 1 "sensitivity of a model without prunable channels creates no directory" "nolinear.safetensors" \
  "no prunable" "$HPRUNE" sensitivity "$T/nolinear.safetensors" $SENS -o "$T/work/x"
expect 1 "sensitivity --method obs, its 1000 Fisher gradients beyond the 256 training images: before any work" "$MODEL" \
  "--method obs needs 1000 training images for its Fisher \(1000 gradients of 1 image, prune's defaults\), the training set has 256$" \
  "$HPRUNE" sensitivity "$MODEL" $SENS --method obs -o "$T/work/x"
expect 1 "sensitivity into a directory whose parent is missing: refused first" "nodir" "No such file" \
  "$HPRUNE" sensitivity "$MODEL" $SENS -o "$T/work/nodir/x"
expect 1 "sensitivity into a file: refused first" "l1.json" "not a directory" \
  "$HPRUNE" sensitivity "$MODEL" $SENS -o "$T/out/l1.json"
run "$HPRUNE" sensitivity "$MODEL" $SENS -o "$T/work/new/"
check "sensitivity creates its missing directory at the end, with the CSV and the charts" \
  eval 'rc_is 0 && [ "$(ls "$T/work/new" | tr "\n" " ")" = "sensitivity.csv sensitivity.png sensitivity.svg " ]'
rm -rf "$T/work/new"
# a file size limit (2 kB) the CSV (300 bytes) fits in and the PNG chart (6 kB) does not: none
# of the three is left
run sh -c 'trap "" XFSZ; ulimit -f 4; exec "$@"' sh "$HPRUNE" sensitivity "$MODEL" $SENS -o "$T/work"
check "sensitivity: a write that fails part-way leaves none of its files, nor a temporary" \
  eval 'rc_is 1 && tail -1 "$CAP/err" | grep -q "^hprune: error: .*/work/sensitivity.png: " && [ -z "$(ls -A "$T/work")" ]'
run sh -c 'trap "" XFSZ; ulimit -f 4; exec "$@"' sh "$HPRUNE" sensitivity "$MODEL" $SENS -o "$T/work/made"
check "sensitivity: ... and removes the directory it made for them" \
  eval 'rc_is 1 && tail -1 "$CAP/err" | grep -q "^hprune: error: .*/work/made/sensitivity.png: " && [ -z "$(ls -A "$T/work")" ]'
# a summary that cannot reach standard output: the model and the report are not written either
run sh -c 'exec "$@" >/dev/full' sh "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 $S --report "$T/work/slim.json"
check "a full standard output: exit 1, neither the model nor the report written" \
  eval 'rc_is 1 && tail -1 "$CAP/err" | grep -q "^hprune: error: standard output: cannot write" && [ -z "$(ls -A "$T/work")" ]'
# a reader of standard output that goes away (SIGPIPE) while the files are staged: none is left
sh -c '"$@" 2>/dev/null | true' sh "$HPRUNE" prune "$MODEL" --method l1 --target-flops 0.5 $S --report "$T/work/slim.json"
check "a closed pipe on standard output: neither the model, the report nor a temporary is left" eval '[ -z "$(ls -A "$T/work")" ]'
run sh -c 'exec "$@" >/dev/full' sh "$HPRUNE" sensitivity "$MODEL" $SENS -o "$T/work"
check "sensitivity with a full standard output: exit 1, none of its files" \
  eval 'rc_is 1 && tail -1 "$CAP/err" | grep -q "^hprune: error: standard output: cannot write" && [ -z "$(ls -A "$T/work")" ]'

echo "# $n checks, $failed failed"
[ "$failed" -eq 0 ]
