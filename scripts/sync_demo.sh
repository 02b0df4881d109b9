#!/usr/bin/env bash
# Data-parallel training with SyncBatchNorm over MPI (examples/sync): builds, then one mpirun.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/sync_demo.sh [--help] [RANKS]

Builds panama-batchnorm (mvn package, tests skipped) and runs examples/sync under Open MPI:
RANKS processes (default 4) each train a replica of a BatchNorm2d on their shard of every batch
with synchronised statistics, and check their running statistics against the whole batches'
in double precision and against every other rank's bits (exit code 1 when a check fails).
Needs Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) besides what the build
needs. As root, mpirun needs --allow-run-as-root; on a machine with fewer cores than ranks,
--oversubscribe: both are passed.
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  ""|[0-9]*) ;;
  *) usage >&2; exit 2 ;;
esac
ranks=${1:-4}

cd "$(dirname "$0")/.."
command -v mpirun >/dev/null || { echo "sync_demo: mpirun not found: apt-get install openmpi-bin libopenmpi-dev" >&2; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "building (mvn package, tests skipped) ..."
if ! mvn -B -q -DskipTests -DskipJavadoc=true package >"$log" 2>&1; then
  sed 's/\x1b\[[0-9;]*m//g' "$log"
  echo "sync_demo: the build failed (output above)" >&2
  exit 1
fi
jdk=$(bash scripts/check-jdk.sh --print-home 25)
version=$(sed -n 's/^  <version>\(.*\)<\/version>/\1/p' pom.xml | head -n 1)
exec mpirun --allow-run-as-root --oversubscribe -np "$ranks" "$jdk/bin/java" --enable-native-access=ALL-UNNAMED -cp "target/panama-batchnorm-$version.jar:target/test-classes" dev.panamabn.syncdemo.SyncDemo
