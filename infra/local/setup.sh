#!/usr/bin/env bash
# Idempotent local/CI set-up for a fresh Debian machine:
#   a Java 17+ JDK (DynamoDB Local, bound to 127.0.0.1 by a source-file launcher: javac), redis-server + redis-cli (tests), node_modules (npm ci).
# Fast (well under 2 s) when everything is already present.
set -euo pipefail

cd "$(dirname "$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")")"

missing_pkgs=()

java_major() {
  # `java -version` prints e.g.: openjdk version "17.0.15" 2025-04-15  (or "1.8.0_392" for Java 8)
  local v
  v="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
  [[ -z "$v" ]] && { echo 0; return; }
  if [[ "$v" == 1.* ]]; then v="${v#1.}"; fi
  echo "${v%%[.+_-]*}"
}

check_java() {
  # A JDK, not a JRE: infra/local/DynamoDbLocalLoopback.java runs in source-file mode (jdk.compiler).
  if command -v java >/dev/null 2>&1 && ! java --list-modules 2>/dev/null | grep -q '^jdk.compiler'; then
    echo "miss a JDK (java has no compiler: DynamoDB Local could not be bound to 127.0.0.1)"
    return 1
  fi
  if command -v java >/dev/null 2>&1; then
    local major
    major="$(java_major)"
    if [[ "$major" =~ ^[0-9]+$ ]] && (( major >= 17 )); then
      echo "ok   java $major ($(command -v java))"
      return 0
    fi
    echo "miss java 17+ (found java $major)"
  else
    echo "miss java 17+ (no java on PATH)"
  fi
  return 1
}

check_redis() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    echo "ok   $(redis-server --version | sed -n 's/.*\(v=[^ ]*\).*/redis-server \1/p')"
    return 0
  fi
  echo "miss redis-server / redis-cli"
  return 1
}

check_openssl() {
  # The tests and REDIS_TLS=1 make a throwaway CA and certificate with it.
  if command -v openssl >/dev/null 2>&1; then
    echo "ok   $(openssl version | cut -d' ' -f1-2)"
    return 0
  fi
  echo "miss openssl"
  return 1
}

check_java || missing_pkgs+=(openjdk-17-jdk-headless)
check_redis || missing_pkgs+=(redis-server)
check_openssl || missing_pkgs+=(openssl)

if (( ${#missing_pkgs[@]} > 0 )); then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "Missing system packages. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing_pkgs[*]}" >&2
    exit 1
  fi
  echo "installing ${missing_pkgs[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y "${missing_pkgs[@]}"
  check_java || { echo "java 17+ still not the default 'java' (see update-alternatives --config java)" >&2; exit 1; }
  check_redis || { echo "redis-server / redis-cli still missing after install" >&2; exit 1; }
  check_openssl || { echo "openssl still missing after install" >&2; exit 1; }
fi

command -v node >/dev/null 2>&1 || { echo "node is not installed (Node 20+ required)" >&2; exit 1; }
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "node $(node -v) is too old (Node 20+ required)" >&2
  exit 1
fi
echo "ok   node $(node -v)"

# npm writes node_modules/.package-lock.json last on every install, so it is the
# timestamp of the installed tree.
if [[ ! -d node_modules || ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "running npm ci"
  npm ci --no-audit --no-fund
else
  echo "ok   node_modules up to date with package-lock.json"
fi
