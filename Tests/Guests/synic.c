/* synic: the SynIC registers and SINT routing on every vCPU at once (TLFS "SynIC MSRs",
 * "SynIC Message Page"; run with 2 vCPUs). Each vCPU:
 *  1. SVERSION reads 1 and a write #GPs; SCONTROL, SIMP and SIEFP read 0 and every SINT 0x10000
 *     (masked, vector 0) before anything is written;
 *  2. an unmasked SINT with a vector below 16 #GPs (SINT0 0x0f, SINT15 0x00, SINT7 0x01) and leaves
 *     the SINT as it was; vector 16 unmasked is accepted;
 *  3. fills its SIM and SIEF pages with 0xAA, writes SCONTROL = 1, SIEFP and SIMP = page | 1
 *     (read back), and both pages must now be all zero;
 *  4. programs SINTx = 0x70 + x (unmasked) for all 16 and reads them back;
 *  5. for SINT1..15 in turn, a one-shot STIMER0 message to that SINT: exactly vector 0x70 + x
 *     arrives on this vCPU, and slot x holds HvMessageTypeTimerExpired for timer 0 (SINT0 cannot
 *     take timer messages: SINTx = 0 disables a message-mode timer);
 *  6. masks SINT5 (vector 0x75 kept) and sends it a timer message: the message still lands in
 *     slot 5 (found by polling), but no interrupt comes;
 *  7. the SIEF page stayed zero (timers set no event flags); everything is switched off again.
 * The BSP then prints `synic: vcpu <n> ok` per VP index and `synic: ok`. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "mp.h"
#include "synictest.h"

#define NAME "synic"
#define MAX_CPUS 8
#define VEC_BASE 0x70
#define SINTS 16
#define MASKED_SINT 5
#define ONE_SECOND (1000 * ST_MS)

struct cpu {
    u32 vp;
    volatile u32 irqs[SINTS];        /* interrupts per vector 0x70 + x */
    volatile u32 done;
};

static struct cpu cpus[MAX_CPUS];
static volatile u32 stray;            /* interrupts on a vCPU that did not set itself up */
static u8 simp_pages[MAX_CPUS][4096] __attribute__((aligned(4096)));
static u8 siefp_pages[MAX_CPUS][4096] __attribute__((aligned(4096)));

void st_irq(u32 vector)
{
    u32 vp = st_current_vp();
    if (vector < VEC_BASE || vector >= VEC_BASE + SINTS || vp >= MAX_CPUS) {
        __atomic_add_fetch(&stray, 1, __ATOMIC_SEQ_CST);
        return;
    }
    cpus[vp].irqs[vector - VEC_BASE]++;
}

static u64 rd(struct cpu *c, u32 msr, const char *name)
{
    u64 v;
    if (rdmsr_safe(msr, &v))
        st_fail(c->vp, "rdmsr %s (0x%x) raised #GP", name, msr);
    return v;
}

static void wr(struct cpu *c, u32 msr, const char *name, u64 v)
{
    if (wrmsr_safe(msr, v))
        st_fail(c->vp, "wrmsr %s (0x%x) = 0x%llx raised #GP", name, msr, v);
}

static void expect(struct cpu *c, u32 msr, const char *name, u64 want, const char *when)
{
    u64 v = rd(c, msr, name);
    if (v != want)
        st_fail(c->vp, "%s reads 0x%llx %s, expected 0x%llx", name, v, when, want);
}

static void sint_name(char *buf, u32 x)
{
    memcpy(buf, "SINT", 4);
    if (x >= 10) {
        buf[4] = '1';
        buf[5] = (char)('0' + x - 10);
        buf[6] = 0;
    } else {
        buf[4] = (char)('0' + x);
        buf[5] = 0;
    }
}

static volatile u8 *slot(struct cpu *c, u32 x) { return simp_pages[c->vp] + x * HV_MESSAGE_SLOT_SIZE; }
static u32 slot_type(struct cpu *c, u32 x) { return *(volatile u32 *)(slot(c, x) + HV_MSG_TYPE); }

static u32 total_irqs(struct cpu *c)
{
    u32 t = 0;
    for (u32 x = 0; x < SINTS; x++)
        t += c->irqs[x];
    return t;
}

/* Slot x holds TimerExpired for STIMER0 with the given expiration. */
static void check_slot(struct cpu *c, u32 x, u64 expiration, const char *what)
{
    volatile u8 *s = slot(c, x);
    u32 type = *(volatile u32 *)(s + HV_MSG_TYPE);
    u32 index = *(volatile u32 *)(s + HV_TIMER_MSG_INDEX);
    u64 exp = *(volatile u64 *)(s + HV_TIMER_MSG_EXPIRATION);
    u64 del = *(volatile u64 *)(s + HV_TIMER_MSG_DELIVERY);
    if (type != HV_MESSAGE_TYPE_TIMER_EXPIRED)
        st_fail(c->vp, "%s: slot %u holds type 0x%x, expected 0x%x", what, x, type, HV_MESSAGE_TYPE_TIMER_EXPIRED);
    if (index != 0 || exp != expiration || del < exp)
        st_fail(c->vp, "%s: slot %u timer %u expiration %llu delivery %llu, expected timer 0 expiration %llu", what,
                x, index, exp, del, expiration);
    for (u32 y = 0; y < SINTS; y++)
        if (y != x && slot_type(c, y) != HV_MESSAGE_TYPE_NONE)
            st_fail(c->vp, "%s: slot %u also holds type 0x%x", what, y, slot_type(c, y));
}

static void free_slot(struct cpu *c, u32 x)
{
    *(volatile u32 *)(slot(c, x) + HV_MSG_TYPE) = HV_MESSAGE_TYPE_NONE;
    wrmsr(HV_MSR_EOM, 0);
}

static u64 timer_message(u32 x)
{
    wrmsr(HV_MSR_STIMER_CONFIG(0), 0);
    wrmsr(HV_MSR_STIMER_COUNT(0), 0);
    u64 deadline = st_now() + 1000;
    wrmsr(HV_MSR_STIMER_COUNT(0), deadline);
    wrmsr(HV_MSR_STIMER_CONFIG(0), HV_STIMER_ENABLE | HV_STIMER_SINT(x));
    return deadline;
}

static void suite(void)
{
    u32 vp = st_register_vp(MAX_CPUS);
    struct cpu *c = &cpus[vp];
    c->vp = vp;
    char name[8];

    /* 1. version and reset values */
    expect(c, HV_MSR_SVERSION, "SVERSION", HV_SVERSION, "");
    if (!wrmsr_safe(HV_MSR_SVERSION, 1))
        st_fail(vp, "wrmsr SVERSION = 1 did not raise #GP (read-only)");
    expect(c, HV_MSR_SCONTROL, "SCONTROL", 0, "at reset");
    expect(c, HV_MSR_SIMP, "SIMP", 0, "at reset");
    expect(c, HV_MSR_SIEFP, "SIEFP", 0, "at reset");
    for (u32 x = 0; x < SINTS; x++) {
        sint_name(name, x);
        expect(c, HV_MSR_SINT(x), name, HV_SINT_RESET, "at reset");
    }

    /* 2. vectors below 16 */
    static const struct { u32 sint; u64 value; } bad[] = { { 0, 0x0f }, { 15, 0x00 }, { 7, 0x01 } };
    for (u32 i = 0; i < ARRAY_SIZE(bad); i++) {
        sint_name(name, bad[i].sint);
        if (!wrmsr_safe(HV_MSR_SINT(bad[i].sint), bad[i].value))
            st_fail(vp, "wrmsr %s = 0x%llx (unmasked, vector < 16) did not raise #GP", name, bad[i].value);
        expect(c, HV_MSR_SINT(bad[i].sint), name, HV_SINT_RESET, "after the #GP write");
    }
    wr(c, HV_MSR_SINT(2), "SINT2", 0x10);
    expect(c, HV_MSR_SINT(2), "SINT2", 0x10, "after writing 0x10");
    wr(c, HV_MSR_SINT(2), "SINT2", HV_SINT_RESET);

    /* 3. pages are zeroed on enable */
    u64 simp = (u64)(uptr)simp_pages[vp], siefp = (u64)(uptr)siefp_pages[vp];
    memset(simp_pages[vp], 0xaa, 4096);
    memset(siefp_pages[vp], 0xaa, 4096);
    barrier();
    wr(c, HV_MSR_SCONTROL, "SCONTROL", HV_SCONTROL_ENABLE);
    expect(c, HV_MSR_SCONTROL, "SCONTROL", HV_SCONTROL_ENABLE, "after writing 1");
    wr(c, HV_MSR_SIEFP, "SIEFP", siefp | HV_SYNIC_PAGE_ENABLE);
    expect(c, HV_MSR_SIEFP, "SIEFP", siefp | HV_SYNIC_PAGE_ENABLE, "after enabling");
    wr(c, HV_MSR_SIMP, "SIMP", simp | HV_SYNIC_PAGE_ENABLE);
    expect(c, HV_MSR_SIMP, "SIMP", simp | HV_SYNIC_PAGE_ENABLE, "after enabling");
    for (u32 i = 0; i < 4096; i++) {
        u8 m = *(volatile u8 *)&simp_pages[vp][i], e = *(volatile u8 *)&siefp_pages[vp][i];
        if (m)
            st_fail(vp, "SIM page byte 0x%x is 0x%x after enabling SIMP (must be zeroed)", i, m);
        if (e)
            st_fail(vp, "SIEF page byte 0x%x is 0x%x after enabling SIEFP (must be zeroed)", i, e);
    }

    /* 4. all 16 SINTs, unmasked, distinct vectors */
    for (u32 x = 0; x < SINTS; x++) {
        sint_name(name, x);
        wr(c, HV_MSR_SINT(x), name, VEC_BASE + x);
        expect(c, HV_MSR_SINT(x), name, VEC_BASE + x, "after programming");
    }
    if (!st_watchdog_start())
        st_printf("synic: vcpu %u LAPIC timer does not tick: waiting without hlt\n", vp);

    /* 5. a timer message to each SINT raises exactly that SINT's vector here */
    for (u32 x = 1; x < SINTS; x++) {
        u32 before = total_irqs(c);
        u64 deadline = timer_message(x);
        if (!st_wait_count(&c->irqs[x], 1, ONE_SECOND))
            st_fail(vp, "no vector 0x%x 1 s after a timer message to SINT%u (slot type 0x%x, %u other interrupts)",
                    VEC_BASE + x, x, slot_type(c, x), total_irqs(c) - before);
        st_sleep_until(st_now() + 2 * ST_MS);
        if (c->irqs[x] != 1 || total_irqs(c) != before + 1)
            st_fail(vp, "timer message to SINT%u: %u interrupts at 0x%x, %u in all (expected exactly 1)", x,
                    c->irqs[x], VEC_BASE + x, total_irqs(c) - before);
        check_slot(c, x, deadline, "unmasked SINT");
        free_slot(c, x);
    }

    /* 6. a masked SINT: the message lands, no interrupt */
    wr(c, HV_MSR_SINT(MASKED_SINT), "SINT5", HV_SINT_MASKED | (VEC_BASE + MASKED_SINT));
    u32 before = total_irqs(c), before_masked = c->irqs[MASKED_SINT];
    u64 deadline = timer_message(MASKED_SINT);
    u64 end = deadline + ONE_SECOND;
    while (slot_type(c, MASKED_SINT) == HV_MESSAGE_TYPE_NONE && st_now() < end)
        st_idle();
    if (slot_type(c, MASKED_SINT) == HV_MESSAGE_TYPE_NONE)
        st_fail(vp, "masked SINT%u: no message in its slot 1 s after the deadline %llu (TLFS: the message is "
                    "delivered, only the interrupt is lost)", MASKED_SINT, deadline);
    st_sleep_until(st_now() + 20 * ST_MS);
    if (total_irqs(c) != before)
        st_fail(vp, "masked SINT%u: %u interrupts (%u at vector 0x%x) for its timer message, expected none",
                MASKED_SINT, total_irqs(c) - before, c->irqs[MASKED_SINT] - before_masked, VEC_BASE + MASKED_SINT);
    check_slot(c, MASKED_SINT, deadline, "masked SINT");
    free_slot(c, MASKED_SINT);

    /* 7. no event flags; off again */
    for (u32 i = 0; i < 4096; i++)
        if (*(volatile u8 *)&siefp_pages[vp][i])
            st_fail(vp, "SIEF page byte 0x%x is 0x%x: timer messages set no event flags", i,
                    *(volatile u8 *)&siefp_pages[vp][i]);
    wrmsr(HV_MSR_STIMER_CONFIG(0), 0);
    wrmsr(HV_MSR_STIMER_COUNT(0), 0);
    for (u32 x = 0; x < SINTS; x++)
        wrmsr(HV_MSR_SINT(x), HV_SINT_RESET);
    wrmsr(HV_MSR_SIMP, 0);
    wrmsr(HV_MSR_SIEFP, 0);
    wrmsr(HV_MSR_SCONTROL, 0);
    st_watchdog_stop();
    c->done = 1;
}

void guest_main(const struct boot_info *bi)
{
    puts("synic: start");
    st_init(NAME);
    st_require(bi, MAX_CPUS, 0, "nothing");
    for (u32 x = 0; x < SINTS; x++)
        st_install_gate(VEC_BASE + x);
    st_run_everywhere(bi, suite);
    if (stray)
        st_fail(0, "%u interrupts at a SINT vector on a vCPU that had not set up its SynIC", stray);
    for (u32 vp = 0; vp < MAX_CPUS; vp++)
        if (cpus[vp].done)
            printf("synic: vcpu %u ok\n", vp);
    puts("synic: ok");
}
