/* What guests check in the tables a loader hands them (pvh, bootparams, hello, acpi): memory-map
 * lines, the RSDP, ACPI checksums, FNV-1a hashes of module bytes. runtime/bootcheck.c, built for
 * both widths and linked only into the guests that use it. */
#ifndef BOOTCHECK_H
#define BOOTCHECK_H
#include "rt.h"

/* FNV-1a 32 of n bytes (what the tests compute over module and ramdisk files). */
u32 fnv1a(const void *p, u64 n);

/* The 8-bit sum of n bytes: 0 for an ACPI table with a valid checksum. */
u8 byte_sum(const void *p, u32 n);

/* Prints "<label> 0x<addr %016llx> 0x<size %016llx> <type>" for each of n entries that stand
 * stride bytes apart and start with u64 addr, u64 size, u32 type: the layout E820, SynthVM's
 * boot info and PVH's memory map share (with 20-, 24- and 24-byte entries). */
void memmap_print(const char *label, const void *table, u32 n, u32 stride);

/* Fails as guest unless an RSDP ("RSD PTR ", valid 20- and 36-byte checksums) is at addr; then
 * prints "rsdp 0x<addr> revision=<r>". */
void rsdp_check(const char *guest, u64 addr);

#endif
