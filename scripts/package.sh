#!/usr/bin/env bash
# Builds galleon's release package: the Linux release handler and the function app laid out as the
# Functions host expects it (host.json at the root, one folder per function with its function.json, the
# executable host.json's customHandler names), and nothing else (but `builds.json`, the builds file the
# handler reads from its directory by default, when you keep one at the repository root), zipped for a
# zip deploy:
#   az functionapp deployment source config-zip -g <resource group> -n <function app> --src <zip>
# Usage: scripts/package.sh [output zip] (default target/galleon-package.zip). Prints the zip's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-target/galleon-package.zip}
case "$out" in /*) ;; *) out="$root/$out" ;; esac
cargo build --release --locked -p galleon --bin galleon-handler >&2
python3 - "$root" "$out" <<'PY'
import json, os, sys, zipfile

root, out = sys.argv[1], sys.argv[2]
host = json.load(open(os.path.join(root, "host.json")))
exe = host["customHandler"]["description"]["defaultExecutablePath"]
binary = os.path.join(root, "target", "release", "galleon-handler")
functions = os.path.join(root, "functions")
names = sorted(n for n in os.listdir(functions) if os.path.isfile(os.path.join(functions, n, "function.json")))
if not names:
    sys.exit("package: no functions/<Name>/function.json found")
os.makedirs(os.path.dirname(out), exist_ok=True)
tmp = out + ".partial"

def add(z, arcname, path, mode):
    info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100000 | mode) << 16  # a regular file with its Unix mode (the executable runs)
    with open(path, "rb") as f:
        z.writestr(info, f.read())

with zipfile.ZipFile(tmp, "w") as z:
    add(z, "host.json", os.path.join(root, "host.json"), 0o644)
    for name in names:
        add(z, f"{name}/function.json", os.path.join(functions, name, "function.json"), 0o644)
    add(z, exe, binary, 0o755)
    builds = os.path.join(root, "builds.json")
    if os.path.isfile(builds):
        add(z, "builds.json", builds, 0o644)
os.replace(tmp, out)
print(out)
print(f"package: host.json, {len(names)} functions, {exe}", file=sys.stderr)
PY
