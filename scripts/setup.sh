#!/usr/bin/env bash
# Installs what galleon's local cloud and tests need, into the project's own folders:
# Azurite (npm, tools/azurite/node_modules), the Python SDKs (.venv), checkov for infra/ (.venv-infra)
# and the JavaScript SDKs
# (npm, tests/js/node_modules, exactly as tests/js/package-lock.json pins them) for conformance tests.
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
if [ ! -x .venv-infra/bin/checkov ]; then
  echo "setup: installing checkov (the Bicep policy scanner) into .venv-infra" >&2
  python3 -m venv .venv-infra
  .venv-infra/bin/pip install --quiet --disable-pip-version-check -r tools/checkov/requirements.txt
fi
if [ ! -f tests/js/node_modules/.package-lock.json ] || [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then
  echo "setup: installing the Azure SDK for JavaScript from npm into tests/js" >&2
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
command -v qemu-img >/dev/null || { echo "setup: qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
# The EFI System Partition tests (crates/vhd/tests/esp_disks.rs) need mkfs.vfat and mtools; without
# them they are skipped, except in CI (CI=true), where they fail.
{ command -v mkfs.vfat >/dev/null || [ -x /usr/sbin/mkfs.vfat ] || [ -x /sbin/mkfs.vfat ]; } || echo "setup: mkfs.vfat is missing (apt-get install dosfstools): the ESP tests will be skipped" >&2
command -v mcopy >/dev/null || echo "setup: mcopy is missing (apt-get install mtools): the ESP tests will be skipped" >&2
