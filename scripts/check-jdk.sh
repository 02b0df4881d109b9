#!/usr/bin/env bash
# Run by Maven in `validate`, before the toolchains plugin: turns "no JDK 25+" into one clear line.
# It looks where maven-toolchains-plugin's discovery looks; when ~/.m2/toolchains.xml exists the
# plugin decides alone.
set -u
required=${1:-25}
[ -f "$HOME/.m2/toolchains.xml" ] && exit 0

candidates=()
for var in $(compgen -e); do
  case "$var" in JAVA_HOME|JAVA*_HOME|JDK*_HOME) candidates+=("${!var}") ;; esac
done
for dir in /usr/lib/jvm/* /usr/java/* /opt/java/* /opt/jdk* "$HOME"/.sdkman/candidates/java/* \
           "$HOME"/.jdks/* "$HOME"/.m2/jdks/* /Library/Java/JavaVirtualMachines/*/Contents/Home; do
  candidates+=("$dir")
done

for home in "${candidates[@]}"; do
  release="$home/release"
  [ -f "$release" ] && [ -x "$home/bin/javac" ] || continue
  version=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release")
  if [ -n "$version" ] && [ "$version" -ge "$required" ]; then
    exit 0
  fi
done

echo "panama-batchnorm needs a JDK $required or newer to build (Maven itself may run on JDK 17): install one, e.g. Eclipse Temurin $required under /usr/lib/jvm, or point JAVA${required}_HOME at it." >&2
exit 1
