#!/usr/bin/env bash
# Runs galleon's main job locally: builds galleon and the local cloud, starts Azurite, the ARM simulator,
# the managed identity, Service Bus, Event Grid and the Functions host (running galleon from host.json and
# functions/), makes a real fixed VHD with qemu-img, uploads it with a manifest, and shows the chain as a
# live timeline until the image version is ready in every region. Stops everything and removes what it
# made at the end; exits non-zero when the chain fails or times out. Arguments go to `devcloud demo`
# (--timeout, --time-factor).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v qemu-img >/dev/null || { echo "demo: qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
if [ ! -x tools/azurite/node_modules/.bin/azurite-blob ]; then
  (cd tools/azurite && npm install --no-audit --no-fund --loglevel=error)
fi
cargo build --release -p galleon -p devcloud
exec target/release/devcloud demo "$@"
