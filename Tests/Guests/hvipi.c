/* hvipi: synthetic cluster IPIs. The APs count arrivals of vector 0x40 (and EOI the xAPIC) while
 * sitting in `sti; hlt`; the BSP sends HvSendSyntheticClusterIpi (slow, input page
 * {vector, VTL 0, processor mask}) to the odd VP indexes, HvSendSyntheticClusterIpiEx with a
 * sparse HV_VP_SET (bank 0) to VP 2 (VP 1 with two vCPUs), and the fast form (RDX = vector,
 * R8 = mask, as Linux does) to the highest VP, checking after each that exactly the targets'
 * counters moved. Then it wakes the APs with one more IPI so they halt with IF=0, and checks
 * that no vector 0x40 is pending on itself (it was never a target). Needs 2+ vCPUs. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "bootinfo.h"
#include "mp.h"

#define NAME "hvipi"
#define VECTOR 0x40

static u8 hypercall_page[4096] __attribute__((aligned(4096)));
static u8 input_page[4096] __attribute__((aligned(4096)));

static volatile u32 count_by_lapic[256];
static volatile u32 vp_of_slot[MP_MAX_CPUS], lapic_of_slot[MP_MAX_CPUS];
static volatile u32 ready, parked, done;
static u32 lapic_of_vp[MP_MAX_CPUS];
static u32 expected[MP_MAX_CPUS];
static u32 n;

void hvipi_entry(void);
void hvipi_irq(void);
void hvipi_irq(void)
{
    __atomic_add_fetch(&count_by_lapic[lapic_id() & 0xff], 1, __ATOMIC_SEQ_CST);
    mmio_write32(LAPIC_BASE + LAPIC_EOI, 0);
}

static void ap_entry(u32 slot)
{
    vp_of_slot[slot] = (u32)rdmsr(HV_MSR_VP_INDEX);
    lapic_of_slot[slot] = lapic_id();
    __atomic_add_fetch(&ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&done, __ATOMIC_SEQ_CST))
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    __atomic_add_fetch(&parked, 1, __ATOMIC_SEQ_CST);
}

static u32 count_of_vp(u32 vp) { return count_by_lapic[lapic_of_vp[vp]]; }

static void print_mask(u64 mask)
{
    bool first = true;
    for (u32 vp = 0; vp < 64; vp++)
        if (mask & (1ull << vp)) {
            printf(first ? "%u" : ",%u", vp);
            first = false;
        }
}

enum kind { SLOW, FAST, EX };

/* Sends vector 0x40 to the VPs in mask, waits for them, then checks every AP's counter. */
static void stage(const char *what, enum kind k, u64 mask)
{
    volatile u64 *in = (volatile u64 *)input_page;
    u64 gpa = (u64)(uptr)input_page, r;
    if (k == SLOW) {
        in[0] = VECTOR;   /* vector; target VTL 0; padding */
        in[1] = mask;
        r = hv_hypercall(HVCALL_SEND_IPI, gpa, 0);
    } else if (k == FAST) {
        r = hv_fast16(HVCALL_SEND_IPI, VECTOR, mask);
    } else {
        in[0] = VECTOR;
        in[1] = 0;        /* HV_VP_SET format: sparse 4K banks */
        in[2] = 1;        /* valid banks: bank 0 (VPs 0-63) */
        in[3] = mask;     /* bank 0 */
        r = hv_hypercall(HVCALL_SEND_IPI_EX | HV_CONTROL_VARHEAD(1), gpa, 0);
    }
    printf("hvipi: %s to vps ", what);
    print_mask(mask);
    printf(" status=0x%x\n", HV_STATUS(r));
    if (HV_STATUS(r) != HV_STATUS_SUCCESS)
        guest_fail(NAME, "%s: status 0x%x (result 0x%llx)", what, HV_STATUS(r), r);
    for (u32 vp = 1; vp < n; vp++)
        if (mask & (1ull << vp))
            expected[vp]++;

    u64 start = rdtsc(), limit = 2000 * mp_tsc_khz();
    for (;;) {
        bool all = true;
        for (u32 vp = 1; vp < n; vp++)
            if (count_of_vp(vp) < expected[vp])
                all = false;
        if (all || rdtsc() - start >= limit)
            break;
        cpu_relax();
    }
    mp_delay_us(20000);   /* time for a stray extra delivery to show */
    for (u32 vp = 1; vp < n; vp++) {
        u32 c = count_of_vp(vp);
        if (c != expected[vp])
            guest_fail(NAME, "%s: vcpu %u got %u interrupts, expected %u", what, vp, c, expected[vp]);
    }
}

void guest_main(const struct boot_info *bi)
{
    puts("hvipi: start");
    n = bi->cpu_count;
    if (n < 2 || n > MP_MAX_CPUS)
        guest_fail(NAME, "needs 2..%u vCPUs, has %u", MP_MAX_CPUS, n);
    struct hv_info hv;
    hv_require(NAME, &hv);
    if (!(hv.hints_eax & HV_HINT_CLUSTER_IPI))
        guest_fail(NAME, "0x40000004.EAX bit 10 (SyntheticClusterIpi) clear");
    u64 hc = hv_enable_hypercall_page(hypercall_page);
    if (!(hc & HV_HYPERCALL_ENABLE))
        guest_fail(NAME, "hypercall page not enabled (HYPERCALL=0x%llx)", hc);

    idt_set_gate(VECTOR, hvipi_entry);
    u32 started = mp_start_aps(bi, ap_entry);
    u64 start = rdtsc(), limit = 3000 * mp_tsc_khz();
    while (__atomic_load_n(&ready, __ATOMIC_SEQ_CST) < started && rdtsc() - start < limit)
        cpu_relax();
    if (started != n - 1 || ready != n - 1)
        guest_fail(NAME, "only %u of %u APs started", ready, n - 1);

    /* VP index -> LAPIC ID */
    u32 bsp_vp = (u32)rdmsr(HV_MSR_VP_INDEX);
    if (bsp_vp != 0)
        guest_fail(NAME, "the BSP's VP index is %u", bsp_vp);
    bool seen[MP_MAX_CPUS] = { true };
    lapic_of_vp[0] = lapic_id();
    for (u32 s = 0; s < n - 1; s++) {
        u32 vp = vp_of_slot[s];
        if (vp >= n || seen[vp])
            guest_fail(NAME, "AP in slot %u has VP index %u (duplicate or not below %u)", s, vp, n);
        seen[vp] = true;
        lapic_of_vp[vp] = lapic_of_slot[s];
    }

    u64 odd = 0;
    for (u32 vp = 1; vp < n; vp += 2)
        odd |= 1ull << vp;
    stage("send synthetic cluster ipi", SLOW, odd);
    if (hv.hints_eax & HV_HINT_EX_PROCESSOR_MASKS)
        stage("send synthetic cluster ipi ex", EX, 1ull << (n >= 3 ? 2 : 1));
    else
        puts("hvipi: ex form not advertised (0x40000004.EAX bit 11 clear), skipped");
    stage("send synthetic cluster ipi (fast)", FAST, 1ull << (n - 1));

    for (u32 vp = 1; vp < n; vp++)
        printf("hvipi: vcpu %u got %u\n", vp, count_of_vp(vp));

    /* Let the APs go: they halt with interrupts off. */
    __atomic_store_n(&done, 1, __ATOMIC_SEQ_CST);
    u64 all = ((n >= 64 ? 0 : (1ull << n)) - 1) & ~1ull;
    volatile u64 *in = (volatile u64 *)input_page;
    in[0] = VECTOR;
    in[1] = all;
    u64 r = hv_hypercall(HVCALL_SEND_IPI, (u64)(uptr)input_page, 0);
    if (HV_STATUS(r) != HV_STATUS_SUCCESS)
        guest_fail(NAME, "final wake-up IPI: status 0x%x", HV_STATUS(r));
    start = rdtsc();
    while (__atomic_load_n(&parked, __ATOMIC_SEQ_CST) < n - 1 && rdtsc() - start < limit)
        cpu_relax();
    if (parked != n - 1)
        guest_fail(NAME, "only %u of %u APs halted after the last IPI", parked, n - 1);

    u32 irr = lapic_read(LAPIC_IRR + 0x10 * (VECTOR / 32));
    if (irr & (1u << (VECTOR % 32)))
        guest_fail(NAME, "vector 0x%x is pending on the BSP, which no IPI targeted", VECTOR);
    puts("hvipi: ok");
}
