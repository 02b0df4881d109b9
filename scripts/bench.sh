#!/usr/bin/env bash
# The benchmark suite: panama-batchnorm beside its peers, measured in one run; one table, one CSV,
# one PNG chart.
#
# usage: scripts/bench.sh [--quick] [--csv FILE] [--chart FILE] [--no-install]
#
#   full (default)  shapes 32x64x56x56 256x512x7x7 64x256x14x14 8x32x112x112 128x16x32x32 1x8x4x4,
#                   1 and 2 threads; JMH 3 x 0.5 s warm-up + 5 x 0.5 s measured per case, C and
#                   Python peers 15 rounds of >= 20 ms. Takes 20 to 30 minutes.
#   --quick         the shapes the issue's targets name, 32x64x56x56 256x512x7x7 64x256x14x14
#                   1x8x4x4, 2 threads (java-scalar: 1); JMH 2 x 0.3 s warm-up + 3 x 0.2 s
#                   measured, C and Python peers 7 rounds of >= 5 ms. About two and a half
#                   minutes plus the first build.
#   --csv FILE      the merged CSV (default target/bench/bench.csv); the table is also written
#                   beside it as FILE.txt
#   --chart FILE    the chart (default: the CSV's name with .png)
#   --no-install    don't apt-get install missing peers (by default, as root, the script installs
#                   Debian's python3-torch, libdnnl-dev and python3-matplotlib when missing)
#
# Peers (each prints rows shape,layout,op,impl,threads,median_ns; one that cannot run prints
# "skipped: <peer>: <reason>"):
#   stream      bench/stream_bench.c, STREAM-like copy and triad bandwidth (gcc, OpenMP)
#   native      the CMake target native_bench: the C kernel, a plain two-pass C baseline, and
#               per shape the rooflines of the `vs roof` column: a copy of the tensor (y = x) and
#               backward's add (dx = dy + x), and reads of x and of dy and x
#   java        JMH in the Maven profile `bench`: panama-batchnorm (segments and float[]),
#               java-scalar, java-vector; run through Maven, which finds JDK 25 by itself. Then,
#               in the same JVM, panama-batchnorm's training against its eval in the same rounds
#               (the train/eval target's ratio; JMH times the two ops in forks of their own)
#   pytorch     bench/pytorch_bench.py under Debian's python3 with python3-torch
#   onednn      bench/onednn_bench.c against Debian's libdnnl-dev
# BENCH_PYTHON names the python with torch (default /usr/bin/python3, Debian's).
# Medians everywhere: the median over rounds (JMH: measurement iterations) of the mean time per
# call. gbps counts each op's minimal traffic (see scripts/bench_report.py). After the table, the
# report checks the targets of issue 3 (PASS/MISS, with the copy roofline under each MISS).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command_line="scripts/bench.sh $*"
quick=0
install=1
csv=$root/target/bench/bench.csv
chart=
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) quick=1; shift ;;
        --csv) csv=${2:?--csv needs a file}; shift 2 ;;
        --chart) chart=${2:?--chart needs a file}; shift 2 ;;
        --no-install) install=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
mkdir -p "$(dirname "$csv")"
csv=$(cd "$(dirname "$csv")" && pwd)/$(basename "$csv")
chart=${chart:-${csv%.csv}.png}

work=$root/target/bench
raw=$work/raw
rm -rf "$raw"
mkdir -p "$raw"
skipped=()
start=$SECONDS

progress() { printf '[bench %3ds] %s\n' $((SECONDS - start)) "$*"; }
skip() {
    skipped+=("skipped: $1: $2")
    echo "skipped: $1: $2"
}
# Runs a peer: its rows go to $raw/<name>.csv, its '#' comments to the terminal.
run_peer() {
    local name=$1
    shift
    progress "$name: $*"
    if timeout "$peer_timeout" "$@" >"$raw/$name.csv" 2>"$work/$name.err"; then
        grep '^#' "$raw/$name.csv" | sed 's/^/    /' || true
    else
        skip "$name" "failed (exit $?): $(tail -n 3 "$work/$name.err" | tr '\n' ' ')"
        rm -f "$raw/$name.csv"
    fi
}

if [[ $quick -eq 1 ]]; then
    shapes=(32x64x56x56 256x512x7x7 64x256x14x14 1x8x4x4)
    threads=2
    c_args=(--threads "$threads" --rounds 7 --warmup 2 --min-round-ms 5)
    stream_args=(--threads 1,2 --rounds 7 --warmup 1 --min-round-ms 5 --mib 128)
    jmh_args="--warmup-iterations 2 --warmup-ms 300 --iterations 3 --iteration-ms 200 --same-rounds 9 --same-round-ms 10"
    peer_timeout=600
else
    shapes=(32x64x56x56 256x512x7x7 64x256x14x14 8x32x112x112 128x16x32x32 1x8x4x4)
    threads=1,2
    c_args=(--threads "$threads" --rounds 15 --warmup 3 --min-round-ms 20)
    stream_args=(--threads 1,2 --rounds 15 --warmup 2 --min-round-ms 20 --mib 256)
    jmh_args="--warmup-iterations 3 --warmup-ms 500 --iterations 5 --iteration-ms 500 --same-rounds 15 --same-round-ms 20"
    peer_timeout=7200
fi
shape_list=$(IFS=,; echo "${shapes[*]}")

echo "# panama-batchnorm benchmark suite, $([[ $quick -eq 1 ]] && echo quick || echo full) mode"
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores," \
     "$(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr)"
echo "# command: $command_line"
echo "# shapes: ${shapes[*]}; threads: $threads (stream: 1,2)"
read -r load _ </proc/loadavg
if awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    echo "# warning: load average $load on $(nproc) cores: other work competes for the cores," \
         "so times will be noisy (OpenMP teams suffer most); compare ratios or rerun when idle"
fi

# --- peers' Debian packages -----------------------------------------------------------------
# A fresh machine lacks the peers: install them when we may (root, apt-get); otherwise each
# missing peer is skipped below with a visible line.
if [[ $install -eq 1 && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    missing=()
    for pkg in python3-torch libdnnl-dev python3-matplotlib; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        progress "installing Debian packages for the peers: ${missing[*]} (--no-install to skip)"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
                >"$work/apt.log" 2>&1; then
            echo "bench.sh: apt-get install ${missing[*]} failed (see $work/apt.log); those peers will be skipped"
        fi
    fi
fi

# --- stream --------------------------------------------------------------------------------
if command -v gcc >/dev/null; then
    progress "stream: building"
    if gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O3 -fopenmp -o "$work/stream_bench" \
           "$root/bench/stream_bench.c" 2>"$work/stream-build.err"; then
        run_peer stream "$work/stream_bench" "${stream_args[@]}"
    else
        skip stream "gcc failed: $(head -n 3 "$work/stream-build.err" | tr '\n' ' ')"
    fi
else
    skip stream "gcc not found (apt-get install gcc)"
fi

# --- build: native library and Java (Maven, profile bench) ---------------------------------
built=0
if command -v mvn >/dev/null; then
    progress "build: mvn -Pbench -DskipTests test-compile (CMake, Java 25, JMH) ..."
    if (cd "$root" && nice mvn -B -q -Pbench -DskipTests test-compile) >"$work/build.log" 2>&1; then
        built=1
    else
        tail -n 20 "$work/build.log"
        skip java "the Maven build failed (log: $work/build.log)"
        skip native "the Maven build failed (log: $work/build.log)"
    fi
else
    skip java "mvn not found (apt-get install maven)"
    skip native "mvn not found (apt-get install maven)"
fi

# --- native_bench: the C kernel and the plain C baseline -----------------------------------
if [[ $built -eq 1 ]]; then
    native_build=$root/target/native
    targets=$(cmake --build "$native_build" --target help 2>/dev/null || true)
    if [[ $targets == *native_bench* ]]; then
        progress "native: building native_bench"
        if cmake --build "$native_build" --target native_bench >"$work/native-build.log" 2>&1; then
            native_bin=$(find "$native_build" -type f -name native_bench -perm -u+x | head -n 1)
            run_peer native "$native_bin" "${c_args[@]}" "${shapes[@]}"
        else
            skip native "cmake --build --target native_bench failed (log: $work/native-build.log)"
        fi
    else
        skip native "no CMake target native_bench in this checkout"
    fi
fi

# --- java: JMH through Maven (which runs it on the toolchain's JDK 25) ---------------------
if [[ $built -eq 1 ]]; then
    progress "java: JMH (progress below; JMH log in $work/java.log)"
    bench_args="--shapes $shape_list --threads $threads $jmh_args --gc --out $raw/java.csv"
    # cases: shapes x 3 ops x (3 impls x thread counts + java-scalar at 1 thread)
    thread_counts=$(tr ',' '\n' <<<"$threads" | wc -l)
    cases=$(( ${#shapes[@]} * 3 * (3 * thread_counts + 1) ))
    if (cd "$root" && timeout "$peer_timeout" mvn -B -q -Pbench validate exec:exec@bench-java \
            "-Dbench.args=$bench_args") 2>&1 | tee "$work/java.log" |
        awk -v cases="$cases" '
            /^# java:/ { print "    " $0; fflush() }
            /^# Parameters:/ { sub(/^# Parameters: /, ""); printf "    java %d/%d %s\n", ++i, cases, $0; fflush() }'
    then
        grep '^# alloc' "$raw/java.csv" | sed 's/^/    /' || true
    else
        skip java "the Java run (correctness check or JMH) failed (log: $work/java.log): $(grep -m 3 -E 'ERROR|Exception' "$work/java.log" | tr '\n' ' ')"
        rm -f "$raw/java.csv"
    fi
fi

# --- pytorch --------------------------------------------------------------------------------
# Debian's python3 (a pyenv python3 without torch may come first on the PATH)
torch_python=${BENCH_PYTHON:-/usr/bin/python3}
if [[ -x $torch_python ]] && "$torch_python" -c 'import torch' 2>/dev/null; then
    run_peer pytorch "$torch_python" "$root/bench/pytorch_bench.py" "${c_args[@]}" "${shapes[@]}"
else
    skip pytorch "$torch_python cannot import torch (apt-get install python3-torch, or set BENCH_PYTHON)"
fi

# --- onednn ---------------------------------------------------------------------------------
if [[ -f /usr/include/oneapi/dnnl/dnnl.h ]] && command -v gcc >/dev/null; then
    progress "onednn: building"
    if gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -fopenmp -o "$work/onednn_bench" \
           "$root/bench/onednn_bench.c" -ldnnl 2>"$work/onednn-build.err"; then
        run_peer onednn "$work/onednn_bench" "${c_args[@]}" "${shapes[@]}"
    else
        skip onednn "build failed: $(head -n 3 "$work/onednn-build.err" | tr '\n' ' ')"
    fi
else
    skip onednn "oneDNN headers not found (apt-get install libdnnl-dev)"
fi

# --- report ---------------------------------------------------------------------------------
progress "report"
shopt -s nullglob
inputs=("$raw"/*.csv)
if [[ ${#inputs[@]} -eq 0 ]]; then
    echo "bench.sh: no peer produced rows" >&2
    exit 1
fi
chart_args=(--chart "$chart")
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    skip chart "Debian's python3 has no matplotlib (apt-get install python3-matplotlib)"
    chart_args=()
fi
echo
/usr/bin/python3 "$root/scripts/bench_report.py" --csv "$csv" "${chart_args[@]}" \
    --shapes "$shape_list" \
    --title "scripts/bench.sh $([[ $quick -eq 1 ]] && echo --quick); $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores; $(date -u +%Y-%m-%d)" \
    "${inputs[@]}" | tee "$csv.txt"
echo
for line in "${skipped[@]}"; do
    echo "$line"
done
echo "csv: $csv"
[[ ${#chart_args[@]} -gt 0 ]] && echo "chart: $chart"
echo "table: $csv.txt"
progress "done"
