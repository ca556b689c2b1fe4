#!/usr/bin/env bash
# Installs what galleon's local cloud and tests need, into the project's own folders:
# Azurite (npm, tools/azurite/node_modules) and the Python SDKs for conformance tests (.venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ ! -x tools/azurite/node_modules/.bin/azurite-blob ]; then
  echo "setup: installing Azurite from npm into tools/azurite" >&2
  (cd tools/azurite && npm install --no-audit --no-fund --loglevel=error)
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import azure.mgmt.compute, azure.mgmt.imagebuilder, azure.mgmt.resource.resources, azure.mgmt.resource.subscriptions, azure.mgmt.storage, azure.eventgrid, azure.identity, pytest" 2>/dev/null; then
  echo "setup: creating .venv with the official Azure Python SDKs" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
command -v qemu-img >/dev/null || { echo "setup: qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
