/* See synictest.h. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "mp.h"
#include "synictest.h"

#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIVIDE 0x3e0
#define LVT_MASKED (1u << 16)
#define LVT_PERIODIC (1u << 17)

const char *st_name = "synictest";
static volatile u32 print_lock;
static volatile u32 ticks[256];      /* watchdog ticks per LAPIC ID */
static volatile u8 can_halt[256];
static volatile u8 vp_of_lapic[256];   /* VP index per LAPIC ID; 0xff = not registered */
static volatile u8 auto_eoi[256];      /* vectors whose SINT has AutoEOI: the handler does not EOI */

extern void (*const st_gate_stubs[256])(void);   /* synictest_asm.S: entries 0x20-0xfe */

u64 st_now(void) { return rdmsr(HV_MSR_TIME_REF_COUNT); }

static void lock(void)
{
    for (u64 i = 0; i < 100000000ull; i++) {   /* bounded: a vCPU that died holding it */
        if (!__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE))
            return;
        cpu_relax();
    }
}

static void unlock(void) { __atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE); }

int st_printf(const char *fmt, ...)
{
    va_list ap;
    lock();
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    unlock();
    return n;
}

void st_fail(u32 vp, const char *fmt, ...)
{
    va_list ap;
    cli();
    lock();
    printf("%s: FAIL ", st_name);
    if (vp)
        printf("vcpu %u: ", vp);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    serial_putc('\n');
    guest_exit(1);
}

void st_install_gate(u32 vector)
{
    if (vector < 0x20 || vector > 0xfe)
        return;
    idt_set_gate(vector, st_gate_stubs[vector]);
}

void st_dispatch(u32 vector);
void st_dispatch(u32 vector)
{
    if (vector == ST_WATCHDOG_VECTOR)
        __atomic_add_fetch(&ticks[lapic_id() & 0xff], 1, __ATOMIC_SEQ_CST);
    else
        st_irq(vector);
    if (!auto_eoi[vector & 0xff])
        lapic_write(LAPIC_EOI, 0);
}

void st_set_auto_eoi(u32 vector, bool on) { auto_eoi[vector & 0xff] = on; }

bool st_in_service(u32 vector)
{
    return (lapic_read(0x100 + (vector / 32) * 0x10) >> (vector % 32)) & 1;
}

void st_init(const char *name)
{
    memset((void *)vp_of_lapic, 0xff, sizeof(vp_of_lapic));
    st_name = name;
    st_install_gate(ST_WATCHDOG_VECTOR);
}

bool st_watchdog_start(void)
{
    u32 id = lapic_id() & 0xff;
    u64 hz = 1000000000ull;   /* KVM's LAPIC bus clock, also what APIC_FREQUENCY reports */
    struct hv_info hv;
    if (hv_query(&hv) && (hv.priv_eax & HV_PRIV_FREQUENCY)) {
        u64 v;
        if (!rdmsr_safe(HV_MSR_APIC_FREQUENCY, &v) && v >= 1000000)
            hz = v;
    }
    u64 init = hz / 100;      /* 10 ms */
    if (init > 0xffffffffull)
        init = 0xffffffffull;
    can_halt[id] = 0;
    ticks[id] = 0;
    lapic_write(LAPIC_TIMER_DIVIDE, 0xb);   /* divide by 1 */
    lapic_write(LAPIC_LVT_TIMER, ST_WATCHDOG_VECTOR | LVT_PERIODIC);
    lapic_write(LAPIC_TIMER_INIT, (u32)init);
    u64 end = st_now() + 500 * ST_MS;
    while (ticks[id] < 2 && st_now() < end)
        st_idle();   /* can_halt is 0: spins with interrupts enabled */
    can_halt[id] = ticks[id] >= 2;
    return can_halt[id];
}

void st_watchdog_stop(void)
{
    u32 id = lapic_id() & 0xff;
    lapic_write(LAPIC_LVT_TIMER, ST_WATCHDOG_VECTOR | LVT_MASKED);
    lapic_write(LAPIC_TIMER_INIT, 0);
    can_halt[id] = 0;
}

void st_idle(void)
{
    if (can_halt[lapic_id() & 0xff])
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    else {
        /* A long window: an interrupt raised while IF=0 may only be injected at a later entry. */
        __asm__ volatile("sti" ::: "memory");
        for (u32 i = 0; i < 1000; i++)
            cpu_relax();
        cli();
    }
}

bool st_wait_count(volatile u32 *p, u32 want, u64 timeout)
{
    u64 end = st_now() + timeout;
    for (;;) {
        if (*p >= want)
            return true;
        if (st_now() >= end)
            return *p >= want;
        st_idle();
    }
}

void st_sleep_until(u64 until)
{
    while (st_now() < until)
        st_idle();
}

u32 st_require(const struct boot_info *bi, u32 max_cpus, u32 need_edx, const char *edx_what)
{
    struct hv_info hv;
    hv_require(st_name, &hv);
    u32 need = HV_PRIV_TIME_REF_COUNT | HV_PRIV_SYNIC | HV_PRIV_SYNTIMER;
    if ((hv.priv_eax & need) != need)
        guest_fail(st_name, "0x40000003.EAX=0x%x lacks bits 1, 2 and 3 (reference counter, SynIC, timers)", hv.priv_eax);
    if ((hv.features_edx & need_edx) != need_edx)
        guest_fail(st_name, "0x40000003.EDX=0x%x lacks %s", hv.features_edx, edx_what);
    if (bi->cpu_count > max_cpus)
        guest_fail(st_name, "at most %u vCPUs, has %u", max_cpus, bi->cpu_count);
    return bi->cpu_count;
}

static void (*everywhere_suite)(void);
static volatile u32 aps_done;

static void everywhere_ap_entry(u32 slot)
{
    (void)slot;
    everywhere_suite();
    __atomic_add_fetch(&aps_done, 1, __ATOMIC_SEQ_CST);
}

void st_run_everywhere(const struct boot_info *bi, void (*suite)(void))
{
    u32 n = bi->cpu_count;
    everywhere_suite = suite;
    u32 started = mp_start_aps(bi, everywhere_ap_entry);
    if (started != n - 1)
        guest_fail(st_name, "only %u of %u APs started", started, n - 1);
    suite();
    u64 end = st_now() + 60000 * ST_MS;
    while (__atomic_load_n(&aps_done, __ATOMIC_SEQ_CST) < n - 1 && st_now() < end)
        cpu_relax();
    if (aps_done != n - 1)
        st_fail(0, "only %u of %u APs finished within 60 s", aps_done, n - 1);
}

u32 st_register_vp(u32 max_cpus)
{
    u32 vp = (u32)rdmsr(HV_MSR_VP_INDEX);
    if (vp >= max_cpus)
        st_fail(vp, "VP index %u, at most %u supported", vp, max_cpus - 1);
    vp_of_lapic[lapic_id() & 0xff] = (u8)vp;
    barrier();
    return vp;
}

u32 st_current_vp(void) { return vp_of_lapic[lapic_id() & 0xff]; }
