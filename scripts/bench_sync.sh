#!/usr/bin/env bash
# The synchronised training step benchmark (bench/java/dev/panamabn/bench/SyncStepBench.java)
# under mpirun, for 1, 2 and 4 ranks; see usage below.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/bench_sync.sh [--help] [--quick] [--ranks LIST] [--shape NxCxHxW] [--csv FILE]

Times one training step (forward + backward) of SyncBatchNorm on (32,64,56,56) split along N
over 1, 2 and 4 MPI processes, against a local BatchNorm step on the same shard, all ranks at
once; prints the suite's CSV rows (op sync_step, impls panama-batchnorm-sync-Kranks and
panama-batchnorm-local-Kranks, threads = ranks x threads per rank), the exchange's share of the
step, and the goal check of scripts/bench_report.py. Threads per rank: the cores divided by the
ranks (at least 1; more ranks than cores are oversubscribed and say little).

  --quick        3 rounds of 5 steps (default 9 rounds of 10 steps)
  --ranks LIST   comma-separated rank counts (default 1,2,4)
  --shape S      the whole batch (default 32x64x56x56)
  --csv FILE     where the rows go (default target/bench/sync.csv)
Needs Open MPI (apt-get install openmpi-bin libopenmpi-dev) and what the build needs.
USAGE
}

rounds=9
steps=10
ranks=1,2,4
shape=32x64x56x56
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
csv=$root/target/bench/sync.csv
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) rounds=3; steps=5; shift ;;
    --ranks) ranks=${2:?--ranks needs a list}; shift 2 ;;
    --shape) shape=${2:?--shape needs NxCxHxW}; shift 2 ;;
    --csv) csv=${2:?--csv needs a file}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
cd "$root"
command -v mpirun >/dev/null || { echo "bench_sync: mpirun not found: apt-get install openmpi-bin libopenmpi-dev" >&2; exit 1; }
mkdir -p "$(dirname "$csv")"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "building (mvn -Pbench -DskipTests test-compile) ..."
if ! nice mvn -B -q -Pbench -DskipTests test-compile >"$log" 2>&1; then
  sed 's/\x1b\[[0-9;]*m//g' "$log"
  echo "bench_sync: the build failed (output above)" >&2
  exit 1
fi
[[ -f target/classes/native/linux-x86_64/libbatchnorm_mpi.so ]] ||
  { echo "bench_sync: no libbatchnorm_mpi.so: CMake found no MPI (apt-get install libopenmpi-dev)" >&2; exit 1; }
jdk=$(bash scripts/check-jdk.sh --print-home 25)
cores=$(nproc)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
{
  echo "# sync_step benchmark: $cpu, $cores cores, $(date -u +%Y-%m-%d), whole batch $shape, $rounds rounds of $steps steps"
  for k in ${ranks//,/ }; do
    threads=$(( cores / k > 0 ? cores / k : 1 ))
    # Each rank on cores of its own for its threads (mpirun's default binds a rank to one core,
    # which would put a rank's OpenMP threads on one core); unbound when oversubscribed.
    if (( k * threads <= cores )); then
      binding=(--map-by "slot:PE=$threads" --bind-to core)
    else
      binding=(--oversubscribe --bind-to none)
    fi
    mpirun --allow-run-as-root "${binding[@]}" -np "$k" "$jdk/bin/java" --enable-native-access=ALL-UNNAMED \
      -cp target/classes:target/test-classes dev.panamabn.bench.SyncStepBench \
      --shape "$shape" --threads "$threads" --rounds "$rounds" --steps "$steps"
  done
} | tee "$csv"
echo
/usr/bin/python3 scripts/bench_report.py --csv "${csv%.csv}-report.csv" "$csv" |
  sed -n -e '/^goal: a synchronised/,/^$/p' -e "/^goal: the exchange's own cost/,/^\$/p"
echo "csv: $csv"
