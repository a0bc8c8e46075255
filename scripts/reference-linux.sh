#!/usr/bin/env bash
# Boots Debian 12's cloud kernel (the current linux-image-cloud-amd64) under `synthvm run`: an
# opt-in check of the Linux loader (bzImage, LZ4 payload, PVH entry) against a real distribution
# kernel. Not part of `swift test`: on a PVM host the boot runs for minutes.
#
# Usage: scripts/reference-linux.sh [--timeout SECONDS] [--memory SIZE] [--initrd FILE | --no-initrd]
#                                   [--synthvm BINARY] [-- SYNTHVM-RUN-ARGS...]
#
# --synthvm runs that binary instead of building one with `swift build` (the slow test passes the
# one built next to it: a nested `swift build` would wait for the running `swift test`'s lock).
#
# By default the guest gets the reference initramfs built by scripts/reference-initramfs.sh
# (busybox-static, the kernel's Hyper-V modules, an /init that prints SYNTHVM-INIT-MARKER, the
# Hyper-V lines of dmesg and /proc/interrupts, and powers off); --initrd replaces it, --no-initrd
# boots without one.
#
# The only network access is `apt-get download` of the kernel and busybox-static packages (and
# `apt-get update` when apt does not know them yet). The package version is resolved from the metapackage,
# so nothing here pins a version Debian may remove. Downloads and logs go to the cache folder
# ($SYNTHVM_LINUX_CACHE, default .build/reference-linux); the serial log is serial.log there.
#
# Command line: $SYNTHVM_LINUX_CMDLINE replaces the default, which is the console plus the
# profile this PVM host needs (see docs/boot-protocol.md, "Booting Linux on a PVM host"):
# noxsave, cryptomgr.notests, and clearcpuid= for the host CPU features the emulator cannot run.
set -euo pipefail

timeout=600
memory=512M
initrd=""
no_initrd=0
bin=""
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout="$2"; shift 2 ;;
        --memory) memory="$2"; shift 2 ;;
        --initrd) initrd="$2"; shift 2 ;;
        --no-initrd) no_initrd=1; shift ;;
        --synthvm) bin="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "usage: $0 [--timeout SECONDS] [--memory SIZE] [--initrd FILE | --no-initrd] [--synthvm BINARY] [-- SYNTHVM-RUN-ARGS...]" >&2; exit 2 ;;
    esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${SYNTHVM_LINUX_CACHE:-$root/.build/reference-linux}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# linux-image-cloud-amd64 depends on exactly one versioned image package.
resolve() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'; }
package="$(resolve)"
if [ -z "$package" ]; then
    echo "reference-linux: apt does not know linux-image-cloud-amd64; running apt-get update" >&2
    $sudo apt-get update -qq
    package="$(resolve)"
fi
[ -n "$package" ] || { echo "reference-linux: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
version="${package#linux-image-}"

deb="$(ls "$cache/${package}"_*.deb 2>/dev/null | head -n 1 || true)"
if [ -z "$deb" ]; then
    echo "reference-linux: downloading $package" >&2
    # apt's download sandbox user may not write here; the warning it prints about that is harmless.
    (cd "$cache" && apt-get download -q "$package")
    deb="$(ls "$cache/${package}"_*.deb | head -n 1)"
fi
kernel="$cache/vmlinuz-$version"
if [ ! -s "$kernel" ]; then
    dpkg-deb --fsys-tarfile "$deb" | tar -x -O "./boot/vmlinuz-$version" > "$kernel.tmp"
    mv -f "$kernel.tmp" "$kernel"
fi

if [ -z "$initrd" ] && [ "$no_initrd" -eq 0 ]; then
    initrd="$cache/initramfs-$version.cpio.gz"
    # Rebuilt when the script that writes it is newer (the kernel file name carries the version).
    if [ ! -s "$initrd" ] || [ "$root/scripts/reference-initramfs.sh" -nt "$initrd" ]; then
        "$root/scripts/reference-initramfs.sh" "$deb" "$version" "$initrd"
    fi
fi

if [ -z "${SYNTHVM_LINUX_CMDLINE:-}" ]; then
    # Features this host's CPUID passes through that the PVM emulator cannot execute in kernel
    # mode (issue 6); only those the host has are named. smap: the emulator fails on CLAC
    # (0f 01 ca), which Linux runs at every exception entry once SMAP is on.
    unsupported="cx16 popcnt pclmulqdq ssse3 fma sse4_1 sse4_2 movbe aes avx f16c avx2 avx512f sha_ni gfni vaes vpclmulqdq erms fsrm smap"
    flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
    clear=""
    for f in $unsupported; do
        case "$flags" in *" $f "*) clear="${clear:+$clear,}$f" ;; esac
    done
    cmdline="console=ttyS0 earlyprintk=serial,ttyS0 noxsave cryptomgr.notests${clear:+ clearcpuid=$clear}"
else
    cmdline="$SYNTHVM_LINUX_CMDLINE"
fi

if [ -z "$bin" ]; then
    swift build --package-path "$root" ${SWIFT_SCRATCH_PATH:+--scratch-path "$SWIFT_SCRATCH_PATH"} --product synthvm >&2
    bin="$(swift build --package-path "$root" ${SWIFT_SCRATCH_PATH:+--scratch-path "$SWIFT_SCRATCH_PATH"} --show-bin-path)/synthvm"
fi

args=(run --kernel "$kernel" --memory "$memory" --cmdline "$cmdline" --timeout "$timeout"
      --serial "file:$cache/serial.log")
[ -z "$initrd" ] || args+=(--initrd "$initrd")
args+=("${extra[@]}")
echo "reference-linux: $bin ${args[*]}" >&2
start=$(date +%s)
set +e
"$bin" "${args[@]}"
status=$?
set -e
echo "reference-linux: synthvm exited with status $status after $(( $(date +%s) - start )) s; serial log tail:" >&2
tail -n 20 "$cache/serial.log" >&2 || true
exit "$status"
