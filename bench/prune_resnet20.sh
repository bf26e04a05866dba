#!/bin/sh
# prune_resnet20.sh: the pruning measurements of the README on the trained ResNet-20
# (runs/resnet20_fmnist.safetensors, Fashion-MNIST): each criterion one-shot (no fine-tuning) at
# 30%, 50% and 70% MACs removed, then the 50% models fine-tuned. One JSON report per run in
# runs/prune_r20/; a run whose report exists is skipped, so the script can be restarted.
#
#   sh bench/prune_resnet20.sh oneshot            about 20-30 minutes on 2 cores
#   sh bench/prune_resnet20.sh finetune E M...    E epochs at 50% for methods M (about 2 min an epoch)
#   sh bench/prune_resnet20.sh steps K M...       50% in K steps for methods M, re-scoring after each
#                                                 step (statistics re-estimated, no training)
#   sh bench/prune_resnet20.sh table              prints the Markdown tables of what exists
#
# EXTRA adds options to every run and TAG to its name: TAG=-consumers EXTRA="--slices consumers"
# METHODS="taylor fisher" ... oneshot writes fisher-consumers-0.5.json and so on, and
# METHODS="fisher fisher-consumers" ... table shows both rows.
# TARGETS="0.5" ... oneshot runs only -50%.
# (--slices consumers is for l1, l2, taylor, hap, obd and fisher: set METHODS to those.)
set -e
MODEL=${MODEL:-runs/resnet20_fmnist.safetensors}
OUT=${OUT:-runs/prune_r20}
HPRUNE=${HPRUNE:-./hprune}
METHODS=${METHODS:-"l1 taylor hap fisher obs obs-layer"}
TARGETS=${TARGETS:-"0.5 0.3 0.7"}
TAG=${TAG:-}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
export OMP_WAIT_POLICY=passive

# one NAME ARGS...: runs hprune prune into $OUT/NAME.json unless it exists
one() {
  name=$1; shift
  [ -f "$OUT/$name.json" ] && return 0
  echo "== $name" >&2
  "$HPRUNE" prune "$MODEL" "$@" -o "$OUT/$name.safetensors" --report "$OUT/$name.json" 2>>"$OUT/$name.log" >>"$OUT/$name.log"
  tail -5 "$OUT/$name.log" >&2
}

case "$1" in
oneshot)
  for t in $TARGETS; do
    for m in $METHODS; do one "$m$TAG-$t" --method "$m" --target-flops "$t" $EXTRA; done
  done ;;
steps)
  k=$2; shift 2
  for m in "$@"; do one "$m$TAG-0.5-s$k" --method "$m" --target-flops 0.5 --steps "$k" $EXTRA; done ;;
finetune)
  e=$2; shift 2
  for m in "$@"; do
    one "$m$TAG-0.5-ft$e" --method "$m" --target-flops 0.5 --finetune-epochs "$e" --config configs/finetune_resnet20.ini $EXTRA
  done ;;
table)
  python3 - "$OUT" $METHODS <<'PY'
import json, os, sys
out, methods = sys.argv[1], sys.argv[2:]
def get(name):
    p = os.path.join(out, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
r = get("l1-0.5")
if r:
    print(f"unpruned: {100 * r['accuracy_original']:.2f}%, {r['macs_before'] / 1e6:.2f}M MACs, {r['params_before']} params\n")
print("one-shot accuracy / with batchnorm statistics re-estimated on 1024 training images\n")
print("| method | -30% MACs | -50% MACs | -70% MACs | -50% in 5 steps | -50%, fine-tuned |")
print("|---|---:|---:|---:|---:|---:|")
for m in methods:
    cells = []
    for name in (f"{m}-0.3", f"{m}-0.5", f"{m}-0.7", f"{m}-0.5-s5"):
        r = get(name)
        recal = f" / {100 * r['accuracy_recalibrated']:.2f}%" if r and "accuracy_recalibrated" in r else ""
        cells.append(f"{100 * r['accuracy_pruned']:.2f}%{recal}" if r else "")
    ft = [f for f in sorted(os.listdir(out)) if f.startswith(f"{m}-0.5-ft") and f.endswith(".json")]
    if ft:
        r = json.load(open(os.path.join(out, ft[-1])))
        cells.append(f"{100 * r['accuracy_finetuned']:.2f}% ({r['finetune_epochs']} epochs)")
    else:
        cells.append("")
    print(f"| {m} | " + " | ".join(cells) + " |")
print("\n| method | -50%: params | MACs | speed-up (batch 64) | scoring s |")
print("|---|---:|---:|---:|---:|")
for m in methods:
    r = get(f"{m}-0.5")
    if r:
        print(f"| {m} | {r['params_after']} | {r['macs_after'] / 1e6:.2f}M | {r['speedup']:.2f}x | {r['score_seconds']:.0f} |")
PY
  ;;
*) echo "usage: sh bench/prune_resnet20.sh oneshot | steps K METHOD... | finetune E METHOD... | table" >&2; exit 2 ;;
esac
