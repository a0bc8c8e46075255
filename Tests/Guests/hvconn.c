/* hvconn: SynIC messages, events and SINT assertion across the message-router worker, driven
 * through QEMU's hyperv-testdev protocol at port 0x3000 (`synthvm run --hyperv-testdev`; the
 * same writes kvm-unit-tests' hyperv_connections/hyperv_synic use against QEMU). Run with 1 or 2
 * vCPUs. Every vCPU, at once:
 *  1. enables its SynIC (SCONTROL, SIMP, SIEFP) and programs SINTx = 0xb0 + x, AutoEOI on the odd
 *     SINTs (their gates do not EOI);
 *  2. all 16 SINTs: creates a SINT route (ctl 1), asserts it three times (ctl 3) and expects exactly
 *     three interrupts on vector 0xb0 + x on itself, with the vector never left in service (ISR) —
 *     for AutoEOI SINTs too — then destroys the route (ctl 2) and checks ctl 3 no longer interrupts;
 *  3. messages: a connection to its own SINT2 and one to the other vCPU's SINT(4 + vp) (ctl 4);
 *     HvPostMessage to both; its own arrives (type, size, payload, interrupt); after a barrier the
 *     other vCPU's message is in its slot;
 *  4. busy slot: a connection to its own SINT6; the first message fills the slot, the second is
 *     accepted but waits (MessagePending set in the occupant, no interrupt), a third gets
 *     HV_STATUS_INSUFFICIENT_BUFFERS (0x13); freeing the slot and writing EOM delivers the second
 *     with its interrupt; then the buffer is free again;
 *  5. events: a connection to its own SINT8 and one to the other vCPU's SINT(10 + vp) (ctl 6;
 *     SINT11 is AutoEOI); HvSignalEvent sets flag <connection id> and interrupts; signalling an
 *     already-set flag succeeds without an interrupt; cleared, it interrupts again;
 *  6. one slot, two writers: a connection's message (written by the router) and a message-mode
 *     STIMER0 expiry (written by the monitor) wait behind a busy SINT12 slot and both arrive, one
 *     per EOM;
 *  7. unknown and destroyed connections answer HV_STATUS_INVALID_CONNECTION_ID (0x12), a non-zero
 *     flag number HV_STATUS_INVALID_PARAMETER.
 * The BSP prints `hvconn: vcpu <n> ok` per VP and `hvconn: ok`. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "mp.h"
#include "synictest.h"

#define NAME "hvconn"
#define MAX_CPUS 2
#define VEC 0xb0
#define TESTDEV 0x3000
#define CTL_SINT_CREATE 1
#define CTL_SINT_DESTROY 2
#define CTL_SINT_SET 3
#define CTL_MSG_CREATE 4
/* Connection ids above VMBus's message connections 1 and 4, which the VMBus worker owns. */
#define CONN_BASE 0x40
#define CTL_MSG_DESTROY 5
#define CTL_EVT_CREATE 6
#define CTL_EVT_DESTROY 7
#define SECOND (1000 * ST_MS)

struct cpu {
    volatile u32 irqs[16];
};

static struct cpu cpus[MAX_CPUS];
static volatile u32 stray;
static volatile u32 barrier_count;
static u32 ncpus;
static u8 hypercall_page[4096] __attribute__((aligned(4096)));
static u8 simp_pages[MAX_CPUS][4096] __attribute__((aligned(4096)));
static u8 siefp_pages[MAX_CPUS][4096] __attribute__((aligned(4096)));
static struct hv_post_message_input inputs[MAX_CPUS] __attribute__((aligned(256)));

void st_irq(u32 vector)
{
    u32 vp = st_current_vp();
    if (vector < VEC || vector >= VEC + 16 || vp >= MAX_CPUS) {
        __atomic_add_fetch(&stray, 1, __ATOMIC_SEQ_CST);
        return;
    }
    cpus[vp].irqs[vector - VEC]++;
}

static void testdev(u32 ctl, u32 conn, u32 vp, u32 sint)
{
    outl(TESTDEV, conn << 24 | ctl << 16 | vp << 8 | sint);
}

/* All vCPUs meet here (generation n = the n-th barrier). */
static void meet(u32 vp, u32 n)
{
    __atomic_add_fetch(&barrier_count, 1, __ATOMIC_SEQ_CST);
    u64 end = st_now() + 30 * SECOND;
    while (__atomic_load_n(&barrier_count, __ATOMIC_SEQ_CST) < n * ncpus) {
        if (st_now() > end)
            st_fail(vp, "barrier %u: the other vCPU did not arrive", n);
        st_idle();
    }
}

static void expect_irqs(u32 vp, u32 sint, u32 want, const char *what)
{
    if (!st_wait_count(&cpus[vp].irqs[sint], want, 2 * SECOND))
        st_fail(vp, "%s: %u interrupts on SINT%u (vector 0x%x), expected %u", what, cpus[vp].irqs[sint], sint,
                VEC + sint, want);
    /* Nothing more may come. */
    st_sleep_until(st_now() + 20 * ST_MS);
    if (cpus[vp].irqs[sint] != want)
        st_fail(vp, "%s: %u interrupts on SINT%u, expected exactly %u", what, cpus[vp].irqs[sint], sint, want);
    if (st_in_service(VEC + sint))
        st_fail(vp, "%s: vector 0x%x left in service (ISR) after its handler", what, VEC + sint);
}

static u8 *slot(u32 vp, u32 sint) { return &simp_pages[vp][sint * HV_MESSAGE_SLOT_SIZE]; }
static u32 slot_type(u32 vp, u32 sint) { return *(volatile u32 *)(slot(vp, sint) + HV_MSG_TYPE); }
static u8 slot_flags(u32 vp, u32 sint) { return *(volatile u8 *)(slot(vp, sint) + HV_MSG_FLAGS); }

static void free_slot(u32 vp, u32 sint)
{
    *(volatile u32 *)(slot(vp, sint) + HV_MSG_TYPE) = HV_MESSAGE_TYPE_NONE;
    barrier();
}

static u32 post(u32 vp, u32 conn, u32 type, u32 size, u64 tag)
{
    struct hv_post_message_input *m = &inputs[vp];
    memset(m, 0, sizeof(*m));
    m->connection_id = conn;
    m->message_type = type;
    m->payload_size = size;
    for (u32 i = 0; i < 30; i++)
        m->payload[i] = tag + i;
    return HV_STATUS(hv_hypercall(HVCALL_POST_MESSAGE, (u64)(uptr)m, 0));
}

static void expect_message(u32 vp, u32 sint, u32 type, u32 size, u64 tag, const char *what)
{
    u8 *s = slot(vp, sint);
    if (slot_type(vp, sint) != type || s[HV_MSG_PAYLOAD_SIZE] != size)
        st_fail(vp, "%s: slot %u holds type 0x%x size %u, expected 0x%x size %u", what, sint, slot_type(vp, sint),
                s[HV_MSG_PAYLOAD_SIZE], type, size);
    for (u32 i = 0; i < size / 8; i++) {
        u64 v = *(volatile u64 *)(s + HV_MSG_PAYLOAD + 8 * i);
        if (v != tag + i)
            st_fail(vp, "%s: payload word %u is 0x%llx, expected 0x%llx", what, i, v, tag + i);
    }
}

static bool flag_set(u32 vp, u32 sint, u32 flag)
{
    return (siefp_pages[vp][sint * 256 + flag / 8] >> (flag % 8)) & 1;
}

static void suite(void)
{
    u32 vp = st_register_vp(MAX_CPUS);
    u32 other = ncpus > 1 ? 1 - vp : vp;
    if (!st_watchdog_start())
        st_printf(NAME ": vcpu %u: LAPIC timer does not tick; waiting by spinning\n", vp);

    /* 1. SynIC on, SINTs programmed; odd ones AutoEOI. */
    wrmsr(HV_MSR_SIMP, (u64)(uptr)simp_pages[vp] | HV_SYNIC_PAGE_ENABLE);
    wrmsr(HV_MSR_SIEFP, (u64)(uptr)siefp_pages[vp] | HV_SYNIC_PAGE_ENABLE);
    wrmsr(HV_MSR_SCONTROL, HV_SCONTROL_ENABLE);
    for (u32 x = 0; x < 16; x++)
        wrmsr(HV_MSR_SINT(x), (VEC + x) | ((x & 1) ? HV_SINT_AUTO_EOI : 0));
    meet(vp, 1);

    /* 2. Every SINT through a test-device route, three times each. */
    for (u32 x = 0; x < 16; x++) {
        testdev(CTL_SINT_CREATE, 0, vp, x);
        for (u32 i = 1; i <= 3; i++) {
            testdev(CTL_SINT_SET, 0, vp, x);
            expect_irqs(vp, x, i, (x & 1) ? "AutoEOI SINT assert" : "SINT assert");
        }
        testdev(CTL_SINT_DESTROY, 0, vp, x);
        testdev(CTL_SINT_SET, 0, vp, x);
        expect_irqs(vp, x, 3, "assert after route destroy");
        cpus[vp].irqs[x] = 0;
    }
    st_printf(NAME ": vcpu %u: 16 SINTs asserted 3 times each (8 AutoEOI)\n", vp);
    meet(vp, 2);

    /* 3. Messages to self (SINT2) and to the other vCPU (its SINT 4 + vp). */
    u32 self_conn = CONN_BASE + 1 + vp * 16, other_conn = CONN_BASE + 2 + vp * 16;
    testdev(CTL_MSG_CREATE, self_conn, vp, 2);
    testdev(CTL_MSG_CREATE, other_conn, other, 4 + vp);
    u32 st = post(vp, self_conn, 0x100 + vp, 240, 0x1000 * (vp + 1));
    if (st != HV_STATUS_SUCCESS)
        st_fail(vp, "HvPostMessage to self: status 0x%x", st);
    expect_irqs(vp, 2, 1, "message to self");
    expect_message(vp, 2, 0x100 + vp, 240, 0x1000 * (vp + 1), "message to self");
    free_slot(vp, 2);
    if ((st = post(vp, other_conn, 0x200 + vp, 16, 0x5000 + vp)) != HV_STATUS_SUCCESS)
        st_fail(vp, "HvPostMessage to the other vCPU: status 0x%x", st);
    meet(vp, 3);
    u32 from = other;  /* the other vCPU sent to my SINT 4 + other */
    expect_irqs(vp, 4 + from, 1, "message from the other vCPU");
    expect_message(vp, 4 + from, 0x200 + from, 16, 0x5000 + from, "message from the other vCPU");
    free_slot(vp, 4 + from);
    st_printf(NAME ": vcpu %u: messages to self and to vcpu %u delivered\n", vp, other);

    /* 4. Busy slot: MessagePending, INSUFFICIENT_BUFFERS, EOM. */
    u32 busy_conn = CONN_BASE + 3 + vp * 16;
    testdev(CTL_MSG_CREATE, busy_conn, vp, 6);
    if ((st = post(vp, busy_conn, 0x300, 8, 0xa1)) != HV_STATUS_SUCCESS)
        st_fail(vp, "first message: status 0x%x", st);
    expect_irqs(vp, 6, 1, "first message");
    if ((st = post(vp, busy_conn, 0x301, 8, 0xb2)) != HV_STATUS_SUCCESS)
        st_fail(vp, "second message (slot busy): status 0x%x", st);
    st_sleep_until(st_now() + 20 * ST_MS);
    if (!(slot_flags(vp, 6) & HV_MSG_FLAG_PENDING))
        st_fail(vp, "busy slot: MessagePending not set in the occupant");
    expect_message(vp, 6, 0x300, 8, 0xa1, "busy slot keeps the first message");
    if ((st = post(vp, busy_conn, 0x302, 8, 0xc3)) != HV_STATUS_INSUFFICIENT_BUFFERS)
        st_fail(vp, "third message while one is staged: status 0x%x, expected 0x13", st);
    expect_irqs(vp, 6, 1, "no interrupt while the slot is busy");
    free_slot(vp, 6);
    wrmsr(HV_MSR_EOM, 0);
    expect_irqs(vp, 6, 2, "delivery after EOM");
    expect_message(vp, 6, 0x301, 8, 0xb2, "delivery after EOM");
    free_slot(vp, 6);
    if ((st = post(vp, busy_conn, 0x302, 8, 0xc3)) != HV_STATUS_SUCCESS)
        st_fail(vp, "message after the buffer came back: status 0x%x", st);
    expect_irqs(vp, 6, 3, "message after the buffer came back");
    free_slot(vp, 6);
    st_printf(NAME ": vcpu %u: busy slot pending=1 insufficient-buffers=0x13 eom-delivery ok\n", vp);
    meet(vp, 4);

    /* 5. Events to self (SINT8) and to the other vCPU (SINT 10 + vp; 11 is AutoEOI). */
    u32 self_evt = CONN_BASE + 4 + vp * 16, other_evt = CONN_BASE + 5 + vp * 16;
    testdev(CTL_EVT_CREATE, self_evt, vp, 8);
    testdev(CTL_EVT_CREATE, other_evt, other, 10 + vp);
    if ((st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, self_evt))) != HV_STATUS_SUCCESS)
        st_fail(vp, "HvSignalEvent to self: status 0x%x", st);
    expect_irqs(vp, 8, 1, "event to self");
    if (!flag_set(vp, 8, self_evt))
        st_fail(vp, "event to self: flag %u of SINT8 not set", self_evt);
    if ((st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, self_evt))) != HV_STATUS_SUCCESS)
        st_fail(vp, "HvSignalEvent, flag already set: status 0x%x", st);
    expect_irqs(vp, 8, 1, "flag already set: no interrupt");
    __atomic_and_fetch(&siefp_pages[vp][8 * 256 + self_evt / 8], (u8)~(1u << (self_evt % 8)), __ATOMIC_SEQ_CST);
    hv_fast8(HVCALL_SIGNAL_EVENT, self_evt);
    expect_irqs(vp, 8, 2, "flag cleared: interrupt again");
    if ((st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, other_evt))) != HV_STATUS_SUCCESS)
        st_fail(vp, "HvSignalEvent to the other vCPU: status 0x%x", st);
    meet(vp, 5);
    u32 evt_from = CONN_BASE + 5 + other * 16;
    expect_irqs(vp, 10 + other, 1, "event from the other vCPU");
    if (!flag_set(vp, 10 + other, evt_from))
        st_fail(vp, "event from the other vCPU: flag %u of SINT%u not set", evt_from, 10 + other);
    st_printf(NAME ": vcpu %u: events to self and to vcpu %u, already-set flag without interrupt\n", vp, other);

    /* 6. One slot, two writers: a connection's messages (the router) and a message-mode timer (the
     *    monitor) share SINT12; both arrive, one at a time, with MessagePending and EOM between. */
    u32 shared_conn = CONN_BASE + 6 + vp * 16;
    testdev(CTL_MSG_CREATE, shared_conn, vp, 12);
    if ((st = post(vp, shared_conn, 0x600, 8, 0x61)) != HV_STATUS_SUCCESS)
        st_fail(vp, "shared slot, first message: status 0x%x", st);
    expect_irqs(vp, 12, 1, "shared slot, first message");
    wrmsr(HV_MSR_STIMER_COUNT(0), st_now() + 2 * ST_MS);
    wrmsr(HV_MSR_STIMER_CONFIG(0), HV_STIMER_ENABLE | HV_STIMER_SINT(12));
    st_sleep_until(st_now() + 10 * ST_MS);
    if ((st = post(vp, shared_conn, 0x601, 8, 0x62)) != HV_STATUS_SUCCESS)
        st_fail(vp, "shared slot, second message: status 0x%x", st);
    expect_irqs(vp, 12, 1, "shared slot busy: no interrupt");
    if (!(slot_flags(vp, 12) & HV_MSG_FLAG_PENDING))
        st_fail(vp, "shared slot: MessagePending not set while a timer message and a message wait");
    u32 got_timer = 0, got_message = 0;
    for (u32 i = 2; i <= 3; i++) {
        free_slot(vp, 12);
        wrmsr(HV_MSR_EOM, 0);
        expect_irqs(vp, 12, i, "shared slot after EOM");
        u32 type = slot_type(vp, 12);
        if (type == HV_MESSAGE_TYPE_TIMER_EXPIRED && *(volatile u32 *)(slot(vp, 12) + HV_TIMER_MSG_INDEX) == 0)
            got_timer++;
        else if (type == 0x601)
            got_message++;
        else
            st_fail(vp, "shared slot: unexpected message type 0x%x", type);
    }
    free_slot(vp, 12);
    wrmsr(HV_MSR_STIMER_CONFIG(0), 0);
    if (got_timer != 1 || got_message != 1)
        st_fail(vp, "shared slot: %u timer and %u connection messages, expected one each", got_timer, got_message);
    st_printf(NAME ": vcpu %u: one slot shared by a timer and a connection: both delivered\n", vp);

    /* 7. Unknown, destroyed, and bad flag numbers. */
    if ((st = post(vp, 0xfe, 1, 0, 0)) != HV_STATUS_INVALID_CONNECTION_ID)
        st_fail(vp, "post to an unknown connection: status 0x%x", st);
    if ((st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, self_evt | (1ull << 32)))) != HV_STATUS_INVALID_PARAMETER)
        st_fail(vp, "flag number 1: status 0x%x", st);
    testdev(CTL_MSG_DESTROY, self_conn, vp, 2);
    testdev(CTL_EVT_DESTROY, self_evt, vp, 8);
    if ((st = post(vp, self_conn, 1, 0, 0)) != HV_STATUS_INVALID_CONNECTION_ID)
        st_fail(vp, "post to a destroyed connection: status 0x%x", st);
    if ((st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, self_evt))) != HV_STATUS_INVALID_CONNECTION_ID)
        st_fail(vp, "signal a destroyed connection: status 0x%x", st);
    meet(vp, 6);
    st_watchdog_stop();
    if (stray)
        st_fail(vp, "%u stray interrupts", stray);
    st_printf(NAME ": vcpu %u ok\n", vp);
}

void guest_main(const struct boot_info *bi)
{
    st_init(NAME);
    ncpus = st_require(bi, MAX_CPUS, 0, "nothing");
    struct hv_info hv;
    hv_query(&hv);
    u32 need = HV_PRIV_POST_MESSAGES | HV_PRIV_SIGNAL_EVENTS;
    if ((hv.priv_ebx & need) != need)
        guest_fail(NAME, "0x40000003.EBX=0x%x lacks PostMessages and SignalEvents", hv.priv_ebx);
    if (!(hv_enable_hypercall_page(hypercall_page) & HV_HYPERCALL_ENABLE))
        guest_fail(NAME, "hypercall page not enabled");
    for (u32 v = 0; v < 16; v++) {
        st_install_gate(VEC + v);
        st_set_auto_eoi(VEC + v, v & 1);
    }
    st_run_everywhere(bi, suite);
    printf(NAME ": ok\n");
    guest_exit_success();
}
