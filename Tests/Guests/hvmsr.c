/* hvmsr: the synthetic-MSR access matrix. For each MSR: a read, a write of a valid value and a
 * write with a reserved bit (or an invalid field) set, each of which either completes (ok) or
 * raises #GP (gp). Expectations come from CPUID 0x40000003 and the TLFS: an MSR whose privilege
 * or feature bit is not advertised #GPs (so with no "Microsoft Hv" leaves every one does);
 * read-only MSRs #GP on writes, write-only ones on reads; RsvdP bits are ignored (no #GP).
 * Never written: RESET (it resets the VM), CRASH_CTL (it reports a crash); GUEST_IDLE is never
 * read (it idles the VP). */
#include "rt.h"
#include "x86.h"
#include "hyperv.h"
#include "bootinfo.h"

#define NAME "hvmsr"

enum { SKIP, OK, GP, ANY };   /* ANY: the TLFS leaves it open (RsvdZ bits in an MSR) */

static const char *const res_name[] = { "-", "ok", "gp", "any" };

static u8 hypercall_page[4096] __attribute__((aligned(4096)));
static u8 tsc_page[4096] __attribute__((aligned(4096)));
static u8 assist_page[4096] __attribute__((aligned(4096)));

static u32 mismatches;

static int rd(u32 msr, u64 *v) { return rdmsr_safe(msr, v) ? GP : OK; }
static int wr(u32 msr, u64 v) { return wrmsr_safe(msr, v) ? GP : OK; }
/* What the TLFS says for an access that is fine when the MSR is available. */
static int av(bool available, int r) { return available ? r : GP; }

static bool matches(int got, int exp)
{
    return exp == ANY ? (got == OK || got == GP) : got == exp;
}

static void row(u32 msr, const char *name, int r, int w, int x, int er, int ew, int ex)
{
    printf("msr 0x%08x %s read=%s write=%s reserved=%s expected=%s/%s/%s\n", msr, name, res_name[r],
           res_name[w], res_name[x], res_name[er], res_name[ew], res_name[ex]);
    const char *what[3] = { "read", "write", "reserved" };
    int got[3] = { r, w, x }, exp[3] = { er, ew, ex };
    for (int i = 0; i < 3; i++) {
        if (!matches(got[i], exp[i])) {
            printf("mismatch: msr 0x%08x %s %s=%s, expected %s\n", msr, name, what[i], res_name[got[i]],
                   res_name[exp[i]]);
            mismatches++;
        }
    }
}

static void value_mismatch(u32 msr, const char *name, const char *what, u64 got, u64 exp)
{
    printf("mismatch: msr 0x%08x %s %s: 0x%llx, expected 0x%llx\n", msr, name, what, got, exp);
    mismatches++;
}

/* Read-only MSR: read when available, writes always #GP. */
static u64 read_only(u32 msr, const char *name, bool available)
{
    u64 v = 0;
    int r = rd(msr, &v);
    int w = wr(msr, 0);
    row(msr, name, r, w, SKIP, av(available, OK), GP, SKIP);
    return v;
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    puts("hvmsr: start");
    struct hv_info hv;
    hv_query(&hv);
    printf("hv present=%u privileges eax=0x%x ebx=0x%x features edx=0x%x hints eax=0x%x\n", hv.present,
           hv.priv_eax, hv.priv_ebx, hv.features_edx, hv.hints_eax);
    const u32 pa = hv.priv_eax, fd = hv.features_edx;
    const bool hcall = pa & HV_PRIV_HYPERCALL, synic = pa & HV_PRIV_SYNIC, apic = pa & HV_PRIV_APIC_MSRS;
    u64 v, v2;
    int r, w, x;

    /* GUEST_OS_ID: starts at 0; HYPERCALL cannot be enabled while it is 0 (the enable bit stays
     * clear, no #GP). */
    r = rd(HV_MSR_GUEST_OS_ID, &v);
    if (hcall && r == OK && v != 0)
        value_mismatch(HV_MSR_GUEST_OS_ID, "GUEST_OS_ID", "initial value", v, 0);
    if (hcall) {
        u64 gpa = (u64)(uptr)hypercall_page;
        int e = wr(HV_MSR_HYPERCALL, gpa | HV_HYPERCALL_ENABLE);
        v2 = 0;
        rd(HV_MSR_HYPERCALL, &v2);
        printf("hypercall enable with guest os id 0: write=%s msr=0x%llx\n", res_name[e], v2);
        if (e != OK) {
            printf("mismatch: HYPERCALL enable with GUEST_OS_ID 0 raised #GP (TLFS: the enable bit just stays 0)\n");
            mismatches++;
        }
        if (v2 & HV_HYPERCALL_ENABLE)
            value_mismatch(HV_MSR_HYPERCALL, "HYPERCALL", "enable bit with GUEST_OS_ID 0", v2 & 1, 0);
        wr(HV_MSR_HYPERCALL, 0);
    }
    w = wr(HV_MSR_GUEST_OS_ID, HV_LINUX_GUEST_OS_ID);
    if (w == OK && rd(HV_MSR_GUEST_OS_ID, &v2) == OK && v2 != HV_LINUX_GUEST_OS_ID)
        value_mismatch(HV_MSR_GUEST_OS_ID, "GUEST_OS_ID", "read back", v2, HV_LINUX_GUEST_OS_ID);
    row(HV_MSR_GUEST_OS_ID, "GUEST_OS_ID", r, w, SKIP, av(hcall, OK), av(hcall, OK), SKIP);

    /* HYPERCALL: 63:12 GPFN, 11:2 RsvdP, 1 Locked, 0 Enable. A GPFN beyond the GPA space #GPs. */
    {
        u64 gpa = (u64)(uptr)hypercall_page;
        r = rd(HV_MSR_HYPERCALL, &v);
        w = wr(HV_MSR_HYPERCALL, gpa | HV_HYPERCALL_ENABLE);
        if (w == OK && rd(HV_MSR_HYPERCALL, &v2) == OK && (v2 & ~0xffeull) != (gpa | 1))
            value_mismatch(HV_MSR_HYPERCALL, "HYPERCALL", "read back (GPFN|enable)", v2 & ~0xffeull, gpa | 1);
        x = wr(HV_MSR_HYPERCALL, gpa | 0xffcull | HV_HYPERCALL_ENABLE);
        row(HV_MSR_HYPERCALL, "HYPERCALL", r, w, x, av(hcall, OK), av(hcall, OK), av(hcall, OK));
        u32 bits = cpu_phys_addr_bits();
        u64 beyond = (bits >= 63 ? 0 : 1ull << bits) | HV_HYPERCALL_ENABLE;
        w = wr(HV_MSR_HYPERCALL, beyond);
        printf("(HYPERCALL beyond the GPA space: %u address bits, wrote 0x%llx)\n", bits, beyond);
        row(HV_MSR_HYPERCALL, "HYPERCALL_BEYOND_GPA_SPACE", SKIP, w, SKIP, SKIP, GP, SKIP);
        if (hcall)
            wr(HV_MSR_HYPERCALL, 0);
    }

    /* VP_INDEX: read-only, 0 on the boot vCPU. */
    v = read_only(HV_MSR_VP_INDEX, "VP_INDEX", pa & HV_PRIV_VP_INDEX);
    if ((pa & HV_PRIV_VP_INDEX) && v != 0)
        value_mismatch(HV_MSR_VP_INDEX, "VP_INDEX", "value on vCPU 0", v, 0);

    /* RESET: read only here (writing bit 0 resets the VM). */
    r = rd(HV_MSR_RESET, &v);
    row(HV_MSR_RESET, "RESET", r, SKIP, SKIP, av(pa & HV_PRIV_RESET, OK), SKIP, SKIP);

    read_only(HV_MSR_VP_RUNTIME, "VP_RUNTIME", pa & HV_PRIV_VP_RUNTIME);
    read_only(HV_MSR_TIME_REF_COUNT, "TIME_REF_COUNT", pa & HV_PRIV_TIME_REF_COUNT);

    /* REFERENCE_TSC: 63:12 GPFN, 11:1 RsvdP, 0 Enable; 0 at partition creation. */
    {
        bool a = pa & HV_PRIV_REFERENCE_TSC;
        u64 gpa = (u64)(uptr)tsc_page;
        r = rd(HV_MSR_REFERENCE_TSC, &v);
        if (a && r == OK && v != 0)
            value_mismatch(HV_MSR_REFERENCE_TSC, "REFERENCE_TSC", "initial value", v, 0);
        w = wr(HV_MSR_REFERENCE_TSC, gpa | HV_REFERENCE_TSC_ENABLE);
        if (w == OK) {
            u32 seq = *(volatile u32 *)&tsc_page[0];
            if (seq == 0 || seq == 0xffffffffu) {
                printf("mismatch: TSC page sequence %u after enabling\n", seq);
                mismatches++;
            }
        }
        x = wr(HV_MSR_REFERENCE_TSC, gpa | 0xffeull | HV_REFERENCE_TSC_ENABLE);
        row(HV_MSR_REFERENCE_TSC, "REFERENCE_TSC", r, w, x, av(a, OK), av(a, OK), av(a, OK));
        if (a)
            wr(HV_MSR_REFERENCE_TSC, 0);
    }

    /* Frequencies: read-only, nonzero. */
    {
        bool a = pa & HV_PRIV_FREQUENCY;
        if (a != !!(fd & HV_FEAT_FREQUENCY_MSRS))
            printf("note: AccessFrequencyRegs (EAX bit 11) = %u but EDX bit 8 = %u; Linux needs both\n", a,
                   !!(fd & HV_FEAT_FREQUENCY_MSRS));
        v = read_only(HV_MSR_TSC_FREQUENCY, "TSC_FREQUENCY", a);
        v2 = read_only(HV_MSR_APIC_FREQUENCY, "APIC_FREQUENCY", a);
        if (a) {
            printf("tsc frequency=%llu apic frequency=%llu\n", v, v2);
            if (v == 0 || v2 == 0) {
                printf("mismatch: a frequency MSR reads 0\n");
                mismatches++;
            }
        }
    }

    /* APIC MSRs (AccessIntrCtrlRegs). EOI is write-only; EOI 63:32 and TPR 63:8 are RsvdZ. */
    r = rd(HV_MSR_EOI, &v);
    w = wr(HV_MSR_EOI, 0);
    x = wr(HV_MSR_EOI, 1ull << 32);
    row(HV_MSR_EOI, "EOI", r, w, x, GP, av(apic, OK), av(apic, ANY));
    r = rd(HV_MSR_ICR, &v);
    row(HV_MSR_ICR, "ICR", r, SKIP, SKIP, av(apic, OK), SKIP, SKIP);
    r = rd(HV_MSR_TPR, &v);
    w = wr(HV_MSR_TPR, 0);
    x = wr(HV_MSR_TPR, 1ull << 8);
    if (apic)
        wr(HV_MSR_TPR, 0);
    row(HV_MSR_TPR, "TPR", r, w, x, av(apic, OK), av(apic, OK), av(apic, ANY));
    {
        /* VP_ASSIST_PAGE: SynthVM accepts it in every enlightened partition even without
         * AccessIntrCtrlRegs, because Linux writes it unconditionally with wrmsrl (docs/hyperv.md);
         * RsvdP bits 11:1 are stored, not #GP. */
        bool assist = hv.present;
        u64 gpa = (u64)(uptr)assist_page;
        r = rd(HV_MSR_VP_ASSIST_PAGE, &v);
        w = wr(HV_MSR_VP_ASSIST_PAGE, gpa | 1);
        x = wr(HV_MSR_VP_ASSIST_PAGE, gpa | 0xffeull | 1);
        if (assist)
            wr(HV_MSR_VP_ASSIST_PAGE, 0);
        row(HV_MSR_VP_ASSIST_PAGE, "VP_ASSIST_PAGE", r, w, x, av(assist, OK), av(assist, OK), av(assist, OK));
    }

    /* SynIC: SCONTROL 63:1 RsvdP; SVERSION read-only (1); SINTx vector 16-255 else #GP, reset
     * value 0x10000 (masked). */
    r = rd(HV_MSR_SCONTROL, &v);
    w = wr(HV_MSR_SCONTROL, 1);
    x = wr(HV_MSR_SCONTROL, 3);
    if (synic)
        wr(HV_MSR_SCONTROL, 0);
    row(HV_MSR_SCONTROL, "SCONTROL", r, w, x, av(synic, OK), av(synic, OK), av(synic, OK));
    v = read_only(HV_MSR_SVERSION, "SVERSION", synic);
    if (synic && v != 1)
        value_mismatch(HV_MSR_SVERSION, "SVERSION", "value", v, 1);
    r = rd(HV_MSR_SINT0, &v);
    if (synic && r == OK && v != 0x10000)
        value_mismatch(HV_MSR_SINT0, "SINT0", "reset value", v, 0x10000);
    w = wr(HV_MSR_SINT0, 0x10030);
    x = wr(HV_MSR_SINT0, 0x5);   /* vector 5, unmasked: invalid vector */
    if (synic)
        wr(HV_MSR_SINT0, 0x10000);
    row(HV_MSR_SINT0, "SINT0", r, w, x, av(synic, OK), av(synic, OK), av(synic, GP));

    /* STIMER0_CONFIG: 0 at reset; 63:20 and 15:13 RsvdZ. */
    {
        bool a = pa & HV_PRIV_SYNTIMER;
        r = rd(HV_MSR_STIMER0_CONFIG, &v);
        w = wr(HV_MSR_STIMER0_CONFIG, 0);
        x = wr(HV_MSR_STIMER0_CONFIG, 1ull << 63);
        if (a)
            wr(HV_MSR_STIMER0_CONFIG, 0);
        row(HV_MSR_STIMER0_CONFIG, "STIMER0_CONFIG", r, w, x, av(a, OK), av(a, OK), av(a, ANY));
    }

    /* GUEST_IDLE: never read (a read idles the VP). Without the privilege a write #GPs. */
    if (pa & HV_PRIV_GUEST_IDLE) {
        row(HV_MSR_GUEST_IDLE, "GUEST_IDLE", SKIP, SKIP, SKIP, SKIP, SKIP, SKIP);
    } else {
        w = wr(HV_MSR_GUEST_IDLE, 0);
        row(HV_MSR_GUEST_IDLE, "GUEST_IDLE", SKIP, w, SKIP, SKIP, GP, SKIP);
    }

    /* Crash MSRs (feature EDX bit 10): P0-P4 store any value; CRASH_CTL reads the capabilities
     * (bit 63 CrashNotify, bit 62 CrashMessage) and is not written here. */
    {
        bool a = fd & HV_FEAT_CRASH_MSRS;
        static const char *const names[5] = { "CRASH_P0", "CRASH_P1", "CRASH_P2", "CRASH_P3", "CRASH_P4" };
        for (u32 i = 0; i < 5; i++) {
            u32 msr = HV_MSR_CRASH_P0 + i;
            u64 val = 0x0123456789abcde0ull + i;
            r = rd(msr, &v);
            w = wr(msr, val);
            if (w == OK && rd(msr, &v2) == OK && v2 != val)
                value_mismatch(msr, names[i], "read back", v2, val);
            if (a)
                wr(msr, 0);
            row(msr, names[i], r, w, SKIP, av(a, OK), av(a, OK), SKIP);
        }
        r = rd(HV_MSR_CRASH_CTL, &v);
        row(HV_MSR_CRASH_CTL, "CRASH_CTL", r, SKIP, SKIP, av(a, OK), SKIP, SKIP);
        if (a && r == OK) {
            printf("crash ctl capabilities=0x%llx\n", v);
            if (!(v & HV_CRASH_CTL_NOTIFY))
                value_mismatch(HV_MSR_CRASH_CTL, "CRASH_CTL", "CrashNotify capability (bit 63)", 0, 1);
        }
    }

    /* A synthetic MSR number nothing defines. */
    r = rd(0x40000030u, &v);
    w = wr(0x40000030u, 0);
    row(0x40000030u, "UNDEFINED", r, w, SKIP, GP, GP, SKIP);

    if (mismatches)
        guest_fail(NAME, "%u mismatch(es)", mismatches);
    puts("hvmsr: ok");
}
