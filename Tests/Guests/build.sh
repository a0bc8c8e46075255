#!/usr/bin/env bash
# Builds the SynthVM test guests into OUTDIR with the machine's gcc and binutils:
#   hello.elf smp.elf exceptions.elf cpuid.elf bench.elf  (ELF64, SynthVM direct boot)
#   hvprobe.elf hvmsr.elf hvcall.elf hvclock.elf hvipi.elf hvcrash.elf hvbench.elf irq.elf
#   stimer.elf synic.elf hvconn.elf synicbench.elf memflood.elf hostile.elf vmbus.elf storvsc.elf soak.elf storvscbench.elf  (ELF64, HV#1 tests)
#   acpi.elf uart.elf rtc.elf platform.elf emulate.elf  (ELF64, platform devices, PVM fix-ups)
#   mbhello.elf mbhvcall.elf                              (ELF32, multiboot v1)
#   pvh.elf pvh64.elf                                     (PVH entry note: ELF32, and the same as ELF64)
#   bootparams.elf                                        (ELF64 with a "Linux" note: 64-bit boot protocol)
# Usage: bash Tests/Guests/build.sh OUTDIR
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
SRC="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
OBJ="$(mktemp -d "${TMPDIR:-/tmp}/synthvm-guests.XXXXXX")"
trap 'rm -rf "$OBJ"' EXIT

CC="${CC:-gcc}"
CFLAGS=(-ffreestanding -nostdlib -nostdinc -mno-red-zone -mgeneral-regs-only -static
        -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables
        -fcf-protection=none -fno-tree-loop-distribute-patterns
        -O2 -Wall -Werror -I "$SRC/runtime/include")
LDFLAGS=(-nostdlib -static -no-pie -Wl,-T,"$SRC/link.ld" -Wl,--build-id=none
         -Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments)

# compile ARCH OBJECT SOURCE
compile() {
    "$CC" "$1" "${CFLAGS[@]}" -c "$3" -o "$2"
}

# link ARCH NAME OBJECTS...: writes OUT/NAME.elf atomically
link() {
    local arch="$1" name="$2"
    shift 2
    "$CC" "$arch" "${LDFLAGS[@]}" -o "$OUT/$name.elf.tmp" "$@"
    mv -f "$OUT/$name.elf.tmp" "$OUT/$name.elf"
}

# 64-bit runtime
RT64=()
for f in common.c start64.S isr64.S idt64.c boot64.c safe64.S hyperv.c; do
    compile -m64 "$OBJ/rt64-$f.o" "$SRC/runtime/$f"
    RT64+=("$OBJ/rt64-$f.o")
done

# guest64 NAME SOURCES... (relative to Tests/Guests; runtime/bootcheck.c for the guests that use it)
guest64() {
    local name="$1" s
    shift
    local objs=()
    for s in "$@"; do
        compile -m64 "$OBJ/$name-${s//\//-}.o" "$SRC/$s"
        objs+=("$OBJ/$name-${s//\//-}.o")
    done
    link -m64 "$name" "${RT64[@]}" "${objs[@]}"
}

guest64 hello hello.c runtime/bootcheck.c
guest64 smp smp.c mp.c mp_asm.S
guest64 exceptions exceptions.c exceptions_asm.S
guest64 cpuid cpuid.c
guest64 bench bench.c bench_asm.S
guest64 hvprobe hvprobe.c
guest64 hvmsr hvmsr.c
guest64 hvcall hvcall.c hvcall_asm.S
guest64 hvclock hvclock.c mp.c mp_asm.S
guest64 hvipi hvipi.c hvipi_asm.S mp.c mp_asm.S
guest64 hvcrash hvcrash.c
guest64 hvbench hvbench.c
guest64 irq irq.c irq_asm.S mp.c mp_asm.S
guest64 acpi acpi.c runtime/bootcheck.c
guest64 uart uart.c uart_asm.S mp.c mp_asm.S
guest64 rtc rtc.c
guest64 platform platform.c
guest64 emulate emulate.c emulate_asm.S
guest64 stimer stimer.c synictest.c synictest_asm.S mp.c mp_asm.S
guest64 synic synic.c synictest.c synictest_asm.S mp.c mp_asm.S
guest64 hvconn hvconn.c synictest.c synictest_asm.S mp.c mp_asm.S
guest64 synicbench synicbench.c synictest.c synictest_asm.S mp.c mp_asm.S
guest64 memflood memflood.c
guest64 hostile hostile.c hostile_asm.S synictest.c synictest_asm.S mp.c mp_asm.S
guest64 vmbus vmbus.c vmbus_guest.c synictest.c synictest_asm.S mp.c mp_asm.S
guest64 storvsc storvsc.c storvsc_guest.c vmbus_guest.c synictest.c synictest_asm.S mp.c mp_asm.S
guest64 soak soak.c storvsc_guest.c vmbus_guest.c synictest.c synictest_asm.S mp.c mp_asm.S
guest64 storvscbench storvscbench.c storvsc_guest.c vmbus_guest.c synictest.c synictest_asm.S mp.c mp_asm.S

# 32-bit multiboot guest (mbstart.S first: the multiboot header must be in the first 8 KiB)
compile -m32 "$OBJ/rt32-mbstart.o" "$SRC/runtime/mbstart.S"
compile -m32 "$OBJ/rt32-common.o" "$SRC/runtime/common.c"
compile -m32 "$OBJ/mbhello.o" "$SRC/mbhello.c"
link -m32 mbhello "$OBJ/rt32-mbstart.o" "$OBJ/rt32-common.o" "$OBJ/mbhello.o"
compile -m32 "$OBJ/rt32-hyperv.o" "$SRC/runtime/hyperv.c"
compile -m32 "$OBJ/mbhvcall.o" "$SRC/mbhvcall.c"
link -m32 mbhvcall "$OBJ/rt32-mbstart.o" "$OBJ/rt32-common.o" "$OBJ/rt32-hyperv.o" "$OBJ/mbhvcall.o"

# Linux-protocol guests (linux.ld keeps their notes). pvh64.elf is pvh.elf as an ELF64 file with
# the same 32-bit code, like a 64-bit vmlinux with its 32-bit PVH entry.
LINUXLD=(-nostdlib -static -no-pie -Wl,-T,"$SRC/linux.ld" -Wl,--build-id=none
         -Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments)
compile -m32 "$OBJ/pvh_start.o" "$SRC/pvh_start.S"
compile -m32 "$OBJ/pvh.o" "$SRC/pvh.c"
compile -m32 "$OBJ/rt32-bootcheck.o" "$SRC/runtime/bootcheck.c"
"$CC" -m32 "${LINUXLD[@]}" -o "$OUT/pvh.elf.tmp" "$OBJ/pvh_start.o" "$OBJ/rt32-common.o" "$OBJ/rt32-bootcheck.o" "$OBJ/pvh.o"
"${OBJCOPY:-objcopy}" -O elf64-x86-64 "$OUT/pvh.elf.tmp" "$OUT/pvh64.elf.tmp"
mv -f "$OUT/pvh.elf.tmp" "$OUT/pvh.elf"
mv -f "$OUT/pvh64.elf.tmp" "$OUT/pvh64.elf"
compile -m64 "$OBJ/bootparams_start.o" "$SRC/bootparams_start.S"
compile -m64 "$OBJ/bootparams.o" "$SRC/bootparams.c"
compile -m64 "$OBJ/rt64-bootcheck.o" "$SRC/runtime/bootcheck.c"
"$CC" -m64 "${LINUXLD[@]}" -o "$OUT/bootparams.elf.tmp" "$OBJ/bootparams_start.o" "$OBJ/rt64-common.c.o" "$OBJ/rt64-bootcheck.o" "$OBJ/bootparams.o"
mv -f "$OUT/bootparams.elf.tmp" "$OUT/bootparams.elf"

echo "guests: built hello smp exceptions cpuid bench hvprobe hvmsr hvcall hvclock hvipi hvcrash hvbench irq acpi uart rtc platform emulate stimer synic hvconn synicbench memflood hostile vmbus storvsc soak storvscbench mbhello mbhvcall pvh pvh64 bootparams in $OUT"
