#!/usr/bin/env bash
# Regenerates the Java bindings of native/include/batchnorm.h and native/mpi/bn_mpi.h with jextract;
# see usage below.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/jextract.sh [--help]

Regenerates java/src/main/java/dev/panamabn/internal/BatchNormNative*.java from
native/include/batchnorm.h (every function declared with BN_API) and
java/src/main/java/dev/panamabn/internal/mpi/BatchNormMpi*.java from native/mpi/bn_mpi.h (every
function declared with BN_MPI_API) with jextract 25 or newer (on the PATH; jextract is a
separate download from https://jdk.java.net/jextract/), and rewrites the stamp beside each
(batchnorm.h.sha256, bn_mpi.h.sha256). BindingsTest and MpiBindingsTest fail when a header
changes without this.
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."

out=java/src/main/java

if ! command -v jextract >/dev/null 2>&1; then
  echo "jextract.sh: jextract is not on the PATH; install jextract 25 from https://jdk.java.net/jextract/ and add its bin/ to the PATH (the committed bindings stay as they are)." >&2
  exit 1
fi

version=$(jextract --version 2>&1 | head -n 1)

# generate HEADER MACRO PACKAGE CLASS TEST: the bindings of every MACRO-marked function of
# HEADER as PACKAGE.CLASS, and the stamp beside them that TEST checks.
generate() {
  local header=$1 macro=$2 pkg=$3 class=$4 test=$5
  local dir=$out/${pkg//.//}
  local stamp=$dir/$(basename "$header").sha256
  # Every exported function of the header, and only those: without the filter jextract also
  # emits all of <stdint.h>.
  local functions
  mapfile -t functions < <(sed 's|/\*.*\*/||' "$header" | grep -v '^#' |
    grep -oP "$macro"'[^(;]*?\b\K\w+(?=\s*\()' | grep -v '^__attribute__$')
  if [ "${#functions[@]}" -eq 0 ]; then
    echo "jextract.sh: no $macro functions found in $header" >&2
    exit 1
  fi
  local args=() f
  for f in "${functions[@]}"; do args+=(--include-function "$f"); done

  # No -l: the symbols resolve through SymbolLookup.loaderLookup() once the Java loader has
  # loaded the library, so a missing library is a clear error at first use instead of a dead class.
  rm -f "$dir/$class.java" "$dir/$class\$shared.java"
  jextract --output "$out" -t "$pkg" --header-class-name "$class" "${args[@]}" "$header"

  {
    echo "# Written by scripts/jextract.sh: the header the bindings in this folder were generated from."
    echo "# $test fails when $header no longer has this hash: run scripts/jextract.sh."
    echo "sha256 $(sha256sum "$header" | cut -d' ' -f1)"
    echo "header $header"
    echo "generator $version"
  } > "$stamp"
  echo "jextract.sh: regenerated $dir with $version (${#functions[@]} functions)"
}

generate native/include/batchnorm.h BN_API dev.panamabn.internal BatchNormNative BindingsTest
# The MPI shim's header includes only <stdint.h>: no MPI needed to generate its bindings.
generate native/mpi/bn_mpi.h BN_MPI_API dev.panamabn.internal.mpi BatchNormMpi MpiBindingsTest
