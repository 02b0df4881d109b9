#!/usr/bin/env bash
# Regenerates the Java bindings of native/include/batchnorm.h with jextract 25 (or newer) and
# rewrites the stamp beside them; BindingsTest fails when the header changes without this.
# jextract is a separate download from https://jdk.java.net/jextract/ (put its bin/ on the PATH).
set -euo pipefail
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

# Only the API's functions: without the filter jextract also emits all of <stdint.h>.
functions=(bn_status_message bn_forward_train bn_forward_eval bn_backward_train bn_backward_eval
           bn_stats bn_merge_stats bn_forward_from_stats bn_backward_reduce bn_backward_from_sums
           bn_forward_train_f32 bn_forward_eval_f32 bn_backward_train_f32 bn_backward_eval_f32
           bn_set_num_threads bn_get_num_threads bn_isa)
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
echo "jextract.sh: regenerated $dir with $version"
