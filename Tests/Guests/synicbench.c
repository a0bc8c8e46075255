/* synicbench: the guest half of `synthvm-bench synic` (run with --hyperv-testdev, 1 vCPU).
 *  1. wake-up latency: n times, with the router given ~50 us to fall asleep first, the guest
 *     stores its TSC in the mailbox at GPA 0x6000 (0 u64 seq, 8 u64 sum of TSCs, 16 u64 the last
 *     TSC) and calls
 *     HvSignalEvent on an event connection; it waits for the connection's SINT (the router sets
 *     the flag and raises it) and clears the flag. The router, started with
 *     --bench-wake-mailbox 0x6000, adds the host TSC at which each wake-up that found a new seq left
 *     poll() (24 u64 sum, 32 u64 count) and that seq's guest TSC (48 u64 sum); the bench
 *     subtracts, knowing the guest's TSC offset (wake-ups that merge cost samples, not accuracy). The guest adds the
 *     full round trip to its interrupt handler at 40 (u64 sum of guest TSC ticks).
 *  2. message echo: between phase marks 1 and 2 on port 0x81, n HvPostMessage calls to a message
 *     connection that echoes into its own SIMP slot; each waits for the echo's interrupt and frees
 *     the slot.
 * With `raw=1 tsckhz=<kHz>` it is the floor's guest: no SynIC, no test device, no hypercall MSRs
 * (a bare KVM_RUN loop answers nothing); it copies the hypercall page's stub (`out 0xe5, al; ret`)
 * into its page itself and runs phase 1 only, each call waking a plain process, so both sides
 * execute the same guest instructions.
 * Prints `synicbench: ok` and exits through the exit device with 0. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "mp.h"
#include "synictest.h"

#define NAME "synicbench"
#define VEC 0xb0
#define EVT_SINT 3
#define MSG_SINT 2
#define EVT_CONN 1
#define MSG_CONN 2
#define MAILBOX 0x6000ull

static u8 hypercall_page[4096] __attribute__((aligned(4096)));
static u8 simp[4096] __attribute__((aligned(4096)));
static u8 siefp[4096] __attribute__((aligned(4096)));
static struct hv_post_message_input input __attribute__((aligned(256)));
static volatile u32 irqs[16];
static volatile u64 irq_tsc;

void st_irq(u32 vector)
{
    irq_tsc = rdtsc();
    if (vector >= VEC && vector < VEC + 16)
        irqs[vector - VEC]++;
}

/* Guest TSC ticks per microsecond (TSC_FREQUENCY): timing by rdtsc, which does not exit, so the
 * waits do not add exits of their own to what is measured. */
static u64 tsc_per_us;

static void wait_irq(u32 sint, u32 want)
{
    u64 end = rdtsc() + 2000000 * tsc_per_us;
    while (irqs[sint] < want) {
        if (rdtsc() > end)
            guest_fail(NAME, "no interrupt %u on SINT%u", want, sint);
        /* HLT, not a spin: this host's KVM injects an interrupt that arrived while IF=0 only at a
         * later entry when the guest opens short sti windows; a halted vCPU is woken at once. */
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    }
}

static void pause_us(u64 us)
{
    u64 end = rdtsc() + us * tsc_per_us;
    while (rdtsc() < end)
        cpu_relax();
}

/* Before wake-up i (raw and SynIC runs alike): gives the router ~50 us to fall asleep, then
 * publishes this TSC in the mailbox (sum, last, then seq) and returns it. */
static u64 announce(volatile u64 *mb, u64 i)
{
    pause_us(50);
    u64 t0 = rdtsc();
    mb[1] += t0;
    mb[2] = t0;
    mb[0] = i;
    barrier();
    return t0;
}

void guest_main(const struct boot_info *bi)
{
    u64 n = 2000, raw = 0, khz = 0;
    cmdline_get_u64(boot_cmdline(), "n", &n);
    cmdline_get_u64(boot_cmdline(), "raw", &raw);
    cmdline_get_u64(boot_cmdline(), "tsckhz", &khz);
    (void)bi;
    tsc_per_us = raw ? khz / 1000 : rdmsr(HV_MSR_TSC_FREQUENCY) / 1000000;
    if (!tsc_per_us)
        guest_fail(NAME, "no TSC frequency");
    st_init(NAME);
    lapic_enable();
    volatile u64 *mb = phys_ptr(MAILBOX);
    for (u32 i = 0; i < 6; i++)
        mb[i] = 0;
    if (raw) {
        static const u8 stub[] = { 0xe6, 0xe5, 0xc3 };   /* what SynthVM's hypercall page holds */
        memcpy(hypercall_page, stub, sizeof(stub));
        hv_hypercall_pg = hypercall_page;
        for (u64 i = 1; i <= n; i++) {
            announce(mb, i);
            hv_fast8(HVCALL_SIGNAL_EVENT, EVT_CONN);
        }
        pause_us(50);
        printf(NAME ": ok\n");
        guest_exit(0);
    }
    st_register_vp(1);
    if (!(hv_enable_hypercall_page(hypercall_page) & HV_HYPERCALL_ENABLE))
        guest_fail(NAME, "hypercall page not enabled");
    st_install_gate(VEC + EVT_SINT);
    st_install_gate(VEC + MSG_SINT);
    wrmsr(HV_MSR_SIMP, (u64)(uptr)simp | 1);
    wrmsr(HV_MSR_SIEFP, (u64)(uptr)siefp | 1);
    wrmsr(HV_MSR_SCONTROL, 1);
    wrmsr(HV_MSR_SINT(EVT_SINT), VEC + EVT_SINT);
    wrmsr(HV_MSR_SINT(MSG_SINT), VEC + MSG_SINT);
    outl(0x3000, EVT_CONN << 24 | 6 << 16 | 0 << 8 | EVT_SINT);
    outl(0x3000, MSG_CONN << 24 | 4 << 16 | 0 << 8 | MSG_SINT);

    for (u64 i = 1; i <= n; i++) {
        u64 t0 = announce(mb, i);
        u32 st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, EVT_CONN));
        if (st)
            guest_fail(NAME, "HvSignalEvent: status 0x%x", st);
        wait_irq(EVT_SINT, (u32)i);
        mb[5] += irq_tsc - t0;
        siefp[EVT_SINT * 256] = 0;
    }

    outb(0x81, 1);
    for (u64 i = 1; i <= n; i++) {
        input.connection_id = MSG_CONN;
        input.message_type = 0x77;
        input.payload_size = 16;
        u32 st = HV_STATUS(hv_hypercall(HVCALL_POST_MESSAGE, (u64)(uptr)&input, 0));
        if (st)
            guest_fail(NAME, "HvPostMessage: status 0x%x", st);
        wait_irq(MSG_SINT, (u32)i);
        *(volatile u32 *)(simp + MSG_SINT * 256) = 0;
    }
    outb(0x81, 2);
    printf(NAME ": ok\n");
    guest_exit(0);
}
