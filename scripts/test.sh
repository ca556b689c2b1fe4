#!/usr/bin/env bash
# Sets up and runs every test: formatting, clippy, the release build of the handler and the galleon
# tool, and the whole workspace's tests (unit, fixtures, real sockets, Azurite, qemu-img disks, Python
# and JavaScript SDK conformance, the devcloud binary, the galleon tool).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
echo "== release build of the handler and the galleon tool" >&2
cargo build --release -p galleon -p galleon-cli
echo "== tests" >&2
GALLEON_BIN="$root/target/release/galleon-handler" GALLEON_CLI="$root/target/release/galleon" \
  cargo test --workspace --no-fail-fast -- --test-threads=2
