/* hvclock: the partition reference time on every vCPU. The BSP checks that TIME_REF_COUNT starts
 * near 0, enables the reference TSC page and starts the APs; then every vCPU takes samples of
 * page time t1, TIME_REF_COUNT m, page time t2 and checks t1 <= m <= t2, that neither clock goes
 * backwards on that vCPU, and that neither is behind what another vCPU already saw (the
 * reference time is partition-wide and monotonic; TLFS "Partition Reference Time"). The BSP
 * prints the results, ordered by VP index. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "mp.h"

#define NAME "hvclock"
#define SAMPLES 200
#define BOOT_LIMIT 100000000ull   /* 10 s in 100 ns units */

static volatile u8 tsc_page[4096] __attribute__((aligned(4096)));

struct clock_record {
    u32 vp, lapic, samples;
    u32 done;
    const char *fail;
    u64 a, b, c;                  /* values for the failure message */
    u64 first_m, last_m, max_window;
};
/* 0: the BSP; 1 + slot: the APs */
static volatile struct clock_record recs[MP_MAX_CPUS];
static volatile u32 done_count;
static volatile u64 seen_ref;     /* largest TIME_REF_COUNT any vCPU has read */
static volatile u64 seen_page;    /* largest page time any vCPU has computed */

static u64 mulhi64(u64 a, u64 b)
{
    u64 lo, hi;
    __asm__("mulq %3" : "=a"(lo), "=d"(hi) : "a"(a), "rm"(b) : "cc");
    (void)lo;
    return hi;
}

static void atomic_max(volatile u64 *p, u64 v)
{
    u64 cur = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
}

/* Page time (TLFS reader): 0 on success, else why not. */
static const char *page_time(u64 *t, u64 *bad)
{
    for (u32 tries = 0; tries < 1000; tries++) {
        u32 seq = *(volatile u32 *)&tsc_page[0];
        if (seq == 0 || seq == 0xffffffffu) {
            *bad = seq;
            return "TSC page sequence is invalid";
        }
        barrier();
        u64 tsc;
        u32 fault = rdtsc_safe(&tsc);
        if (fault) {
            *bad = fault - 1;
            return "rdtsc raised an exception (vector in the value)";
        }
        u64 scale = *(volatile u64 *)&tsc_page[8];
        u64 offset = *(volatile u64 *)&tsc_page[16];
        barrier();
        if (*(volatile u32 *)&tsc_page[0] == seq) {
            *t = mulhi64(tsc, scale) + offset;
            return NULL;
        }
    }
    *bad = 1000;
    return "TSC page sequence kept changing";
}

static void fail(volatile struct clock_record *r, const char *why, u64 a, u64 b, u64 c)
{
    r->fail = why;
    r->a = a;
    r->b = b;
    r->c = c;
}

static void sample(volatile struct clock_record *r)
{
    r->vp = (u32)rdmsr(HV_MSR_VP_INDEX);
    r->lapic = lapic_id();
    u64 prev_t2 = 0, prev_m = 0, bad = 0;
    for (u32 i = 0; i < SAMPLES; i++) {
        u64 t1, t2, m;
        u64 g_page = __atomic_load_n(&seen_page, __ATOMIC_SEQ_CST);
        const char *why = page_time(&t1, &bad);
        if (why) {
            fail(r, why, bad, 0, 0);
            return;
        }
        u64 g_ref = __atomic_load_n(&seen_ref, __ATOMIC_SEQ_CST);
        m = rdmsr(HV_MSR_TIME_REF_COUNT);
        why = page_time(&t2, &bad);
        if (why) {
            fail(r, why, bad, 0, 0);
            return;
        }
        if (i == 0)
            r->first_m = m;
        r->last_m = m;
        if (t2 - t1 > r->max_window)
            r->max_window = t2 - t1;
        r->samples = i + 1;
        if (!(t1 <= m && m <= t2)) {
            fail(r, "t1 <= TIME_REF_COUNT <= t2 does not hold: t1, m, t2", t1, m, t2);
            return;
        }
        if (t1 < prev_t2) {
            fail(r, "page time went backwards: previous t2, t1", prev_t2, t1, 0);
            return;
        }
        if (m < prev_m) {
            fail(r, "TIME_REF_COUNT went backwards: previous, now", prev_m, m, 0);
            return;
        }
        if (t1 < g_page) {
            fail(r, "page time behind what another vCPU saw before: seen, t1", g_page, t1, 0);
            return;
        }
        if (m < g_ref) {
            fail(r, "TIME_REF_COUNT behind what another vCPU read before: seen, m", g_ref, m, 0);
            return;
        }
        atomic_max(&seen_ref, m);
        atomic_max(&seen_page, t2);
        prev_t2 = t2;
        prev_m = m;
    }
}

static void ap_entry(u32 slot)
{
    volatile struct clock_record *r = &recs[1 + slot];
    sample(r);
    __atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&done_count, 1, __ATOMIC_SEQ_CST);
}

/* floor(2^64 * 10^7 / hz), for hz > 10^7 */
static u64 scale_for(u64 hz)
{
    u64 q = 0, r = 10000000;
    for (int i = 0; i < 64; i++) {
        r <<= 1;
        q <<= 1;
        if (r >= hz) {
            r -= hz;
            q |= 1;
        }
    }
    return q;
}

void guest_main(const struct boot_info *bi)
{
    puts("hvclock: start");
    struct hv_info hv;
    hv_require(NAME, &hv);
    if (!(hv.priv_eax & HV_PRIV_TIME_REF_COUNT) || !(hv.priv_eax & HV_PRIV_REFERENCE_TSC))
        guest_fail(NAME, "time enlightenment not advertised (0x40000003.EAX=0x%x, needs bits 1 and 9)", hv.priv_eax);

    u64 boot_ref = rdmsr(HV_MSR_TIME_REF_COUNT);
    printf("time ref count at boot=%llu\n", boot_ref);
    if (boot_ref >= BOOT_LIMIT)
        guest_fail(NAME, "TIME_REF_COUNT is %llu at boot (>= 10 s): the partition clock must start at 0", boot_ref);

    u64 tsc;
    u32 fault = rdtsc_safe(&tsc);
    if (fault)
        guest_fail(NAME, "rdtsc raised exception %u: the TSC page cannot be used", fault - 1);

    u64 gpa = (u64)(uptr)tsc_page;
    wrmsr(HV_MSR_REFERENCE_TSC, gpa | HV_REFERENCE_TSC_ENABLE);
    u32 seq = *(volatile u32 *)&tsc_page[0];
    u64 scale = *(volatile u64 *)&tsc_page[8];
    u64 offset = *(volatile u64 *)&tsc_page[16];
    printf("tsc page: sequence=%u scale=0x%llx offset=0x%llx\n", seq, scale, offset);
    if (seq == 0 || seq == 0xffffffffu)
        guest_fail(NAME, "TSC page sequence %u is invalid", seq);
    if (scale == 0)
        guest_fail(NAME, "TSC page scale is 0");
    if (hv.priv_eax & HV_PRIV_FREQUENCY) {
        u64 hz = rdmsr(HV_MSR_TSC_FREQUENCY);
        if (hz > 10000000) {
            u64 want = scale_for(hz);
            u64 diff = want > scale ? want - scale : scale - want;
            printf("tsc frequency=%llu expected scale=0x%llx\n", hz, want);
            if (diff > (want >> 10))
                guest_fail(NAME, "TSC page scale 0x%llx does not match TSC_FREQUENCY %llu Hz (0x%llx)", scale,
                           hz, want);
        }
    }

    u32 n = bi->cpu_count;
    u32 started = mp_start_aps(bi, ap_entry);
    if (started != n - 1)
        guest_fail(NAME, "only %u of %u APs started", started, n - 1);
    sample(&recs[0]);
    recs[0].done = 1;

    u64 start = rdtsc(), limit = 20000 * mp_tsc_khz();
    while (__atomic_load_n(&done_count, __ATOMIC_SEQ_CST) < n - 1 && rdtsc() - start < limit)
        cpu_relax();

    u32 failed = 0;
    bool seen[MP_MAX_CPUS] = { false };
    for (u32 vp = 0; vp < MP_MAX_CPUS; vp++) {
        for (u32 i = 0; i < n; i++) {
            volatile struct clock_record *r = &recs[i];
            if (!r->done) {
                if (vp == 0) {
                    printf("hvclock: vcpu slot %u FAIL did not finish (%u samples)\n", i, r->samples);
                    failed++;
                }
                continue;
            }
            if (r->vp != vp)
                continue;
            if (seen[vp]) {
                printf("hvclock: vcpu %u FAIL VP index used twice\n", vp);
                failed++;
            }
            seen[vp] = true;
            printf("vcpu %u: apic=%u first ref=%llu last ref=%llu max t2-t1=%llu\n", vp, r->lapic, r->first_m,
                   r->last_m, r->max_window);
            if (r->fail) {
                printf("hvclock: vcpu %u FAIL %s: 0x%llx 0x%llx 0x%llx (after %u samples)\n", vp, r->fail, r->a,
                       r->b, r->c, r->samples);
                failed++;
            } else {
                printf("hvclock: vcpu %u ok samples=%u\n", vp, r->samples);
            }
        }
    }
    for (u32 i = 0; i < n; i++)
        if (recs[i].done && recs[i].vp >= MP_MAX_CPUS) {
            printf("hvclock: vcpu slot %u FAIL VP index %u out of range\n", i, recs[i].vp);
            failed++;
        }
    if (failed)
        guest_fail(NAME, "%u vCPU(s) failed", failed);
    puts("hvclock: ok");
}
