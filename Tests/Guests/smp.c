/* smp: the BSP starts every AP with INIT, SIPI, SIPI through the xAPIC; each AP comes
 * up through a real-mode trampoline at 0x8000 into long mode, records its LAPIC and
 * CPUID APIC IDs and checks in; the BSP checks that every APIC ID 0..n-1 arrived once. */
#include "rt.h"
#include "x86.h"
#include "bootinfo.h"

#define LAPIC_BASE 0xfee00000ull
#define LAPIC_ID 0x020
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_DELIVERY_PENDING (1u << 12)
#define ICR_INIT 0x00004500u              /* INIT, level assert */
#define ICR_STARTUP 0x00004600u           /* start-up, vector in bits 7:0 */

#define TRAMPOLINE 0x8000u
#define SIPI_VECTOR (TRAMPOLINE >> 12)
#define MAX_CPUS 64
#define AP_STACK_SIZE 4096                /* AP_STACK_SHIFT in smp_asm.S */

struct cpu_record {
    u32 lapic_id;
    u32 cpuid_id;
};

/* Shared with smp_asm.S */
u32 ap_cr3;
volatile u32 ap_next_slot;
const u32 ap_max_slots = MAX_CPUS - 1;
u8 ap_stacks[(MAX_CPUS - 1) * AP_STACK_SIZE] __attribute__((aligned(16)));
extern char ap_tramp_start[], ap_tramp_end[], ap_tramp_gdtr[];
void ap_main(u32 slot);

/* Index 0 is the BSP, 1 + slot the APs in arrival order. */
static volatile struct cpu_record records[MAX_CPUS];
static volatile u32 checked_in;            /* APs that have stored their record */

static u32 lapic_read(u32 reg) { return mmio_read32(LAPIC_BASE + reg); }
static void lapic_write(u32 reg, u32 v) { mmio_write32(LAPIC_BASE + reg, v); }

static u32 cpuid_apic_id(void)
{
    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    return b >> 24;
}

void ap_main(u32 slot)
{
    u32 lapic = lapic_read(LAPIC_ID) >> 24;
    u32 cid = cpuid_apic_id();
    records[1 + slot].lapic_id = lapic;
    records[1 + slot].cpuid_id = cid;
    __asm__ volatile("lock incl %0" : "+m"(checked_in) : : "memory");
    /* back in smp_asm.S: cli; hlt forever */
}

/* ---- time: rdtsc, with the TSC rate from CPUID when known ---- */

static u64 tsc_khz;

static void tsc_init(void)
{
    u32 a, b, c, d;
    cpuid(0x40000000, 0, &a, &b, &c, &d);
    if (a >= 0x40000010) {
        cpuid(0x40000010, 0, &a, &b, &c, &d);
        if (a) {
            tsc_khz = a;
            return;
        }
    }
    cpuid(0, 0, &a, &b, &c, &d);
    u32 max = a;
    if (max >= 0x15) {
        cpuid(0x15, 0, &a, &b, &c, &d);
        if (a && b && c) {
            tsc_khz = (u64)c * b / a / 1000;
            return;
        }
    }
    if (max >= 0x16) {
        cpuid(0x16, 0, &a, &b, &c, &d);
        if (a & 0xffff) {
            tsc_khz = (u64)(a & 0xffff) * 1000;
            return;
        }
    }
    tsc_khz = 3000000;   /* unknown: assume 3 GHz (a slower TSC only waits longer) */
}

static void delay_us(u64 us)
{
    u64 end = rdtsc() + us * tsc_khz / 1000;
    for (u64 i = 0; rdtsc() < end && i < us * 1000; i++)   /* bounded should the TSC stall */
        cpu_relax();
}

static bool icr_wait_idle(void)
{
    for (int i = 0; i < 100000; i++)
        if (!(lapic_read(LAPIC_ICR_LO) & ICR_DELIVERY_PENDING))
            return true;
    return false;
}

static void send_ipi(u32 apic_id, u32 icr)
{
    lapic_write(LAPIC_ICR_HI, apic_id << 24);
    lapic_write(LAPIC_ICR_LO, icr);
    if (!icr_wait_idle())
        guest_fail("smp", "ICR delivery status stuck for apic %u (icr 0x%x)", apic_id, icr);
}

void guest_main(const struct boot_info *bi)
{
    u32 n = bi->cpu_count;
    puts("smp: start");
    if (n == 0 || n > MAX_CPUS)
        guest_fail("smp", "cpu count %u not in 1..%u", n, MAX_CPUS);
    if (bi->pml4 >> 32)
        guest_fail("smp", "page tables above 4 GiB (0x%llx)", bi->pml4);

    u32 bsp_lapic = lapic_read(LAPIC_ID) >> 24;
    records[0].lapic_id = bsp_lapic;
    records[0].cpuid_id = cpuid_apic_id();

    if (n > 1) {
        tsc_init();
        /* Trampoline at 0x8000 with the boot GDT; long-mode CR3 from boot info. */
        usize len = (usize)(ap_tramp_end - ap_tramp_start);
        u8 *tramp = phys_ptr(TRAMPOLINE);
        memcpy(tramp, ap_tramp_start, len);
        u8 *gdtr = tramp + (ap_tramp_gdtr - ap_tramp_start);
        u16 limit = (u16)bi->gdt_limit;
        u32 base = (u32)bi->gdt;
        memcpy(gdtr, &limit, 2);
        memcpy(gdtr + 2, &base, 4);
        ap_cr3 = (u32)bi->pml4;
        barrier();

        lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x100 | 0xff);   /* software enable */
        /* APIC IDs 0..n-1 are expected; start all but our own. */
        for (u32 id = 0; id < n; id++)
            if (id != bsp_lapic)
                send_ipi(id, ICR_INIT);
        delay_us(10000);
        for (int round = 0; round < 2; round++) {
            for (u32 id = 0; id < n; id++)
                if (id != bsp_lapic)
                    send_ipi(id, ICR_STARTUP | SIPI_VECTOR);
            delay_us(200);
        }

        /* Wait up to ~3 s of TSC time (and a bounded number of polls); after each full
         * second without everyone, report progress once. */
        u64 start = rdtsc();
        u64 second = 1000 * tsc_khz;
        u64 next_report = second;
        for (u64 polls = 0; checked_in < n - 1 && polls < 500000000; polls++) {
            cpu_relax();
            if ((polls & 0xffff) == 0) {
                u64 elapsed = rdtsc() - start;
                if (elapsed >= next_report) {
                    printf("smp: waiting, %u/%u APs so far\n", checked_in, n - 1);
                    next_report += second;
                }
                if (elapsed >= 3 * second)
                    break;
            }
        }
    }

    u32 k = 1 + checked_in;
    barrier();
    /* Sort by LAPIC ID (insertion sort; n is small). */
    struct cpu_record sorted[MAX_CPUS];
    for (u32 i = 0; i < k; i++) {
        struct cpu_record r = { records[i].lapic_id, records[i].cpuid_id };
        u32 j = i;
        while (j > 0 && sorted[j - 1].lapic_id > r.lapic_id) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = r;
    }
    for (u32 i = 0; i < k; i++)
        printf("cpu apic=%u cpuid_apic=%u\n", sorted[i].lapic_id, sorted[i].cpuid_id);
    printf("smp: %u/%u vCPUs checked in\n", k, n);

    if (k != n)
        guest_fail("smp", "only %u of %u vCPUs checked in", k, n);
    for (u32 i = 0; i < k; i++) {
        if (sorted[i].lapic_id != i)
            guest_fail("smp", "APIC IDs are not 0..%u exactly once (position %u has %u)", n - 1, i,
                       sorted[i].lapic_id);
        if (sorted[i].cpuid_id != sorted[i].lapic_id)
            guest_fail("smp", "apic %u: CPUID says %u", sorted[i].lapic_id, sorted[i].cpuid_id);
    }
    puts("smp: ok");
}
