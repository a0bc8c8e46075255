/* SynthVM direct-boot info block (docs/boot-protocol.md), passed in RDI. */
#ifndef BOOTINFO_H
#define BOOTINFO_H
#include "rt.h"

#define BOOT_INFO_MAGIC 0x544F4F424D565953ULL   /* "SYVMBOOT" */

struct boot_info {
    u64 magic;
    u32 version;
    u32 size;
    u64 memory_size;
    u32 cpu_count;
    u32 e820_count;
    u64 cmdline;        /* GPA, NUL-terminated */
    u32 cmdline_len;
    u32 module_count;
    u64 modules;        /* GPA of struct boot_module[] */
    u64 e820;           /* GPA of struct e820_entry[] */
    u64 pml4;           /* CR3 */
    u64 gdt;
    u32 gdt_limit;
    u32 zero;
} __attribute__((packed));

struct boot_module {
    u64 addr;
    u64 size;
    u64 name;           /* GPA, NUL-terminated */
} __attribute__((packed));

struct e820_entry {
    u64 addr;
    u64 size;
    u32 type;
    u32 zero;
} __attribute__((packed));

/* Set by the runtime before guest_main runs. */
extern const struct boot_info *boot_info;
/* The command line ("" if none). */
const char *boot_cmdline(void);
const struct e820_entry *boot_e820(void);
const struct boot_module *boot_modules(void);

/* Each 64-bit guest defines this; returning ends the VM with status 0 (cli; hlt). */
void guest_main(const struct boot_info *bi);

#endif
