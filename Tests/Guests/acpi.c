/* acpi: finds the ACPI tables the way Linux does (scan 0xE0000-0xFFFFF for "RSD PTR " on 16-byte
 * boundaries), checks the RSDP/XSDT/FADT/MADT checksums, counts the MADT's local APICs, then
 * acts as the command line says: action=poweroff writes SLP_TYP 5 | SLP_EN to the FADT's PM1a
 * control block; action=reset writes the FADT's reset value to its reset register. */
#include "rt.h"
#include "x86.h"
#include "bootinfo.h"
#include "bootcheck.h"

static bool checksum_ok(const u8 *p, u32 len) { return byte_sum(p, len) == 0; }

static u32 rd32(const u8 *p) { return p[0] | p[1] << 8 | p[2] << 16 | (u32)p[3] << 24; }
static u64 rd64(const u8 *p) { return rd32(p) | (u64)rd32(p + 4) << 32; }

static bool sig(const u8 *p, const char *s)
{
    for (int i = 0; s[i]; i++)
        if (p[i] != (u8)s[i])
            return false;
    return true;
}

void guest_main(const struct boot_info *bi)
{
    puts("acpi: start");
    const u8 *rsdp = NULL;
    for (u64 a = 0xE0000; a < 0x100000; a += 16)
        if (sig(phys_ptr(a), "RSD PTR ")) {
            rsdp = phys_ptr(a);
            break;
        }
    if (!rsdp)
        guest_fail("acpi", "no RSDP in 0xE0000-0xFFFFF");
    if (!checksum_ok(rsdp, 20) || !checksum_ok(rsdp, rd32(rsdp + 20)) || rsdp[15] < 2)
        guest_fail("acpi", "bad RSDP (revision %u)", rsdp[15]);
    const u8 *xsdt = phys_ptr(rd64(rsdp + 24));
    if (!sig(xsdt, "XSDT") || !checksum_ok(xsdt, rd32(xsdt + 4)))
        guest_fail("acpi", "bad XSDT");
    const u8 *fadt = NULL, *madt = NULL;
    u32 n = (rd32(xsdt + 4) - 36) / 8;
    for (u32 i = 0; i < n; i++) {
        const u8 *t = phys_ptr(rd64(xsdt + 36 + 8 * i));
        if (!checksum_ok(t, rd32(t + 4)))
            guest_fail("acpi", "table %c%c%c%c has a bad checksum", t[0], t[1], t[2], t[3]);
        if (sig(t, "FACP"))
            fadt = t;
        if (sig(t, "APIC"))
            madt = t;
    }
    if (!fadt || !madt)
        guest_fail("acpi", "no FADT or MADT in the XSDT");
    u32 lapics = 0;
    for (u32 off = 44; off + 2 <= rd32(madt + 4); off += madt[off + 1]) {
        if (madt[off + 1] == 0)
            guest_fail("acpi", "MADT entry of length 0");
        if (madt[off] == 0 && (rd32(madt + off + 4) & 1))
            lapics++;
    }
    u32 pm1a_cnt = rd32(fadt + 64);
    u16 reset_port = (u16)rd64(fadt + 116 + 4);
    u8 reset_value = fadt[128];
    printf("acpi: %u local APICs, pm1a_cnt=0x%x reset=0x%x/0x%x\n", lapics, pm1a_cnt, reset_port, reset_value);
    if (lapics != bi->cpu_count)
        guest_fail("acpi", "MADT lists %u local APICs, boot info says %u vCPUs", lapics, bi->cpu_count);

    const char *v;
    usize len;
    if (!cmdline_find(boot_cmdline(), "action", &v, &len))
        guest_fail("acpi", "no action= on the command line");
    if (len == 8 && sig((const u8 *)v, "poweroff")) {
        puts("acpi: powering off");
        outw((u16)pm1a_cnt, (5 << 10) | (1 << 13));
    } else if (len == 5 && sig((const u8 *)v, "reset")) {
        puts("acpi: resetting");
        outb(reset_port, reset_value);
    }
    guest_fail("acpi", "still running after the action");
}
