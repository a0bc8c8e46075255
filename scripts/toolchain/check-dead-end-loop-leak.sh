#!/usr/bin/env bash
# Does this Swift toolchain still have the dead-end-loop over-retain (docs/toolchain.md)?
# Builds scripts/toolchain/dead-end-loop-leak.swift with -O (what `swift build -c release` uses)
# and -Onone, runs both (100,000 iterations over a 4 KiB buffer) and compares their RssAnon.
# Prints "leaks" (exit 1) or "does not leak" (exit 0). Not part of the test suite: it asserts
# nothing about SynthVM, only about the compiler (run it when the toolchain changes).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mktemp -d "${TMPDIR:-/tmp}/synthvm-toolchain.XXXXXX")"
trap 'rm -rf "$out"' EXIT
swift --version 2>&1 | head -1
swiftc -O -g "$here/dead-end-loop-leak.swift" -o "$out/release"
swiftc -Onone -g "$here/dead-end-loop-leak.swift" -o "$out/debug"
echo "-Onone: $("$out/debug")"
r="$("$out/release")"
echo "-O:     $r"
# "RssAnon before B KiB, after 100000 records A KiB (...)": more than 64 MiB of growth is the leak.
before=$(sed -E 's/.*before ([0-9]+) KiB.*/\1/' <<<"$r")
after=$(sed -E 's/.*after 100000 records ([0-9]+) KiB.*/\1/' <<<"$r")
if [ $((after - before)) -gt 65536 ]; then echo "leaks"; exit 1; fi
echo "does not leak"
