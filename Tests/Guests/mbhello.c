/* mbhello: 32-bit multiboot v1 guest; prints the multiboot info. */
#include "rt.h"

#define MB_BOOT_MAGIC 0x2BADB002u

#define MBI_MEM (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS (1u << 3)
#define MBI_MMAP (1u << 6)

struct mb_info {
    u32 flags;
    u32 mem_lower, mem_upper;
    u32 boot_device;
    u32 cmdline;
    u32 mods_count, mods_addr;
    u32 syms[4];
    u32 mmap_length, mmap_addr;
} __attribute__((packed));

struct mb_module {
    u32 mod_start, mod_end;
    u32 string;
    u32 reserved;
} __attribute__((packed));

struct mb_mmap {
    u32 size;           /* of the rest of the entry */
    u64 addr, len;
    u32 type;
} __attribute__((packed));

void mb_main(u32 magic, u32 info);
void mb_main(u32 magic, u32 info)
{
    puts("mbhello: start");
    if (magic != MB_BOOT_MAGIC)
        guest_fail("mbhello", "EAX=0x%08x, expected 0x%08x", magic, MB_BOOT_MAGIC);
    const struct mb_info *mbi = phys_ptr(info);
    puts("Hello from multiboot guest");
    printf("flags=0x%x\n", mbi->flags);
    if (!(mbi->flags & MBI_MEM))
        guest_fail("mbhello", "no memory info (flag 0)");
    printf("mem_lower=%u mem_upper=%u\n", mbi->mem_lower, mbi->mem_upper);
    if (mbi->flags & MBI_CMDLINE)
        printf("cmdline: %s\n", mbi->cmdline ? (const char *)phys_ptr(mbi->cmdline) : "");
    else
        puts("cmdline: (none)");
    u32 mods = (mbi->flags & MBI_MODS) ? mbi->mods_count : 0;
    printf("modules: %u\n", mods);
    const struct mb_module *m = phys_ptr(mbi->mods_addr);
    for (u32 i = 0; i < mods; i++) {
        const char *name = m[i].string ? (const char *)phys_ptr(m[i].string) : "";
        printf("module %u 0x%08x 0x%08x %s first=", i, m[i].mod_start, m[i].mod_end, name);
        const u8 *p = phys_ptr(m[i].mod_start);
        u32 size = m[i].mod_end > m[i].mod_start ? m[i].mod_end - m[i].mod_start : 0;
        for (u32 j = 0; j < 8 && j < size; j++)
            printf("%02x", p[j]);
        serial_putc('\n');
        if (m[i].mod_start & 0xfff)
            guest_fail("mbhello", "module %u not page-aligned", i);
        if (m[i].mod_end < m[i].mod_start)
            guest_fail("mbhello", "module %u ends before it starts", i);
    }
    if (!(mbi->flags & MBI_MMAP))
        guest_fail("mbhello", "no memory map (flag 6)");
    u32 off = 0, count = 0;
    while (off + 4 <= mbi->mmap_length) {
        const struct mb_mmap *e = phys_ptr(mbi->mmap_addr + off);
        printf("mmap 0x%016llx 0x%016llx %u\n", e->addr, e->len, e->type);
        if (e->size < 20)
            guest_fail("mbhello", "mmap entry size %u", e->size);
        off += e->size + 4;
        count++;
    }
    if (count == 0)
        guest_fail("mbhello", "empty memory map");
    puts("mbhello: ok");
    guest_exit_success();
}
