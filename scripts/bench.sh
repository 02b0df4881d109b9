#!/usr/bin/env bash
# The benchmark suite: panama-batchnorm beside its peers, measured in one run; one table, one CSV,
# one PNG chart, and the project's performance goals checked on them. How it measures:
# docs/PERFORMANCE.md.
#
# usage: scripts/bench.sh [--quick] [--csv FILE] [--chart FILE] [--peers LIST] [--no-install]
#        scripts/bench.sh --build-only
#
#   full (default)  the five large shapes 32x64x56x56 256x512x7x7 64x256x14x14 8x32x112x112
#                   128x16x32x32 in every layout (nchw, nhwc), dtype (f32, bf16, f16) and op at 2
#                   threads, warm and cold; float32 NCHW also at 1 thread; 1x8x4x4 at 1 and 2
#                   threads. C and Python peers 15 rounds of >= 20 ms, JMH 3 x 0.5 s warm-up +
#                   5 x 0.5 s measured per case. Takes one to two hours.
#   --quick         32x64x56x56 64x256x14x14 256x512x7x7 in every layout, dtype and op, warm;
#                   32x64x56x56 also cold; 1x8x4x4 (float32 NCHW); all at 2 threads. C and Python
#                   peers 7 rounds of >= 5 ms, JMH 2 x 0.3 s warm-up + 3 x 0.2 s measured. About
#                   ten minutes plus the first build.
#   --csv FILE      the merged CSV (default target/bench/bench.csv); the table and the goals are
#                   also written beside it as FILE.txt, and a Markdown summary of float32 NCHW
#                   (for the docs) with the CSV's name and .md
#   --chart FILE    the chart (default: the CSV's name with .png)
#   --peers LIST    run only these of stream,native,java,pytorch,onednn (default: all)
#   --no-install    don't apt-get install missing peers (by default, as root, the script installs
#                   Debian's python3-torch, libdnnl-dev and python3-matplotlib when missing)
#   --build-only    build the Java runner and the native tools (CMake with -DBN_BENCH=ON into
#                   target/bench/build), print where they are, and stop
#
# Peers (every one prints rows shape,layout,dtype,op,impl,threads,cache,median_ns; what one cannot
# run it names in a `# skipped:` line, and a peer that cannot run at all is skipped with a line):
#   stream   bench/c/stream_bench.c: DRAM copy and triad bandwidth (the %copy column's reference)
#   native   bench/c/native_bench.c: libbatchnorm's C kernel (panama-batchnorm-c), plain-c and the
#            per-shape rooflines of the `vs roof` column
#   java     JMH in the Maven profile `bench` (bench/java): panama-batchnorm (segments) and
#            panama-batchnorm-array (Java arrays), java-vector, java-scalar; run through Maven,
#            which finds JDK 25 by itself
#   pytorch  bench/python/pytorch_bench.py under Debian's python3 with python3-torch
#   onednn   bench/c/onednn_bench.c against Debian's libdnnl-dev
# BENCH_PYTHON names the python with torch (default /usr/bin/python3, Debian's).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command_line="scripts/bench.sh $*"
quick=0
install=1
build_only=0
peers=stream,native,java,pytorch,onednn
csv=$root/target/bench/bench.csv
chart=
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) quick=1; shift ;;
        --csv) csv=${2:?--csv needs a file}; shift 2 ;;
        --chart) chart=${2:?--chart needs a file}; shift 2 ;;
        --peers) peers=${2:?--peers needs a list}; shift 2 ;;
        --no-install) install=0; shift ;;
        --build-only) build_only=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
for p in ${peers//,/ }; do
    [[ ,stream,native,java,pytorch,onednn, == *,$p,* ]] ||
        { echo "bench.sh: unknown peer '$p' in --peers (stream,native,java,pytorch,onednn)" >&2; exit 2; }
done
wants() { [[ ,$peers, == *,$1,* ]]; }
mkdir -p "$(dirname "$csv")"
csv=$(cd "$(dirname "$csv")" && pwd)/$(basename "$csv")
chart=${chart:-${csv%.csv}.png}

work=$root/target/bench
build=$work/build
raw=$work/raw
mkdir -p "$work"
skipped=()
start=$SECONDS
progress() { printf '[bench %4ds] %s\n' $((SECONDS - start)) "$*"; }
skip() {
    skipped+=("skipped: $1: $2")
    echo "skipped: $1: $2"
}

# --- what to run: the same options go to every peer --------------------------------------------
all_ops=forward_train,forward_eval,backward,forward_train_relu,forward_train_add_relu,backward_relu,backward_add_relu
base_ops=forward_train,forward_eval,backward
if [[ $quick -eq 1 ]]; then
    three=32x64x56x56,64x256x14x14,256x512x7x7
    plans=(
        "--shapes $three --layouts nchw,nhwc --dtypes f32,bf16,f16 --ops $all_ops --threads 2 --caches warm"
        "--shapes 32x64x56x56 --layouts nchw,nhwc --dtypes f32,bf16,f16 --ops $all_ops --threads 2 --caches cold"
        "--shapes 1x8x4x4 --layouts nchw --dtypes f32 --ops $base_ops --threads 2 --caches warm"
    )
    shape_order=$three,1x8x4x4
    stream_threads=2
    timing=(--rounds 7 --warmup 2 --min-round-ms 5)
    jmh="--warmup-iterations 2 --warmup-ms 300 --iterations 3 --iteration-ms 200"
    peer_timeout=1800
else
    large=32x64x56x56,256x512x7x7,64x256x14x14,8x32x112x112,128x16x32x32
    plans=(
        "--shapes $large --layouts nchw,nhwc --dtypes f32,bf16,f16 --ops $all_ops --threads 2 --caches warm,cold"
        "--shapes $large --layouts nchw --dtypes f32 --ops $base_ops --threads 1 --caches warm,cold"
        "--shapes 1x8x4x4 --layouts nchw --dtypes f32 --ops $base_ops --threads 1,2 --caches warm,cold"
    )
    shape_order=$large,1x8x4x4
    stream_threads=1,2
    timing=(--rounds 15 --warmup 3 --min-round-ms 20)
    jmh="--warmup-iterations 3 --warmup-ms 500 --iterations 5 --iteration-ms 500"
    peer_timeout=14400
fi

# --- the machine --------------------------------------------------------------------------------
cache_size() { # the size of cache level $1 (2 or 3) as "1 MiB", from glibc (CPUID or sysfs)
    local bytes
    bytes=$(getconf "LEVEL${1}_CACHE_SIZE" 2>/dev/null || true)
    if [[ ! $bytes =~ ^[0-9]+$ || $bytes -le 0 ]]; then echo "unknown"
    elif [[ $bytes -ge 1048576 ]]; then echo "$((bytes / 1048576)) MiB"
    else echo "$((bytes / 1024)) KiB"; fi
}
# AMD's L3 belongs to a core complex of at most 32 MiB; what the OS reports is often the socket's
# (hundreds of MiB inside a VM). The kernels plan with at most 32 MiB there (native/src/plan.c),
# and the report says both. Needs l3_bytes.
l3_size() {
    local reported
    reported=$(cache_size 3)
    if grep -qm 1 '^vendor_id.*AuthenticAMD' /proc/cpuinfo && [[ $l3_bytes -gt $((32 << 20)) ]]; then
        echo "$reported as reported, at most 32 MiB per core complex"
    else
        echo "$reported"
    fi
}
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
flags=$(grep -m 1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
        grep -xE 'avx2|fma|f16c|avx512f|avx512_bf16|avx512_fp16|amx_bf16|clflushopt' | tr '\n' ' ' | sed 's/ $//')
read -r load _ </proc/loadavg
l3_bytes=$(getconf LEVEL3_CACHE_SIZE 2>/dev/null || true)
[[ $l3_bytes =~ ^[0-9]+$ ]] || l3_bytes=0
machine=$work/machine.txt
{
    echo "cpu=$cpu"
    echo "cores=$(nproc)"
    echo "l2=$(cache_size 2)"
    echo "l3=$(l3_size)"
    echo "flags=$flags"
    echo "command=$command_line"
    echo "date=$(date -u +%Y-%m-%d)"
    echo "mode=$([[ $quick -eq 1 ]] && echo quick || echo full)"
    echo "load=$load"
} >"$machine"
if [[ $build_only -eq 0 ]]; then
    echo "# panama-batchnorm benchmark suite, $([[ $quick -eq 1 ]] && echo quick || echo full) mode"
    echo "# machine: $cpu, $(nproc) cores, L2 $(cache_size 2) per core, L3 $(l3_size);" \
         "flags: $flags; $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr)"
    echo "# command: $command_line"
    if awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 4) }'; then
        echo "# warning: load average $load on $(nproc) cores: other work competes for the cores," \
             "so times will be noisy (OpenMP teams suffer most); compare ratios or rerun when idle"
    fi
fi

# --- peers' Debian packages -----------------------------------------------------------------------
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

# --- build: the Java runner (Maven, profile bench) and the native tools (CMake, BN_BENCH=ON) ---
java_built=0
native_built=0
if wants java || [[ $build_only -eq 1 ]]; then
    if command -v mvn >/dev/null; then
        progress "build: mvn -Pbench -DskipTests test-compile (the library, Java 25, JMH)"
        if (cd "$root" && nice mvn -B -q -Pbench -DskipTests test-compile) >"$work/build-java.log" 2>&1; then
            java_built=1
        else
            tail -n 20 "$work/build-java.log"
            skip java "the Maven build failed (log: $work/build-java.log)"
        fi
    else
        skip java "mvn not found (apt-get install maven)"
    fi
fi
if command -v cmake >/dev/null; then
    progress "build: cmake -DBN_BENCH=ON into $build (the library, native_bench, peers, flush helper)"
    if { cmake -S "$root" -B "$build" -DBN_BENCH=ON -DCMAKE_BUILD_TYPE=Release &&
         nice cmake --build "$build" --target bench_tools --parallel 2; } >"$work/build-native.log" 2>&1; then
        native_built=1
    else
        tail -n 20 "$work/build-native.log"
        echo "bench.sh: the native build failed (log: $work/build-native.log)"
    fi
else
    echo "bench.sh: cmake not found (apt-get install cmake): no native tools"
fi
tools=$build/bench
flush_lib=$tools/libbench_flush.so
if [[ $build_only -eq 1 ]]; then
    [[ $native_built -eq 1 ]] && echo "native tools: $tools ($(cd "$tools" && ls -d native_bench stream_bench onednn_bench native_lib_ab libbench_flush.so 2>/dev/null | tr '\n' ' '))"
    [[ $java_built -eq 1 ]] && echo "java runner: mvn -Pbench validate exec:exec@bench-java -Dbench.flush=$flush_lib -Dbench.args=\"...\""
    [[ $native_built -eq 1 && $java_built -eq 1 ]] && exit 0
    exit 1
fi
[[ -f $flush_lib ]] || echo "bench.sh: no $flush_lib: cold-cache rows of the Java and PyTorch peers will be skipped"

rm -rf "$raw"
mkdir -p "$raw"
# Runs one peer on every plan: rows to $raw/<name>-<k>.csv, stderr to $work/<name>-<k>.err; a
# few comment lines (the peer's header, the kernels' ISA, failed checks) to the terminal.
run_peer() {
    local name=$1 k=0 plan
    shift
    for plan in "${plans[@]}"; do
        k=$((k + 1))
        progress "$name $k/${#plans[@]}: $plan"
        # shellcheck disable=SC2086 # the plan is a list of options
        if timeout "$peer_timeout" "$@" $plan "${timing[@]}" >"$raw/$name-$k.csv" 2>"$work/$name-$k.err"; then
            grep -E '^# ([a-z_]+_bench:|isa:|check .*FAILED)' "$raw/$name-$k.csv" | sed 's/^/    /' || true
        else
            skip "$name" "failed on plan $k (exit $?): $(tail -n 3 "$work/$name-$k.err" | tr '\n' ' ')"
            rm -f "$raw/$name-$k.csv"
        fi
    done
}

# --- stream ---------------------------------------------------------------------------------------
if wants stream; then
    if [[ -x $tools/stream_bench ]]; then
        # arrays of at least half the last-level cache each, so that the three pass it
        mib=$(( l3_bytes / 2 / 1048576 > 128 ? l3_bytes / 2 / 1048576 : 128 ))
        progress "stream: 3 arrays of $mib MiB, threads $stream_threads"
        if "$tools/stream_bench" --threads "$stream_threads" "${timing[@]}" --mib "$mib" \
                >"$raw/stream.csv" 2>"$work/stream.err"; then
            grep '^# threads' "$raw/stream.csv" | sed 's/^/    /' || true
        else
            skip stream "failed: $(tail -n 3 "$work/stream.err" | tr '\n' ' ')"
            rm -f "$raw/stream.csv"
        fi
    else
        skip stream "no stream_bench (the native build failed)"
    fi
fi

# --- native: libbatchnorm's C kernel, plain-c, the rooflines ---------------------------------------
if wants native; then
    if [[ -x $tools/native_bench ]]; then
        run_peer native "$tools/native_bench"
    else
        skip native "no native_bench (the native build failed)"
    fi
fi

# --- java: JMH through Maven (which runs it on the toolchain's JDK 25) -----------------------------
if wants java && [[ $java_built -eq 1 ]]; then
    k=0
    for plan in "${plans[@]}"; do
        k=$((k + 1))
        progress "java $k/${#plans[@]}: $plan (JMH log: $work/java-$k.log)"
        if (cd "$root" && timeout "$peer_timeout" mvn -B -q -Pbench validate exec:exec@bench-java \
                "-Dbench.flush=$flush_lib" "-Dbench.args=$plan $jmh --out $raw/java-$k.csv") \
                >"$work/java-$k.log" 2>&1; then
            grep -E '^# (isa:|check .*FAILED)' "$work/java-$k.log" | sed 's/^/    /' || true
            echo "    java: $(grep -c '^# Parameters:' "$work/java-$k.log" || true) JMH cases"
        else
            skip java "the Java run failed on plan $k (log: $work/java-$k.log): $(grep -m 3 -E 'ERROR|Exception' "$work/java-$k.log" | tr '\n' ' ')"
            rm -f "$raw/java-$k.csv"
        fi
    done
fi

# --- pytorch --------------------------------------------------------------------------------------
# Debian's python3 (a pyenv python3 without torch may come first on the PATH)
torch_python=${BENCH_PYTHON:-/usr/bin/python3}
if wants pytorch; then
    if [[ -x $torch_python ]] && "$torch_python" -c 'import torch' 2>/dev/null; then
        flush_args=()
        [[ -f $flush_lib ]] && flush_args=(--flush-lib "$flush_lib")
        run_peer pytorch "$torch_python" "$root/bench/python/pytorch_bench.py" "${flush_args[@]}"
    else
        skip pytorch "$torch_python cannot import torch (apt-get install python3-torch, or set BENCH_PYTHON)"
    fi
fi

# --- onednn ---------------------------------------------------------------------------------------
if wants onednn; then
    if [[ -x $tools/onednn_bench ]]; then
        run_peer onednn "$tools/onednn_bench"
    else
        skip onednn "no onednn_bench: oneDNN's headers or library were not found (apt-get install libdnnl-dev)"
    fi
fi

# --- report ---------------------------------------------------------------------------------------
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
    --summary "${csv%.csv}.md" --shapes "$shape_order" --machine "$machine" "${inputs[@]}" |
    tee "$csv.txt"
echo
for line in "${skipped[@]}"; do
    echo "$line"
done
echo "csv: $csv"
[[ ${#chart_args[@]} -gt 0 ]] && echo "chart: $chart"
echo "table and goals: $csv.txt"
echo "float32 NCHW summary (Markdown): ${csv%.csv}.md"
progress "done"
