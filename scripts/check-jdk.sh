#!/usr/bin/env bash
# Finds an installed JDK of a given major version or newer, where maven-toolchains-plugin's
# discovery looks. Maven runs it in `validate`, before the toolchains plugin, to turn "no JDK 25+"
# into one clear line; scripts/demo.sh asks it for the JDK to run the demo with.
set -u

usage() {
  cat <<'USAGE'
usage: scripts/check-jdk.sh [--help] [--print-home] [MAJOR]

Looks for a JDK whose major version is MAJOR (default 25) or newer: in JAVA_HOME, JAVA*_HOME and
JDK*_HOME, /usr/lib/jvm, /usr/java, /opt/java, /opt/jdk*, SDKMAN, ~/.jdks, ~/.m2/jdks and macOS's
JavaVirtualMachines. Exits 0 when there is one; otherwise prints what to install and exits 1.
Without --print-home it also exits 0 when ~/.m2/toolchains.xml exists (the toolchains plugin then
decides alone).
  --print-home   print the home directory of the newest such JDK
USAGE
}

print_home=false
required=25
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --print-home) print_home=true ;;
    [0-9]*) required=$arg ;;
    *) usage >&2; exit 2 ;;
  esac
done

if ! $print_home && [ -f "$HOME/.m2/toolchains.xml" ]; then
  exit 0
fi

candidates=()
for var in $(compgen -e); do
  case "$var" in JAVA_HOME|JAVA*_HOME|JDK*_HOME) candidates+=("${!var}") ;; esac
done
for dir in /usr/lib/jvm/* /usr/java/* /opt/java/* /opt/jdk* "$HOME"/.sdkman/candidates/java/* \
           "$HOME"/.jdks/* "$HOME"/.m2/jdks/* /Library/Java/JavaVirtualMachines/*/Contents/Home; do
  candidates+=("$dir")
done

best=""
best_version=0
for home in "${candidates[@]}"; do
  release="$home/release"
  [ -f "$release" ] && [ -x "$home/bin/javac" ] || continue
  version=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release")
  if [ -n "$version" ] && [ "$version" -ge "$required" ] && [ "$version" -gt "$best_version" ]; then
    best=$home
    best_version=$version
  fi
done

if [ -n "$best" ]; then
  $print_home && echo "$best"
  exit 0
fi
echo "panama-batchnorm needs a JDK $required or newer to build (Maven itself may run on JDK 17): install one, e.g. Eclipse Temurin $required under /usr/lib/jvm, or point JAVA${required}_HOME at it." >&2
exit 1
