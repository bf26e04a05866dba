# tap_lib.sh: what the command-line tests share, sourced first by tests/cli_*.sh, which then
# call tap_begin and set
#   (T    the test's temporary directory, from tap_begin; commands run in $T/work)
#   CAP  where the output of the command under test is captured ($CAP/out, $CAP/err),
#   TO   the time-limit prefix, and HPRUNE.
# TAP-like output: "ok N - desc" / "not ok N - desc" with "#" diagnostics.

# tap_begin NAME: resolves HPRUNE (default ./hprune) to an absolute path, sets TO (a 120 s limit
# per command), stops with "not ok" if HPRUNE is not executable, makes the fixture directory T
# (removed on exit). The caller then sets CAP.
tap_begin() {
  HPRUNE=${HPRUNE:-./hprune}
  case $HPRUNE in /*) ;; */*) HPRUNE=$(pwd)/$HPRUNE ;; esac
  TO=""
  command -v timeout >/dev/null 2>&1 && TO="timeout 120"
  if [ ! -x "$HPRUNE" ]; then
    echo "not ok 1 - $HPRUNE is not an executable (build it with 'make hprune')"
    exit 1
  fi
  T=$(mktemp -d "${TMPDIR:-/tmp}/hprune-$1.XXXXXX") || exit 1
  trap 'rm -rf "$T"' EXIT
  trap 'exit 130' INT TERM HUP PIPE
}

n=0
failed=0

# ok DESC / not_ok DESC [DIAGNOSTIC...]
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
  n=$((n + 1)); failed=$((failed + 1))
  echo "not ok $n - $1"; shift
  for d in "$@"; do printf '#   %s\n' "$d"; done
}
# Lists every file and directory under $T except the captures.
snapshot() { find "$T" ! -path "$CAP" ! -path "$CAP/*" | sort; }

# expect CODE DESC FILE PROBLEM CMD...: runs CMD (in $T/work) and checks that it fails
# cleanly with status CODE, and that its message contains the text FILE (if not empty) and
# matches the extended regular expression PROBLEM (case-insensitive).
expect() {
  code=$1 desc=$2 file=$3 problem=$4
  shift 4
  snapshot >"$CAP/before"
  (cd "$T/work" && $TO "$@") >"$CAP/out" 2>"$CAP/err"
  rc=$?
  snapshot >"$CAP/after"
  why=""
  msg=$(sed -n 1p "$CAP/err")
  lines=$(wc -l <"$CAP/err")
  if [ "$rc" -ge 124 ]; then
    why="crashed or timed out: exit status $rc"
  elif [ "$rc" -ne "$code" ]; then
    why="exit status $rc, expected $code"
  elif [ -s "$CAP/out" ]; then
    why="something on stdout"
  elif [ "$code" -eq 1 ] && { [ "$lines" -ne 1 ] || [ "${msg#hprune: error: }" = "$msg" ]; }; then
    why="stderr is not one line starting 'hprune: error: '"
  elif [ "$code" -eq 2 ]; then
    cmd=$(printf '%s\n' "$msg" | sed -n 's/^hprune \([a-z]*\): .*/\1/p')
    if [ -z "$cmd" ] || [ "$lines" -ne 2 ] || [ "$(sed -n 2p "$CAP/err")" != "Try 'hprune $cmd --help'." ]; then
      why="stderr is not 'hprune CMD: message' and the 'Try' line"
    fi
  fi
  if [ -z "$why" ] && [ -n "$file" ] && ! printf '%s\n' "$msg" | grep -q -F -- "$file"; then
    why="the message does not name $file"
  fi
  if [ -z "$why" ] && ! printf '%s\n' "$msg" | grep -q -i -E -- "$problem"; then
    why="the message does not match /$problem/"
  fi
  if [ -z "$why" ] && ! cmp -s "$CAP/before" "$CAP/after"; then
    why="files appeared or vanished: $(diff "$CAP/before" "$CAP/after" | grep '^[<>]' | tr '\n' ' ')"
  fi
  if [ -z "$why" ]; then
    ok "$desc"
    [ -n "$VERBOSE" ] && printf '#   %s\n' "$msg"
  else
    not_ok "$desc" "$why" "command: $*"
    sed -n '1,5s/^/#   stderr: /p' "$CAP/err"
    sed -n '1,3s/^/#   stdout: /p' "$CAP/out"
  fi
  return 0
}

# Prints the captured output of the last run as diagnostics.
show_run() {
  printf '#   exit status %s\n' "$rc"
  sed -n '1,6s/^/#   stdout: /p' "$CAP/out"
  sed -n '1,6s/^/#   stderr: /p' "$CAP/err"
}
# run CMD...: runs it with a time limit; stdout in $CAP/out, stderr in $CAP/err, status in $rc.
run() { $TO "$@" >"$CAP/out" 2>"$CAP/err"; rc=$?; }
# check DESC CONDITION...: ok if the shell condition holds, else not ok with the last run.
check() {
  desc=$1; shift
  if "$@"; then ok "$desc"; else not_ok "$desc"; show_run; fi
}

# tap_tiny_model N_TRAIN N_TEST GEN_ARGS...: the shared fixture: a synthetic Fashion-MNIST-format
# dataset in $T/data (tests/gen_fmnist.py N_TRAIN N_TEST GEN_ARGS...) and a LeNet-5 trained on it
# for one epoch, one thread, into $T/model.safetensors; sets DATA and MODEL. Reports it as a
# check; if it fails, prints the plan and exits.
tap_tiny_model() {
  DATA=$T/data
  MODEL=$T/model.safetensors
  mkdir -p "$DATA"
  fixtures_ok=1
  python3 "$(dirname "$0")/gen_fmnist.py" "$DATA" "$@" 2>"$CAP/err" || fixtures_ok=""
  printf '[model]\narch = lenet5\n[data]\ndataset = fashion-mnist\ndir = %s\n[train]\nepochs = 1\nbatch_size = 32\nlr = 0.05\nseed = 3\nthreads = 1\noutput = %s\n' \
    "$DATA" "$MODEL" >"$T/tiny.ini"
  [ -n "$fixtures_ok" ] && "$HPRUNE" train --config "$T/tiny.ini" >/dev/null 2>"$CAP/err" || fixtures_ok=""
  tap_fixtures_made "fixtures: a tiny dataset and a LeNet-5 trained for one epoch" "$MODEL"
}

# tap_fixtures_made DESC FILE: ok DESC when fixtures_ok is set and FILE is not empty; otherwise
# not ok with the first lines of $CAP/err, the plan, and exit 1 (no test can run without them).
tap_fixtures_made() {
  if [ -n "$fixtures_ok" ] && [ -s "$2" ]; then
    ok "$1"
  else
    not_ok "$1"
    sed -n '1,5s/^/#   /p' "$CAP/err"
    echo "1..$n"
    exit 1
  fi
}
