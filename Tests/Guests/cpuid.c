/* cpuid: dumps the CPUID leaves the boot vCPU sees. */
#include "rt.h"
#include "x86.h"
#include "bootinfo.h"

static void dump(u32 leaf, u32 subleaf)
{
    u32 a, b, c, d;
    cpuid(leaf, subleaf, &a, &b, &c, &d);
    printf("cpuid %08x %08x %08x %08x %08x %08x\n", leaf, subleaf, a, b, c, d);
}

static bool has_subleaves(u32 leaf)
{
    return leaf == 4 || leaf == 7 || leaf == 0xb || leaf == 0xd || leaf == 0x1f;
}

static void dump_range(u32 first, u32 last)
{
    for (u32 leaf = first; leaf <= last; leaf++) {
        u32 subleaves = has_subleaves(leaf) ? 4 : 1;
        for (u32 s = 0; s < subleaves; s++)
            dump(leaf, s);
    }
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    u32 a, b, c, d;
    puts("cpuid: start");
    cpuid(0, 0, &a, &b, &c, &d);
    dump_range(0, a < 0x20 ? a : 0x20);
    dump_range(0x40000000, 0x40000010);
    cpuid(0x80000000, 0, &a, &b, &c, &d);
    u32 max_ext = a < 0x80000000 ? 0x80000000 : a > 0x80000020 ? 0x80000020 : a;
    dump_range(0x80000000, max_ext);
    puts("cpuid: ok");
}
