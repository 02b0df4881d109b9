#!/usr/bin/env bash
# Builds the native library and the jar, then runs the demo (examples/demo): trains a BatchNorm on
# synthetic data, checks its running statistics against double precision, and times it.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/demo.sh [--help]

Builds panama-batchnorm (mvn package, tests skipped) and runs the demo in examples/demo: a few
training steps of a BatchNorm2d on synthetic data, a check of its running statistics against the
same statistics computed in double precision (exit code 1 when it fails), and the time of
training forward, eval forward and backward on a (32, 64, 56, 56) tensor. The library jar runs
on the module path, as a modular application would use it.
Needs what the build needs: a JDK 25+ installed anywhere (Maven may run on 17), Maven, CMake and
gcc with OpenMP.
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "building (mvn package, tests skipped) ..."
if ! mvn -B -q -DskipTests -DskipJavadoc=true package >"$log" 2>&1; then
  # Maven 3.8 writes colour resets even in batch mode: strip them.
  sed 's/\x1b\[[0-9;]*m//g' "$log"
  echo "demo: the build failed (output above)" >&2
  exit 1
fi
jdk=$(bash scripts/check-jdk.sh --print-home 25)
version=$(sed -n 's/^  <version>\(.*\)<\/version>/\1/p' pom.xml | head -n 1)
exec "$jdk/bin/java" --enable-native-access=dev.panamabn \
  --module-path "target/panama-batchnorm-$version.jar:target/lib" --add-modules dev.panamabn \
  -cp target/test-classes dev.panamabn.demo.Demo
