/* pvh: a 32-bit PVH guest. Checks the entry state and prints hvm_start_info: command line,
 * modules (with an FNV-1a hash of their bytes), memory map and RSDP. */
#include "rt.h"
#include "bootcheck.h"

#define HVM_START_MAGIC 0x336ec578u

struct hvm_start_info {
    u32 magic;
    u32 version;
    u32 flags;
    u32 nr_modules;
    u64 modlist_paddr;
    u64 cmdline_paddr;
    u64 rsdp_paddr;
    u64 memmap_paddr;
    u32 memmap_entries;
    u32 reserved;
};

struct hvm_modlist_entry {
    u64 paddr;
    u64 size;
    u64 cmdline_paddr;
    u64 reserved;
};

struct hvm_memmap_table_entry {
    u64 addr;
    u64 size;
    u32 type;
    u32 reserved;
};

void pvh_main(u32 info, u32 cr0, u32 cr4, u32 eflags);
void pvh_main(u32 info, u32 cr0, u32 cr4, u32 eflags)
{
    puts("pvh: start");
    printf("entry pe=%u pg=%u cr4=0x%x if=%u\n", cr0 & 1, cr0 >> 31, cr4, (eflags >> 9) & 1);
    if (!(cr0 & 1) || (cr0 >> 31) || cr4 || (eflags & (1u << 9)))
        guest_fail("pvh", "entry state: cr0=0x%x cr4=0x%x eflags=0x%x", cr0, cr4, eflags);
    const struct hvm_start_info *si = phys_ptr(info);
    if (si->magic != HVM_START_MAGIC)
        guest_fail("pvh", "start info magic 0x%x at 0x%x", si->magic, info);
    printf("start_info 0x%x version=%u flags=%u reserved=%u\n", info, si->version, si->flags, si->reserved);
    if (si->version < 1)
        guest_fail("pvh", "start info version %u has no memory map", si->version);
    printf("cmdline: %s\n", si->cmdline_paddr ? (const char *)phys_ptr(si->cmdline_paddr) : "(none)");
    printf("modules: %u\n", si->nr_modules);
    const struct hvm_modlist_entry *m = phys_ptr(si->modlist_paddr);
    for (u32 i = 0; i < si->nr_modules; i++) {
        const char *name = m[i].cmdline_paddr ? (const char *)phys_ptr(m[i].cmdline_paddr) : "";
        u32 size = (u32)m[i].size;
        printf("module %u 0x%llx 0x%llx fnv=0x%08x %s\n", i, m[i].paddr, m[i].size,
               fnv1a(phys_ptr(m[i].paddr), size), name);
        if (m[i].paddr & 0xfff)
            guest_fail("pvh", "module %u not page-aligned", i);
    }
    memmap_print("memmap", phys_ptr(si->memmap_paddr), si->memmap_entries,
                 sizeof(struct hvm_memmap_table_entry));
    if (si->memmap_entries == 0)
        guest_fail("pvh", "empty memory map");
    rsdp_check("pvh", si->rsdp_paddr);
    puts("pvh: ok");
    guest_exit_success();
}
