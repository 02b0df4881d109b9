#!/usr/bin/env bash
# Checks that CI runs besides `mvn verify`; see usage below.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/ci_reliability.sh [--help] [STEP]...

Steps (default: all of them, in this order):
  sanitize    the C tests (ctest) built with AddressSanitizer + UndefinedBehaviorSanitizer (gcc)
  fuzz        the libFuzzer harness native/fuzz (clang) for FUZZ_SECONDS (default 120)
  properties  the property-based Java tests at full size (Maven profile properties-full, at least
              10^5 generated calls); the C tests are not run again
  consumer    mvn install (tests skipped), then examples/consumer compiled against the installed
              jar and run, on the module path and on the class path
  all         every step above

Build trees go to target/native-asan and target/native-fuzz, fuzz findings to
target/fuzz-artifacts. As root, the fuzz step installs clang's Debian packages when missing.
Environment: FUZZ_SECONDS, JOBS (parallel build jobs, default 2).
USAGE
}

cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-120}"
JOBS="${JOBS:-2}"

# clang, its sanitizer/libFuzzer runtime and its OpenMP runtime are Debian packages; a fresh machine
# has only gcc. Install them when running as root (CI), else say what is missing.
ensure_clang() {
  local missing=()
  command -v clang >/dev/null || missing+=(clang)
  dpkg -s libclang-rt-14-dev >/dev/null 2>&1 || missing+=(libclang-rt-14-dev)
  dpkg -s libomp-14-dev >/dev/null 2>&1 || missing+=(libomp-14-dev)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "ci_reliability: fuzzing needs the Debian packages: ${missing[*]} (apt-get install them)" >&2
    exit 1
  fi
  echo "ci_reliability: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Runs Maven with its log in a file: on success prints the surefire summary lines (the JUnit
# counts), on failure the whole log. Maven 3.8 writes colour resets even in batch mode: stripped.
mvn_step() {
  local log
  log=$(mktemp)
  if mvn -B "$@" >"$log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^\[(INFO|WARNING|ERROR)\] Tests run: [0-9]+, Failures: [0-9]+, Errors: [0-9]+, Skipped: [0-9]+$' || true
    rm -f "$log"
  else
    sed 's/\x1b\[[0-9;]*m//g' "$log"
    rm -f "$log"
    echo "ci_reliability: mvn $* failed (log above)" >&2
    exit 1
  fi
}

run_sanitize() {
  echo "== C tests under ASan + UBSan (gcc)"
  cmake -S . -B target/native-asan -DBN_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=gcc >/dev/null
  cmake --build target/native-asan --parallel "$JOBS"
  (cd target/native-asan &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure)
}

run_fuzz() {
  ensure_clang
  echo "== libFuzzer harness for ${FUZZ_SECONDS} s"
  cmake -S . -B target/native-fuzz -DBN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang >/dev/null
  cmake --build target/native-fuzz --parallel "$JOBS" --target bn_fuzz
  mkdir -p target/fuzz-corpus target/fuzz-artifacts
  # Idle OpenMP workers sleep instead of spinning: the fuzzer's own thread needs the core.
  # The first directory collects new inputs; the committed seeds are only read.
  if ! OMP_WAIT_POLICY=passive target/native-fuzz/native/fuzz/bn_fuzz \
      -max_total_time="$FUZZ_SECONDS" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix=target/fuzz-artifacts/ \
      target/fuzz-corpus native/fuzz/corpus >target/fuzz.log 2>&1; then
    grep -v -E '^#[0-9]+ +(NEW|REDUCE|pulse)' target/fuzz.log | tail -60
    echo "ci_reliability: the fuzzer found a failure; reproduce with:" >&2
    echo "  target/native-fuzz/native/fuzz/bn_fuzz target/fuzz-artifacts/<file>" >&2
    exit 1
  fi
  grep -E '^(Done|stat::)' target/fuzz.log
}

run_properties() {
  echo "== property-based Java tests, full size (>= 10^5 generated calls)"
  # mvn verify already ran them small, and ran the C tests: this reruns only the properties.
  mvn_step -Pproperties-full -DskipCtest=true -Dtest=BatchNormPropertyTest \
    -Dsurefire.failIfNoSpecifiedTests=false test
}

run_consumer() {
  echo "== examples/consumer against the installed jar (module path, then class path)"
  mvn_step -DskipTests install
  for profile in "" "-Pclasspath"; do
    local log
    log=$(mktemp)
    if mvn -B -f examples/consumer/pom.xml $profile verify >"$log" 2>&1; then
      grep '^consumer: ' "$log"
      rm -f "$log"
    else
      sed 's/\x1b\[[0-9;]*m//g' "$log"
      rm -f "$log"
      echo "ci_reliability: the consumer failed (${profile:-module path}; log above)" >&2
      exit 1
    fi
  done
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
for step in "${steps[@]}"; do
  case "$step" in
    -h|--help) usage; exit 0 ;;
    sanitize) run_sanitize ;;
    fuzz) run_fuzz ;;
    properties) run_properties ;;
    consumer) run_consumer ;;
    all) run_sanitize; run_fuzz; run_properties; run_consumer ;;
    *) usage >&2; exit 2 ;;
  esac
done
