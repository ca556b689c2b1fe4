#!/usr/bin/env bash
# Runs galleon's main job locally. Until the publishing chain lands (issue 5), this builds the handler,
# starts it exactly as the Functions host does, and replays one image's journey of facts through it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -p galleon
python3 scripts/replay.py
