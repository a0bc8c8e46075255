/* Multiprocessor start-up shared by smp, hvclock and hvipi: INIT, SIPI, SIPI through the xAPIC
 * to APIC IDs 0..n-1, a real-mode trampoline at 0x8000, long mode with the boot GDT and page
 * tables, the runtime's IDT. */
#ifndef MP_H
#define MP_H
#include "rt.h"
#include "bootinfo.h"

#define MP_MAX_CPUS 64
#define LAPIC_BASE 0xfee00000ull
#define LAPIC_ID 0x020
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define LAPIC_IRR 0x200

u32 lapic_read(u32 reg);
void lapic_write(u32 reg, u32 v);
u32 lapic_id(void);
/* Software-enables the calling CPU's LAPIC (SVR bit 8, spurious vector 0xFF with a gate that
 * just returns). */
void lapic_enable(void);

/* TSC rate in kHz: CPUID 0x40000010, 0x15, 0x16 or TSC_FREQUENCY when advertised; else 3 GHz. */
u64 mp_tsc_khz(void);
void mp_delay_us(u64 us);

/* Starts every AP. Each loads the IDT, enables its LAPIC and calls entry(slot), slot = its
 * arrival order 0..n-2, on its own 16 KiB stack; when entry returns it halts with IF=0.
 * Waits up to ~3 s of TSC time for all of them to have entered entry and returns how many
 * did. With one vCPU it returns 0 at once. */
u32 mp_start_aps(const struct boot_info *bi, void (*entry)(u32 slot));

#endif
