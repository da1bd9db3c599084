#!/usr/bin/env bash
# Mutation kit: applies each mutant of scripts/mutants.txt in turn, runs the loom suite (bound 3)
# and then, if no model killed it, the mutant's `tests:` (cargo test --release arguments; the
# crate's unit tests by default), each with a timeout; restores the source (always, via trap)
# and writes a markdown table to target/mutants/report.md.
#
# Not in CI: every mutant costs two rebuilds. Usage:
#   scripts/mutants.sh                 every mutant
#   scripts/mutants.sh 3 7 12          these ids
#   scripts/mutants.sh f:ledger        ids, names, descriptions or files containing "ledger"
#   scripts/mutants.sh --check         only check that every original is found exactly once
# Environment: MUTANT_TIMEOUT (seconds per stage, default 420), ALL_STAGES=1 (run the cargo
# stage even when a model already killed the mutant), LOOM_MAX_PREEMPTIONS (default 3).
#
# Results: killed (by which model or test), killed by timeout only (flagged: a kill should be a
# failure, not a hang), SURVIVED, equivalent (with the reason given in the list), loom-blind
# (survives by construction: loom cannot see it; the reason says what would), build error (the
# mutant itself is broken: fix the list).
set -euo pipefail
cd "$(dirname "$0")/.."

LIST=scripts/mutants.txt
HELPER="python3 scripts/mutants.py $LIST"
OUT=target/mutants
TIMEOUT="${MUTANT_TIMEOUT:-420}"
PREEMPT="${LOOM_MAX_PREEMPTIONS:-3}"

# Fail loudly, before touching anything, if any mutant's original text has rotted.
$HELPER check
if [ "${1:-}" = "--check" ]; then exit 0; fi
read -r -a IDS <<<"$($HELPER ids "$@")"

mkdir -p "$OUT"
BACKUP=$(mktemp -d)
RESTORE=()
restore() {
    local f
    for f in "${RESTORE[@]:-}"; do
        [ -n "$f" ] || continue
        # Not `cp -p`: the restored file must look newer than the mutant's build, or cargo
        # would keep using the mutant's binaries afterwards.
        cp "$BACKUP/$(echo "$f" | tr / %)" "$f"
    done
    RESTORE=()
}
cleanup() {
    restore
    rm -rf "$BACKUP"
}
trap cleanup EXIT
trap 'echo "mutants: interrupted; source restored" >&2; exit 130' INT TERM

# Failed tests in a cargo test log, as binary::test (a panic that aborts a test binary still
# names its test; a binary that crashed is named too).
failed_tests() {
    $HELPER failures "$1"
}

# Runs one stage; prints "killed:<names>", "timeout", "build" or "pass".
run_stage() {
    local log=$1
    shift
    local rc=0
    timeout --kill-after=10 "$TIMEOUT" "$@" >"$log" 2>&1 || rc=$?
    if [ $rc -eq 0 ]; then
        echo pass
        return
    fi
    local failed
    failed=$(failed_tests "$log")
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "timeout${failed:+:$failed}"
    elif [ -n "$failed" ]; then
        echo "killed:$failed"
    elif grep -q -E '^error\[E[0-9]+\]|could not compile' "$log"; then
        echo build
    else
        echo "killed:(exit $rc, see $log)"
    fi
}

REPORT="$OUT/report.md"
start=$(date +%s)

for id in "${IDS[@]}"; do
    t0=$(date +%s)
    files=$($HELPER files "$id")
    for f in $files; do
        cp -p "$f" "$BACKUP/$(echo "$f" | tr / %)"
        RESTORE+=("$f")
    done
    $HELPER apply "$id"
    expect=$($HELPER field "$id" expect)
    kind=${expect%%:*}
    reason=${expect#*:}
    reason=${reason# }

    loom=$(run_stage "$OUT/$id.loom.log" env LOOM_MAX_PREEMPTIONS="$PREEMPT" RUSTFLAGS="--cfg loom" \
        CARGO_TARGET_DIR=target-loom cargo test --release -p loom-tests --no-fail-fast)
    cargo_res=skipped
    if [ "$loom" = pass ] || [ "${ALL_STAGES:-0}" = 1 ] || [[ "$loom" == timeout* ]]; then
        read -r -a targs <<<"$($HELPER field "$id" tests)"
        cargo_res=$(run_stage "$OUT/$id.cargo.log" cargo test --release --no-fail-fast "${targs[@]}")
    fi
    restore

    by=()
    [[ "$loom" == killed:* ]] && by+=("loom: ${loom#killed:}")
    [[ "$cargo_res" == killed:* ]] && by+=("test: ${cargo_res#killed:}")
    if [ "$loom" = build ] || [ "$cargo_res" = build ]; then
        result="BUILD ERROR (fix the mutant)"
    elif [ ${#by[@]} -gt 0 ]; then
        result="killed ($(printf '%s; ' "${by[@]}" | sed 's/; $//'))"
        [ "$kind" = equivalent ] && result="$result; listed as equivalent: $reason"
    elif [[ "$loom" == timeout* ]] || [[ "$cargo_res" == timeout* ]]; then
        result="killed by TIMEOUT only (loom: $loom; test: $cargo_res)"
    elif [ "$kind" = equivalent ]; then
        result="equivalent: $reason"
    elif [ "$kind" = blind ]; then
        result="survived, loom-blind: $reason"
    else
        result="SURVIVED"
    fi
    file=$($HELPER field "$id" file)
    desc=$($HELPER field "$id" desc)
    line="| $id | \`$file\` | $desc | $result |"
    # One row file per mutant: a run over a subset updates those rows of the full table.
    echo "$line" >"$OUT/$id.row"
    echo "mutants: [$(($(date +%s) - t0))s] $line"
done

# The table: the latest result of every mutant in the list that has been run at least once.
read -r -a ALL <<<"$($HELPER ids)"
rows=()
for id in "${ALL[@]}"; do
    [ -f "$OUT/$id.row" ] && rows+=("$(cat "$OUT/$id.row")")
done
count() { printf '%s\n' "${rows[@]}" | grep -c -E "$1" || true; }
killed=$(count '\| killed \(')
survived=$(count '\| SURVIVED \|')
equivalent=$(count '\| equivalent: ')
blind=$(count '\| survived, loom-blind: ')
timeouts=$(count '\| killed by TIMEOUT')
broken=$(count '\| BUILD ERROR')
summary="${#rows[@]} of ${#ALL[@]} mutants run: $killed killed, $survived survived, $equivalent equivalent, $blind loom-blind, $timeouts killed by timeout only, $broken broken (this run: ${#IDS[@]} mutants, $(($(date +%s) - start))s)"
{
    echo "| id | file | mutant | result |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "$summary"
} >"$REPORT"
echo "mutants: $summary"
echo "mutants: report in $REPORT"
[ "$survived" -eq 0 ] && [ "$timeouts" -eq 0 ] && [ "$broken" -eq 0 ]
