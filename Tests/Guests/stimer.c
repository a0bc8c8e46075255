/* stimer: synthetic timers (TLFS "Synthetic Timers", "SynIC Message Page"). On every vCPU, at
 * the same time (one vCPU unless the VM has more, e.g. `--cpus 2`):
 *  1. direct mode, periodic: STIMER0 vector 0x60, period 1 ms, until 1000 expirations (at most
 *     30 s of reference time); the k-th interrupt must come no earlier than t0 + k periods (t0
 *     read before the enabling write), so the average period is >= 1 ms; after the disable
 *     at most one more (already pending) interrupt;
 *  2. direct one-shot: COUNT = now + 2 ms is absolute: the handler reads TIME_REF_COUNT >= it,
 *     exactly one interrupt, then CONFIG reads back with Enable clear; a deadline in the past
 *     (now - 1000) fires at once (within 100 ms);
 *  3. AutoEnable: CONFIG = AutoEnable | direct, no Enable; a COUNT write sets Enable (read back
 *     before the deadline) and the timer fires no earlier than COUNT;
 *  4. message mode: SCONTROL, SIMP, SINT3 = vector 0x61; STIMER1 one-shot on SINT3: the handler
 *     finds HvMessageTypeTimerExpired in slot 3 (payload size 24, timer index 1, expiration ==
 *     COUNT, expiration <= delivery <= the handler's TIME_REF_COUNT), frees the slot and writes
 *     EOM; afterwards CONFIG reads back with Enable clear;
 *  5. busy slot: the handler leaves the slot full; STIMER1 (2 ms) and STIMER2 (5 ms) on SINT3:
 *     STIMER2's message must wait (MessagePending set in STIMER1's message, no second
 *     interrupt); after freeing the slot and EOM it arrives with delivery time >= the moment
 *     the slot was freed and no MessagePending of its own.
 * Waits are `sti; hlt` woken by the LAPIC timer (synictest.c), all bounded. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "mp.h"
#include "synictest.h"

#define NAME "stimer"
#define MAX_CPUS 8
#define VEC_DIRECT 0x60
#define VEC_SINT 0x61
#define SINT 3
#define PERIOD 10000ull           /* 1 ms */
#define PERIODIC_WANT 1000u
#define PERIODIC_LIMIT (30000 * ST_MS)
#define ONE_SECOND (1000 * ST_MS)

struct msg_record {
    u32 type, index;
    u8 size, flags;
    u64 expiration, delivery, ref;
};

struct cpu {
    u32 vp;
    /* direct-mode vector */
    volatile u32 direct_count;
    volatile u64 direct_first_ref, direct_last_ref;
    volatile u64 periodic_t0;     /* nonzero during the periodic test */
    volatile u32 early_k;         /* first interrupt that came before t0 + k periods */
    volatile u64 early_ref, early_due;
    /* SINT3 */
    volatile u32 msg_count;
    volatile u32 msg_free;        /* the handler frees the slot and writes EOM */
    volatile struct msg_record msgs[4];
};

static struct cpu cpus[MAX_CPUS];
static u8 simp_pages[MAX_CPUS][4096] __attribute__((aligned(4096)));
static volatile u32 stray;            /* interrupts on a vCPU that had not set itself up */

/* NULL before the vCPU has set itself up */
static struct cpu *this_cpu(void)
{
    u32 vp = st_current_vp();
    return vp < MAX_CPUS ? &cpus[vp] : NULL;
}

static volatile u8 *slot_of(struct cpu *c) { return simp_pages[c->vp] + SINT * HV_MESSAGE_SLOT_SIZE; }
static u32 slot_type(struct cpu *c) { return *(volatile u32 *)(slot_of(c) + HV_MSG_TYPE); }
static u8 slot_flags(struct cpu *c) { return *(volatile u8 *)(slot_of(c) + HV_MSG_FLAGS); }
static void slot_free(struct cpu *c) { *(volatile u32 *)(slot_of(c) + HV_MSG_TYPE) = HV_MESSAGE_TYPE_NONE; }

void st_irq(u32 vector)
{
    struct cpu *c = this_cpu();
    if (!c) {
        __atomic_add_fetch(&stray, 1, __ATOMIC_SEQ_CST);
        return;
    }
    if (vector == VEC_DIRECT) {
        u64 ref = st_now();
        u32 k = c->direct_count + 1;
        if (k == 1)
            c->direct_first_ref = ref;
        c->direct_last_ref = ref;
        if (c->periodic_t0 && !c->early_k && ref < c->periodic_t0 + (u64)k * PERIOD) {
            c->early_k = k;
            c->early_ref = ref;
            c->early_due = c->periodic_t0 + (u64)k * PERIOD;
        }
        barrier();
        c->direct_count = k;
    } else if (vector == VEC_SINT) {
        u64 ref = st_now();
        volatile u8 *s = slot_of(c);
        u32 k = c->msg_count;
        volatile struct msg_record *r = &c->msgs[k < 3 ? k : 3];
        r->type = *(volatile u32 *)(s + HV_MSG_TYPE);
        r->size = s[HV_MSG_PAYLOAD_SIZE];
        r->flags = s[HV_MSG_FLAGS];
        r->index = *(volatile u32 *)(s + HV_TIMER_MSG_INDEX);
        r->expiration = *(volatile u64 *)(s + HV_TIMER_MSG_EXPIRATION);
        r->delivery = *(volatile u64 *)(s + HV_TIMER_MSG_DELIVERY);
        r->ref = ref;
        if (c->msg_free) {
            slot_free(c);
            wrmsr(HV_MSR_EOM, 0);
        }
        barrier();
        c->msg_count = k + 1;
    }
}

/* One whole line under the print lock, tagged with the VP unless it is 0. */
#define SAY(c, fmt, ...)                                                                   \
    do {                                                                                   \
        if ((c)->vp)                                                                       \
            st_printf("stimer: vcpu %u " fmt "\n", (c)->vp, __VA_ARGS__);                  \
        else                                                                               \
            st_printf("stimer: " fmt "\n", __VA_ARGS__);                                   \
    } while (0)

static void timer_off(u32 n)
{
    wrmsr(HV_MSR_STIMER_CONFIG(n), 0);
    wrmsr(HV_MSR_STIMER_COUNT(n), 0);
}

static void check_msg(struct cpu *c, volatile struct msg_record *r, const char *what, u32 index, u64 expiration)
{
    if (r->type != HV_MESSAGE_TYPE_TIMER_EXPIRED)
        st_fail(c->vp, "%s: slot %u holds message type 0x%x, expected 0x%x", what, SINT, r->type,
                HV_MESSAGE_TYPE_TIMER_EXPIRED);
    if (r->size != HV_TIMER_MSG_PAYLOAD_SIZE)
        st_fail(c->vp, "%s: payload size %u, expected %u", what, r->size, HV_TIMER_MSG_PAYLOAD_SIZE);
    if (r->index != index)
        st_fail(c->vp, "%s: timer index %u, expected %u", what, r->index, index);
    if (r->expiration != expiration)
        st_fail(c->vp, "%s: expiration time %llu, expected the COUNT %llu", what, r->expiration, expiration);
    if (r->delivery < r->expiration)
        st_fail(c->vp, "%s: delivery time %llu before the expiration time %llu", what, r->delivery, r->expiration);
    if (r->ref < r->delivery)
        st_fail(c->vp, "%s: delivery time %llu is after TIME_REF_COUNT %llu read in the handler", what,
                r->delivery, r->ref);
}

static void direct_periodic(struct cpu *c)
{
    timer_off(0);
    c->direct_count = 0;
    c->early_k = 0;
    wrmsr(HV_MSR_STIMER_COUNT(0), PERIOD);   /* disabled: only stored */
    u64 t0 = st_now();
    c->periodic_t0 = t0;
    wrmsr(HV_MSR_STIMER_CONFIG(0), HV_STIMER_ENABLE | HV_STIMER_PERIODIC | HV_STIMER_DIRECT |
                                   HV_STIMER_VECTOR(VEC_DIRECT));
    bool got = st_wait_count(&c->direct_count, PERIODIC_WANT, PERIODIC_LIMIT);
    wrmsr(HV_MSR_STIMER_CONFIG(0), 0);
    u32 n = c->direct_count;
    u64 last = c->direct_last_ref;
    c->periodic_t0 = 0;
    if (!got)
        st_fail(c->vp, "direct periodic: %u expirations in %llu (100 ns) of reference time, expected %u", n,
                st_now() - t0, PERIODIC_WANT);
    if (c->early_k)
        st_fail(c->vp, "direct periodic: interrupt %u came at %llu, before t0 + %u periods = %llu (early)",
                c->early_k, c->early_ref, c->early_k, c->early_due);
    u64 elapsed = last - t0;
    if (elapsed < (u64)(n - 1) * PERIOD)
        st_fail(c->vp, "direct periodic: %u expirations in %llu, less than %u periods", n, elapsed, n - 1);
    SAY(c, "direct periodic n=%u elapsed=%llu", n, elapsed);
    st_sleep_until(st_now() + 30 * ST_MS);
    if (c->direct_count > n + 1)
        st_fail(c->vp, "direct periodic: %u more interrupts in 30 ms after CONFIG = 0", c->direct_count - n);
    wrmsr(HV_MSR_STIMER_COUNT(0), 0);
}

static void direct_oneshot(struct cpu *c)
{
    timer_off(0);
    c->direct_count = 0;
    u64 deadline = st_now() + 20000;
    wrmsr(HV_MSR_STIMER_COUNT(0), deadline);
    u64 cfg = rdmsr(HV_MSR_STIMER_CONFIG(0));
    if (cfg != 0)
        st_fail(c->vp, "direct one-shot: CONFIG reads 0x%llx after a COUNT write without AutoEnable", cfg);
    wrmsr(HV_MSR_STIMER_CONFIG(0), HV_STIMER_ENABLE | HV_STIMER_DIRECT | HV_STIMER_VECTOR(VEC_DIRECT));
    if (!st_wait_count(&c->direct_count, 1, 20000 + ONE_SECOND))
        st_fail(c->vp, "direct one-shot: no interrupt 1 s after the deadline %llu (now %llu)", deadline, st_now());
    u64 fired = c->direct_first_ref;
    if (fired < deadline)
        st_fail(c->vp, "direct one-shot: fired at %llu, before COUNT %llu (early)", fired, deadline);
    st_sleep_until(st_now() + 10 * ST_MS);
    if (c->direct_count != 1)
        st_fail(c->vp, "direct one-shot: %u interrupts, expected 1", c->direct_count);
    cfg = rdmsr(HV_MSR_STIMER_CONFIG(0));
    if (cfg & HV_STIMER_ENABLE)
        st_fail(c->vp, "direct one-shot: CONFIG 0x%llx still has Enable after the expiration", cfg);
    SAY(c, "direct one-shot deadline=%llu fired=%llu", deadline, fired);

    /* A deadline in the past fires at once. */
    timer_off(0);
    c->direct_count = 0;
    u64 t = st_now();
    wrmsr(HV_MSR_STIMER_COUNT(0), t - 1000);
    wrmsr(HV_MSR_STIMER_CONFIG(0), HV_STIMER_ENABLE | HV_STIMER_DIRECT | HV_STIMER_VECTOR(VEC_DIRECT));
    if (!st_wait_count(&c->direct_count, 1, 100 * ST_MS))
        st_fail(c->vp, "direct one-shot in the past (COUNT %llu at %llu): no interrupt within 100 ms", t - 1000, t);
    SAY(c, "direct one-shot past deadline=%llu fired=%llu", t - 1000, c->direct_first_ref);
    st_sleep_until(st_now() + 10 * ST_MS);
    if (c->direct_count != 1)
        st_fail(c->vp, "direct one-shot in the past: %u interrupts, expected 1", c->direct_count);
    timer_off(0);
}

static void auto_enable(struct cpu *c)
{
    timer_off(0);
    c->direct_count = 0;
    u64 want = HV_STIMER_AUTO_ENABLE | HV_STIMER_DIRECT | HV_STIMER_VECTOR(VEC_DIRECT);
    wrmsr(HV_MSR_STIMER_CONFIG(0), want);
    u64 cfg = rdmsr(HV_MSR_STIMER_CONFIG(0));
    if (cfg != want)
        st_fail(c->vp, "auto-enable: CONFIG reads 0x%llx after writing 0x%llx", cfg, want);
    u64 deadline = st_now() + 50 * ST_MS;
    wrmsr(HV_MSR_STIMER_COUNT(0), deadline);
    cfg = rdmsr(HV_MSR_STIMER_CONFIG(0));
    u64 t = st_now();
    if (!(cfg & HV_STIMER_ENABLE))
        st_fail(c->vp, "auto-enable: CONFIG reads 0x%llx after COUNT = %llu (read by %llu): Enable not set", cfg,
                deadline, t);
    if (cfg != (want | HV_STIMER_ENABLE))
        st_fail(c->vp, "auto-enable: CONFIG reads 0x%llx, expected 0x%llx", cfg, want | HV_STIMER_ENABLE);
    if (!st_wait_count(&c->direct_count, 1, 50 * ST_MS + ONE_SECOND))
        st_fail(c->vp, "auto-enable: no interrupt 1 s after the deadline %llu", deadline);
    if (c->direct_first_ref < deadline)
        st_fail(c->vp, "auto-enable: fired at %llu, before COUNT %llu (early)", c->direct_first_ref, deadline);
    SAY(c, "auto-enable config=0x%llx fired=%llu", cfg, c->direct_first_ref);
    st_sleep_until(st_now() + 10 * ST_MS);
    if (c->direct_count != 1)
        st_fail(c->vp, "auto-enable: %u interrupts, expected 1", c->direct_count);
    timer_off(0);
}

static void synic_on(struct cpu *c)
{
    u64 page = (u64)(uptr)simp_pages[c->vp];
    wrmsr(HV_MSR_SCONTROL, HV_SCONTROL_ENABLE);
    wrmsr(HV_MSR_SIMP, page | HV_SYNIC_PAGE_ENABLE);
    u64 v = rdmsr(HV_MSR_SIMP);
    if (v != (page | HV_SYNIC_PAGE_ENABLE))
        st_fail(c->vp, "SIMP reads 0x%llx after writing 0x%llx", v, page | HV_SYNIC_PAGE_ENABLE);
    if (slot_type(c) != HV_MESSAGE_TYPE_NONE)
        st_fail(c->vp, "slot %u not free after enabling SIMP: type 0x%x", SINT, slot_type(c));
    wrmsr(HV_MSR_SINT(SINT), VEC_SINT);
    v = rdmsr(HV_MSR_SINT(SINT));
    if (v != VEC_SINT)
        st_fail(c->vp, "SINT%u reads 0x%llx after writing 0x%x", SINT, v, VEC_SINT);
}

static void message_mode(struct cpu *c)
{
    timer_off(1);
    c->msg_count = 0;
    c->msg_free = 1;
    u64 deadline = st_now() + 20000;
    wrmsr(HV_MSR_STIMER_COUNT(1), deadline);
    wrmsr(HV_MSR_STIMER_CONFIG(1), HV_STIMER_ENABLE | HV_STIMER_SINT(SINT));
    if (!st_wait_count(&c->msg_count, 1, 20000 + ONE_SECOND))
        st_fail(c->vp, "message mode: no SINT%u interrupt 1 s after the deadline %llu (slot type 0x%x)", SINT,
                deadline, slot_type(c));
    volatile struct msg_record *r = &c->msgs[0];
    check_msg(c, r, "message mode", 1, deadline);
    if (r->flags & HV_MSG_FLAG_PENDING)
        st_fail(c->vp, "message mode: MessagePending set with nothing queued");
    if (slot_type(c) != HV_MESSAGE_TYPE_NONE)
        st_fail(c->vp, "message mode: slot holds type 0x%x after the handler freed it and wrote EOM", slot_type(c));
    u64 cfg = rdmsr(HV_MSR_STIMER_CONFIG(1));
    if (cfg & HV_STIMER_ENABLE)
        st_fail(c->vp, "message mode: STIMER1_CONFIG 0x%llx still has Enable after its message was delivered", cfg);
    SAY(c, "message expiration=%llu delivery=%llu", r->expiration, r->delivery);
    st_sleep_until(st_now() + 10 * ST_MS);
    if (c->msg_count != 1)
        st_fail(c->vp, "message mode: %u SINT%u interrupts, expected 1", c->msg_count, SINT);
    timer_off(1);
}

static void busy_slot(struct cpu *c)
{
    timer_off(1);
    timer_off(2);
    c->msg_count = 0;
    c->msg_free = 0;
    u64 t = st_now(), d1 = t + 20000, d2 = t + 50000;
    wrmsr(HV_MSR_STIMER_COUNT(1), d1);
    wrmsr(HV_MSR_STIMER_COUNT(2), d2);
    wrmsr(HV_MSR_STIMER_CONFIG(1), HV_STIMER_ENABLE | HV_STIMER_SINT(SINT));
    wrmsr(HV_MSR_STIMER_CONFIG(2), HV_STIMER_ENABLE | HV_STIMER_SINT(SINT));
    if (!st_wait_count(&c->msg_count, 1, 20000 + ONE_SECOND))
        st_fail(c->vp, "busy slot: no SINT%u interrupt for STIMER1 (deadline %llu)", SINT, d1);
    check_msg(c, &c->msgs[0], "busy slot, first message", 1, d1);

    /* STIMER2 expires while the slot is full: its message waits and marks the occupant. */
    u64 end = d2 + ONE_SECOND;
    while (!(slot_flags(c) & HV_MSG_FLAG_PENDING) && st_now() < end)
        st_idle();
    u8 flags = slot_flags(c);
    if (!(flags & HV_MSG_FLAG_PENDING))
        st_fail(c->vp, "busy slot: no MessagePending in the occupant 1 s after STIMER2's deadline %llu (flags 0x%x)",
                d2, flags);
    st_sleep_until(st_now() + 10 * ST_MS);
    if (c->msg_count != 1)
        st_fail(c->vp, "busy slot: %u SINT%u interrupts while the slot was full, expected 1", c->msg_count, SINT);
    u32 type = slot_type(c), index = *(volatile u32 *)(slot_of(c) + HV_TIMER_MSG_INDEX);
    if (type != HV_MESSAGE_TYPE_TIMER_EXPIRED || index != 1)
        st_fail(c->vp, "busy slot: the occupant changed to type 0x%x timer %u while the slot was full", type, index);

    /* Free the slot and ask for the next message. */
    u64 freed = st_now();
    slot_free(c);
    wrmsr(HV_MSR_EOM, 0);
    if (!st_wait_count(&c->msg_count, 2, ONE_SECOND))
        st_fail(c->vp, "busy slot: no second message 1 s after EOM (slot type 0x%x)", slot_type(c));
    volatile struct msg_record *r = &c->msgs[1];
    check_msg(c, r, "busy slot, second message", 2, d2);
    if (r->delivery < freed)
        st_fail(c->vp, "busy slot: second message delivered at %llu, before the slot was freed at %llu", r->delivery,
                freed);
    if (r->flags & HV_MSG_FLAG_PENDING)
        st_fail(c->vp, "busy slot: the second message has MessagePending with nothing queued");
    SAY(c, "busy slot pending=1 second delivery=%llu freed=%llu", r->delivery, freed);
    slot_free(c);
    wrmsr(HV_MSR_EOM, 0);
    st_sleep_until(st_now() + 10 * ST_MS);
    if (c->msg_count != 2)
        st_fail(c->vp, "busy slot: %u SINT%u interrupts, expected 2", c->msg_count, SINT);
    timer_off(1);
    timer_off(2);
}

static void synic_off(void)
{
    wrmsr(HV_MSR_SINT(SINT), HV_SINT_RESET);
    wrmsr(HV_MSR_SIMP, 0);
    wrmsr(HV_MSR_SCONTROL, 0);
}

static void suite(void)
{
    u32 vp = st_register_vp(MAX_CPUS);
    struct cpu *c = &cpus[vp];
    c->vp = vp;
    if (!st_watchdog_start())
        SAY(c, "%s", "LAPIC timer does not tick: waiting without hlt");
    direct_periodic(c);
    direct_oneshot(c);
    auto_enable(c);
    synic_on(c);
    message_mode(c);
    busy_slot(c);
    synic_off();
    st_watchdog_stop();
}

void guest_main(const struct boot_info *bi)
{
    puts("stimer: start");
    st_init(NAME);
    st_require(bi, MAX_CPUS, HV_FEAT_DIRECT_STIMERS, "bit 19 (direct synthetic timers)");
    st_install_gate(VEC_DIRECT);
    st_install_gate(VEC_SINT);
    st_run_everywhere(bi, suite);
    if (stray)
        st_fail(0, "%u timer interrupts on a vCPU that had not set itself up", stray);
    st_printf("stimer: ok\n");
}
