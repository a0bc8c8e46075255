/* Helpers shared by the SynIC and synthetic-timer guests (stimer, synic): partition reference
 * time, a print lock for several vCPUs, failures tagged with the VP, interrupt gates for any
 * vector that call the guest's st_irq() and EOI the xAPIC, and bounded waiting with
 * `sti; hlt` woken by a periodic LAPIC timer (or `sti; pause` when that timer does not tick). */
#ifndef SYNICTEST_H
#define SYNICTEST_H
#include "rt.h"
#include "bootinfo.h"

#define ST_WATCHDOG_VECTOR 0x4f
#define ST_MS 10000ull            /* one millisecond of reference time (100 ns units) */

/* The guest's name for messages ("stimer", "synic"). */
extern const char *st_name;

/* TIME_REF_COUNT. */
u64 st_now(void);

/* printf under a lock shared by all vCPUs (never call it from an interrupt handler). */
int st_printf(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* "<name>: FAIL <why>" (with "vcpu <vp>: " before <why> when vp != 0), exit code 1. */
NORETURN void st_fail(u32 vp, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Installs a gate for vector (0x20-0xfe) that calls st_irq(vector), then writes the xAPIC EOI. */
void st_install_gate(u32 vector);
/* Marks vector as delivered by an AutoEOI SINT: its gate then does not write EOI (TLFS: the
 * guest must not EOI an AutoEOI interrupt). */
void st_set_auto_eoi(u32 vector, bool on);
/* The vector's bit in the calling vCPU's LAPIC in-service register. */
bool st_in_service(u32 vector);
/* Defined by the guest: runs with IF=0 on the interrupted vCPU. */
void st_irq(u32 vector);

/* Starts the calling vCPU's LAPIC timer (periodic, ~10 ms, vector ST_WATCHDOG_VECTOR) as the
 * wake-up source of st_idle, and checks within 500 ms of reference time that it ticks; if not,
 * st_idle spins instead of halting. Returns true if it ticks. Needs st_install_gate'd
 * ST_WATCHDOG_VECTOR (st_init does it) and the LAPIC enabled (mp_start_aps does it). */
bool st_watchdog_start(void);
void st_watchdog_stop(void);
/* One wait step with interrupts enabled: `sti; hlt; cli` (or `sti; pause...; cli`). */
void st_idle(void);
/* Waits (st_idle) until *p >= want or `timeout` of reference time has passed; true if reached. */
bool st_wait_count(volatile u32 *p, u32 want, u64 timeout);
/* Waits (st_idle, interrupts delivered) until reference time reaches `until`. */
void st_sleep_until(u64 until);
/* The gate for ST_WATCHDOG_VECTOR; call once on the BSP before starting APs. */
void st_init(const char *name);
/* The calling vCPU's VP index (read from VP_INDEX, failing if >= max_cpus), recorded against its
 * LAPIC ID so interrupt handlers can find it. */
u32 st_register_vp(u32 max_cpus);
/* The VP index registered for the calling vCPU, or 0xff before st_register_vp. */
u32 st_current_vp(void);
/* Fails unless CPUID advertises the reference counter, SynIC and timer privileges (0x40000003.EAX
 * bits 1-3) and the feature bits `need_edx` (described by `edx_what`); returns the vCPU count,
 * at most max_cpus. */
u32 st_require(const struct boot_info *bi, u32 max_cpus, u32 need_edx, const char *edx_what);
/* Starts every AP into suite(), runs suite() on the BSP too, then waits up to 60 s for the APs. */
void st_run_everywhere(const struct boot_info *bi, void (*suite)(void));

#endif
