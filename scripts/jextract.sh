#!/usr/bin/env bash
# Regenerates the Java bindings of native/include/batchnorm.h with jextract; see usage below.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/jextract.sh [--help]

Regenerates java/src/main/java/dev/panamabn/internal/BatchNormNative*.java from
native/include/batchnorm.h with jextract 25 or newer (on the PATH; jextract is a separate
download from https://jdk.java.net/jextract/), for every function the header declares with
BN_API, and rewrites the stamp beside them (batchnorm.h.sha256). BindingsTest fails when the
header changes without this.
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."

header=native/include/batchnorm.h
out=java/src/main/java
pkg=dev.panamabn.internal
dir=$out/${pkg//.//}
stamp=$dir/batchnorm.h.sha256

if ! command -v jextract >/dev/null 2>&1; then
  echo "jextract.sh: jextract is not on the PATH; install jextract 25 from https://jdk.java.net/jextract/ and add its bin/ to the PATH (the committed bindings in $dir stay as they are)." >&2
  exit 1
fi

version=$(jextract --version 2>&1 | head -n 1)

# Every BN_API function of the header, and only those: without the filter jextract also emits
# all of <stdint.h>.
mapfile -t functions < <(sed 's|/\*.*\*/||' "$header" | grep -oP 'BN_API[^(;]*?\b\K\w+(?=\s*\()' |
  grep -v '^__attribute__$')
if [ "${#functions[@]}" -eq 0 ]; then
  echo "jextract.sh: no BN_API functions found in $header" >&2
  exit 1
fi
args=()
for f in "${functions[@]}"; do args+=(--include-function "$f"); done

# No -l: the symbols resolve through SymbolLookup.loaderLookup() once NativeLibrary has loaded the
# library, so a missing library is a clear error at first use instead of a dead class.
rm -f "$dir"/BatchNormNative.java "$dir"/'BatchNormNative$shared.java'
jextract --output "$out" -t "$pkg" --header-class-name BatchNormNative "${args[@]}" "$header"

{
  echo "# Written by scripts/jextract.sh: the header the bindings in this folder were generated from."
  echo "# BindingsTest fails when $header no longer has this hash: run scripts/jextract.sh."
  echo "sha256 $(sha256sum "$header" | cut -d' ' -f1)"
  echo "header $header"
  echo "generator $version"
} > "$stamp"
echo "jextract.sh: regenerated $dir with $version (${#functions[@]} functions)"
