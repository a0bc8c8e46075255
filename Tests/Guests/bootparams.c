/* bootparams: a 64-bit guest entered by Linux's 64-bit boot protocol. Prints the zero page:
 * the copied setup header, command line, ramdisk (with an FNV-1a hash), e820 map and RSDP. */
#include "rt.h"
#include "bootcheck.h"

#define U8(o) (*(const u8 *)(bp + (o)))
#define U16(o) (*(const u16 *)(bp + (o)))
#define U32(o) (*(const u32 *)(bp + (o)))
#define U64(o) (*(const u64 *)(bp + (o)))

struct boot_e820_entry {
    u64 addr;
    u64 size;
    u32 type;
} __attribute__((packed));

void bootparams_main(u64 params, u64 cr0, u64 cr4, u64 unused);
void bootparams_main(u64 params, u64 cr0, u64 cr4, u64 unused)
{
    (void)unused;
    puts("bootparams: start");
    const u8 *bp = phys_ptr(params);
    printf("entry boot_params=0x%llx pg=%llu pae=%llu\n", params, cr0 >> 31 & 1, cr4 >> 5 & 1);
    if (U16(0x1fe) != 0xaa55 || U32(0x202) != 0x53726448)
        guest_fail("bootparams", "no setup header at 0x%llx", params);
    printf("hdr version=0x%x setup_sects=%u loadflags=0x%x xloadflags=0x%x initrd_addr_max=0x%x "
           "cmdline_size=%u kernel_alignment=0x%x init_size=0x%x type_of_loader=0x%x\n",
           U16(0x206), U8(0x1f1), U8(0x211), U16(0x236), U32(0x22c), U32(0x238), U32(0x230), U32(0x260),
           U8(0x210));
    u64 cmdline = U32(0x228) | (u64)U32(0xc8) << 32;
    printf("cmdline: %s\n", cmdline ? (const char *)phys_ptr(cmdline) : "(none)");
    u64 ramdisk = U32(0x218) | (u64)U32(0xc0) << 32;
    u64 ramdisk_size = U32(0x21c) | (u64)U32(0xc4) << 32;
    if (ramdisk_size) {
        printf("ramdisk 0x%llx 0x%llx fnv=0x%08x\n", ramdisk, ramdisk_size, fnv1a(phys_ptr(ramdisk), ramdisk_size));
        if (ramdisk & 0xfff)
            guest_fail("bootparams", "ramdisk not page-aligned");
    } else {
        puts("ramdisk: none");
    }
    u32 n = U8(0x1e8);
    memmap_print("e820", phys_ptr(params + 0x2d0), n, sizeof(struct boot_e820_entry));
    if (n == 0)
        guest_fail("bootparams", "empty e820 map");
    rsdp_check("bootparams", U64(0x70));
    puts("bootparams: ok");
    guest_exit_success();
}
