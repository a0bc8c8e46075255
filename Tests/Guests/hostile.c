/* hostile: a seeded hostile-guest campaign against the HV#1 partition (issue 15, item 3). Every
 * vCPU (1 or 2), from `seed=N` on the command line (its own stream: seed and VP index), runs
 * `ops=N` random operations with interrupts enabled:
 *  - reads and writes of random MSRs in the synthetic range 0x40000000-0x400001FF and just
 *    around it (0x3FFFFFF0-0x3FFFFFFF, 0x40000200-0x4000020F), every #GP skipped (rdmsr_safe,
 *    wrmsr_safe) and counted; values shaped per MSR (page GPAs, SINT vectors and flags, timer
 *    configurations), so SynIC and timer reconfiguration happens while their interrupts arrive;
 *  - random hypercalls through the guest's own `out 0xe5` (hc_call, hostile_asm.S): known and
 *    random codes, random control words (fast, variable header, rep count and start, RsvdZ
 *    bits), input and output GPAs aligned, misaligned, page-crossing, outside RAM, on the
 *    current SIMP/SIEFP/hypercall/TSC pages; input blocks shaped for the implemented calls;
 *    #UD (interface off) skipped and counted;
 *  - HvPostMessage and HvSignalEvent to connections the campaign is likely to have created;
 *  - hyperv-testdev commands (port 0x3000), valid and not;
 *  - scribbles on its own SIMP/SIEFP pages, freed slots and EOM.
 * Then, after all vCPUs are done, it checks that the partition still answers sanely: known MSRs
 * read back what was written, the reference counter moves and agrees with a fresh TSC page, a
 * call through a fresh hypercall page succeeds, and on fresh SynIC pages a message to a new
 * test-device message connection, an event to a new event connection, a SINT route assertion
 * and a message-mode timer are all delivered.
 *
 * Never done, because it legitimately ends or breaks the VM or the guest, not the host:
 *  - writes to RESET (0x40000003: resets the VM) and CRASH_CTL (0x40000105: bit 63 reports a
 *    guest crash and stops the VM); both are read;
 *  - page MSRs (HYPERCALL, REFERENCE_TSC, VP_ASSIST_PAGE, SIMP, SIEFP) pointing into the
 *    guest's own code, data, page tables or stacks: the host fills, zeroes and writes those
 *    pages, so their GPFNs come from a 32-page arena the guest uses for nothing else, or lie
 *    outside RAM (where the write must #GP);
 *  - the HYPERCALL Locked bit: locked disabled, hypercalls would #UD for the rest of the run
 *    (it is tested by hvmsr and hvcall);
 *  - synthetic-timer COUNT values below 10 ms other than 0: as a period, a guest CPL0
 *    interrupt costs ~100 us on the emulating host, so a shorter periodic timer turns the run
 *    into a self-inflicted interrupt storm (one-shot deadlines in the past still fire at once);
 *  - output GPAs in the guest's own pages (no implemented call writes output; a future one
 *    would write there). Input GPAs may point anywhere: the host only reads them.
 * Interrupts at any vector 0x10-0xFF are counted and EOIed (hostile_asm.S), never trusted.
 * `trace=1` prints every operation (for reproducing a seed). Output: per VP
 * `hostile: vcpu <n>: ops=<n> us=<reference time> ops/s=<n> msr=<r>/<w> gp=<n> hypercalls=<n>
 * ud=<n> ok=<n> testdev=<n> excluded=<n> repairs=<n> irqs=<n>`, `hostile: vcpu <n> ok`, then
 * `hostile: ok`. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "mp.h"
#include "synictest.h"

#define NAME "hostile"
#define MAX_CPUS 2
#define ARENA_PAGES 32
#define TESTDEV 0x3000
#define CTL_SINT_CREATE 1
#define CTL_SINT_DESTROY 2
#define CTL_SINT_SET 3
#define CTL_MSG_CREATE 4
#define CTL_MSG_DESTROY 5
#define CTL_EVT_CREATE 6
#define CTL_EVT_DESTROY 7
#define SECOND (1000 * ST_MS)
#define MIN_TIMER_COUNT (10 * ST_MS)
/* The final checks' vectors, connections and SINTs. */
#define FINAL_VEC 0xb0
#define FINAL_MSG_CONN(vp) (0xe0u + (vp))
#define FINAL_EVT_CONN(vp) (0xe8u + (vp))

struct vpstate {
    u64 rng;
    u32 ops, msr_reads, msr_writes, msr_gp, excluded;
    u32 hypercalls, ud, success, testdev, repairs;
    u8 conns[16];          /* connection ids this VP's test-device commands created (recent) */
    u32 nconns;
    volatile u32 irqs[256];
};

static struct vpstate vps[MAX_CPUS];
static volatile u32 barrier_count;
static u32 ncpus;
static u64 seed, ops_per_vp = 2000, ram_top;
static u32 phys_bits;
static bool trace;

/* Pages the host may fill, zero and write at will during the random phase. */
static u8 arena[ARENA_PAGES][4096] __attribute__((aligned(4096)));
/* Fresh pages for the final checks (never handed out at random). */
static u8 final_hypercall[4096] __attribute__((aligned(4096)));
static u8 final_tsc[4096] __attribute__((aligned(4096)));
static u8 final_simp[MAX_CPUS][4096] __attribute__((aligned(4096)));
static u8 final_sief[MAX_CPUS][4096] __attribute__((aligned(4096)));
static struct hv_post_message_input final_input[MAX_CPUS] __attribute__((aligned(256)));

bool hc_call(u64 control, u64 in, u64 out, u64 *result);
extern void (*const hostile_low_gates[16])(void);
void hostile_gate_ff(void);

void st_irq(u32 vector)
{
    u32 vp = st_current_vp();
    if (vp < MAX_CPUS)
        vps[vp].irqs[vector & 0xff]++;
}

/* ---- random numbers: splitmix64 to seed, xorshift64* to draw ---- */

static u64 splitmix(u64 x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static u64 rnd(struct vpstate *s)
{
    u64 x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

static u32 below(struct vpstate *s, u32 n) { return (u32)((rnd(s) >> 32) % n); }
static bool chance(struct vpstate *s, u32 percent) { return below(s, 100) < percent; }

/* A 64-bit value from the shapes parsers trip on. */
static u64 any64(struct vpstate *s)
{
    switch (below(s, 8)) {
    case 0: return 0;
    case 1: return ~0ull;
    case 2: return 1ull << below(s, 64);
    case 3: return below(s, 0x1000);
    case 4: return (u64)below(s, 0x100) << 32;
    default: return rnd(s);
    }
}

/* ---- addresses ---- */

static u64 arena_page(struct vpstate *s, u32 last) { return (u64)(uptr)arena[below(s, last)]; }

/* A page the host may write: an arena page, or one outside RAM (the write must #GP). */
static u64 host_page(struct vpstate *s)
{
    switch (below(s, 10)) {
    case 0: return ram_top;                                /* first page past RAM */
    case 1: return 0xfee00000ull;                          /* the LAPIC, in the MMIO hole */
    case 2: return 0x100000000ull + ((u64)below(s, 0x1000) << 12);
    case 3: return (1ull << phys_bits) - 4096;             /* past RAM, below MAXPHYADDR */
    default: return arena_page(s, ARENA_PAGES);
    }
}

static u64 current_page(struct vpstate *s)
{
    static const u32 msrs[] = { HV_MSR_SIMP, HV_MSR_SIEFP, HV_MSR_HYPERCALL, HV_MSR_REFERENCE_TSC };
    u64 v;
    if (rdmsr_safe(msrs[below(s, 4)], &v))
        s->msr_gp++;
    return v & ~0xfffull;
}

/* A hypercall input or output GPA. `input` admits the guest's own pages (the host only reads). */
static u64 call_gpa(struct vpstate *s, bool input)
{
    switch (below(s, input ? 9 : 8)) {
    case 0: return arena_page(s, ARENA_PAGES - 1) + 8 * below(s, 512);            /* aligned */
    case 1: return arena_page(s, ARENA_PAGES - 1) + 1 + below(s, 4094);           /* mostly misaligned */
    case 2: return arena_page(s, ARENA_PAGES - 1) + 4096 - 8 * (1 + below(s, 31)); /* crosses a page */
    case 3: return current_page(s) + 8 * below(s, 512);                          /* SIMP/SIEFP/hypercall/TSC */
    case 4: return ram_top - 8 * below(s, 64);                                     /* runs off the end of RAM */
    case 5: return 0xc0000000ull + (rnd(s) & 0x3ffffff8ull);                       /* MMIO hole */
    case 6: return (1ull << phys_bits) + (rnd(s) & 0xfff8);                        /* beyond MAXPHYADDR */
    case 7: return rnd(s);
    default: return rnd(s) & 0x1ffff8;                                             /* low memory, the guest's image */
    }
}

/* Writes len bytes at gpa when all of them lie in the arena (else the block is left as it is). */
static void put_block(u64 gpa, const void *src, u32 len)
{
    u64 lo = (u64)(uptr)arena, hi = lo + sizeof(arena);
    if (gpa >= lo && gpa + len <= hi && gpa + len > gpa)
        memcpy(phys_ptr(gpa), src, len);
}

/* ---- operations ---- */

static const u32 known_msrs[] = {
    HV_MSR_GUEST_OS_ID, HV_MSR_HYPERCALL, HV_MSR_VP_INDEX, HV_MSR_RESET, HV_MSR_VP_RUNTIME,
    HV_MSR_TIME_REF_COUNT, HV_MSR_REFERENCE_TSC, HV_MSR_TSC_FREQUENCY, HV_MSR_APIC_FREQUENCY,
    HV_MSR_EOI, HV_MSR_ICR, HV_MSR_TPR, HV_MSR_VP_ASSIST_PAGE, HV_MSR_SCONTROL, HV_MSR_SVERSION,
    HV_MSR_SIEFP, HV_MSR_SIMP, HV_MSR_EOM, HV_MSR_GUEST_IDLE, HV_MSR_CRASH_P0, HV_MSR_CRASH_P4,
    HV_MSR_CRASH_CTL, 0x40000106u, 0x40000118u,
};

static u32 pick_msr(struct vpstate *s)
{
    u32 r = below(s, 100);
    if (r < 30)
        return known_msrs[below(s, ARRAY_SIZE(known_msrs))];
    if (r < 45)
        return HV_MSR_SINT(below(s, 16));
    if (r < 60)
        return HV_MSR_STIMER0_CONFIG + below(s, 8);
    if (r < 90)
        return 0x40000000u + below(s, 0x200);
    return chance(s, 50) ? 0x3ffffff0u + below(s, 16) : 0x40000200u + below(s, 16);
}

static u64 timer_count(struct vpstate *s)
{
    u64 v;
    switch (below(s, 4)) {
    case 0: return 0;
    case 1: v = st_now() + below(s, 50 * ST_MS); break;     /* one-shot soon */
    case 2: v = st_now() - below(s, 100 * ST_MS); break;    /* one-shot in the past */
    default: v = any64(s); break;
    }
    return v < MIN_TIMER_COUNT ? MIN_TIMER_COUNT : v;
}

static u64 msr_value(struct vpstate *s, u32 msr)
{
    switch (msr) {
    case HV_MSR_GUEST_OS_ID:
        return chance(s, 70) ? HV_LINUX_GUEST_OS_ID : chance(s, 30) ? 0 : any64(s);
    case HV_MSR_HYPERCALL:
        return (host_page(s) | (rnd(s) & 0xffd) | (chance(s, 90) ? 1 : 0)) & ~HV_HYPERCALL_LOCKED;
    case HV_MSR_REFERENCE_TSC:
    case HV_MSR_VP_ASSIST_PAGE:
    case HV_MSR_SIMP:
    case HV_MSR_SIEFP:
        return host_page(s) | (chance(s, 20) ? (rnd(s) & 0xffe) : 0) | (chance(s, 80) ? 1 : 0);
    case HV_MSR_SCONTROL:
        return chance(s, 80) ? 1 : any64(s);
    default:
        break;
    }
    if (msr >= HV_MSR_SINT0 && msr < HV_MSR_SINT0 + 16) {
        u64 v = below(s, 256);
        if (chance(s, 30)) v |= HV_SINT_MASKED;
        if (chance(s, 25)) v |= HV_SINT_AUTO_EOI;
        if (chance(s, 10)) v |= HV_SINT_POLLING;
        if (chance(s, 10)) v |= rnd(s) & ~0x7ffffull;   /* RsvdP */
        return v;
    }
    if (msr >= HV_MSR_STIMER0_CONFIG && msr < HV_MSR_STIMER0_CONFIG + 8) {
        if ((msr - HV_MSR_STIMER0_CONFIG) & 1)
            return timer_count(s);
        u64 v = rnd(s) & (HV_STIMER_ENABLE | HV_STIMER_PERIODIC | HV_STIMER_LAZY | HV_STIMER_AUTO_ENABLE |
                          HV_STIMER_DIRECT | HV_STIMER_VECTOR(0xff) | HV_STIMER_SINT(0xf));
        if (chance(s, 10)) v |= 1ull << (13 + below(s, 3));     /* RsvdZ 15:13 */
        if (chance(s, 5)) v |= 1ull << (20 + below(s, 44));     /* RsvdZ 63:20 */
        return v;
    }
    return any64(s);
}

static void op_msr(struct vpstate *s, u32 vp, u32 i)
{
    u32 msr = pick_msr(s);
    bool write = chance(s, 50);
    if (write && (msr == HV_MSR_RESET || msr == HV_MSR_CRASH_CTL)) {
        s->excluded++;   /* would end the VM: read instead */
        write = false;
    }
    u64 v = write ? msr_value(s, msr) : 0;
    bool gp = write ? wrmsr_safe(msr, v) : rdmsr_safe(msr, &v);
    if (write)
        s->msr_writes++;
    else
        s->msr_reads++;
    if (gp)
        s->msr_gp++;
    if (trace)
        st_printf(NAME ": vcpu %u op %u: %s 0x%x 0x%llx%s\n", vp, i, write ? "wrmsr" : "rdmsr", msr, v, gp ? " #GP" : "");
}

static const u16 known_calls[] = {
    0x0002, 0x0003, HVCALL_NOTIFY_LONG_SPIN_WAIT, HVCALL_SEND_IPI, 0x0013, 0x0014, HVCALL_SEND_IPI_EX,
    HVCALL_POST_MESSAGE, HVCALL_SIGNAL_EVENT, 0x0000, 0xffff,
};

/* An input block shaped for `code` (256 bytes of mostly random content otherwise). */
static void shape_input(struct vpstate *s, u16 code, u64 *q)
{
    for (u32 i = 0; i < 32; i++)
        q[i] = chance(s, 50) ? any64(s) : 0;
    switch (code) {
    case HVCALL_POST_MESSAGE:
        q[0] = chance(s, 80) ? below(s, 256) : any64(s);                    /* connection, reserved */
        q[1] = (chance(s, 80) ? 1 + below(s, 0x7fffffff) : rnd(s)) |          /* type */
               ((u64)(chance(s, 80) ? below(s, 241) : (u32)any64(s)) << 32);  /* payload size */
        break;
    case HVCALL_SIGNAL_EVENT:
        q[0] = chance(s, 80) ? below(s, 256) | (chance(s, 80) ? 0 : any64(s) << 32) : any64(s);
        break;
    case HVCALL_SEND_IPI:
    case HVCALL_SEND_IPI_EX:
        q[0] = chance(s, 80) ? 0x10 + below(s, 0xf0) : any64(s);              /* vector, reserved */
        q[1] = code == HVCALL_SEND_IPI ? (chance(s, 80) ? below(s, 8) : any64(s))
                                       : below(s, 3);                         /* mask, or format */
        q[2] = chance(s, 80) ? 1 : any64(s);                                  /* valid bank mask */
        q[3] = below(s, 8);                                                   /* bank 0 */
        break;
    default:
        break;
    }
}

static u64 control_word(struct vpstate *s, u16 code)
{
    if (chance(s, 3))
        return rnd(s);
    u64 c = code;
    if (chance(s, 50)) c |= HV_CONTROL_FAST;
    if (chance(s, 15)) c |= HV_CONTROL_VARHEAD(chance(s, 50) ? 1 : below(s, 1024));
    if (chance(s, 20)) c |= HV_CONTROL_REP_COUNT(below(s, 4096));
    if (chance(s, 15)) c |= HV_CONTROL_REP_START(below(s, 4096));
    if (chance(s, 10)) {
        static const u8 rsvdz[] = { 27, 28, 29, 30, 31, 44, 45, 46, 47, 60, 61, 62, 63 };
        c |= 1ull << rsvdz[below(s, sizeof(rsvdz))];
    }
    return c;
}

static void note_result(struct vpstate *s, bool ud, u64 r)
{
    s->hypercalls++;
    if (ud)
        s->ud++;
    else if (HV_STATUS(r) == HV_STATUS_SUCCESS)
        s->success++;
}

static void op_hypercall(struct vpstate *s, u32 vp, u32 i)
{
    u16 code = chance(s, 70) ? known_calls[below(s, ARRAY_SIZE(known_calls))] : (u16)rnd(s);
    u64 control = control_word(s, code);
    u64 q[32];
    shape_input(s, (u16)control, q);
    u64 in, out = chance(s, 50) ? 0 : call_gpa(s, false), r;
    if (control & HV_CONTROL_FAST) {
        in = q[0];
        out = chance(s, 70) ? q[1] : out;
    } else {
        in = call_gpa(s, true);
        put_block(in, q, sizeof(q));
    }
    bool ud = hc_call(control, in, out, &r);
    note_result(s, ud, r);
    if (trace)
        st_printf(NAME ": vcpu %u op %u: hypercall 0x%llx in=0x%llx out=0x%llx -> %s0x%llx\n", vp, i, control, in, out,
                  ud ? "#UD " : "", r);
    /* A random GUEST_OS_ID or HYPERCALL write turned the interface off: often turn it back on,
     * as a guest would, or most later calls would only exercise the #UD path. */
    if (ud && chance(s, 60)) {
        wrmsr_safe(HV_MSR_GUEST_OS_ID, HV_LINUX_GUEST_OS_ID);
        wrmsr_safe(HV_MSR_HYPERCALL, arena_page(s, ARENA_PAGES) | HV_HYPERCALL_ENABLE);
        s->repairs++;
    }
}

/* A connection id: mostly one this VP's test-device commands created (it may have been destroyed
 * since, or be of the other kind), else any the test device could have made. */
static u32 pick_conn(struct vpstate *s)
{
    if (s->nconns && chance(s, 70))
        return s->conns[below(s, s->nconns < 16 ? s->nconns : 16)];
    return below(s, 256);
}

/* A well-formed HvPostMessage or HvSignalEvent to a connection the test device may have made. */
static void op_connection(struct vpstate *s, u32 vp, u32 i)
{
    u64 r, in;
    bool ud, post = chance(s, 50);
    if (post) {
        u64 q[32];
        for (u32 k = 0; k < 32; k++)
            q[k] = rnd(s);
        q[0] = pick_conn(s);
        q[1] = (1 + below(s, 0x1000)) | ((u64)below(s, 241) << 32);
        in = arena_page(s, ARENA_PAGES - 1) + 256 * below(s, 16);
        put_block(in, q, sizeof(q));
        ud = hc_call(HVCALL_POST_MESSAGE, in, 0, &r);
    } else {
        in = pick_conn(s);
        ud = hc_call(HVCALL_SIGNAL_EVENT | HV_CONTROL_FAST, in, 0, &r);
    }
    note_result(s, ud, r);
    if (trace)
        st_printf(NAME ": vcpu %u op %u: %s 0x%llx -> %s0x%llx\n", vp, i, post ? "post" : "signal", in, ud ? "#UD " : "", r);
}

static void op_testdev(struct vpstate *s, u32 vp, u32 i)
{
    u32 ctl = chance(s, 90) ? 1 + below(s, 7) : below(s, 256);
    u32 target = chance(s, 90) ? below(s, ncpus) : below(s, 256);
    u32 sint = chance(s, 90) ? below(s, 16) : below(s, 256);
    u32 conn = below(s, 256);
    u32 value = chance(s, 3) ? (u32)rnd(s) : conn << 24 | ctl << 16 | target << 8 | sint;
    outl(TESTDEV, value);
    s->testdev++;
    if (ctl == CTL_MSG_CREATE || ctl == CTL_EVT_CREATE)
        s->conns[s->nconns++ % 16] = (u8)conn;
    if (trace)
        st_printf(NAME ": vcpu %u op %u: testdev 0x%x\n", vp, i, value);
}

/* The guest scribbles on its own SIMP/SIEFP (when they are in the arena): frees slots, forges
 * headers, clears and sets flags, then writes EOM. */
static void op_synic_pages(struct vpstate *s, u32 vp, u32 i)
{
    u64 simp, siefp;
    bool gp = rdmsr_safe(HV_MSR_SIMP, &simp) | rdmsr_safe(HV_MSR_SIEFP, &siefp);
    u64 lo = (u64)(uptr)arena, hi = lo + sizeof(arena);
    simp &= ~0xfffull;
    siefp &= ~0xfffull;
    u32 action = below(s, 4);
    if (!gp && simp >= lo && simp < hi) {
        volatile u32 *slot = phys_ptr(simp + HV_MESSAGE_SLOT_SIZE * below(s, 16));
        if (action == 0)
            for (u32 k = 0; k < 16; k++)
                *(volatile u32 *)phys_ptr(simp + HV_MESSAGE_SLOT_SIZE * k) = 0;
        else if (action == 1)
            slot[0] = 0;
        else if (action == 2)
            slot[below(s, 64)] = (u32)any64(s);   /* forged header or payload */
    }
    if (!gp && siefp >= lo && siefp < hi && action == 3)
        ((volatile u8 *)phys_ptr(siefp))[below(s, 4096)] = (u8)rnd(s);
    bool eom_gp = wrmsr_safe(HV_MSR_EOM, chance(s, 90) ? 0 : any64(s));
    if (trace)
        st_printf(NAME ": vcpu %u op %u: synic pages simp=0x%llx siefp=0x%llx action %u eom%s\n", vp, i, simp, siefp,
                  action, eom_gp ? " #GP" : "");
}

static void op(struct vpstate *s, u32 vp, u32 i)
{
    u32 r = below(s, 100);
    if (r < 30)
        op_msr(s, vp, i);
    else if (r < 65)
        op_hypercall(s, vp, i);
    else if (r < 82)
        op_connection(s, vp, i);
    else if (r < 87)
        op_testdev(s, vp, i);
    else
        op_synic_pages(s, vp, i);
    s->ops++;
}

/* ---- the end: quiet, then sane? ---- */

static void meet(u32 vp, u32 n)
{
    __atomic_add_fetch(&barrier_count, 1, __ATOMIC_SEQ_CST);
    u64 end = st_now() + 60 * SECOND;
    while (__atomic_load_n(&barrier_count, __ATOMIC_SEQ_CST) < n * ncpus) {
        if (st_now() > end)
            st_fail(vp, "barrier %u: the other vCPU did not arrive", n);
        st_idle();
    }
}

static u32 total_irqs(const struct vpstate *s)
{
    u32 n = 0;
    for (u32 v = 0; v < 256; v++)
        n += s->irqs[v];
    return n;
}

static void testdev(u32 ctl, u32 conn, u32 vp, u32 sint) { outl(TESTDEV, conn << 24 | ctl << 16 | vp << 8 | sint); }

static void expect_wrmsr(u32 vp, u32 msr, u64 v)
{
    u64 back;
    if (wrmsr_safe(msr, v))
        st_fail(vp, "wrmsr 0x%x = 0x%llx raised #GP after the campaign", msr, v);
    if (rdmsr_safe(msr, &back) || back != v)
        st_fail(vp, "msr 0x%x reads 0x%llx after writing 0x%llx", msr, back, v);
}

/* Waits for an interrupt at FINAL_VEC + sint; the failure says what the slot, the SINT and the
 * LAPIC hold (a message that arrived without its interrupt, a vector stuck in IRR or ISR). */
static void expect_irq(u32 vp, u32 sint, u32 before, const char *what)
{
    u32 vector = FINAL_VEC + sint;
    if (st_wait_count(&vps[vp].irqs[vector], before + 1, 2 * SECOND))
        return;
    u64 sintv = 0;
    rdmsr_safe(HV_MSR_SINT(sint), &sintv);
    u8 *slot = final_simp[vp] + sint * HV_MESSAGE_SLOT_SIZE;
    u32 irr = (lapic_read(LAPIC_IRR + (vector / 32) * 0x10) >> (vector % 32)) & 1;
    st_fail(vp, "%s: no interrupt on vector 0x%x within 2 s (slot %u type 0x%x flags 0x%x, SINT%u 0x%llx, irr=%u isr=%u)",
            what, vector, sint, *(volatile u32 *)slot, slot[HV_MSG_FLAGS], sint, sintv, irr, st_in_service(vector));
}

/* Waits until slot `sint` holds a message of `type` whose first payload quadwords are `q0`, `q1`
 * (with its interrupt) and returns the slot. A message the campaign left behind may still come
 * first (the router is asynchronous; a timer expiry may wait in the monitor's queue): it is freed
 * with an EOM, at most 16 times (the queue depth). */
static u8 *await_message(u32 vp, u32 sint, u32 type, u64 q0, u64 q1, u32 before, const char *what)
{
    volatile u32 *slot = (volatile u32 *)(final_simp[vp] + sint * HV_MESSAGE_SLOT_SIZE);
    for (u32 stale = 0;; stale++) {
        expect_irq(vp, sint, before, what);
        volatile u64 *payload = (volatile u64 *)((u8 *)slot + HV_MSG_PAYLOAD);
        if (*slot == type && payload[0] == q0 && payload[1] == q1)
            return (u8 *)slot;
        if (stale == 16)
            st_fail(vp, "%s: slot %u holds type 0x%x after 16 earlier messages", what, sint, *slot);
        before = vps[vp].irqs[FINAL_VEC + sint];
        *slot = HV_MESSAGE_TYPE_NONE;
        wrmsr(HV_MSR_EOM, 0);
    }
}

/* Reference time from the TSC page (TLFS "Reference TSC Page"), or ~0 while it is invalid. */
static u64 tsc_page_time(void)
{
    volatile u32 *seq = (volatile u32 *)final_tsc;
    for (u32 tries = 0; tries < 100; tries++) {
        u32 s0 = *seq;
        barrier();
        u64 scale = *(volatile u64 *)(final_tsc + 8);
        s64 offset = *(volatile s64 *)(final_tsc + 16);
        u64 tsc = rdtsc();
        barrier();
        if (s0 == 0 || s0 == 0xffffffffu)
            return ~0ull;
        if (*seq == s0)
            return (u64)(((unsigned __int128)tsc * scale) >> 64) + (u64)offset;
    }
    return ~0ull;
}

static void final_checks(u32 vp)
{
    struct vpstate *s = &vps[vp];
    u64 v;
    /* Known MSRs: the partition-wide ones (set by VP 0 before this), this VP's crash parameter. */
    if (rdmsr_safe(HV_MSR_GUEST_OS_ID, &v) || v != HV_LINUX_GUEST_OS_ID)
        st_fail(vp, "GUEST_OS_ID reads 0x%llx", v);
    if (rdmsr_safe(HV_MSR_HYPERCALL, &v) || v != ((u64)(uptr)final_hypercall | HV_HYPERCALL_ENABLE))
        st_fail(vp, "HYPERCALL reads 0x%llx", v);
    if (rdmsr_safe(HV_MSR_VP_INDEX, &v) || v != vp)
        st_fail(vp, "VP_INDEX reads 0x%llx", v);
    expect_wrmsr(vp, HV_MSR_CRASH_P0 + vp, 0x5eed000000000000ull | seed << 8 | vp);

    /* The reference counter moves, and a fresh TSC page agrees with it: page times read just
     * before and just after TIME_REF_COUNT bracket it. Within 100 us, not exactly: the monitor
     * derives TIME_REF_COUNT from the host TSC and a calibrated offset (TSCCalibration), which
     * is off by a few microseconds here (hvclock's exact bracket usually hides that behind the
     * exit's own cost). A vCPU preempted between the reads only widens the bracket. */
    u64 p0 = tsc_page_time(), t1 = st_now(), p1 = tsc_page_time();
    st_sleep_until(t1 + 2 * ST_MS);
    u64 m = st_now();
    if (m < t1 + 2 * ST_MS)
        st_fail(vp, "TIME_REF_COUNT does not move: %llu then %llu", t1, m);
    if (p0 == ~0ull || p1 == ~0ull || p1 < p0 || p0 > t1 + 1000 || t1 > p1 + 1000)
        st_fail(vp, "TSC page times %llu, %llu do not bracket TIME_REF_COUNT %llu", p0, p1, t1);

    /* A call through the fresh hypercall page. */
    if (final_hypercall[0] != 0xe6 || final_hypercall[1] != 0xe5 || final_hypercall[2] != 0xc3)
        st_fail(vp, "hypercall page starts %x %x %x", final_hypercall[0], final_hypercall[1], final_hypercall[2]);
    if ((v = HV_STATUS(hv_fast8(HVCALL_NOTIFY_LONG_SPIN_WAIT, 0))) != HV_STATUS_SUCCESS)
        st_fail(vp, "HvNotifyLongSpinWait through the page: status 0x%llx", v);

    /* Fresh SynIC pages, zeroed on enable; SINT2-5 unmasked at FINAL_VEC + x. */
    memset(final_simp[vp], 0xaa, 4096);
    memset(final_sief[vp], 0xaa, 4096);
    expect_wrmsr(vp, HV_MSR_SIMP, (u64)(uptr)final_simp[vp] | HV_SYNIC_PAGE_ENABLE);
    expect_wrmsr(vp, HV_MSR_SIEFP, (u64)(uptr)final_sief[vp] | HV_SYNIC_PAGE_ENABLE);
    expect_wrmsr(vp, HV_MSR_SCONTROL, HV_SCONTROL_ENABLE);
    for (u32 x = 2; x <= 5; x++)
        expect_wrmsr(vp, HV_MSR_SINT(x), FINAL_VEC + x);
    /* Messages the campaign left queued for this VP arrive now, one per slot and EOM: free the
     * slots and write EOM until an EOM brings nothing within 20 ms. */
    u64 end = st_now() + 5 * SECOND;
    for (bool busy = true; busy;) {
        for (u32 x = 0; x < 16; x++)
            *(volatile u32 *)(final_simp[vp] + x * HV_MESSAGE_SLOT_SIZE) = HV_MESSAGE_TYPE_NONE;
        wrmsr(HV_MSR_EOM, 0);
        st_sleep_until(st_now() + 20 * ST_MS);
        busy = false;
        for (u32 x = 0; x < 16; x++)
            busy |= *(volatile u32 *)(final_simp[vp] + x * HV_MESSAGE_SLOT_SIZE) != HV_MESSAGE_TYPE_NONE;
        if (busy && st_now() > end)
            st_fail(vp, "messages keep arriving 5 s after the campaign");
    }
    memset(final_sief[vp], 0, 4096);

    /* A new message connection to SINT2 and event connection to SINT3 (any of the campaign's
     * with these ids destroyed first), a SINT4 route. */
    u32 mc = FINAL_MSG_CONN(vp), ec = FINAL_EVT_CONN(vp);
    for (u32 c = 0; c < 2; c++) {
        testdev(CTL_MSG_DESTROY, c ? ec : mc, 0, 0);
        testdev(CTL_EVT_DESTROY, c ? ec : mc, 0, 0);
    }
    testdev(CTL_SINT_DESTROY, 0, vp, 4);
    testdev(CTL_MSG_CREATE, mc, vp, 2);
    testdev(CTL_EVT_CREATE, ec, vp, 3);
    testdev(CTL_SINT_CREATE, 0, vp, 4);

    struct hv_post_message_input *in = &final_input[vp];
    memset(in, 0, sizeof(*in));
    in->connection_id = mc;
    in->message_type = 0x4242;
    in->payload_size = 240;
    for (u32 k = 0; k < 30; k++)
        in->payload[k] = seed + k;
    u32 before = s->irqs[FINAL_VEC + 2];
    if ((v = HV_STATUS(hv_hypercall(HVCALL_POST_MESSAGE, (u64)(uptr)in, 0))) != HV_STATUS_SUCCESS)
        st_fail(vp, "HvPostMessage to a fresh connection: status 0x%llx", v);
    u8 *slot = await_message(vp, 2, 0x4242, in->payload[0], in->payload[1], before, "HvPostMessage to a fresh connection");
    if (slot[HV_MSG_PAYLOAD_SIZE] != 240 || memcmp(slot + HV_MSG_PAYLOAD, in->payload, 240) != 0)
        st_fail(vp, "HvPostMessage: slot 2 holds size %u or another payload", slot[HV_MSG_PAYLOAD_SIZE]);
    *(volatile u32 *)slot = HV_MESSAGE_TYPE_NONE;

    before = s->irqs[FINAL_VEC + 3];
    if ((v = HV_STATUS(hv_fast8(HVCALL_SIGNAL_EVENT, ec))) != HV_STATUS_SUCCESS)
        st_fail(vp, "HvSignalEvent to a fresh connection: status 0x%llx", v);
    expect_irq(vp, 3, before, "HvSignalEvent to a fresh connection");
    if (!((final_sief[vp][3 * 256 + ec / 8] >> (ec % 8)) & 1))
        st_fail(vp, "HvSignalEvent: flag %u of SINT3 not set", ec);

    before = s->irqs[FINAL_VEC + 4];
    testdev(CTL_SINT_SET, 0, vp, 4);
    expect_irq(vp, 4, before, "test-device SINT4 assertion");

    /* A message-mode timer on SINT5. */
    before = s->irqs[FINAL_VEC + 5];
    u64 deadline = st_now() + ST_MS;
    expect_wrmsr(vp, HV_MSR_STIMER_COUNT(0), deadline);
    wrmsr(HV_MSR_STIMER_CONFIG(0), HV_STIMER_ENABLE | HV_STIMER_SINT(5));
    slot = await_message(vp, 5, HV_MESSAGE_TYPE_TIMER_EXPIRED, 0 /* timer 0 */, deadline /* expiration */, before, "STIMER0 message on SINT5");
    *(volatile u32 *)slot = HV_MESSAGE_TYPE_NONE;

    testdev(CTL_MSG_DESTROY, mc, vp, 2);
    testdev(CTL_EVT_DESTROY, ec, vp, 3);
    testdev(CTL_SINT_DESTROY, 0, vp, 4);
}

static void suite(void)
{
    u32 vp = st_register_vp(MAX_CPUS);
    struct vpstate *s = &vps[vp];
    if (!st_watchdog_start())
        st_printf(NAME ": vcpu %u: LAPIC timer does not tick; waiting by spinning\n", vp);
    s->rng = splitmix(seed ^ splitmix(vp + 1));
    if (s->rng == 0)
        s->rng = 1;
    /* mp_start_aps installed the LAPIC's spurious gate (no EOI) at 0xff; random vectors reach
     * it, so it becomes a counting gate like the others (an EOI with nothing in service is a
     * no-op). */
    if (vp == 0)
        idt_set_gate(0xff, hostile_gate_ff);
    meet(vp, 1);

    u64 t0 = st_now();
    __asm__ volatile("sti" ::: "memory");
    for (u32 i = 0; i < ops_per_vp; i++)
        op(s, vp, i);
    cli();
    u64 elapsed = st_now() - t0;

    /* Quiet this VP: timers off, SINTs masked (wrmsr_safe: the SynIC may be off). */
    for (u32 t = 0; t < 4; t++)
        wrmsr_safe(HV_MSR_STIMER_CONFIG(t), 0);
    for (u32 x = 0; x < 16; x++)
        wrmsr_safe(HV_MSR_SINT(x), HV_SINT_RESET);
    meet(vp, 2);
    /* The router takes posted messages from the VPs' rings asynchronously; a test-device write
     * returns only once it has been applied, and the router drains the VP rings before the
     * test-device ring, so this (ignored) write returns after every message the campaign posted
     * has been routed (delivered or queued), and the drain below sees all of them. */
    testdev(0, 0, 0, 0);
    if (vp == 0) {
        /* The partition-wide pages, fresh. */
        expect_wrmsr(vp, HV_MSR_GUEST_OS_ID, HV_LINUX_GUEST_OS_ID);
        expect_wrmsr(vp, HV_MSR_HYPERCALL, (u64)(uptr)final_hypercall | HV_HYPERCALL_ENABLE);
        hv_hypercall_pg = final_hypercall;
        expect_wrmsr(vp, HV_MSR_REFERENCE_TSC, (u64)(uptr)final_tsc | HV_REFERENCE_TSC_ENABLE);
    }
    meet(vp, 3);
    final_checks(vp);
    u64 us = elapsed / 10;
    st_printf(NAME ": vcpu %u: ops=%u us=%llu ops/s=%llu msr=%u/%u gp=%u hypercalls=%u ud=%u ok=%u testdev=%u "
                   "excluded=%u repairs=%u irqs=%u\n",
              vp, s->ops, us, us ? (u64)s->ops * 1000000ull / us : 0, s->msr_reads, s->msr_writes, s->msr_gp,
              s->hypercalls, s->ud, s->success, s->testdev, s->excluded, s->repairs, total_irqs(s));
    meet(vp, 4);
    st_watchdog_stop();
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
    const char *cmdline = boot_cmdline();
    if (!cmdline_get_u64(cmdline, "seed", &seed))
        guest_fail(NAME, "no seed=N on the command line");
    cmdline_get_u64(cmdline, "ops", &ops_per_vp);
    trace = cmdline_is(cmdline, "trace", "1");
    ram_top = bi->memory_size;
    phys_bits = cpu_phys_addr_bits();
    if (ram_top > 0xc0000000ull)
        guest_fail(NAME, "at most 3 GiB of RAM (the outside-RAM addresses assume it)");
    printf(NAME ": seed=%llu ops=%llu vcpus=%u\n", seed, ops_per_vp, ncpus);
    if (!(hv_enable_hypercall_page(arena[0]) & HV_HYPERCALL_ENABLE))
        guest_fail(NAME, "hypercall page not enabled");
    for (u32 v = 0x20; v < 0xff; v++)
        st_install_gate(v);
    for (u32 v = 0; v < 16; v++)
        idt_set_gate(0x10 + v, hostile_low_gates[v]);
    st_run_everywhere(bi, suite);
    printf(NAME ": ok\n");
    guest_exit_success();
}
