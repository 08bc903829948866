#!/usr/bin/env bash
# Build the one-folder desktop bundle and smoke-test it.
#
#   bash packaging/build.sh            -> packaging/dist/scanlab/ (run packaging/dist/scanlab/scanlab)
#
# Uses the current Python environment, which must have ScanLab's dependencies with
# the CPU build of torch (the README's install command gives exactly that). Installs
# PyInstaller into it if missing. Every build ends with the frozen app's smoke test;
# a failing smoke test fails the build. Heavy on CPU: run it with `nice` on a shared box.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"

python -c "import torch, sys; sys.exit(0 if not torch.version.cuda else 'packaging: error: torch is a CUDA build; install the CPU build (README) before building the bundle')"
python -c "import PyInstaller" 2>/dev/null || python -m pip install "pyinstaller>=6.10,<7"

start=$(date +%s)
python -m PyInstaller --noconfirm --clean \
  --distpath "$here/dist" --workpath "$here/build" \
  "$here/scanlab.spec"
echo "build took $(( $(date +%s) - start )) s; bundle size $(du -sh "$here/dist/scanlab" | cut -f1)"

# Smoke test: offscreen, from another folder, with nothing from the checkout importable.
smoke="$(mktemp -d)"
trap 'rm -rf "$smoke"' EXIT
( cd "$smoke" && env -u PYTHONPATH "$here/dist/scanlab/scanlab" --smoke-test "$smoke/out" )
python - "$smoke/out/smoke.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["frozen"] and r["passed"], r
print(f"smoke test passed: {r['classify']['label']} ({r['seconds_to_screenshot']} s to the analysed screenshot)")
PY
cp "$smoke/out/smoke.png" "$here/dist/smoke.png"
cp "$smoke/out/smoke.json" "$here/dist/smoke.json"
