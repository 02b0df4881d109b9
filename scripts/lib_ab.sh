#!/usr/bin/env bash
# Is build B faster than build A? Runs native_lib_ab (bench/c/lib_ab.c) twice in one go, A loaded
# first and then B loaded first, because on identical code the library loaded second measured
# 3-9% faster here; prints per shape and op the geometric mean of the two B/A time ratios
# (below 1: B is faster) and each order's own ratio. Build the tool with
#   scripts/bench.sh --build-only       (it lands in target/bench/build/bench)
#
# usage: scripts/lib_ab.sh A.so B.so [--threads T] [--rounds R] [--offset B]
#                         [--dtype f32|bf16|f16] [--layout nchw|nhwc]
#                         [--act none|relu|add_relu] [SHAPE...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tool=$root/target/bench/build/bench/native_lib_ab
if [[ ${1:-} == --help || ${1:-} == -h ]]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
if [[ $# -lt 2 ]]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
if [[ ! -x $tool ]]; then
    echo "lib_ab.sh: $tool is missing; build it with: scripts/bench.sh --build-only" >&2
    exit 2
fi
a=$1 b=$2
shift 2
ab=$("$tool" "$a" "$b" "$@")
ba=$("$tool" "$b" "$a" "$@")
echo "# A $a, B $b; B/A time, geometric mean of both load orders (A first, B first)"
echo "shape,op,b_over_a,a_first,b_first"
# rows shape,op,first_ns,second_ns,second/first: B/A is second/first in the first run and
# first/second in the other
join -t, <(grep -v '^#' <<<"$ab" | tail -n +2 | awk -F, '{print $1"/"$2","$5}' | sort) \
         <(grep -v '^#' <<<"$ba" | tail -n +2 | awk -F, '{print $1"/"$2","1/$5}' | sort) |
    awk -F, '{split($1, k, "/"); printf "%s,%s,%.3f,%.3f,%.3f\n", k[1], k[2], sqrt($2 * $3), $2, $3}'
