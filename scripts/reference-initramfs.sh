#!/usr/bin/env bash
# Builds the reference guest's initramfs (issue 6, item 6): Debian's busybox-static, the Hyper-V
# modules of the reference kernel (hv_vmbus, hv_storvsc, hv_utils and everything modules.dep says
# they need), and an /init that prints a marker line, the Hyper-V lines of the kernel log,
# /proc/interrupts and the clockevent device in use, then powers off.
#
# Usage: scripts/reference-initramfs.sh KERNEL-DEB VERSION OUTPUT
#   KERNEL-DEB  the linux-image-<VERSION> package (scripts/reference-linux.sh downloads it)
#   OUTPUT      the initramfs to write (cpio newc, gzip)
#
# busybox-static is fetched with `apt-get download` (its current version, nothing pinned) next to
# OUTPUT; `cpio` is installed with apt-get when missing. Only the scripts are committed, never
# their output.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 KERNEL-DEB VERSION OUTPUT" >&2; exit 2; }
deb="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
version="$2"
output="$3"
cache="$(cd "$(dirname "$output")" && pwd)"
modules_wanted="hv_vmbus hv_storvsc hv_utils"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# cpio packs the archive; depmod (kmod) writes the modules.dep the package's postinst would.
missing=""
command -v cpio >/dev/null || missing="$missing cpio"
command -v depmod >/dev/null || [ -x /sbin/depmod ] || missing="$missing kmod"
if [ -n "$missing" ]; then
    echo "reference-initramfs: installing$missing" >&2
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2
fi
depmod="$(command -v depmod || echo /sbin/depmod)"

busybox_deb="$(ls "$cache"/busybox-static_*.deb 2>/dev/null | head -n 1 || true)"
if [ -z "$busybox_deb" ]; then
    echo "reference-initramfs: downloading busybox-static" >&2
    (cd "$cache" && apt-get download -q busybox-static >&2) || {
        $sudo apt-get update -qq
        (cd "$cache" && apt-get download -q busybox-static >&2)
    }
    busybox_deb="$(ls "$cache"/busybox-static_*.deb | head -n 1)"
fi

work="$(mktemp -d "$cache/initramfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}

dpkg-deb --fsys-tarfile "$busybox_deb" | tar -x -O ./bin/busybox > "$root/bin/busybox"
chmod 755 "$root/bin/busybox"

# The kernel package's module tree. The package ships no modules.dep (its postinst runs depmod),
# so depmod writes it for the extracted tree; it names each module's dependencies (paths relative
# to /lib/modules/VERSION), and the load order is resolved from it, not hard-coded.
moddir="./lib/modules/$version"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" "$moddir"
"$depmod" -b "$work" "$version"
dep="$work/lib/modules/$version/modules.dep"

order=()
resolve() {   # resolve PATH: append PATH's dependencies (depth first), then PATH, once each
    local path="$1" d
    for d in "${order[@]}"; do [ "$d" = "$path" ] && return 0; done
    local line
    line="$(grep -m1 "^$path:" "$dep")" || { echo "reference-initramfs: $path not in modules.dep" >&2; exit 1; }
    for d in ${line#*:}; do resolve "$d"; done
    for d in "${order[@]}"; do [ "$d" = "$path" ] && return 0; done
    order+=("$path")
}
for name in $modules_wanted; do
    path="$(grep -m1 -E "(^|/)$name\.ko(\.[a-z]+)?:" "$dep" | cut -d: -f1)"
    [ -n "$path" ] || { echo "reference-initramfs: module $name not in $version's modules.dep" >&2; exit 1; }
    resolve "$path"
done

: > "$root/lib/modules/load-order"
for path in "${order[@]}"; do
    file="$(basename "$path")"
    # busybox insmod takes plain ELF objects: decompress what Debian compressed.
    case "$file" in
        *.ko.xz) xz -dc "$work/$moddir/$path" > "$root/lib/modules/${file%.xz}"; file="${file%.xz}" ;;
        *.ko.zst) zstd -qdc "$work/$moddir/$path" > "$root/lib/modules/${file%.zst}"; file="${file%.zst}" ;;
        *.ko.gz) gzip -dc "$work/$moddir/$path" > "$root/lib/modules/${file%.gz}"; file="${file%.gz}" ;;
        *) cp "$work/$moddir/$path" "$root/lib/modules/$file" ;;
    esac
    echo "$file" >> "$root/lib/modules/load-order"
done
echo "reference-initramfs: modules in load order: $(tr '\n' ' ' < "$root/lib/modules/load-order")" >&2

cat > "$root/init" <<'EOF'
#!/bin/busybox sh
# SynthVM reference guest: prove user space runs, show what the kernel made of the Hyper-V
# interface, power off through ACPI.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo SYNTHVM-INIT-MARKER
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m" || echo "SYNTHVM-INIT: insmod $m failed"
done
echo "SYNTHVM-INIT: dmesg (Hyper-V lines)"
dmesg | grep -i -E 'hyper-?v|hv_|vmbus|storvsc'
echo "SYNTHVM-INIT: /proc/interrupts"
cat /proc/interrupts
echo "SYNTHVM-INIT: clockevent $(cat /sys/devices/system/clockevents/clockevent0/current_device 2>/dev/null)"
echo "SYNTHVM-INIT: clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"
echo SYNTHVM-INIT-POWEROFF
poweroff -f
EOF
chmod 755 "$root/init"
# The kernel's built-in initramfs has /dev/console already; add it where we may (root).
[ "$(id -u)" -ne 0 ] || mknod -m 600 "$root/dev/console" c 5 1

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -9 > "$output.tmp")
mv -f "$output.tmp" "$output"
echo "reference-initramfs: wrote $output ($(stat -c %s "$output") bytes)" >&2
