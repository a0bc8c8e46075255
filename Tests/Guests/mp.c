/* See mp.h. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "mp.h"

#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_DELIVERY_PENDING (1u << 12)
#define ICR_INIT 0x00004500u
#define ICR_STARTUP 0x00004600u
#define TRAMPOLINE 0x8000u
#define SIPI_VECTOR (TRAMPOLINE >> 12)
#define MP_AP_STACK_SIZE 16384            /* MP_AP_STACK_SHIFT in mp_asm.S */

/* Shared with mp_asm.S */
u32 mp_ap_cr3;
volatile u32 mp_next_slot;
const u32 mp_max_slots = MP_MAX_CPUS - 1;
u8 mp_ap_stacks[(MP_MAX_CPUS - 1) * MP_AP_STACK_SIZE] __attribute__((aligned(16)));
extern char mp_tramp_start[], mp_tramp_end[], mp_tramp_gdtr[];
void mp_ap_main(u32 slot);
void mp_spurious_entry(void);

static void (*volatile ap_entry)(u32 slot);
static volatile u32 entered;

u32 lapic_read(u32 reg) { return mmio_read32(LAPIC_BASE + reg); }
void lapic_write(u32 reg, u32 v) { mmio_write32(LAPIC_BASE + reg, v); }
u32 lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

void lapic_enable(void)
{
    lapic_write(LAPIC_SVR, (lapic_read(LAPIC_SVR) & ~0xffu) | 0x100 | 0xff);
}

void mp_ap_main(u32 slot)
{
    idt_load();
    lapic_enable();
    __asm__ volatile("lock incl %0" : "+m"(entered) : : "memory");
    ap_entry(slot);
    /* back in mp_asm.S: cli; hlt forever */
}

static u64 tsc_khz;

u64 mp_tsc_khz(void)
{
    if (tsc_khz)
        return tsc_khz;
    u32 a, b, c, d;
    cpuid(0x40000000, 0, &a, &b, &c, &d);
    if (a >= 0x40000010 && !hv_vendor_is_microsoft()) {
        cpuid(0x40000010, 0, &a, &b, &c, &d);
        if (a)
            return tsc_khz = a;
    }
    struct hv_info hv;
    if (hv_query(&hv) && (hv.priv_eax & HV_PRIV_FREQUENCY)) {
        u64 hz;
        if (!rdmsr_safe(HV_MSR_TSC_FREQUENCY, &hz) && hz >= 1000000)
            return tsc_khz = hz / 1000;
    }
    cpuid(0, 0, &a, &b, &c, &d);
    u32 max = a;
    if (max >= 0x15) {
        cpuid(0x15, 0, &a, &b, &c, &d);
        if (a && b && c)
            return tsc_khz = (u64)c * b / a / 1000;
    }
    if (max >= 0x16) {
        cpuid(0x16, 0, &a, &b, &c, &d);
        if (a & 0xffff)
            return tsc_khz = (u64)(a & 0xffff) * 1000;
    }
    return tsc_khz = 3000000;   /* unknown: assume 3 GHz (a slower TSC only waits longer) */
}

void mp_delay_us(u64 us)
{
    u64 khz = mp_tsc_khz();
    u64 end = rdtsc() + us * khz / 1000;
    for (u64 i = 0; rdtsc() < end && i < us * 1000; i++)   /* bounded should the TSC stall */
        cpu_relax();
}

static void send_ipi(u32 apic_id, u32 icr)
{
    lapic_write(LAPIC_ICR_HI, apic_id << 24);
    lapic_write(LAPIC_ICR_LO, icr);
    for (int i = 0; i < 100000; i++)
        if (!(lapic_read(LAPIC_ICR_LO) & ICR_DELIVERY_PENDING))
            return;
    printf("mp: ICR delivery status stuck for apic %u (icr 0x%x)\n", apic_id, icr);
    guest_exit(1);
}

u32 mp_start_aps(const struct boot_info *bi, void (*entry)(u32 slot))
{
    u32 n = bi->cpu_count;
    idt_set_gate(0xff, mp_spurious_entry);
    lapic_enable();
    if (n <= 1)
        return 0;
    if (n > MP_MAX_CPUS || (bi->pml4 >> 32)) {
        printf("mp: cannot start %u vCPUs (at most %u, page tables below 4 GiB)\n", n, MP_MAX_CPUS);
        guest_exit(1);
    }
    ap_entry = entry;
    usize len = (usize)(mp_tramp_end - mp_tramp_start);
    u8 *tramp = phys_ptr(TRAMPOLINE);
    memcpy(tramp, mp_tramp_start, len);
    u8 *gdtr = tramp + (mp_tramp_gdtr - mp_tramp_start);
    u16 limit = (u16)bi->gdt_limit;
    u32 base = (u32)bi->gdt;
    memcpy(gdtr, &limit, 2);
    memcpy(gdtr + 2, &base, 4);
    mp_ap_cr3 = (u32)bi->pml4;
    barrier();

    u32 self = lapic_id();
    for (u32 id = 0; id < n; id++)
        if (id != self)
            send_ipi(id, ICR_INIT);
    mp_delay_us(10000);
    for (int round = 0; round < 2; round++) {
        for (u32 id = 0; id < n; id++)
            if (id != self)
                send_ipi(id, ICR_STARTUP | SIPI_VECTOR);
        mp_delay_us(200);
    }
    u64 start = rdtsc(), limit3s = 3000 * mp_tsc_khz();
    for (u64 polls = 0; entered < n - 1 && polls < 500000000; polls++) {
        cpu_relax();
        if ((polls & 0xffff) == 0 && rdtsc() - start >= limit3s)
            break;
    }
    return entered;
}
