#!/usr/bin/env bash
# The first README command: builds Rudder (release) and starts it with embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
ensure_deps
cargo build --release -p rudder
# The API server is not built yet; until it is, what runs is the store, through its benchmark.
exec ./target/release/rudder bench store "$@"
