#!/usr/bin/env bash
# Fresh set-up time and installed size of the README's install command, per commit.
#
#   bash benchmarks/bench_install.sh [EXTRA] COMMIT...      (EXTRA e.g. "[test]"; default none)
#
# For each COMMIT: a clean export of the tree (git archive), a new venv, then the
# README's install part `pip install "torch==2.13.0" -e .` with the pip cache
# disabled. Prints wall time, the venv's size on disk and the installed
# distributions. Run the commits side by side in one call: the machine is shared.
set -euo pipefail
extra=""
if [[ "${1:-}" == \[* ]]; then extra="$1"; shift; fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/scanlab-bench-install.XXXXXX)"
trap 'rm -rf "$work"' EXIT
printf '%-10s %-8s %10s %12s %6s\n' commit extra seconds venv_MiB dists
for c in "$@"; do
  src="$work/src-$c"; venv="$work/venv-$c"
  mkdir -p "$src" && git -C "$repo" archive "$c" | tar -x -C "$src"
  python -m venv "$venv"
  start=$(date +%s.%N)
  (cd "$src" && "$venv/bin/pip" install --no-cache-dir -q "torch==2.13.0" -e ".$extra") >"$work/log-$c" 2>&1 \
    || { echo "install failed for $c:"; tail -5 "$work/log-$c"; exit 1; }
  end=$(date +%s.%N)
  mib=$(du -sm "$venv" | cut -f1)
  n=$("$venv/bin/pip" list --format=freeze 2>/dev/null | wc -l)
  printf '%-10s %-8s %10.1f %12s %6s\n' "$c" "${extra:--}" "$(echo "$end - $start" | bc)" "$mib" "$n"
  "$venv/bin/pip" list --format=freeze > "$work/../scanlab-bench-install-$c$extra.txt" 2>/dev/null || true
  rm -rf "$venv"
done
