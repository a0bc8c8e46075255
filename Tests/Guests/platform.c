/* platform: the legacy pieces a PC kernel probes. The i8042: status (SYS set, IBF clear),
 * self test 0xAA -> 0x55, the command byte (0x20). PCI configuration mechanism #1 with no PCI
 * behind it: CONFIG_ADDRESS does not read back, CONFIG_DATA reads all-ones at every width, and a
 * 32-bit write to 0xCF8 whose second byte would reset the machine at 0xCF9 does not (0xCF9 is
 * only the reset register for byte accesses). Output: "platform: i8042 status=0x.. selftest=0x..
 * ctr=0x..", "platform: pci cf8=0x.. cfc=0x.. cfe=0x.. cfd=0x.. (no PCI)". Then, by the command
 * line: action=kbd-reset (command 0xFE), action=outport-reset (0xD1, then bit 0 clear), or none:
 * "platform: ok". */
#include "rt.h"
#include "x86.h"
#include "bootinfo.h"

static inline u16 inw(u16 port)
{
    u16 v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static u8 kbc_read(void)
{
    for (u32 i = 0; i < 100000; i++)
        if (inb(0x64) & 0x01)
            return inb(0x60);
    guest_fail("platform", "the i8042 never filled its output buffer");
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    u8 status = inb(0x64);
    if (!(status & 0x04) || (status & 0x02))
        guest_fail("platform", "i8042 status 0x%02x: want SYS set and IBF clear", status);
    while (inb(0x64) & 0x01)
        (void)inb(0x60);
    outb(0x64, 0xaa);
    u8 selftest = kbc_read();
    outb(0x64, 0x20);
    u8 ctr = kbc_read();
    printf("platform: i8042 status=0x%02x selftest=0x%02x ctr=0x%02x\n", status, selftest, ctr);
    if (selftest != 0x55)
        guest_fail("platform", "i8042 self test answered 0x%02x", selftest);

    outl(0xcf8, 0x80000600u); /* byte 1 is 0x06: the reset value, were it a write to 0xcf9 */
    u32 cf8 = inl(0xcf8);
    outl(0xcf8, 0x80000000u); /* bus 0, device 0, function 0, register 0: vendor and device */
    u32 cfc = inl(0xcfc);
    u16 cfe = inw(0xcfe);
    u8 cfd = inb(0xcfd);
    printf("platform: pci cf8=0x%08x cfc=0x%08x cfe=0x%04x cfd=0x%02x (no PCI)\n", cf8, cfc, cfe, cfd);
    if (cf8 == 0x80000600u || cfc != 0xffffffffu || cfe != 0xffff || cfd != 0xff)
        guest_fail("platform", "configuration space is not all-ones");

    const char *v;
    usize len;
    if (cmdline_find(boot_cmdline(), "action", &v, &len)) {
        if (len == 9 && !memcmp(v, "kbd-reset", 9)) {
            puts("platform: resetting through the i8042 (0xfe)");
            outb(0x64, 0xfe);
        } else if (len == 13 && !memcmp(v, "outport-reset", 13)) {
            puts("platform: resetting through the i8042 output port");
            outb(0x64, 0xd1);
            outb(0x60, 0xfe);
        }
        for (u32 i = 0; i < 1000000; i++)
            cpu_relax();
        guest_fail("platform", "still running after the reset");
    }
    puts("platform: ok");
}
