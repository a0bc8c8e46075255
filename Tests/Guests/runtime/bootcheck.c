/* Checks of loader-provided tables shared by the boot-protocol guests (bootcheck.h). Built for
 * -m64 and -m32. */
#include "bootcheck.h"

u32 fnv1a(const void *p, u64 n)
{
    const u8 *b = p;
    u32 h = 2166136261u;
    for (u64 i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

u8 byte_sum(const void *p, u32 n)
{
    const u8 *b = p;
    u8 sum = 0;
    for (u32 i = 0; i < n; i++)
        sum += b[i];
    return sum;
}

/* One entry's common prefix; packed, because E820 entries in the zero page are 20 bytes. */
struct memmap_prefix {
    u64 addr;
    u64 size;
    u32 type;
} __attribute__((packed));

void memmap_print(const char *label, const void *table, u32 n, u32 stride)
{
    const u8 *p = table;
    for (u32 i = 0; i < n; i++, p += stride) {
        const struct memmap_prefix *e = (const struct memmap_prefix *)p;
        printf("%s 0x%016llx 0x%016llx %u\n", label, e->addr, e->size, e->type);
    }
}

void rsdp_check(const char *guest, u64 addr)
{
    const u8 *rsdp = phys_ptr(addr);
    if (!addr || memcmp(rsdp, "RSD PTR ", 8) != 0)
        guest_fail(guest, "no RSDP at 0x%llx", addr);
    if (byte_sum(rsdp, 20) != 0 || byte_sum(rsdp, 36) != 0)
        guest_fail(guest, "RSDP checksum");
    printf("rsdp 0x%llx revision=%u\n", addr, rsdp[15]);
}
