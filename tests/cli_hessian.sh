#!/bin/sh
# cli_hessian.sh: `hprune hessian` as a user meets it, on a tiny LeNet-5 trained for one epoch on
# a synthetic Fashion-MNIST-format dataset. The default analysis; the JSON keys; per-layer and
# per-channel traces that add up (the same --seed gives the same probes at every level); the
# Gauss-Newton operator (PSD: positive traces, no negative eigenvalues beyond rounding);
# determinism; each end's Lanczos steps and convergence; each analysis option running alone;
# the density, landscape and CSV files; --bn train; OBS scores from the inverse empirical
# Fisher (--obs: per channel and per weight, JSON, CSV, the channel score bounding its
# weights' scores, determinism); and bad input (options of an analysis that does not run, two
# outputs naming one file, analyses too big for memory), which must fail cleanly: the right
# exit status (1 runtime, 2 usage), nothing on stdout, one message line ("hprune: error: ..." or
# "hprune hessian: ..." and the "Try" line), no file left behind, and no product computed first
# (no progress line); a failure while writing (or a full stdout) leaves none of the outputs.
#
#   HPRUNE=./hprune sh tests/cli_hessian.sh      (from the repository root)
#   VERBOSE=1 HPRUNE=./hprune sh tests/cli_hessian.sh   also shows every error message
#
# Prints "ok N - what" / "not ok N - what" (with "#" diagnostic lines after a failure) and
# exits non-zero if anything failed. Fixtures live in a mktemp -d directory removed at the end.
# Small on purpose (32 samples, one thread, few probes and steps): a few seconds on one core.

. "$(dirname "$0")/tap_lib.sh"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
tap_begin cli-hessian
CAP=$T/cap  # captured output of the command under test (not part of the fixtures)
mkdir -p "$CAP" "$T/data" "$T/out" "$T/json"

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
# hess NAME ARGS...: runs hprune hessian MODEL on the fixture data, small; JSON in $T/json/NAME.
hess() {
  name=$1; shift
  run "$HPRUNE" hessian "$MODEL" --data "$DATA" --samples 32 --batch-size 16 --threads 1 "$@"
  cp "$CAP/out" "$T/json/$name"
}

# ---- fixtures: a tiny dataset whose test set is the first 32 training images, a tiny model ----


cat >"$T/check.py" <<'EOF'
# check.py MODE ARGS...: the checks on hprune hessian's outputs; exits 1 with the reason.
import json, math, sys
mode, args = sys.argv[1], sys.argv[2:]
def load(path):
    try:
        return json.load(open(path))
    except ValueError as e:
        sys.exit(f"{path}: not JSON ({e}): {open(path).read()[:200]!r}")
def need(cond, msg):
    if not cond:
        sys.exit(msg)
def close(a, b, rel, what):
    need(abs(a - b) <= rel * max(abs(a), abs(b), 1e-300), f"{what}: {a!r} vs {b!r} (relative tolerance {rel})")
def number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
def rows(path):
    lines = open(path).read().splitlines()
    need(lines, f"{path} is empty")
    return lines[0], [l.split(",") for l in lines[1:]]

if mode == "budget":  # a trace stopped by its probe budget says so
    t = json.load(open(args[0]))["trace"]
    need(t["probes"] == 2 and t["converged"] is False, f"trace: {t}")
    sys.exit(0)
if mode == "keys":  # the default analysis' JSON: every documented key, sensible values
    d = load(args[0])
    for k in ("model", "arch", "params", "samples", "batch_size", "bn", "operator", "seed", "trace",
              "eigenvalues", "products", "seconds"):
        need(k in d, f"no key {k!r}: keys are {sorted(d)}")
    need(d["arch"] == "lenet5" and d["params"] == 61706, f"arch {d['arch']!r}, params {d['params']!r}")
    need(d["samples"] == 32 and d["batch_size"] == 16, f"samples {d['samples']}, batch_size {d['batch_size']}")
    need(d["bn"] == "eval" and d["operator"] == "hessian" and d["seed"] == 1,
         f"bn {d['bn']!r}, operator {d['operator']!r}, seed {d['seed']!r}")
    t = d["trace"]
    for k in ("estimate", "stderr", "probes", "exact", "converged", "per_param", "per"):
        need(k in t, f"no key trace.{k}: keys are {sorted(t)}")
    need(t["exact"] is False and t["converged"] is (t["stderr"] <= 0.01 * abs(t["estimate"])),
         f"trace.exact {t['exact']!r}, trace.converged {t['converged']!r} for stderr {t['stderr']} at --tol 0.01")
    need(all(number(t[k]) for k in ("estimate", "stderr", "per_param")), f"trace numbers: {t}")
    need(t["per"] == "model" and "groups" not in t, f"trace.per {t['per']!r}, groups present: {'groups' in t}")
    need(isinstance(t["probes"], int) and t["probes"] >= 2 and t["stderr"] >= 0, f"trace: {t}")
    close(t["per_param"], t["estimate"] / 61706, 1e-12, "trace.per_param vs estimate / params")
    e = d["eigenvalues"]
    for k in ("largest", "largest_residuals", "most_negative", "most_negative_residuals", "steps", "largest_steps",
              "largest_converged", "most_negative_steps", "most_negative_converged"):
        need(k in e, f"no key eigenvalues.{k}: keys are {sorted(e)}")
    need(e["steps"] == e["largest_steps"] + e["most_negative_steps"] and e["largest_steps"] >= 1
         and e["most_negative_steps"] >= 1, f"steps {e['steps']}: not largest_steps + most_negative_steps: {e}")
    need(e["largest_converged"] is True and e["most_negative_converged"] is True, f"not converged at 1e-3: {e}")
    need(len(e["largest"]) == 1 and len(e["most_negative"]) == 1, f"eigenvalues: {e}")
    need(all(number(x) for x in e["largest"] + e["most_negative"]), f"eigenvalues: {e}")
    need(e["most_negative"][0] <= e["largest"][0], f"most negative above largest: {e}")
    need(d["products"] == t["probes"] + e["steps"], f"products {d['products']} != probes {t['probes']} + steps {e['steps']}")
    need(number(d["seconds"]) and d["seconds"] >= 0, f"seconds {d['seconds']!r}")
elif mode == "groups":  # LAYER.json CHANNEL.json MODEL.json from the same seed
    L, C, M = (load(p)["trace"] for p in args)
    need(L["per"] == "layer" and C["per"] == "channel" and M["per"] == "model", "trace.per values")
    lg, cg = L.get("groups"), C.get("groups")
    need(isinstance(lg, list) and isinstance(cg, list), "no trace.groups list")
    layers = [g["name"] for g in lg]
    need(layers == ["conv1", "conv2", "fc1", "fc2", "fc3"], f"layer groups: {layers}")
    need(len(cg) == 6 + 16 + 120 + 84 + 10, f"{len(cg)} channel groups, expected 236")
    need(all(g["layer"] == g["name"] and g["channel"] == -1 for g in lg), "a layer group's layer/channel")
    need(cg[0]["name"] == "conv1[0]" and cg[0]["channel"] == 0 and cg[-1]["name"] == "fc3[9]", "channel names")
    need(sum(g["params"] for g in lg) == 61706 and sum(g["params"] for g in cg) == 61706, "group params do not add up")
    scale = sum(abs(g["trace"]) for g in cg)
    for name, t in (("layer", L), ("channel", C)):
        s = sum(g["trace"] for g in t["groups"])
        need(abs(s - t["estimate"]) <= 1e-9 * scale, f"{name} groups sum to {s!r}, trace.estimate {t['estimate']!r}")
    need(abs(L["estimate"] - M["estimate"]) <= 1e-9 * scale and abs(C["estimate"] - M["estimate"]) <= 1e-9 * scale,
         f"estimates differ: model {M['estimate']!r}, layer {L['estimate']!r}, channel {C['estimate']!r}")
    need(L["probes"] == C["probes"] == M["probes"], "probe counts differ")
    for g in lg:
        ch = [c for c in cg if c["layer"] == g["name"]]
        s = sum(c["trace"] for c in ch)
        need(sum(c["params"] for c in ch) == g["params"], f"{g['name']}: channel params do not add up")
        need(abs(s - g["trace"]) <= 1e-9 * max(abs(g["trace"]), sum(abs(c["trace"]) for c in ch), 1e-300),
             f"{g['name']}: channels sum to {s!r}, --per layer says {g['trace']!r}")
elif mode == "positive":  # FILE KEY.SUBKEY: a number > 0
    v = load(args[0])
    for k in args[1].split("."):
        need(isinstance(v, dict) and k in v, f"no key {args[1]}")
        v = v[k]
    need(number(v) and v > 0, f"{args[1]} = {v!r}, not > 0")
elif mode == "eigs":  # FILE K [psd]: K largest in descending order; psd: most negative >= -1e-3 largest
    e = load(args[0]).get("eigenvalues", {})
    top, neg = e.get("largest", []), e.get("most_negative", [])
    need(len(top) == int(args[1]) and len(neg) == 1, f"largest {top}, most_negative {neg}")
    need(all(a >= b for a, b in zip(top, top[1:])), f"largest not in descending order: {top}")
    need(neg[0] <= top[-1], f"most negative {neg[0]} above the largest {top}")
    if len(args) > 2:
        need(top[0] > 0 and neg[0] >= -1e-3 * top[0], f"Gauss-Newton: most negative {neg[0]!r}, largest {top[0]!r}")
elif mode == "only":  # FILE TRACE K K2: what ran: a trace iff TRACE is 1, K largest and K2 most
    # negative eigenvalues, nothing else, and no product beyond theirs
    d = load(args[0])
    want_trace, nt, nn = int(args[1]), int(args[2]), int(args[3])
    need(("trace" in d) == (want_trace == 1), f"trace present: {'trace' in d}, wanted: {want_trace == 1}")
    extra = [k for k in ("hutchpp", "density", "landscape") if k in d]
    need(not extra, f"analyses not asked for: {extra}")
    e = d.get("eigenvalues", {})
    top, neg = e.get("largest", []), e.get("most_negative", [])
    need(len(top) == nt and len(neg) == nn, f"{len(top)} largest and {len(neg)} most negative, wanted {nt} and {nn}")
    probes = d["trace"]["probes"] if want_trace else 0
    need(d["products"] == e.get("steps", 0) + probes,
         f"products {d['products']}, Lanczos steps {e.get('steps')}, trace probes {probes}")
elif mode == "unconverged":  # FILE TEXT STEPS: both ends stopped at STEPS steps, not converged, as
    # the text output TEXT says
    e = load(args[0])["eigenvalues"]
    n = int(args[2])
    for end in ("largest", "most_negative"):
        need(e[end + "_steps"] == n and e[end + "_converged"] is False, f"{end} end: {e}")
    need(e["steps"] == 2 * n, f"steps {e['steps']}, not both ends' {2 * n}")
    text = open(args[1]).read()
    for line in (f"largest eigenvalues ({n} Lanczos steps, not converged):",
                 f"most negative eigenvalues ({n} steps, not converged):"):
        need(line in text, f"no {line!r} in the text: {text!r}"[:300])
elif mode == "eig_csv":  # CSV JSON: end,index,eigenvalue,residual rows holding the JSON's eigenvalues
    head, r = rows(args[0])
    need(head == "end,index,eigenvalue,residual", f"header {head!r}")
    e = load(args[1])["eigenvalues"]
    want = [("largest", i + 1, v, res) for i, (v, res) in enumerate(zip(e["largest"], e["largest_residuals"]))]
    want += [("most_negative", i + 1, v, res)
             for i, (v, res) in enumerate(zip(e["most_negative"], e["most_negative_residuals"]))]
    need(len(r) == len(want), f"{len(r)} rows, the JSON has {len(want)} eigenvalues")
    for x, (end, i, v, res) in zip(r, want):
        need(x[0] == end and int(x[1]) == i, f"row {x} where {end},{i} was due")
        close(float(x[2]), v, 1e-8, f"{end} {i}: CSV eigenvalue vs JSON")
        close(float(x[3]), res, 1e-8, f"{end} {i}: CSV residual vs JSON")
elif mode == "obs_tensors":  # JSON: --obs --per weight: a summary per parameter tensor
    d = load(args[0])
    o = d["obs"]
    need(o["per"] == "weight" and "groups" not in o and "tensors" in o, f"obs keys {sorted(o)}, per {o['per']!r}")
    t = o["tensors"]
    names = [x["name"] for x in t]
    need(names == [f"{l}.{k}" for l in ("conv1", "conv2", "fc1", "fc2", "fc3") for k in ("weight", "bias")],
         f"tensors {names}")
    need(sum(x["params"] for x in t) == 61706, "tensor params do not add up to 61706")
    for x in t:
        need(sorted(x) == ["max", "median", "min", "name", "params"], f"{x['name']}: keys {sorted(x)}")
        need(0 <= x["min"] <= x["median"] <= x["max"], f"{x['name']}: min {x['min']}, median {x['median']}, max {x['max']}")
elif mode == "same":  # A B KEY...: the same JSON but for KEY... (and "seconds")
    a, b = load(args[0]), load(args[1])
    for k in ["seconds"] + args[2:]:
        a.pop(k, None), b.pop(k, None)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    need(not diff, f"differ in {diff}: {[(a.get(k), b.get(k)) for k in diff][:2]}"[:400])
elif mode == "seed":  # JSON SEED: "seed" is the integer SEED, written in full (not as a rounded float)
    text = open(args[0]).read()
    need(f'"seed":{args[1]},' in text, f"no '\"seed\":{args[1]},' in {text[:160]!r}")
    d = json.loads(text)
    need(type(d["seed"]) is int and d["seed"] == int(args[1]), f"seed {d['seed']!r}")
elif mode == "differ":  # A B KEY: KEY differs
    need(load(args[0]).get(args[2]) != load(args[1]).get(args[2]), f"{args[2]} is the same")
elif mode == "exact":  # EXACT.json HUTCH.json: exact traces, no error bars, layers adding up,
    # within 4 standard errors of the Hutchinson estimate (per layer too)
    E, H = load(args[0])["trace"], load(args[1])["trace"]
    need(E.get("exact") is True and H.get("exact") is False, f"trace.exact: {E.get('exact')!r}, {H.get('exact')!r}")
    need(E["stderr"] == 0 and E["probes"] == 0 and E["estimate"] > 0, f"exact trace: {E}")
    s = sum(g["trace"] for g in E["groups"])
    close(s, E["estimate"], 1e-9, "exact layer traces sum vs the trace")
    need(all(g["trace"] > 0 and g["stderr"] == 0 for g in E["groups"]), f"exact layer traces: {E['groups']}")
    need(abs(E["estimate"] - H["estimate"]) <= 4 * H["stderr"],
         f"exact {E['estimate']!r}, Hutchinson {H['estimate']!r} +- {H['stderr']!r}")
    need(len(E["groups"]) == len(H["groups"]) == 5, f"{len(E['groups'])} and {len(H['groups'])} layer groups, not 5")
    for e, h in zip(E["groups"], H["groups"]):
        need(e["name"] == h["name"] and abs(e["trace"] - h["trace"]) <= 4 * h["stderr"] + 1e-12,
             f"{e['name']}: exact {e['trace']!r}, Hutchinson {h['trace']!r} +- {h['stderr']!r}")
elif mode == "png":  # FILE...: each a complete PNG (signature, IHDR first, IEND last)
    for p in args:
        b = open(p, "rb").read()
        need(b[:8] == b"\x89PNG\r\n\x1a\n", f"{p}: no PNG signature: {b[:8]!r}")
        need(b[12:16] == b"IHDR" and b[-8:-4] == b"IEND", f"{p}: not IHDR ... IEND ({len(b)} bytes)")
elif mode == "density":  # CSV JSON: header, grid ascending, density >= 0 integrating to 1 +- 2%
    head, r = rows(args[0])
    need(head == "eigenvalue,density", f"header {head!r}")
    x, y = [float(a) for a, _ in r], [float(b) for _, b in r]
    need(len(x) >= 100, f"{len(x)} grid points")
    need(all(b > a for a, b in zip(x, x[1:])), "eigenvalue column not ascending")
    need(min(y) >= 0, f"a negative density {min(y)}")
    area = sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1))
    need(abs(area - 1) <= 0.02, f"the density integrates to {area}")
    d = load(args[1]).get("density", {})
    need(d.get("probes") == 2 and d.get("steps") == 20, f"density: {d}")
    need(d["lambda_min"] <= d["lambda_max"] and x[0] <= d["lambda_min"] and d["lambda_max"] <= x[-1],
         f"density range [{d['lambda_min']}, {d['lambda_max']}] vs grid [{x[0]}, {x[-1]}]")
elif mode == "landscape":  # JSON L_1d.csv L.csv EVAL_JSON: centre = loss at alpha 0 = eval's loss
    l = load(args[0]).get("landscape", {})
    need(l.get("points") == 5 and l.get("radius") == 0.1, f"landscape: {l}")
    head, r = rows(args[1])
    need(head == "alpha,loss" and len(r) == 5, f"{args[1]}: header {head!r}, {len(r)} rows")
    alpha = [float(a) for a, _ in r]
    need(all(abs(a - b) < 1e-12 for a, b in zip(alpha, [-0.1, -0.05, 0, 0.05, 0.1])), f"alphas {alpha}")
    centre = float(r[2][1])
    close(centre, l["center_loss"], 1e-6, "L_1d.csv at alpha 0 vs JSON center_loss")
    head, r2 = rows(args[2])
    need(head == "alpha,beta,loss" and len(r2) == 25, f"{args[2]}: header {head!r}, {len(r2)} rows")
    mid = [float(c) for a, b, c in r2 if float(a) == 0 and float(b) == 0]
    need(len(mid) == 1, "no (0, 0) row in the 2-D CSV")
    close(mid[0], centre, 1e-6, "2-D centre vs 1-D centre")
    ev = load(args[3])["loss"]  # eval's loss on the same 32 images, printed to 6 decimals
    need(abs(ev - centre) <= 2e-6 + 1e-5 * abs(ev), f"centre loss {centre} vs hprune eval's {ev}")
elif mode == "csv":  # FILE: the per-channel trace table
    head, r = rows(args[0])
    need(head == "group,params,trace,stderr,trace_per_param", f"header {head!r}")
    need(len(r) == 236 and all(len(x) == 5 for x in r), f"{len(r)} rows, expected 236 of 5 fields")
    need(r[0][0] == "conv1[0]" and r[-1][0] == "fc3[9]", f"first/last group {r[0][0]}, {r[-1][0]}")
    need(sum(int(x[1]) for x in r) == 61706, "params do not add up to 61706")
    for x in r:
        close(float(x[4]), float(x[2]) / int(x[1]), 1e-6, f"{x[0]}: trace_per_param")
elif mode == "obs":  # JSON: --obs --per channel with blocks of 200 on lenet5
    d = load(args[0])
    for k in ("model", "arch", "params", "seed", "obs", "seconds"):
        need(k in d, f"no key {k!r}: keys are {sorted(d)}")
    o = d["obs"]
    for k in ("per", "grads", "grad_batch", "block_size", "blocks", "damp", "bytes", "groups"):
        need(k in o, f"no key obs.{k}: keys are {sorted(o)}")
    need(o["per"] == "channel" and o["grads"] == 32 and o["grad_batch"] == 1 and o["block_size"] == 200,
         f"obs: per {o['per']!r}, grads {o['grads']}, grad_batch {o['grad_batch']}, block_size {o['block_size']}")
    # layer-aligned blocks of <= 200: conv1 156 -> 1, conv2 2416 -> 13, fc1 48120 -> 241, fc2 10164 -> 51, fc3 850 -> 5
    need(o["blocks"] == 311, f"{o['blocks']} blocks, expected 311")
    need(o["damp"] == 1e-5 and o["bytes"] > 32 * 61706 * 4, f"damp {o['damp']}, bytes {o['bytes']}")
    g = o["groups"]
    need(len(g) == 236, f"{len(g)} channel groups, expected 236")
    need(g[0]["name"] == "conv1[0]" and g[0]["layer"] == "conv1" and g[-1]["name"] == "fc3[9]", "group names")
    need(sum(x["params"] for x in g) == 61706, "group params do not add up to 61706")
    need(all(number(x["score"]) and x["score"] > 0 and number(x["sq_norm"]) for x in g), "scores not finite and > 0")
elif mode == "obs_csv":  # CSV JSON: the per-channel CSV holds the JSON's scores
    head, r = rows(args[0])
    need(head == "group,params,obs_score,sq_norm", f"header {head!r}")
    g = load(args[1])["obs"]["groups"]
    need(len(r) == len(g), f"{len(r)} rows, JSON has {len(g)} groups")
    for x, y in zip(r, g):
        need(x[0] == y["name"] and int(x[1]) == y["params"], f"row {x[:2]} vs group {y['name']}")
        close(float(x[2]), y["score"], 1e-8, f"{x[0]}: CSV score vs JSON")
elif mode == "obs_weights":  # WEIGHTS.csv CHANNELS.csv MODEL: the weight column is the model's; a
    # channel's score is at least the largest single-weight score inside it (more constraints)
    import struct
    head, r = rows(args[0])
    need(head == "tensor,index,weight,obs_score", f"header {head!r}")
    need(len(r) == 61706, f"{len(r)} rows, expected 61706")
    blob = open(args[2], "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    meta = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    single = {}
    for t, i, w, s in r:
        b = meta[t]["data_offsets"][0] + 4 * int(i)
        (v,) = struct.unpack("<f", data[b:b + 4])
        need(struct.unpack("<f", struct.pack("<f", float(w)))[0] == v, f"{t}[{i}]: weight {w} vs model {v}")
        need(number(float(s)) and float(s) >= 0, f"{t}[{i}]: score {s}")
        single[(t, int(i))] = float(s)
    _, ch = rows(args[1])
    for name, params, score, _ in ch:
        layer, c = name[:-1].split("[")
        c, params = int(c), int(params)
        per = params - 1  # the filter (or row) and one bias
        best = max(single[(layer + ".weight", c * per + j)] for j in range(per))
        best = max(best, single[(layer + ".bias", c)])
        need(float(score) >= best * (1 - 1e-6), f"{name}: channel score {score} below its weight's {best}")
else:
    sys.exit("check.py: unknown mode " + mode)
EOF

tap_tiny_model 256 32 --seed 2024 --test-from-train

# ---- the default analysis: trace and the top eigenvalue at both ends ----

hess default_text
check "default: exits 0" rc_is 0
check "default: prints the trace with its standard error" out_has '^trace: -?[0-9.e+-]+ \+- [0-9.e+-]+ \(standard error, [0-9]+ probes(; --max-probes reached before the standard error met --tol)?\)'
check "default: prints the largest eigenvalue" out_has '^largest eigenvalues \([0-9]+ Lanczos steps[^)]*\): -?[0-9.e+-]+$'
check "default: prints the most negative eigenvalue" out_has '^most negative eigenvalues \([0-9]+ steps[^)]*\): -?[0-9.e+-]+$'
check "default: names the model, its 61706 parameters, 32 images, batch 16, eval, Hessian" \
  out_has ': lenet5, 61706 parameters; 32 training images, batch 16, batchnorm eval, Hessian$'

hess default --json
check "--json: exits 0 with one line on stdout" eval 'rc_is 0 && [ "$(wc -l <"$CAP/out")" -eq 1 ]'
pycheck "--json: parses, with model, arch, params, samples, batch_size, bn, operator, seed, trace{...}, eigenvalues{...}, products, seconds" \
  keys "$T/json/default"
hess default2 --json
check "--json again: exits 0" rc_is 0
pycheck "the same seed twice gives identical JSON (but for seconds)" same "$T/json/default" "$T/json/default2"
hess seed2 --json --seed 2 --max-probes 6 --max-steps 20
pycheck "another --seed gives another trace estimate" differ "$T/json/default" "$T/json/seed2" trace
hess seedmax --json --trace --max-probes 2 --seed 9007199254740992
pycheck "--seed 2^53 (the largest): the JSON's seed is that integer, exactly" seed "$T/json/seedmax" 9007199254740992

# ---- traces per layer and per channel, from the same probes ----

hess layer --per layer --json --seed 5 --max-probes 6
check "--per layer --json: exits 0" rc_is 0
hess channel --per channel --json --seed 5 --max-probes 6
check "--per channel --json: exits 0" rc_is 0
hess model --trace --json --seed 5 --max-probes 6
check "--trace --json: exits 0" rc_is 0
pycheck "per layer and per channel: groups add up to trace.estimate, and the channels of each layer to its --per layer trace (1e-9)" \
  groups "$T/json/layer" "$T/json/channel" "$T/json/model"

hess layer_text --per layer --seed 5 --max-probes 6
check "--per layer (text): a table row per layer" eval 'rc_is 0 && out_has "^conv1 +156 " && out_has "^fc3 +850 "'
hess budget --trace --max-probes 2 --tol 1e-6 --json
pycheck "--max-probes 2 against --tol 1e-6: trace.converged is false" budget "$T/json/budget"
hess budget_text --trace --max-probes 2 --tol 1e-6
check "--max-probes 2 against --tol 1e-6 (text): the trace line says the budget ran out first" \
  eval 'rc_is 0 && out_has "^trace: .*\(standard error, 2 probes; --max-probes reached before the standard error met --tol\)"'

# ---- --bn train: lenet5 has no batchnorm, so the numbers are those of eval mode ----
# (a model with batchnorm, even a tiny resnet20, takes too long to train here)

hess layer_bn_train --per layer --json --seed 5 --max-probes 6 --bn train
check "--bn train: exits 0 and says bn train" eval 'rc_is 0 && grep -q "\"bn\":\"train\"" "$T/json/layer_bn_train"'
pycheck "--bn train on a model without batchnorm: the same traces as --bn eval" \
  same "$T/json/layer" "$T/json/layer_bn_train" bn

# ---- the Gauss-Newton operator is PSD ----

hess ggn --operator ggn --trace --max-probes 6 --hutchpp 30 --json
check "--operator ggn --trace --hutchpp 30: exits 0" eval 'rc_is 0 && grep -q "\"operator\":\"ggn\"" "$T/json/ggn"'
pycheck "--operator ggn --hutchpp 30: the Hutch++ estimate is > 0" positive "$T/json/ggn" hutchpp.estimate
pycheck "--operator ggn --trace: the Hutchinson estimate is > 0" positive "$T/json/ggn" trace.estimate

hess exact --operator ggn --exact --per layer --json
check "--operator ggn --exact --per layer: exits 0" rc_is 0
hess ggn_many --operator ggn --per layer --max-probes 400 --tol 1e-9 --json
pycheck "--exact: no error bars, layers add up, within 4 standard errors of 400 Hutchinson probes" \
  exact "$T/json/exact" "$T/json/ggn_many"

hess eigs3 --eigs 3 --json
check "--eigs 3 --json: exits 0" rc_is 0
pycheck "--eigs 3: three largest eigenvalues in descending order, and the most negative" eigs "$T/json/eigs3" 3
hess eigs3_csv --eigs 3 --json --csv "$T/out/E.csv"
pycheck "--eigs 3 --csv: end,index,eigenvalue,residual rows holding the JSON's eigenvalues and residuals" \
  eig_csv "$T/out/E.csv" "$T/json/eigs3_csv"
hess eigs3_ggn --eigs 3 --neg-eigs 1 --operator ggn --max-steps 40 --json
check "--eigs 3 --operator ggn: exits 0" rc_is 0
pycheck "--eigs 3 --operator ggn: descending, most negative >= -1e-3 x largest (PSD up to rounding)" \
  eigs "$T/json/eigs3_ggn" 3 psd

# ---- convergence at each end, in the JSON as in the text ----

hess unconv_text --eigs 3 --neg-eigs 1 --max-steps 4 --eig-tol 1e-12
check "--eigs 3 --max-steps 4 --eig-tol 1e-12: exits 0" rc_is 0
# --max-steps is a cap (Lanczos stops once converged): the progress lines say so, and their ETA is a bound
check "--max-steps 4: each end's progress line in a log counts products of at most 4, the ETA a bound" \
  eval 'grep -q -E "^top eigenvalues: 4 of at most 4 products  [0-9.]+/s  ETA <= 0s$" "$CAP/err" &&
        grep -q -E "^negative eigenvalues: 4 of at most 4 products  [0-9.]+/s  ETA <= 0s$" "$CAP/err"'
hess unconv --eigs 3 --neg-eigs 1 --max-steps 4 --eig-tol 1e-12 --json
pycheck "--max-steps 4 --eig-tol 1e-12: each end's steps and converged flag (false) in the JSON, as in the text" \
  unconverged "$T/json/unconv" "$T/json/unconv_text" 4

# ---- each analysis option runs its analysis only; tuning options tune the default analysis ----

hess neg_only --neg-eigs 2 --max-steps 40 --json
check "--neg-eigs 2 alone: exits 0" rc_is 0
pycheck "--neg-eigs 2 alone: the two most negative eigenvalues only (no trace, no largest)" only "$T/json/neg_only" 0 0 2
hess ggn_default --operator ggn --json
pycheck "--operator ggn, no analysis option: the trace and the largest eigenvalue (PSD: no most negative)" \
  only "$T/json/ggn_default" 1 1 0
hess tuned_default --tol 0.5 --max-steps 30 --json
pycheck "--tol 0.5 --max-steps 30, no analysis option: the default trace, largest and most negative" \
  only "$T/json/tuned_default" 1 1 1
check "--tol 0.5 stops the default trace early (fewer than the 100 probes of --tol 0.01)" \
  python3 -c 'import json, sys; t = json.load(open(sys.argv[1]))["trace"]; sys.exit(not 2 <= t["probes"] < 100)' \
  "$T/json/tuned_default"
run "$HPRUNE" hessian --help
check "--help says what no analysis option computes: the trace, the largest and the most negative eigenvalue" \
  eval 'rc_is 0 && tr "\n" " " <"$CAP/out" | grep -q "with none, it estimates the trace, the *largest eigenvalue and the most negative one"'

# ---- files: spectral density, loss landscape, per-channel CSV ----

hess density --density "$T/out/D.png" --slq-probes 2 --slq-steps 20 --json
check "--density D.png: exits 0 and writes D.png and D.csv" eval 'rc_is 0 && [ -s "$T/out/D.png" ] && [ -s "$T/out/D.csv" ]'
pycheck "--density: D.png is a complete PNG" png "$T/out/D.png"
pycheck "--density: D.csv is eigenvalue,density and integrates to 1 within 2% (trapezoid)" \
  density "$T/out/D.csv" "$T/json/density"

run "$HPRUNE" eval "$MODEL" --data "$DATA" --json --threads 1
cp "$CAP/out" "$T/json/eval"
hess landscape --landscape "$T/out/L.png" --points 5 --radius 0.1 --max-steps 30 --json
check "--landscape L.png: exits 0 and writes L.png, L.csv, L_1d.png, L_1d.csv" eval \
  'rc_is 0 && [ -s "$T/out/L.png" ] && [ -s "$T/out/L.csv" ] && [ -s "$T/out/L_1d.png" ] && [ -s "$T/out/L_1d.csv" ]'
pycheck "--landscape: L.png and L_1d.png are complete PNGs" png "$T/out/L.png" "$T/out/L_1d.png"
pycheck "--landscape: the centre of L_1d.csv (and of L.csv) is the loss at alpha 0, as hprune eval computes it" \
  landscape "$T/json/landscape" "$T/out/L_1d.csv" "$T/out/L.csv" "$T/json/eval"

hess csv --csv "$T/out/T.csv" --per channel --seed 5 --max-probes 6
check "--csv T.csv --per channel: exits 0 and says where the channel traces are" eval \
  'rc_is 0 && [ -s "$T/out/T.csv" ] && ! out_has "per-channel traces: add"'
pycheck "--csv: header group,params,trace,stderr,trace_per_param and one row per channel" csv "$T/out/T.csv"

# ---- OBS from the inverse empirical Fisher ----

# obsrun NAME ARGS...: hprune hessian MODEL --obs on the fixture data, small; output in $T/json/NAME.
obsrun() {
  name=$1; shift
  run "$HPRUNE" hessian "$MODEL" --data "$DATA" --threads 1 --obs --fisher-grads 32 --block-size 200 "$@"
  cp "$CAP/out" "$T/json/$name"
}
obsrun obs_text
check "--obs: exits 0, says what it built" eval 'rc_is 0 && out_has "^.*: lenet5, 61706 parameters; OBS from the inverse empirical Fisher: 32 gradients of 1 image, 311 blocks of at most 200 parameters \(layer-aligned\), damp 1e-05$"'
check "--obs: a row per layer with 6 channels of 26 parameters for conv1, 10 of 85 for fc3" \
  eval 'out_has "^conv1 +6 +26 " && out_has "^fc3 +10 +85 " && out_has "^\(per-channel scores: add --csv"'
obsrun obs --json
check "--obs --json: exits 0 with one line on stdout" eval 'rc_is 0 && [ "$(wc -l <"$CAP/out")" -eq 1 ]'
pycheck "--obs --json: obs{per, grads, grad_batch, block_size, blocks (311 layer-aligned), damp, bytes, groups (236, > 0)}" \
  obs "$T/json/obs"
obsrun obs2 --json
pycheck "--obs twice with the same seed: identical JSON (but for seconds)" same "$T/json/obs" "$T/json/obs2"
obsrun obs_seed --json --seed 9007199254740991
pycheck "--obs --seed 2^53-1: the JSON's seed is that integer, exactly" seed "$T/json/obs_seed" 9007199254740991
obsrun obs_csv --csv "$T/out/O.csv" --per channel
check "--obs --csv O.csv --per channel: exits 0 and writes O.csv" eval 'rc_is 0 && [ -s "$T/out/O.csv" ] && ! out_has "add --csv"'
pycheck "--obs --csv: group,params,obs_score,sq_norm rows holding the JSON's scores" obs_csv "$T/out/O.csv" "$T/json/obs"
obsrun obs_w --per weight --csv "$T/out/W.csv"
check "--obs --per weight: a row per tensor and the smallest single-weight scores" eval \
  'rc_is 0 && out_has "^fc1.weight +48000 " && out_has "^smallest single-weight scores: [a-z0-9]+\.(weight|bias)\[[0-9]+\] "'
pycheck "--obs --per weight: W.csv holds the model's weights; each channel's score >= its weights' (same Fisher)" \
  obs_weights "$T/out/W.csv" "$T/out/O.csv" "$MODEL"
obsrun obs_wj --per weight --json
pycheck "--obs --per weight --json: obs.tensors, one {name, params, min, median, max} per parameter tensor" \
  obs_tensors "$T/json/obs_wj"

# ---- bad input ----

mkdir -p "$T/bad" "$T/work"
python3 -c '
import struct, sys
blob = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", blob[:8])
open(sys.argv[2], "wb").write(struct.pack("<Q", n) + b"{\"conv1.weight\": [" + blob[8 + 18:])
' "$MODEL" "$T/bad/corrupt.safetensors" || not_ok "craft a model with a corrupt header"
# expect_hessian CODE DESC FILE PROBLEM ARGS...: expect (tap_lib.sh) on `hprune hessian ARGS`.
expect_hessian() {
  code=$1 desc=$2 file=$3 problem=$4
  shift 4
  expect "$code" "$desc" "$file" "$problem" "$HPRUNE" hessian "$@"
}
S="--samples 32 --batch-size 16 --threads 1"
O=$T/out/new  # outputs that must not appear

expect_hessian 1 "a model file that does not exist" "$T/bad/missing.safetensors" "no such file" \
  "$T/bad/missing.safetensors" --data "$DATA" $S --csv "$O.csv"
expect_hessian 1 "a model file with a corrupt header" "$T/bad/corrupt.safetensors" "header.*JSON" \
  "$T/bad/corrupt.safetensors" --data "$DATA" $S --csv "$O.csv"
expect_hessian 1 "a data directory that does not exist" "$T/nodata" "no such directory" \
  "$MODEL" --data "$T/nodata" $S --density "$O.png"
# hessian reads training images only: a directory without the test files is enough
mkdir -p "$T/trainonly"
cp "$DATA"/train-* "$T/trainonly/"
run "$HPRUNE" hessian "$MODEL" --data "$T/trainonly" $S --eigs 1 --neg-eigs 0 --json
check "a data directory without the test files: the analysis runs on the training images" \
  sh -c '[ "$0" -eq 0 ] && python3 -c "import json,sys; json.load(open(sys.argv[1]))[\"eigenvalues\"]" "$1"' "$rc" "$CAP/out"
expect_hessian 2 "--dataset other than the model's, without --data: a usage error, not read from the model's directory" \
  "$MODEL" "--dataset mnist: give its directory with --data DIR" "$MODEL" $S --eigs 1 --dataset mnist
expect_hessian 2 "--eigs given twice" "--eigs given twice" "^hprune hessian: --eigs given twice$" \
  "$MODEL" --data "$DATA" $S --eigs 2 --eigs 3
expect_hessian 2 "--csv given twice: neither file written" "--csv given twice" "^hprune hessian: --csv given twice$" \
  "$MODEL" --data "$DATA" $S --trace --csv "$O.csv" --csv "$O.2.csv"
expect_hessian 1 "--eigs 70000: more than lenet5's 61706 parameters, said before any product or data" "$MODEL" \
  "--eigs 70000 .*61706 parameters" "$MODEL" --data "$T/nodata" $S --trace --eigs 70000 --csv "$O.csv"
expect_hessian 1 "--eigs 70000 --trace: fails before the trace runs" "$MODEL" "--eigs 70000 .*61706 parameters" \
  "$MODEL" --data "$DATA" $S --trace --eigs 70000
expect_hessian 1 "--neg-eigs 70000: the message names --neg-eigs" "$MODEL" "--neg-eigs 70000 .*61706 parameters" \
  "$MODEL" --data "$DATA" $S --eigs 1 --neg-eigs 70000
expect_hessian 2 "--tol 0" "--tol" "'0'" "$MODEL" --data "$DATA" $S --trace --tol 0
expect_hessian 2 "--tol -1" "--tol" "'-1'" "$MODEL" --data "$DATA" $S --trace --tol -1
expect_hessian 2 "--samples 0" "--samples" "'0'" "$MODEL" --data "$DATA" --samples 0 --threads 1
expect_hessian 1 "--samples more than the training set" "$MODEL" "1000 samples.*256" \
  "$MODEL" --data "$DATA" --samples 1000 --threads 1 --csv "$O.csv"
expect_hessian 1 "--density in a directory that does not exist: before any work" "/nonexistent/d.png" \
  "cannot write.*/nonexistent.*no such file" "$MODEL" --data "$DATA" $S --density /nonexistent/d.png
expect_hessian 1 "--csv in a directory that does not exist" "/nonexistent/x.csv" "cannot write.*/nonexistent.*no such file" \
  "$MODEL" --data "$DATA" $S --csv /nonexistent/x.csv
expect_hessian 1 "--landscape in a directory that does not exist" "/nonexistent/l.png" "cannot write.*/nonexistent.*no such file" \
  "$MODEL" --data "$DATA" $S --landscape /nonexistent/l.png
expect_hessian 1 "--csv naming a directory: before any work" "$T/out" "cannot write: it is a directory" \
  "$MODEL" --data "$DATA" $S --csv "$T/out"
expect_hessian 1 "--density in a path through a regular file" "$T/tiny.ini/d.png" "not a directory" \
  "$MODEL" --data "$DATA" $S --density "$T/tiny.ini/d.png"
expect_hessian 2 "--bn foo" "foo" "--bn.*eval or train" "$MODEL" --data "$DATA" $S --bn foo
expect_hessian 2 "--operator foo" "foo" "--operator.*hessian or ggn" "$MODEL" --data "$DATA" $S --operator foo
expect_hessian 2 "--exact with the Hessian" "--exact" "--operator ggn" "$MODEL" --data "$DATA" $S --exact
expect_hessian 2 "--exact with batch statistics" "--exact" "--bn eval" "$MODEL" --data "$DATA" $S --operator ggn \
  --bn train --exact
expect_hessian 2 "--per foo" "foo" "--per.*model, layer or channel" "$MODEL" --data "$DATA" $S --per foo
expect_hessian 2 "no MODEL" "" "MODEL is required" --data "$DATA" $S
expect_hessian 2 "--samples and --batches together" "" "--samples or --batches" "$MODEL" --samples 32 --batches 2
# The memory checks, machine-independent with --memory-budget (500 MiB: lenet5's 61706
# parameters at 3000 Lanczos steps take about 1.6 GB); the data directory is missing, so a check
# that let the analysis through would fail on the data, never run it.
expect_hessian 1 "a Lanczos basis over --memory-budget: refused before any work" "--max-steps 3000" \
  "needs about [0-9.]+ GB of memory \(--max-steps 3000: .*\), over the limit of 524 MB \(--memory-budget 500\)" \
  "$MODEL" --data "$T/nodata" $S --eigs 1 --max-steps 3000 --memory-budget 500
# Lanczos takes max(--max-steps, K) steps: the check must count K's
expect_hessian 1 "--eigs 3000: sized by its 3000 Lanczos steps, not --max-steps' 100, before any data" "--eigs 3000" \
  "needs about [0-9.]+ GB of memory \(--eigs 3000: 3000 Lanczos steps on 61706 parameters, batch 8\), over the limit of 524 MB \(--memory-budget 500\): lower --eigs" \
  "$MODEL" --data "$T/nodata" --samples 8 --threads 1 --eigs 3000 --neg-eigs 0 --memory-budget 500
expect_hessian 1 "--neg-eigs 3000: the most negative end sized by its own steps" "--neg-eigs 3000" \
  "needs about [0-9.]+ GB of memory \(--neg-eigs 3000: 3000 Lanczos steps .*batch 16\).*lower --neg-eigs" \
  "$MODEL" --data "$T/nodata" $S --eigs 1 --neg-eigs 3000 --memory-budget 500
# without --memory-budget the limit is 80% of the memory the process may use: K 50000 needs
# about 45 GB, more than this check can be sure of on a machine with over 50 GB
if [ "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)" -lt 50000000 ]; then
  expect_hessian 1 "--eigs 50000 without --memory-budget: over 80% of the machine's memory" "--eigs 50000" \
    "over the limit of [0-9.]+ GB \(80% of the machine's [0-9.]+ GB\): lower --eigs" \
    "$MODEL" --data "$T/nodata" --samples 8 --threads 1 --eigs 50000 --neg-eigs 0
else
  ok "--eigs 50000 without --memory-budget # SKIP the machine has over 50 GB of memory"
fi
# the check sizes the batch the analysis runs: curv_init caps it at the samples, so --samples all
# over the 256 training images in batches of 65536 runs in one batch of 256 (its workspace a few
# tens of MB), not 65536's 20 GB; the training set's size comes from its IDX header
run "$HPRUNE" hessian "$MODEL" --data "$DATA" --samples all --batch-size 65536 --threads 1 --trace --max-probes 2 \
  --memory-budget 500 --json
check "--samples all --batch-size 65536 under --memory-budget 500: sized by its real batch of 256, it runs" \
  eval 'rc_is 0 && out_has "\"samples\":256," && out_has "\"batch_size\":256,"'
expect_hessian 1 "--samples all: a refusal names the batch that runs (256), not --batch-size's 65536" "$MODEL" \
  "needs about [0-9]+ MB of memory \(61706 parameters, batch 256\), over the limit of 10 MB \(--memory-budget 10\): lower --batch-size" \
  "$MODEL" --data "$DATA" --samples all --batch-size 65536 --threads 1 --trace --memory-budget 10
expect_hessian 1 "--samples all with no data: its size unknown, the data's error" "$T/nodata" "no such directory" \
  "$MODEL" --data "$T/nodata" --samples all --threads 1 --trace
expect_hessian 2 "--points even: the grid would miss the model" "4" "odd count" "$MODEL" --data "$DATA" $S --landscape "$T/out/e.png" --points 4
expect_hessian 2 "--csv with no trace or eigenvalues to write" "--csv" "--trace.*--eigs" "$MODEL" --data "$DATA" $S --density "$T/out/c.png" --csv "$T/out/c.csv"
# two outputs naming one file (the files --density and --landscape write beside theirs included)
touch "$T/out/keep.csv"
expect_hessian 2 "--csv and --density's CSV naming one file: refused before any work" "$T/out/X.csv" \
  "--csv and --density's CSV would both write" "$MODEL" --data "$DATA" $S --trace --density "$T/out/X.png" --csv "$T/out/X.csv"
expect_hessian 2 "--csv naming the model" "$MODEL" "--csv would overwrite the model" \
  "$MODEL" --data "$DATA" $S --trace --csv "$MODEL"
expect_hessian 2 "--obs --csv naming the model" "$MODEL" "--csv would overwrite the model" \
  "$MODEL" --data "$DATA" --obs --fisher-grads 8 --csv "$MODEL"
expect_hessian 2 "--density and --landscape naming one file" "$T/out/dl.png" "--density and --landscape would both write" \
  "$MODEL" --data "$DATA" $S --density "$T/out/dl.png" --landscape "$T/out/dl.png"
expect_hessian 2 "--density naming --landscape's 1-D plot" "L_1d.png" "--density and --landscape's 1-D plot would both write" \
  "$MODEL" --data "$DATA" $S --density "$T/out/L_1d.png" --landscape "$T/out/L.png"
expect_hessian 2 "--csv naming --landscape's CSV through another spelling (an existing file)" "keep.csv" \
  "--csv and --landscape's CSV would both write" \
  "$MODEL" --data "$DATA" $S --eigs 1 --landscape "$T/out/keep.png" --csv "$T/out/../out/keep.csv"
check "the existing file a refused run named is untouched" eval '[ -f "$T/out/keep.csv" ] && [ ! -s "$T/out/keep.csv" ]'
# a failure while writing leaves none of the outputs behind: every file is staged and renamed
# into place only once all of them and standard output are written. errlines.sh passes on only
# the "hprune..." lines of standard error (these runs fail late, after their progress lines).
cat >"$T/errlines.sh" <<'EOF'
# errlines.sh STDOUT CMD...: CMD with its standard output to the file STDOUT; its exit status,
# and the lines of its standard error that start with "hprune".
out=$1; shift
{ { "$@" 2>&1 >"$out"; echo $? >&3; } | grep '^hprune' >&2; } 3>&1 | { read -r rc; exit "$rc"; }
EOF
# A file size limit (SIGXFSZ ignored, so the write fails) that --landscape's 71 KB big.png,
# big_1d.png and big_1d.csv fit but not its 250 KB big.csv
expect 1 "a write failing (big.csv over the file size limit): the files written before it are removed too" \
  "$T/out/big.csv" "cannot write" sh -c 'trap "" XFSZ; ulimit -f 200; exec sh "$@"' sh "$T/errlines.sh" /dev/null \
  "$HPRUNE" hessian "$MODEL" --data "$DATA" --samples 8 --threads 1 --landscape "$T/out/big.png" --points 101 \
  --radius 0.1 --eigs 2 --max-steps 20 --csv "$T/out/big_eigs.csv"
if [ -w /dev/full ]; then
  expect 1 "standard output full: no file is left (the density, its CSV and the trace CSV were complete)" "" \
    "standard output: cannot write" sh "$T/errlines.sh" /dev/full "$HPRUNE" hessian "$MODEL" --data "$DATA" $S \
    --trace --max-probes 4 --density "$T/out/full_d.png" --slq-probes 1 --slq-steps 10 --csv "$T/out/full_t.csv"
  expect 1 "--obs with standard output full: no --csv left" "" "standard output: cannot write" \
    sh "$T/errlines.sh" /dev/full "$HPRUNE" hessian "$MODEL" --data "$DATA" --threads 1 --obs --fisher-grads 8 \
    --block-size 200 --csv "$T/out/full_obs.csv"
fi
# an option tuning an analysis that does not run is refused, naming it and what it needs
expect_hessian 2 "--tol with --eigs only: no trace runs" "--tol" "--tol tunes the Hutchinson trace: it needs --trace or --per" \
  "$MODEL" --data "$DATA" $S --eigs 2 --tol 1e-6
expect_hessian 2 "--max-probes with --eigs only" "--max-probes" "needs --trace or --per" \
  "$MODEL" --data "$DATA" $S --eigs 2 --max-probes 50 --csv "$O.csv"
expect_hessian 2 "--tol with --exact: no probes to stop" "--tol" "does not apply to --exact" \
  "$MODEL" --data "$DATA" $S --operator ggn --exact --tol 0.1
expect_hessian 2 "--max-steps with --trace only: no Lanczos runs" "--max-steps" "needs --eigs, --neg-eigs or --landscape" \
  "$MODEL" --data "$DATA" $S --trace --max-steps 10
expect_hessian 2 "--eig-tol with --hutchpp only" "--eig-tol" "needs --eigs, --neg-eigs or --landscape" \
  "$MODEL" --data "$DATA" $S --operator ggn --hutchpp 30 --eig-tol 0.1
expect_hessian 2 "--slq-steps without --density" "--slq-steps" "tunes the spectral density: it needs --density" \
  "$MODEL" --data "$DATA" $S --eigs 1 --slq-steps 10
expect_hessian 2 "--radius without --landscape" "--radius" "tunes the loss landscape: it needs --landscape" \
  "$MODEL" --data "$DATA" $S --radius 3
expect_hessian 2 "--points 5 without --landscape, as --points 4" "--points" "it needs --landscape" \
  "$MODEL" --data "$DATA" $S --points 5
expect_hessian 2 "--neg-eigs 0 alone: nothing to compute" "--neg-eigs 0" "it needs --eigs" "$MODEL" --data "$DATA" $S --neg-eigs 0
OB="--data $DATA --threads 1 --obs"
expect_hessian 2 "--obs --tol: not an option of --obs" "--tol" "--tol does not apply to --obs" "$MODEL" $OB --tol 0.1
expect_hessian 2 "--obs --radius" "--radius" "does not apply to --obs" "$MODEL" $OB --radius 1 --csv "$O.csv"
expect_hessian 2 "--obs --fisher-grads 0" "--fisher-grads" "'0'" "$MODEL" $OB --fisher-grads 0 --csv "$O.csv"
expect_hessian 2 "--obs --block-size 0" "--block-size" "'0'" "$MODEL" $OB --block-size 0 --csv "$O.csv"
expect_hessian 2 "--obs --damp 0" "--damp" "'0'" "$MODEL" $OB --damp 0 --csv "$O.csv"
expect_hessian 2 "--obs --damp -1" "--damp" "'-1'" "$MODEL" $OB --damp -1
expect_hessian 1 "--obs --block-size 70000: larger than lenet5's 61706 parameters, before any data" "$MODEL" \
  "block size 70000 is larger than the model's 61706 parameters" "$MODEL" --data "$T/nodata" --obs --block-size 70000 --csv "$O.csv"
expect_hessian 1 "--obs --memory-budget 20: over the budget, says which block size would fit, before any data" "$MODEL" \
  "over the budget of 20 MiB; block size [0-9]+ \(with N 32\) would fit" \
  "$MODEL" --data "$T/nodata" --obs --fisher-grads 32 --block-size 200 --memory-budget 20 --csv "$O.csv"
expect_hessian 1 "--obs --memory-budget 1: not even the gradients fit" "$MODEL" "over the budget.*raise the budget" \
  "$MODEL" $OB --fisher-grads 32 --memory-budget 1 --csv "$O.csv"
expect_hessian 1 "--obs --fisher-grads 300: more gradients than the 256 training images, named, before any work" \
  "$MODEL" "--fisher-grads 300 x --fisher-batch 1 needs 300 training images, the training set has 256$" \
  "$MODEL" $OB --fisher-grads 300 --block-size 200 --csv "$O.csv"
expect_hessian 1 "--obs --fisher-grads 200 --fisher-batch 2: more images than the 256 training images" "$MODEL" \
  "--fisher-grads 200 x --fisher-batch 2 needs 400 training images, the training set has 256$" \
  "$MODEL" $OB --fisher-grads 200 --fisher-batch 2 --block-size 200
expect_hessian 2 "--fisher-grads without --obs" "--fisher-grads" "needs --obs" "$MODEL" --data "$DATA" $S --fisher-grads 8
expect_hessian 2 "--per weight without --obs" "weight" "--per.*weight needs --obs" "$MODEL" --data "$DATA" $S --per weight
expect_hessian 2 "--obs --per layer" "layer" "--per with --obs.*channel or weight" "$MODEL" $OB --per layer
expect_hessian 2 "--obs --trace: one analysis at a time" "--obs" "analysis of its own" "$MODEL" $OB --trace
expect_hessian 2 "--obs --samples 32: --obs draws its own" "--samples" "its own samples" "$MODEL" $OB --samples 32
expect_hessian 1 "--obs --csv in a directory that does not exist: before any work" "/nonexistent/o.csv" \
  "cannot write.*/nonexistent.*no such file" "$MODEL" $OB --csv /nonexistent/o.csv

echo "1..$n"
[ "$failed" -eq 0 ]
