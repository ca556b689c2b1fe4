#!/usr/bin/env bash
# The chaos suite at full size (#16): 10 VHDs × 5 regions through triple deliveries, 50 handler kills,
# ARM 5xx/resets/Retry-After storms, a region down for good, Azurite restarts and a one-minute Service
# Bus outage, each ending with the same invariants. CI runs the same tests at reduced sizes (see the
# README, "Chaos"). Any size can be overridden from the environment, e.g.
#   GALLEON_CHAOS_KILLS=100 scripts/chaos.sh the_batch_survives_the_handler_killed
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export GALLEON_CHAOS_IMAGES="${GALLEON_CHAOS_IMAGES:-10}"
export GALLEON_CHAOS_REGIONS="${GALLEON_CHAOS_REGIONS:-5}"
export GALLEON_CHAOS_KILLS="${GALLEON_CHAOS_KILLS:-50}"
export GALLEON_CHAOS_OUTAGE_SECONDS="${GALLEON_CHAOS_OUTAGE_SECONDS:-60}"
export GALLEON_CHAOS_AZURITE_RESTARTS="${GALLEON_CHAOS_AZURITE_RESTARTS:-3}"
cargo build --release -p galleon
log=$(mktemp)
status=0
GALLEON_BIN="$root/target/release/galleon-handler" \
  cargo test -p devcloud --test chaos -- --test-threads=1 --nocapture "$@" 2>&1 | tee "$log" || status=$?
echo "== chaos counts" >&2
grep -E '^(CHAOS |  step.failed|  dead letter)' "$log" >&2 || true
rm -f "$log"
exit "$status"
