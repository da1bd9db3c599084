#!/usr/bin/env bash
# Instruction counts of sigdrop's hot paths with valgrind's callgrind (issue 5's "≤ 45
# instructions on the restricted teardown path without a wake").
#
# Builds examples/teardown_probe.rs and runs it under callgrind once per mode, collecting only
# inside the probed function (`--collect-atstart=no --toggle-collect=*probe_<mode>*`), so setup,
# growth and the final drain are not counted. Each mode runs N operations; the `baseline` mode
# runs the same loop over the same slots doing nothing, and is subtracted:
#
#     per op = (Ir(probe_<mode>) - Ir(probe_baseline)) / N
#
# The teardown mode keeps the drainer manual and one job queued, so this CPU's job list is
# non-empty and the pending flag set: every probed teardown takes the path without a wake.
#
# Writes target/sigdrop-bench/callgrind.json (read by the bench report, benches/report/) and
# target/sigdrop-bench/callgrind-teardown.txt (instructions per teardown by source file and
# function, from callgrind_annotate), and keeps the raw profiles in target/sigdrop-bench/.
#
# Usage: scripts/callgrind.sh [N]   (default N = 10000)
set -euo pipefail
cd "$(dirname "$0")/.."

n="${1:-10000}"
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }

cargo build --release --example teardown_probe
target="${CARGO_TARGET_DIR:-target}"
probe="$target/release/examples/teardown_probe"
out="$target/sigdrop-bench"
mkdir -p "$out"

# Instructions collected inside probe_<mode> for N operations.
count() {
    local mode="$1" file="$out/callgrind.out.$1"
    valgrind --tool=callgrind --callgrind-out-file="$file" --collect-atstart=no \
        "--toggle-collect=*probe_${mode}*" "$probe" "$mode" "$n" >/dev/null 2>"$out/callgrind.log.$mode"
    # The "summary:" line of a callgrind profile is the total of the collected events (Ir).
    awk '/^summary:/ { print $2 }' "$file"
}

base=$(count baseline)
declare -A per
for mode in teardown replace install take; do
    ir=$(count "$mode")
    per[$mode]=$(awk -v a="$ir" -v b="$base" -v n="$n" 'BEGIN { printf "%.1f", (a - b) / n }')
    printf '%-9s %12s Ir  -> %6s instructions per op\n' "$mode" "$ir" "${per[$mode]}"
done
printf '%-9s %12s Ir  (subtracted)\n' baseline "$base"
# Owned boxes: their own loop (a Vec drained), so their own baseline.
owned_base=$(count owned_baseline)
ir=$(count owned)
per[owned]=$(awk -v a="$ir" -v b="$owned_base" -v n="$n" 'BEGIN { printf "%.1f", (a - b) / n }')
printf '%-9s %12s Ir  -> %6s instructions per op (owned_baseline %s subtracted)\n' owned "$ir" "${per[owned]}" "$owned_base"

# Per-teardown breakdown, divided by N: exclusive instructions by source file and function
# (inlined code is attributed to the file it came from), then by source line.
{
    echo "by file:function (exclusive)"
    callgrind_annotate --inclusive=no --auto=no "$out/callgrind.out.teardown" 2>/dev/null |
        awk -v n="$n" '
            /^ *[0-9,]+ +\(/ && !/PROGRAM TOTALS/ {
                ir = $1; gsub(",", "", ir)
                line = $0; sub(/^ *[0-9,]+ +\([ 0-9.%]+\) +/, "", line)
                sub(/ \[.*\]$/, "", line)
                sub(/^\/rustc\/[0-9a-f]+\/library\//, "std:", line)
                sub(/^\/work\/main\//, "", line)
                if (ir / n >= 0.5) printf "%6.1f  %s\n", ir / n, line
            }'
    echo
    echo "by source line (sigdrop's files; calls shown with =>, inclusive)"
    callgrind_annotate --inclusive=no --auto=yes "$out/callgrind.out.teardown" 2>/dev/null |
        awk -v n="$n" '
            /^-- Auto-annotated source: / { file = $4; sub(/^.*\/src\//, "src/", file); next }
            /^ *[0-9,]+ +\(/ && file ~ /^src\// && !/events annotated/ {
                ir = $1; gsub(",", "", ir)
                line = $0; sub(/^ *[0-9,]+ +\([ 0-9.%]+\) +/, "", line)
                gsub(/^ +| +$/, "", line)
                if (ir / n >= 0.5) printf "%6.1f  %-14s %s\n", ir / n, file, substr(line, 1, 90)
            }'
} > "$out/callgrind-teardown.txt"
echo
echo "teardown, per op:"
cat "$out/callgrind-teardown.txt"

cat > "$out/callgrind.json" <<JSON
{"n":$n,"baseline_ir":$base,"teardown_per_op":${per[teardown]},"replace_per_op":${per[replace]},"install_per_op":${per[install]},"take_per_op":${per[take]},"owned_per_op":${per[owned]}}
JSON
echo
echo "wrote $out/callgrind.json"
verdict=$(awk -v v="${per[teardown]}" 'BEGIN { print (v <= 45 ? "met" : "missed") }')
echo "target: restricted teardown without a wake <= 45 instructions: ${per[teardown]} ($verdict)"
