/* memflood: a long, steady flood of every kind of record the SynIC router takes and of the
 * exits the monitor answers itself, so a test can watch the processes' private memory stay flat
 * (Tests/GuestTests/MemoryGrowthTests.swift). Run with `--hyperv-testdev` (synic in the set).
 *
 * Setup: hypercall page, SIMP, SIEFP, SCONTROL; SINT2 and SINT3 get vectors (interrupts stay
 * pending: the guest runs with IF = 0 and polls); a test-device message connection to its own
 * SINT2 and an event connection to its own SINT3.
 * Then, per batch, `per` (default 1000) of each:
 *   1. test-device writes the router decodes and ignores (ctl 0: what the hostile guest
 *      wrote): a record through the test-device ring and an acknowledgement;
 *   2. HvPostMessage to the message connection: a record through the VP's ring, the router puts it
 *      in the SINT2 slot, the guest frees the slot and writes EOM (the monitor counts it, the
 *      router sees the EOM);
 *   3. HvSignalEvent (fast) to the event connection: the router sets flag <conn> in the SINT3
 *      event area, the guest clears it;
 *   4. the monitor's own exits: an `out` to port 0x80, a SINT5 write and a TIME_REF_COUNT read,
 *      and a HvCallNotifyLongSpinWait (fast hypercall).
 * After each batch it prints `memflood: batch <n>`; with `batches=N` it stops after N batches
 * (`memflood: ok`), with `batches=0` (the default) it runs until the VM is stopped. */
#include "rt.h"
#include "x86.h"
#include "hyperv.h"
#include "bootinfo.h"

#define NAME "memflood"
#define TESTDEV 0x3000
#define CTL_MSG_CREATE 4
#define CTL_EVT_CREATE 6
#define MSG_CONN 7
#define EVT_CONN 9
#define MSG_SINT 2
#define EVT_SINT 3
/* Bounded waits: polling iterations (each a few emulated instructions, microseconds here). */
#define WAIT_SPINS 50000000ull

static u8 hypercall_page[4096] __attribute__((aligned(4096)));
static u8 simp[4096] __attribute__((aligned(4096)));
static u8 siefp[4096] __attribute__((aligned(4096)));
static struct hv_post_message_input input __attribute__((aligned(256)));

static void testdev(u32 ctl, u32 conn, u32 vp, u32 sint)
{
    outl(TESTDEV, conn << 24 | ctl << 16 | vp << 8 | sint);
}

static volatile u32 *slot_type(void) { return (volatile u32 *)&simp[MSG_SINT * HV_MESSAGE_SLOT_SIZE + HV_MSG_TYPE]; }
static volatile u8 *flag_byte(void) { return &siefp[EVT_SINT * 256 + EVT_CONN / 8]; }

static void post_one(u64 n)
{
    input.connection_id = MSG_CONN;
    input.message_type = 0x100;
    input.payload_size = 16;
    input.payload[0] = n;
    input.payload[1] = ~n;
    /* The router gives the connection's buffer back just after it wrote the slot, so a guest
     * this quick may find it still taken: retry, as Linux's vmbus_post_msg does. */
    u32 st = HV_STATUS_INSUFFICIENT_BUFFERS;
    for (u64 i = 0; st == HV_STATUS_INSUFFICIENT_BUFFERS && i < WAIT_SPINS; i++)
        st = HV_STATUS(hv_hypercall(HVCALL_POST_MESSAGE, (u64)(uptr)&input, 0));
    if (st != HV_STATUS_SUCCESS)
        guest_fail(NAME, "HvPostMessage %llu: status 0x%x", n, st);
    for (u64 i = 0; *slot_type() == HV_MESSAGE_TYPE_NONE; i++) {
        if (i == WAIT_SPINS)
            guest_fail(NAME, "message %llu never reached the SINT%u slot", n, MSG_SINT);
        cpu_relax();
    }
    u64 got = *(volatile u64 *)&simp[MSG_SINT * HV_MESSAGE_SLOT_SIZE + HV_MSG_PAYLOAD];
    if (got != n)
        guest_fail(NAME, "message %llu: slot holds payload %llu", n, got);
    *slot_type() = HV_MESSAGE_TYPE_NONE;
    barrier();
    wrmsr(HV_MSR_EOM, 0);
}

static void signal_one(u64 n)
{
    u32 st = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, EVT_CONN));
    if (st != HV_STATUS_SUCCESS)
        guest_fail(NAME, "HvSignalEvent %llu: status 0x%x", n, st);
    u8 bit = 1u << (EVT_CONN % 8);
    for (u64 i = 0; !(*flag_byte() & bit); i++) {
        if (i == WAIT_SPINS)
            guest_fail(NAME, "event %llu never set flag %u of SINT%u", n, EVT_CONN, EVT_SINT);
        cpu_relax();
    }
    __atomic_and_fetch(flag_byte(), (u8)~bit, __ATOMIC_SEQ_CST);
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    const char *cmdline = boot_cmdline();
    u64 per = 1000, batches = 0;
    puts(NAME ": start");
    const char *v;
    usize n;
    if (cmdline_find(cmdline, "per", &v, &n) && !parse_u64(v, n, &per))
        guest_fail(NAME, "bad per= value");
    if (cmdline_find(cmdline, "batches", &v, &n) && !parse_u64(v, n, &batches))
        guest_fail(NAME, "bad batches= value");
    struct hv_info hv;
    hv_require(NAME, &hv);
    hv_enable_hypercall_page(hypercall_page);
    wrmsr(HV_MSR_SIMP, (u64)(uptr)simp | HV_SYNIC_PAGE_ENABLE);
    wrmsr(HV_MSR_SIEFP, (u64)(uptr)siefp | HV_SYNIC_PAGE_ENABLE);
    wrmsr(HV_MSR_SCONTROL, HV_SCONTROL_ENABLE);
    wrmsr(HV_MSR_SINT(MSG_SINT), 0xb0 + MSG_SINT);
    wrmsr(HV_MSR_SINT(EVT_SINT), 0xb0 + EVT_SINT);
    testdev(CTL_MSG_CREATE, MSG_CONN, 0, MSG_SINT);
    testdev(CTL_EVT_CREATE, EVT_CONN, 0, EVT_SINT);
    printf(NAME ": per=%llu batches=%llu\n", per, batches);

    u64 seq = 0;
    for (u64 b = 1; batches == 0 || b <= batches; b++) {
        for (u64 i = 0; i < per; i++)
            outl(TESTDEV, 0x05000003u);  /* conn 5, ctl 0: decoded and ignored by the router */
        for (u64 i = 0; i < per; i++)
            post_one(++seq);
        for (u64 i = 0; i < per; i++)
            signal_one(i);
        for (u64 i = 0; i < per; i++) {
            outb(0x80, (u8)i);
            wrmsr(HV_MSR_SINT(5), (0xb5 | HV_SINT_MASKED) ^ (i & 1 ? HV_SINT_MASKED : 0));
            (void)rdmsr(HV_MSR_TIME_REF_COUNT);
            (void)hv_fast8(HVCALL_NOTIFY_LONG_SPIN_WAIT, i);
        }
        printf(NAME ": batch %llu\n", b);
    }
    puts(NAME ": ok");
    guest_exit_success();
}
