#!/usr/bin/env bash
# Builds everything (native library, Java, jar) and runs the demo: see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "building (mvn -DskipTests package) ..."
if ! mvn -B -q -DskipTests package >"$log" 2>&1; then
  cat "$log"
  echo "demo: the build failed (output above)" >&2
  exit 1
fi
# validate selects the JDK 25 toolchain that exec:exec@demo runs the jar with.
mvn -B -q validate exec:exec@demo
