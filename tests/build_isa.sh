#!/bin/sh
# build_isa.sh: the sources with code for particular instruction sets (nn/conv_direct.c,
# nn/conv_winograd.c, nn/pooling.c) compiled with -Werror for each set they have a path for:
# skylake-avx512 (AVX-512), x86-64-v3 (AVX2 and FMA) and x86-64 (SSE2 alone). The suite runs
# the kernels on the test machine's own instruction set only; this catches a path for another
# one that no longer compiles, or compiles with a warning. Compiling is all it checks.
#
#   sh tests/build_isa.sh      (from the repository root; CC as for make, default cc)
#
# Prints "ok N - what" / "not ok N - what" with the compiler's first lines after a failure, and
# exits non-zero if anything failed.

CC=${CC:-cc}
FLAGS="-std=c11 -D_GNU_SOURCE -O3 -fopenmp -ffp-contract=fast -Wno-psabi -Wall -Wextra -Werror -I."
T=$(mktemp -d "${TMPDIR:-/tmp}/hprune-build-isa.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
n=0 failed=0
for arch in skylake-avx512 x86-64-v3 x86-64; do
  for src in nn/conv_direct.c nn/conv_winograd.c nn/pooling.c; do
    n=$((n + 1))
    if $CC $FLAGS -march=$arch -c "$src" -o "$T/out.o" 2>"$T/err"; then
      echo "ok $n - $src compiles for -march=$arch"
    else
      failed=$((failed + 1))
      echo "not ok $n - $src compiles for -march=$arch"
      head -n 5 "$T/err" | sed 's/^/#   /'
    fi
  done
done
echo "1..$n"
[ "$failed" -eq 0 ]
