#!/bin/sh
# run_bench.sh: hprune against PyTorch on the same networks, interleaved in rounds per
# architecture (hprune, then PyTorch, ROUNDS times, then the next architecture) so that machine
# noise hits both; each figure is the median over the rounds of each round's median, each ratio
# the ratio of two such medians. Prints one
# table of training/inference throughput and one of curvature products (gradient, Hv, Gv on one
# batch). Called by `make bench` as `BUILD=build sh bench/run_bench.sh`.
#
# Settings (environment): THREADS (default: nproc), BATCH (128), ROUNDS (3), REPS (5), WARMUP (2),
# MIN_BLOCK (0.3 s), ARCHS ("lenet5 resnet20"), BUILD (build), HPRUNE (./hprune, used by
# torch_ref.py to check parameter counts), TORCH_PY (/usr/bin/python3), CURV (yes: time the
# curvature products too; no), CURV_BN (both: hprune's curvature in eval and batch-statistics
# BN; eval). PyTorch needs Debian's python3-torch; without it only hprune's figures are printed.
set -u

BUILD=${BUILD:-build}
BENCH=$BUILD/bench/bench
THREADS=${THREADS:-$(nproc 2>/dev/null || echo 1)}
BATCH=${BATCH:-128}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-5}
WARMUP=${WARMUP:-2}
MIN_BLOCK=${MIN_BLOCK:-0.3}
ARCHS=${ARCHS:-"lenet5 resnet20"}
CURV=${CURV:-yes}
CURV_BN=${CURV_BN:-both}
HPRUNE=${HPRUNE:-./hprune}
TORCH_PY=${TORCH_PY:-/usr/bin/python3}
HERE=$(dirname "$0")

if [ ! -x "$BENCH" ]; then
  echo "run_bench: $BENCH not built (run: make $BENCH)" >&2
  exit 1
fi

have_torch=no
if [ -x "$TORCH_PY" ] && "$TORCH_PY" -c 'import torch' 2>/dev/null; then have_torch=yes; fi
check_args=""
[ -x "$HPRUNE" ] && check_args="--hprune $HPRUNE"

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
: >"$tmp/hprune.jsonl"
: >"$tmp/torch.jsonl"

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
common="--batch $BATCH --threads $THREADS --reps $REPS --warmup $WARMUP --min-block $MIN_BLOCK"
if [ "$CURV" = yes ]; then
  hp_curv="--curv-bn $CURV_BN"
else
  common="$common --only train --only infer"
  hp_curv=""
fi
for arch in $ARCHS; do
  round=1
  while [ "$round" -le "$ROUNDS" ]; do
    echo "run_bench: $arch: round $round/$ROUNDS: hprune..." >&2
    # shellcheck disable=SC2086  # $common is a list of options
    if ! "$BENCH" --arch "$arch" $common $hp_curv --json >>"$tmp/hprune.jsonl"; then
      echo "run_bench: hprune bench failed on $arch" >&2
      exit 1
    fi
    if [ "$have_torch" = yes ]; then
      echo "run_bench: $arch: round $round/$ROUNDS: PyTorch..." >&2
      # shellcheck disable=SC2086
      "$TORCH_PY" "$HERE/torch_ref.py" --arch "$arch" $common $check_args >>"$tmp/torch.jsonl" ||
        echo "run_bench: torch_ref.py failed on $arch, round $round (its columns use the other rounds, or show -)" >&2
    fi
    round=$((round + 1))
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

# values FILE ARCH KEY: the numbers stored under KEY in ARCH's JSON lines of FILE (one per round).
values() {
  grep -E "\"arch\": *\"$2\"" "$1" | grep -F "\"$3\"" | sed -n "s/.*\"$3\": *\([-+0-9.eE]*\).*/\1/p" | grep -v '^$'
}

# field FILE ARCH KEY: the median of KEY over ARCH's rounds in FILE, or its minimum (KEY ending
# in _min) or maximum (_max) for the spreads; empty if none.
field() {
  case $3 in
    *_min) values "$1" "$2" "$3" | sort -g | head -n 1 ;;
    *_max) values "$1" "$2" "$3" | sort -g | tail -n 1 ;;
    *) values "$1" "$2" "$3" | sort -g |
      awk '{ v[NR] = $1 } END { if (NR) printf "%.10g\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }' ;;
  esac
}

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo
printf '%-10s %13s %13s %7s %13s %13s %7s %10s\n' arch "hprune train" "torch train" ratio \
  "hprune infer" "torch infer" ratio "hprune GF/s"
printf '%-10s %13s %13s %7s %13s %13s %7s %10s\n' "" "img/s" "img/s" "" "img/s" "img/s" "" "train/inf"
for arch in $ARCHS; do
  ht=$(field "$tmp/hprune.jsonl" "$arch" train_img_s)
  hi=$(field "$tmp/hprune.jsonl" "$arch" infer_img_s)
  hgt=$(field "$tmp/hprune.jsonl" "$arch" train_gflops)
  hgi=$(field "$tmp/hprune.jsonl" "$arch" infer_gflops)
  pt=$(field "$tmp/torch.jsonl" "$arch" train_img_s)
  pi=$(field "$tmp/torch.jsonl" "$arch" infer_img_s)
  awk -v a="$arch" -v ht="$ht" -v hi="$hi" -v pt="$pt" -v pi="$pi" -v gt="$hgt" -v gi="$hgi" '
    function num(v) { return v == "" ? "-" : sprintf("%.1f", v) }
    function ratio(h, p) { return (h == "" || p == "" || p + 0 == 0) ? "-" : sprintf("%.2fx", h / p) }
    BEGIN {
      printf "%-10s %13s %13s %7s %13s %13s %7s %10s\n", a, num(ht), num(pt), ratio(ht, pt),
             num(hi), num(pi), ratio(hi, pi), sprintf("%.1f/%.1f", gt, gi)
    }'
done
echo
# The spread over the timed blocks (min..max img/s): a wide one means a noisy machine.
for arch in $ARCHS; do
  line="spread $arch:"
  for f in "hprune:$tmp/hprune.jsonl" "torch:$tmp/torch.jsonl"; do
    name=${f%%:*} file=${f#*:}
    for what in train infer; do
      lo=$(field "$file" "$arch" "${what}_img_s_min") hi=$(field "$file" "$arch" "${what}_img_s_max")
      [ -n "$lo" ] && line="$line $name $what $(printf '%.0f..%.0f' "$lo" "$hi"),"
    done
  done
  echo "${line%,}"
done

if [ "$CURV" = yes ]; then
  echo
  echo "curvature products (batch $BATCH, eval-mode BN), ms per product on one batch"
  printf '%-10s %8s %8s %7s %8s %7s %8s %8s %8s %8s\n' arch "hprune" "hprune" "" "hprune" "" "torch" \
    "torch" "" "HVP"
  printf '%-10s %8s %8s %7s %8s %7s %8s %8s %8s %8s\n' "" "grad" "Hv" "Hv/grad" "Gv" "Gv/grad" "grad" \
    "HVP" "HVP/grad" "speed-up"
  for arch in $ARCHS; do
    hg=$(field "$tmp/hprune.jsonl" "$arch" grad_ms)
    hh=$(field "$tmp/hprune.jsonl" "$arch" hv_fwd_ms)
    hgv=$(field "$tmp/hprune.jsonl" "$arch" gv_fwd_ms)
    pg=$(field "$tmp/torch.jsonl" "$arch" grad_ms)
    ph=$(field "$tmp/torch.jsonl" "$arch" hvp_ms)
    awk -v a="$arch" -v hg="$hg" -v hh="$hh" -v hgv="$hgv" -v pg="$pg" -v ph="$ph" '
      function num(v) { return v == "" ? "-" : sprintf("%.1f", v) }
      function ratio(x, y) { return (x == "" || y == "" || y + 0 == 0) ? "-" : sprintf("%.2fx", x / y) }
      BEGIN {
        printf "%-10s %8s %8s %7s %8s %7s %8s %8s %8s %8s\n", a, num(hg), num(hh), ratio(hh, hg),
               num(hgv), ratio(hgv, hg), num(pg), num(ph), ratio(ph, pg), ratio(ph, hh)
      }'
  done
  echo "Hv, Gv, HVP include the forward pass (a gradient does too); speed-up = PyTorch HVP / hprune Hv"
  echo "goals: hprune Hv <= 3x its gradient, Gv <= 2x"
  # The same products with the batch's forward pass reused, and the other BN mode.
  for arch in $ARCHS; do
    hh=$(field "$tmp/hprune.jsonl" "$arch" hv_ms)
    hgv=$(field "$tmp/hprune.jsonl" "$arch" gv_ms)
    ph=$(field "$tmp/torch.jsonl" "$arch" hvp_cached_ms)
    pgv=$(field "$tmp/torch.jsonl" "$arch" gv_ms)
    pg=$(field "$tmp/torch.jsonl" "$arch" grad_ms)
    awk -v a="$arch" -v hh="$hh" -v hgv="$hgv" -v ph="$ph" -v pgv="$pgv" -v pg="$pg" '
      function num(v) { return v == "" ? "-" : sprintf("%.1f", v) }
      function ratio(x, y) { return (x == "" || y == "" || y + 0 == 0) ? "-" : sprintf("%.2fx", x / y) }
      BEGIN {
        printf "%s forward reused: hprune Hv %s ms, Gv %s ms; PyTorch HVP on a kept graph %s ms" \
               " (speed-up %s); PyTorch Gv (forward-mode J v, incl. forward) %s ms (%s its grad)\n",
               a, num(hh), num(hgv), num(ph), ratio(ph, hh), num(pgv), ratio(pgv, pg)
      }'
    bg=$(field "$tmp/hprune.jsonl" "$arch" bs_grad_ms)
    [ -n "$bg" ] || continue
    bh=$(field "$tmp/hprune.jsonl" "$arch" bs_hv_fwd_ms)
    bgv=$(field "$tmp/hprune.jsonl" "$arch" bs_gv_fwd_ms)
    awk -v a="$arch" -v bg="$bg" -v bh="$bh" -v bgv="$bgv" '
      BEGIN {
        printf "%s batch-statistics BN (hprune): grad %.1f ms, Hv %.1f ms (%.2fx), Gv %.1f ms (%.2fx)\n",
               a, bg, bh, bh / bg, bgv, bgv / bg
      }'
  done
  for arch in $ARCHS; do
    line="spread $arch (ms):"
    for k in hprune:grad_ms hprune:hv_fwd_ms hprune:gv_fwd_ms torch:grad_ms torch:hvp_ms torch:gv_ms; do
      name=${k%%:*} key=${k#*:}
      lo=$(field "$tmp/$name.jsonl" "$arch" "${key}_min") hi=$(field "$tmp/$name.jsonl" "$arch" "${key}_max")
      [ -n "$lo" ] && line="$line $name ${key%_ms} $(printf '%.1f..%.1f' "$lo" "$hi"),"
    done
    echo "${line%,}"
  done
fi
echo
if [ "$have_torch" = yes ]; then
  tv=$("$TORCH_PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)
  echo "ratio = hprune / PyTorch $tv (higher is faster for hprune)"
else
  echo "PyTorch not available ($TORCH_PY -c 'import torch' failed): hprune figures only"
fi
echo "threads $THREADS, batch $BATCH, medians over $ROUNDS interleaved rounds of the medians of $REPS blocks of >= $MIN_BLOCK s; 1x28x28 inputs, 10 classes"
echo "train step = forward + cross-entropy + backward + SGD (momentum 0.9, wd 5e-4); infer = eval-mode forward (hprune folds batchnorm, residual adds and ReLU into the convolutions; PyTorch runs model.eval() as is)"
echo "GFLOP/s: 2 x MACs per image for inference, training counted as 3 x forward FLOPs"
echo "CPU: ${cpu:-unknown}; $(date -u '+%Y-%m-%d %H:%M UTC'); load average before $load_before, after $load_after"
# Lanczos against power iteration on a trained model, when one has been trained (configs/).
EIG_MODEL=${EIG_MODEL:-runs/resnet20_fmnist.safetensors}
if [ -f "$EIG_MODEL" ] && [ -x "$BUILD/bench/eigs_compare" ]; then
  echo
  echo "top eigenvalues of the loss Hessian to 1e-3 relative (128 training images, eval-mode BN):"
  "$BUILD/bench/eigs_compare" "$EIG_MODEL" --threads "$THREADS"
else
  echo
  echo "(no trained model at $EIG_MODEL: train one with configs/resnet20_fmnist.ini to compare Lanczos with power iteration)"
fi
# Optimal Brain Surgeon's two inverses on the same model: the WoodFisher block inverse (N 1000
# per-sample gradients, in blocks of 2000 with damping 1e-5 as hessian --obs builds it, and in
# blocks of 100 with damping 1e-2 as prune --method obs does) and the layer-wise Hessians of
# every conv and linear layer from 1024 images, each timed with its peak memory (run separately
# so that each peak is its own).
if [ -f "$EIG_MODEL" ] && [ -x "$BUILD/bench/obs_bench" ]; then
  echo
  echo "OBS inverses on $EIG_MODEL:"
  "$BUILD/bench/obs_bench" "$EIG_MODEL" --only fisher --threads "$THREADS"
  "$BUILD/bench/obs_bench" "$EIG_MODEL" --only fisher --threads "$THREADS" --block-size 100 --damp 1e-2
  "$BUILD/bench/obs_bench" "$EIG_MODEL" --only layer --threads "$THREADS"
fi
# Pruned models against their original, when bench/prune_resnet20.sh has made them.
SLIM=$(ls runs/prune_r20/*-0.5.safetensors 2>/dev/null)
if [ -f "$EIG_MODEL" ] && [ -n "$SLIM" ] && [ -x "$BUILD/bench/latency_compare" ]; then
  echo
  "$BUILD/bench/latency_compare" "$EIG_MODEL" $SLIM --threads "$THREADS"
fi
