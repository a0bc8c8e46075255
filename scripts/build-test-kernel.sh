#!/usr/bin/env bash
# Builds the test kernel: a small x86-64 Linux 6.1 from Debian's linux-source-6.1 with the
# committed fragment scripts/test-kernel.config (Hyper-V guest, hv_vmbus, hv_utils, hv_storvsc,
# SCSI disk, ext4, serial console, PVH, ACPI; no modules). See docs/test-kernel.md.
#
# Usage: scripts/build-test-kernel.sh
#
# Prints progress on stderr and, on success, the bzImage's path as the only line on stdout.
# The kernel is cached outside the checkout, in $SYNTHVM_KERNEL_CACHE (default
# $HOME/.cache/synthvm/test-kernel), in a folder named after the source package's version and the
# fragment's SHA-256: a later run with the same fragment and package prints the cached path at
# once. Concurrent runs (parallel tests, several checkouts) serialise on a lock in the cache.
#
# Needs the packages scripts/install-deps.sh installs (linux-source-6.1, flex, bison, bc,
# libelf-dev, libssl-dev, gcc, make): this script does not run apt itself, so that a test run
# never needs root; it fails naming install-deps.sh instead.
#
# The build: `make tinyconfig`, then `scripts/kconfig/merge_config.sh -n` with the fragment
# (allnoconfig semantics: an `-m` merge plus olddefconfig would silently turn on CPU_FREQ,
# CPU_IDLE, SLUB_DEBUG and the ORC unwinder), then every fragment line is checked against the
# final .config (Kconfig drops options whose dependencies are unmet, without an error), then
# `make -j$(nproc) bzImage`. About 7 CPU-minutes: 13-14 minutes on 2 busy cores (docs/test-kernel.md).
set -euo pipefail

# The whole script is one block, read before it runs: bash reads a script as it goes, and an edit
# of this file during a 10-minute build would otherwise run whatever lands at the old offset.
{
root="$(cd "$(dirname "$0")/.." && pwd)"
fragment="$root/scripts/test-kernel.config"
package=linux-source-6.1
tarball=/usr/src/linux-source-6.1.tar.xz
say() { echo "build-test-kernel: $*" >&2; }

for p in "$package" flex bison bc libelf-dev libssl-dev gcc make; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        say "package $p is not installed: run scripts/install-deps.sh"
        exit 1
    fi
done
[ -f "$tarball" ] || { say "$tarball is missing (package $package): run scripts/install-deps.sh"; exit 1; }

version="$(dpkg-query -W -f='${Version}' "$package")"
hash="$(sha256sum "$fragment" | cut -c1-16)"
cache="${SYNTHVM_KERNEL_CACHE:-$HOME/.cache/synthvm/test-kernel}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
key="linux-$version-$hash"
out="$cache/$key"

if [ -f "$out/bzImage" ]; then
    say "cached: $out/bzImage"
    echo "$out/bzImage"
    exit 0
fi

exec 9>"$cache/.lock"
if ! flock -n 9; then
    say "another build holds $cache/.lock; waiting for it"
    flock 9
fi
if [ -f "$out/bzImage" ]; then   # built by the run we waited for
    say "cached: $out/bzImage"
    echo "$out/bzImage"
    exit 0
fi

start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start )) s"; }
work="$cache/.build-$key"
rm -rf "$work"
mkdir -p "$work"
say "building the test kernel ($package $version, fragment $hash) in $work; about 8-10 minutes on 2 cores, once per fragment and package version"
say "unpacking $tarball"
tar -xJf "$tarball" -C "$work"
src="$work/linux-source-6.1"
log="$work/build.log"

say "configuring: tinyconfig + merge_config.sh -n $fragment ($(elapsed))"
make -C "$src" ARCH=x86_64 tinyconfig >"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
(cd "$src" && ARCH=x86_64 scripts/kconfig/merge_config.sh -n .config "$fragment") >>"$log" 2>&1 \
    || { tail -20 "$log" >&2; exit 1; }

dropped=()
while IFS= read -r line; do
    case "$line" in
        "# CONFIG_"*" is not set")
            name="${line#\# }"; name="${name%% *}"
            grep -q "^$name=" "$src/.config" && dropped+=("$line (it is on: $(grep "^$name=" "$src/.config"))") ;;
        CONFIG_*)
            grep -qxF -- "$line" "$src/.config" || {
                name="${line%%=*}"
                now="$(grep -E "^($name=|# $name is not set)" "$src/.config" || echo "absent")"
                dropped+=("$line (final .config: $now)")
            } ;;
    esac
done <"$fragment"
if [ ${#dropped[@]} -gt 0 ]; then
    say "the final .config does not keep these fragment lines (unmet dependencies?):"
    printf '  %s\n' "${dropped[@]}" >&2
    exit 1
fi
say "all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set)' "$fragment") fragment lines are in the final .config"

jobs="$(nproc)"
say "compiling with make -j$jobs bzImage (full log: $log)"
set +e
# A shell loop, not awk: mawk reads a pipe in blocks and would print the progress at the end.
make -C "$src" ARCH=x86_64 -j"$jobs" bzImage 2>&1 | tee -a "$log" | {
    n=0
    while IFS= read -r line; do
        case "$line" in
            *" CC "*) n=$((n + 1)); [ $((n % 100)) -eq 0 ] && say "$n files compiled ($(elapsed))" ;;
            *" LD "*" vmlinux") say "linking vmlinux ($(elapsed))" ;;
            *"Kernel: arch/x86/boot/bzImage is ready"*) say "bzImage ready ($(elapsed))" ;;
        esac
    done
}
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    say "make failed (status $status); last lines of $log:"
    grep -E 'error|Error' "$log" | tail -20 >&2 || true
    tail -20 "$log" >&2
    exit 1
fi

mkdir -p "$work/result"
cp "$src/arch/x86/boot/bzImage" "$src/.config" "$fragment" "$work/result/"
cp "$log" "$work/result/build.log"
echo "$package $version" >"$work/result/source-version"
rm -rf "$out"
mv "$work/result" "$out"
rm -rf "$work"
say "built $out/bzImage ($(stat -c %s "$out/bzImage") bytes) in $(elapsed)"
echo "$out/bzImage"
exit 0
}
