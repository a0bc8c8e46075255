/* HV#1 helpers shared by the 64-bit guests and the 32-bit multiboot guest (hyperv.h). */
#include "rt.h"
#include "x86.h"
#include "hyperv.h"

void *hv_hypercall_pg;

bool hv_vendor_is_microsoft(void)
{
    u32 a, b, c, d;
    cpuid(HV_CPUID_VENDOR, 0, &a, &b, &c, &d);
    return b == HV_VENDOR_EBX && c == HV_VENDOR_ECX && d == HV_VENDOR_EDX;
}

bool hv_query(struct hv_info *hv)
{
    u32 a, b, c, d;
    memset(hv, 0, sizeof(*hv));
    if (!hv_vendor_is_microsoft())
        return false;
    hv->present = true;
    cpuid(HV_CPUID_VENDOR, 0, &a, &b, &c, &d);
    hv->max_leaf = a;
    cpuid(HV_CPUID_INTERFACE, 0, &a, &b, &c, &d);
    hv->interface = a;
    if (hv->max_leaf >= HV_CPUID_FEATURES) {
        cpuid(HV_CPUID_FEATURES, 0, &a, &b, &c, &d);
        hv->priv_eax = a;
        hv->priv_ebx = b;
        hv->features_edx = d;
    }
    if (hv->max_leaf >= HV_CPUID_HINTS) {
        cpuid(HV_CPUID_HINTS, 0, &a, &b, &c, &d);
        hv->hints_eax = a;
        hv->spin_ebx = b;
    }
    return true;
}

void hv_require(const char *guest, struct hv_info *hv)
{
    if (!hv_query(hv))
        guest_fail(guest, "no \"Microsoft Hv\" leaves");
}

u32 cpu_phys_addr_bits(void)
{
    u32 a, b, c, d;
    cpuid(0x80000000u, 0, &a, &b, &c, &d);
    if (a < 0x80000008u)
        return 36;
    cpuid(0x80000008u, 0, &a, &b, &c, &d);
    return (a & 0xff) ? (a & 0xff) : 36;
}

u64 hv_enable_hypercall_page(void *page)
{
    if (rdmsr(HV_MSR_GUEST_OS_ID) == 0)
        wrmsr(HV_MSR_GUEST_OS_ID, HV_LINUX_GUEST_OS_ID);
    u64 gpa = (u64)(uptr)page;
    wrmsr(HV_MSR_HYPERCALL, (gpa & ~0xfffull) | HV_HYPERCALL_ENABLE);
    u64 v = rdmsr(HV_MSR_HYPERCALL);
    hv_hypercall_pg = page;
    return v;
}

#ifdef __x86_64__
u64 hv_hypercall(u64 control, u64 in, u64 out)
{
    /* Like Linux's hv_do_hypercall: RCX control, RDX input, R8 output, `call *page`.
     * The TLFS promises that only RAX changes (non-rep calls); clobbering the registers
     * the Microsoft x64 ABI calls volatile keeps this helper correct even for a stub that
     * does not live up to that (hvcall checks the promise separately). */
    u64 status;
    register u64 r8 __asm__("r8") = out;
    __asm__ volatile("call *%[pg]"
                     : "=a"(status), "+c"(control), "+d"(in), "+r"(r8)
                     : [pg] "m"(hv_hypercall_pg)
                     : "cc", "memory", "r9", "r10", "r11");
    return status;
}
#else
u64 hv_hypercall(u64 control, u64 in, u64 out)
{
    /* EDX:EAX control, EBX:ECX input, EDI:ESI output; result in EDX:EAX. */
    u32 lo = (u32)control, hi = (u32)(control >> 32);
    u32 in_lo = (u32)in, in_hi = (u32)(in >> 32);
    u32 out_lo = (u32)out, out_hi = (u32)(out >> 32);
    __asm__ volatile("call *%[pg]"
                     : "+a"(lo), "+d"(hi), "+b"(in_hi), "+c"(in_lo), "+D"(out_hi), "+S"(out_lo)
                     : [pg] "m"(hv_hypercall_pg)
                     : "cc", "memory");
    return ((u64)hi << 32) | lo;
}
#endif
