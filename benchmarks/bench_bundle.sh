#!/usr/bin/env bash
# Desktop bundle: size on disk and start-up time (launch -> first analysed screenshot).
#
#   bash benchmarks/bench_bundle.sh [RUNS]        (after packaging/build.sh; default 3 runs)
#
# Alternates the frozen app's smoke test with the same smoke test from the source
# install (python packaging/scanlab_app.py --smoke-test), so both see the same machine
# load; prints each run's wall time (process launch to exit, from the shell) and the
# app's own "launch to analysed screenshot" time (smoke.json, measured from the first
# line of the entry script, so it leaves out the bootloader/interpreter start).
set -euo pipefail
runs="${1:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bundle="$root/packaging/dist/scanlab"
[ -x "$bundle/scanlab" ] || { echo "bench_bundle: error: $bundle/scanlab: build it with packaging/build.sh" >&2; exit 2; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
echo "bundle: $(du -sm "$bundle" | cut -f1) MiB, $(find "$bundle" -type f | wc -l) files"
echo "largest parts (MiB):"
du -sm "$bundle"/_internal/* | sort -rn > "$work/parts"  # (head in the pipe would trip pipefail)
sed -n 1,8p "$work/parts" | sed 's|'"$bundle"'/_internal/|  |'
printf '%-8s %4s %10s %22s\n' kind run wall_s launch_to_screenshot_s
for i in $(seq 1 "$runs"); do
  for kind in frozen source; do
    out="$work/$kind-$i"
    if [ "$kind" = frozen ]; then cmd=(env -u PYTHONPATH "$bundle/scanlab" --smoke-test "$out")
    else cmd=(env PYTHONPATH="$root" python "$root/packaging/scanlab_app.py" --smoke-test "$out"); fi
    t0=$(date +%s.%N); (cd "$work" && "${cmd[@]}" >/dev/null 2>&1); t1=$(date +%s.%N)
    s=$(python -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['passed']; print(r['seconds_to_screenshot'])" "$out/smoke.json")
    printf '%-8s %4d %10.2f %22s\n' "$kind" "$i" "$(echo "$t1 - $t0" | bc)" "$s"
  done
done
