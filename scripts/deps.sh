#!/usr/bin/env bash
# Installs, or names, the system packages Rudder's build and tests need. Sourced by run.sh and
# test.sh; safe to run again (it only installs what is missing).
set -euo pipefail

# command -> Debian package that provides it
declare -A NEEDED=(
  [cc]=build-essential
  [protoc]=protobuf-compiler   # etcd-client's build compiles etcd's protobuf files
  [etcd]=etcd-server           # the etcd backend's tests run a real etcd
)

missing_packages() {
  local pkgs=()
  for cmd in "${!NEEDED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || pkgs+=("${NEEDED[$cmd]}")
  done
  echo "${pkgs[@]:-}"
}

ensure_deps() {
  local pkgs
  pkgs=$(missing_packages)
  if [ -n "$pkgs" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing: $pkgs" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      # shellcheck disable=SC2086
      apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
    else
      echo "error: missing packages: $pkgs (as root: apt-get install $pkgs)" >&2
      exit 1
    fi
  fi
  if ! command -v kubectl >/dev/null 2>&1; then
    echo "error: no kubectl on PATH: the end-to-end tests drive the real kubectl (1.27-1.33)" >&2
    exit 1
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: no Rust toolchain: install rustup (https://rustup.rs) and a stable toolchain" >&2
    exit 1
  fi
}
