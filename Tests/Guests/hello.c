/* hello: prints the boot info the VMM passed (command line, memory, vCPUs, e820). */
#include "rt.h"
#include "bootinfo.h"
#include "bootcheck.h"
#include "x86.h"

void guest_main(const struct boot_info *bi)
{
    puts("hello: start");
    puts("Hello from SynthVM guest");
    const char *cmdline = boot_cmdline();
    printf("cmdline: %s\n", cmdline);
    printf("memory: %llu\n", bi->memory_size);
    printf("cpus: %u\n", bi->cpu_count);
    const struct e820_entry *e = boot_e820();
    memmap_print("e820", e, bi->e820_count, sizeof(*e));
    /* Modules are listed only when there are any, so the plain output stays as above. */
    if (bi->module_count) {
        const struct boot_module *m = boot_modules();
        printf("modules: %u\n", bi->module_count);
        for (u32 i = 0; i < bi->module_count; i++)
            printf("module %u 0x%llx 0x%llx %s\n", i, m[i].addr, m[i].size,
                   m[i].name ? (const char *)phys_ptr(m[i].name) : "");
    }

    /* Nothing is at I/O port 0x510 or at the HPET's usual MMIO address in SynthVM: both must
     * read as all-ones (and the VMM counts them). */
    printf("unknown port: 0x%x\n", inl(0x510));
    printf("unknown mmio: 0x%x\n", *(volatile u32 *)0xFED00000ull);

    /* Sanity checks on what was printed. */
    if (strlen(cmdline) != bi->cmdline_len)
        guest_fail("hello", "command-line length %u, boot info says %u", (u32)strlen(cmdline), bi->cmdline_len);
    if (bi->cpu_count == 0)
        guest_fail("hello", "cpu count is 0");
    if (bi->e820_count == 0)
        guest_fail("hello", "no e820 entries");
    u64 ram = 0;
    for (u32 i = 0; i < bi->e820_count; i++)
        if (e[i].type == 1)
            ram += e[i].size;
    if (ram == 0 || ram > bi->memory_size)
        guest_fail("hello", "e820 RAM total 0x%llx vs memory 0x%llx", ram, bi->memory_size);
    puts("hello: ok");
}
