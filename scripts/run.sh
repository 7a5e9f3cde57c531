#!/usr/bin/env bash
# The first README command: builds Rudder (release) and starts it with embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
ensure_deps
cargo build --release -p rudder
# Embedded defaults: data in /var/lib/rudder (as root), the API on https://127.0.0.1:6443, the
# admin kubeconfig in /var/lib/rudder/kubeconfig.yaml. Extra arguments go to `rudder server`.
exec ./target/release/rudder server "$@"
