#!/usr/bin/env bash
# Builds and runs SynthVM's libFuzzer targets (Fuzz/, docs/security.md "Fuzzing").
#
# Usage: scripts/fuzz.sh TARGET|all [SECONDS]     run one target, or every target in turn,
#                                                 for SECONDS each (default 60)
#        scripts/fuzz.sh list                     the targets
#        scripts/fuzz.sh build                    only build
#
# The harnesses are a separate package (Fuzz/Package.swift), built into .build-fuzz with
# libFuzzer and AddressSanitizer. SwiftPM's `--sanitize fuzzer --sanitize address` passes two
# -sanitize= flags and swiftc keeps only the last, which leaves the code without coverage
# instrumentation; so `--sanitize fuzzer` (which makes SwiftPM link libFuzzer's main) is paired
# with `-Xswiftc -sanitize=fuzzer,address`, which comes last and instruments every Swift module,
# SynthVM's libraries included.
#
# Each run starts from the checked-in seeds (Fuzz/Corpus/TARGET, never written) plus what earlier
# runs found (.build-fuzz/corpus/TARGET), with Fuzz/Dictionaries/TARGET.dict when there is one.
# A crash, sanitizer report, timeout (a single input over 10 s) or out-of-memory (over 2 GiB)
# stops that target; the script goes on with the others, then prints every reproducer's path and
# bytes (hex) and exits 1. Logs: .build-fuzz/logs/TARGET.log. Reproduce one with
#   SWIFT_BACKTRACE=enable=no .build-fuzz/debug/fuzz-TARGET PATH
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(hypercall msr synic-router testdev wire ring elf multiboot bzimage decompress policy vmbus-server vmbus-ring vmbus-ic storage api-json)
out=.build-fuzz

usage() { sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

build() {
    local what=()
    [ "$1" = all ] || what=(--product "fuzz-$1")
    echo "fuzz: building ${1} into $out" >&2
    # ld.gold warns once per ASan check routine ("Cannot export local symbol"): noise only.
    swift build --package-path Fuzz --build-path "$out" --sanitize fuzzer -Xswiftc -sanitize=fuzzer,address \
        "${what[@]}" 2>&1 | grep -v "Cannot export local symbol" >&2
    return "${PIPESTATUS[0]}"
}

failed=()

run() {
    local t=$1 seconds=$2
    local bin=$out/debug/fuzz-$t work=$out/corpus/$t artifacts=$out/artifacts/$t/ log=$out/logs/$t.log
    mkdir -p "$work" "$artifacts" "$out/logs"
    local args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
                -artifact_prefix="$artifacts")
    [ -f "Fuzz/Dictionaries/$t.dict" ] && args+=(-dict="Fuzz/Dictionaries/$t.dict")
    local status=0
    # Swift's own crash handler would catch the trap first, and its out-of-process stack reader
    # trips AddressSanitizer: leave the report to libFuzzer.
    SWIFT_BACKTRACE=enable=no "$bin" "${args[@]}" "$work" "Fuzz/Corpus/$t" >"$log" 2>&1 || status=$?
    # The last status line (cov: ft: corp: exec/s) and the executed-input count.
    local last runs speed
    # (A target that fails on its first inputs has no status line: `|| true` under pipefail.)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -E 's/^#[0-9]+[[:space:]]+[A-Z]+[[:space:]]+//; s/ (lim|rss|L|MS):.*//' || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    printf 'fuzz: %-13s %4ss  runs %-9s exec/s %-7s %s\n' "$t" "$seconds" "${runs:-?}" "${speed:-?}" "$last"
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        echo "fuzz: $t FAILED (status $status); what it said, then the end of $log:" >&2
        grep -E 'Fatal error|Precondition failed|Assertion failed|ERROR:|SUMMARY:' "$log" | head -5 >&2 || true
        grep -v '^#[0-9]' "$log" | tail -30 >&2 || true
    fi
}

report() {
    local t f
    for t in "${failed[@]}"; do
        for f in "$out/artifacts/$t"/*; do
            [ -f "$f" ] || continue
            echo "fuzz: reproducer $f ($(stat -c %s "$f") bytes):" >&2
            od -An -tx1 -v "$f" | tr -s ' ' | tr -d '\n' | fold -w 96 >&2
            echo >&2
        done
    done
    echo "fuzz: FAILED: ${failed[*]}" >&2
    echo "fuzz: $((${#selected[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
    exit 1
}

[ $# -ge 1 ] || usage
case "$1" in
    list) printf '%s\n' "${targets[@]}"; exit 0 ;;
    build) build all; exit ;;
    all) selected=("${targets[@]}") ;;
    *) [[ " ${targets[*]} " == *" $1 "* ]] || { echo "fuzz: no target '$1' (scripts/fuzz.sh list)" >&2; exit 2; }
       selected=("$1") ;;
esac
seconds=${2:-60}
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || usage

build "$1"
# Reproducers from an earlier run would be reported again: start each target's list afresh.
for t in "${selected[@]}"; do rm -rf "${out:?}/artifacts/$t"; done
for t in "${selected[@]}"; do run "$t" "$seconds"; done
[ ${#failed[@]} -eq 0 ] || report
echo "fuzz: ${#selected[@]} passed, 0 failed"
