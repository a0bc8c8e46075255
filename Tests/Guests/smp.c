/* smp: the BSP starts every AP with INIT, SIPI, SIPI through the xAPIC (mp.c: a real-mode
 * trampoline at 0x8000 into long mode); each AP records its LAPIC and CPUID APIC IDs and checks
 * in; the BSP checks that every APIC ID 0..n-1 arrived once. */
#include "rt.h"
#include "x86.h"
#include "bootinfo.h"
#include "mp.h"

#define MAX_CPUS MP_MAX_CPUS

struct cpu_record {
    u32 lapic_id;
    u32 cpuid_id;
};

/* Index 0 is the BSP, 1 + slot the APs in arrival order. */
static volatile struct cpu_record records[MAX_CPUS];
static volatile u32 checked_in;            /* APs that have stored their record */

static u32 cpuid_apic_id(void)
{
    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    return b >> 24;
}

static void ap_entry(u32 slot)
{
    records[1 + slot].lapic_id = lapic_id();
    records[1 + slot].cpuid_id = cpuid_apic_id();
    __asm__ volatile("lock incl %0" : "+m"(checked_in) : : "memory");
    /* back in mp.c: cli; hlt forever */
}

void guest_main(const struct boot_info *bi)
{
    u32 n = bi->cpu_count;
    puts("smp: start");
    if (n == 0 || n > MAX_CPUS)
        guest_fail("smp", "cpu count %u not in 1..%u", n, MAX_CPUS);
    if (bi->pml4 >> 32)
        guest_fail("smp", "page tables above 4 GiB (0x%llx)", bi->pml4);

    u32 bsp_lapic = lapic_id();
    records[0].lapic_id = bsp_lapic;
    records[0].cpuid_id = cpuid_apic_id();

    if (n > 1) {
        mp_start_aps(bi, ap_entry);
        /* Every AP has entered ap_entry; wait (bounded) until each has also stored its record. */
        for (u64 polls = 0; checked_in < n - 1 && polls < 10000000; polls++)
            cpu_relax();
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
