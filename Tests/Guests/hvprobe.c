/* hvprobe: what Linux 6.1 does to find and set up Hyper-V (ms_hyperv_platform, hyperv_init,
 * hv_init_clocksource), plus one fast HvSignalEvent. With "expect=off" it checks instead that
 * there is no Hyper-V: 0x40000000 is not "Microsoft Hv" and GUEST_OS_ID raises #GP. */
#include "rt.h"
#include "x86.h"
#include "hyperv.h"
#include "bootinfo.h"

#define NAME "hvprobe"

static u8 hypercall_page[4096] __attribute__((aligned(4096)));
static volatile u8 tsc_page[4096] __attribute__((aligned(4096)));

static void probe_off(void)
{
    u32 a, b, c, d;
    cpuid(HV_CPUID_VENDOR, 0, &a, &b, &c, &d);
    printf("cpuid 0x40000000: eax=0x%x ebx=0x%x ecx=0x%x edx=0x%x\n", a, b, c, d);
    if (hv_vendor_is_microsoft())
        guest_fail(NAME, "0x40000000 says \"Microsoft Hv\" with the hypervisor off");
    u64 v;
    if (!rdmsr_safe(HV_MSR_GUEST_OS_ID, &v))
        guest_fail(NAME, "rdmsr GUEST_OS_ID did not #GP (read 0x%llx)", v);
    if (!wrmsr_safe(HV_MSR_GUEST_OS_ID, HV_LINUX_GUEST_OS_ID))
        guest_fail(NAME, "wrmsr GUEST_OS_ID did not #GP");
    puts("hvprobe: no hypervisor leaves");
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    puts("hvprobe: start");
    if (cmdline_is(boot_cmdline(), "expect", "off")) {
        probe_off();
        puts("hvprobe: ok");
        return;
    }

    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    if (!(c & (1u << 31)))
        guest_fail(NAME, "CPUID.1:ECX[31] (hypervisor present) is clear");

    /* ms_hyperv_platform(): vendor, 0x40000005 <= max <= 0x4000FFFF, EAX bits 5 and 6. */
    struct hv_info hv;
    if (!hv_query(&hv)) {
        cpuid(HV_CPUID_VENDOR, 0, &a, &b, &c, &d);
        guest_fail(NAME, "0x40000000 is not \"Microsoft Hv\" (ebx=0x%x ecx=0x%x edx=0x%x)", b, c, d);
    }
    printf("max leaf=0x%x interface=0x%x\n", hv.max_leaf, hv.interface);
    if (hv.max_leaf < HV_CPUID_LIMITS || hv.max_leaf > 0x4000ffffu)
        guest_fail(NAME, "max leaf 0x%x not in 0x40000005..0x4000ffff", hv.max_leaf);
    if (hv.interface != HV_INTERFACE_HV1)
        guest_fail(NAME, "0x40000001.EAX=0x%x, expected \"Hv#1\" (0x%x)", hv.interface, HV_INTERFACE_HV1);
    printf("privileges eax=0x%x ebx=0x%x features edx=0x%x hints eax=0x%x spin=0x%x\n", hv.priv_eax,
           hv.priv_ebx, hv.features_edx, hv.hints_eax, hv.spin_ebx);
    if (!(hv.priv_eax & HV_PRIV_HYPERCALL))
        guest_fail(NAME, "0x40000003.EAX bit 5 (AccessHypercallMsrs) clear");
    if (!(hv.priv_eax & HV_PRIV_VP_INDEX))
        guest_fail(NAME, "0x40000003.EAX bit 6 (AccessVpIndex) clear");

    /* hyperv_init(): guest ID, then the hypercall page. */
    wrmsr(HV_MSR_GUEST_OS_ID, HV_LINUX_GUEST_OS_ID);
    u64 id = rdmsr(HV_MSR_GUEST_OS_ID);
    printf("guest os id=0x%llx\n", id);
    if (id != HV_LINUX_GUEST_OS_ID)
        guest_fail(NAME, "GUEST_OS_ID reads 0x%llx after writing 0x%llx", id, HV_LINUX_GUEST_OS_ID);

    u64 before = rdmsr(HV_MSR_HYPERCALL);
    u64 gpa = (u64)(uptr)hypercall_page;
    u64 hc = hv_enable_hypercall_page(hypercall_page);
    printf("hypercall msr=0x%llx (was 0x%llx) page=0x%llx\n", hc, before, gpa);
    if (!(hc & HV_HYPERCALL_ENABLE))
        guest_fail(NAME, "HYPERCALL enable bit clear after enabling (0x%llx)", hc);
    if ((hc & ~0xfffull) != gpa)
        guest_fail(NAME, "HYPERCALL GPFN 0x%llx, wrote 0x%llx", hc & ~0xfffull, gpa);
    printf("hypercall page:");
    for (int i = 0; i < 16; i++)
        printf(" %02x", hypercall_page[i]);
    serial_putc('\n');

    u64 vp = rdmsr(HV_MSR_VP_INDEX);
    printf("vp index=%llu\n", vp);
    if (vp != 0)
        guest_fail(NAME, "VP_INDEX on the boot vCPU is %llu, expected 0", vp);

    /* hv_init_clocksource(): the TSC page when EAX bit 9 is set. */
    if (hv.priv_eax & HV_PRIV_REFERENCE_TSC) {
        u64 tgpa = (u64)(uptr)tsc_page;
        wrmsr(HV_MSR_REFERENCE_TSC, tgpa | HV_REFERENCE_TSC_ENABLE);
        u64 r = rdmsr(HV_MSR_REFERENCE_TSC);
        u32 seq = *(volatile u32 *)&tsc_page[0];
        u64 scale = *(volatile u64 *)&tsc_page[8];
        u64 offset = *(volatile u64 *)&tsc_page[16];
        printf("tsc page: sequence=%u scale=0x%llx offset=0x%llx\n", seq, scale, offset);
        if ((r & ~0xfffull) != tgpa || !(r & 1))
            guest_fail(NAME, "REFERENCE_TSC reads 0x%llx after writing 0x%llx", r, tgpa | 1);
        if (seq == 0 || seq == 0xffffffffu)
            guest_fail(NAME, "TSC page sequence %u is invalid", seq);
        if (scale == 0)
            guest_fail(NAME, "TSC page scale is 0");
    } else {
        puts("tsc page: not advertised (0x40000003.EAX bit 9 clear)");
    }

    /* A fast HvSignalEvent, as vmbus does: RCX = 0x1005D, RDX = connection id | flag << 32. */
    u64 r = hv_fast8(HVCALL_SIGNAL_EVENT, 1);
    printf("signal event status=0x%x\n", HV_STATUS(r));
    puts("hvprobe: ok");
}
