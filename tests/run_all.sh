#!/bin/sh
# Runs every cmocka test binary given, then every tests/cli_*.sh and tests/build_*.sh; prints
# one summary line "N passed, M failed" (counting test cases) and exits non-zero on any failure.
# OpenMP threads sleep rather than spin while waiting, so a loaded machine does not stall the suite.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
passed=0; failed=0; failed_units=""
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -E '^\[  (FAILED|ERROR) |^\[  PASSED  \]|Assertion|error' | grep -v -E '^\[ +(RUN|OK) +\] ' | sed "s|^|$(basename "$t"): |"
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -gt 0 ] && failed_units="$failed_units $(basename "$t")" && printf '%s\n' "$out" | tail -40
done
for s in tests/cli_*.sh tests/build_*.sh; do
  [ -f "$s" ] || continue
  out=$(HPRUNE="${HPRUNE:-./hprune}" sh "$s" 2>&1); rc=$?
  p=$(printf '%s\n' "$out" | grep -c '^ok ')
  f=$(printf '%s\n' "$out" | grep -c '^not ok ')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  printf '%s: %d ok, %d not ok\n' "$(basename "$s")" "$p" "$f"
  [ "$f" -gt 0 ] && failed_units="$failed_units $(basename "$s")" && printf '%s\n' "$out" | grep -A5 '^not ok'
  passed=$((passed + p)); failed=$((failed + f))
done
[ -n "$failed_units" ] && echo "failing:$failed_units"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
