/* C entry of the 64-bit guests: IDT, boot-info check, then guest_main. */
#include "rt.h"
#include "idt.h"
#include "bootinfo.h"

const struct boot_info *boot_info;

const char *boot_cmdline(void)
{
    return boot_info->cmdline ? (const char *)phys_ptr(boot_info->cmdline) : "";
}

const struct e820_entry *boot_e820(void)
{
    return (const struct e820_entry *)phys_ptr(boot_info->e820);
}

const struct boot_module *boot_modules(void)
{
    return (const struct boot_module *)phys_ptr(boot_info->modules);
}

void runtime_main(u64 bi_addr);
void runtime_main(u64 bi_addr)
{
    /* The IDT first, so that even a bad boot-info pointer gives a readable report. */
    idt_init();
    const struct boot_info *bi = phys_ptr(bi_addr);
    if (bi->magic != BOOT_INFO_MAGIC || bi->version < 1 || bi->size < sizeof(struct boot_info)) {
        puts("bad boot info");
        guest_exit(EXIT_BAD_BOOT_INFO);
    }
    boot_info = bi;
    guest_main(bi);
    guest_exit_success();
}
