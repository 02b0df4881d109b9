#!/usr/bin/env bash
# Builds everything (native library, Java, jar) and runs the demo: see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mvn -q -DskipTests package exec:exec@demo
