#!/usr/bin/env bash
# Short fuzzing runs of every target in fuzz/ (cargo-fuzz, libFuzzer). test.sh calls it with the
# default 15 seconds a target; pass another number of seconds to fuzz longer.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
# cargo-fuzz asks rustc for sanitizer flags that only nightly accepts; the stable toolchain
# accepts them with RUSTC_BOOTSTRAP, which is enough for fuzzing.
export RUSTC_BOOTSTRAP=1
cd fuzz
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in $(cargo fuzz list); do
  echo "fuzzing $target for ${seconds}s"
  if ! cargo fuzz run -O "$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
    cat "$log"
    echo "error: fuzz target $target failed; the crashing input is under fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E "^Done" "$log" || true
done
