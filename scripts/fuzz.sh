#!/usr/bin/env bash
# Runs every fuzz target (crates/*/tests/fuzz.rs, the harness in crates/fuzzing) for the given seconds
# each (default 60), optimized. CI runs the same targets for 3 s each inside `cargo test`.
#   scripts/fuzz.sh [seconds]        GALLEON_FUZZ_SEED=<n> replays a run's inputs.
# Targets: VHD footer and partition table, ESP FAT reader (vhd); host protocol decoder, manifest parser,
# CloudEvents decoder (galleon); Service Bus SQL filter parser (devcloud-messaging).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export GALLEON_FUZZ_SECONDS="${1:-60}"
cargo test --release -p vhd -p galleon -p devcloud-messaging --test fuzz -- --nocapture --test-threads=1 fuzz_ 2>&1 |
  tee "${FUZZ_LOG:-/dev/null}" | grep -E "fuzz target|test result|panicked|FAILED|minimal input"
