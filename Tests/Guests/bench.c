/* bench: exit-cost measurement. Port 0x81 marks the phases (1: pio loop starts,
 * 2: rdmsr loop starts, 3: done); the loops run N x "outb %al, $0x80" and
 * M x rdmsr of an MSR that does not exist (each #GP is skipped by a tiny gate).
 * Ends by writing 0 to port 0xf4 (status 1). */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "bootinfo.h"

#define BOGUS_MSR 0x000c0fffu
#define MARK_PORT 0x81

void bench_pio_loop(u64 n);
void bench_rdmsr_loop(u64 n, u32 msr);
void bench_gp_entry(void);

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    const char *cmdline = boot_cmdline();
    u64 pio = 1000, msr = 1000;
    puts("bench: start");
    const char *v;
    usize n;
    if (cmdline_find(cmdline, "pio", &v, &n) && !parse_u64(v, n, &pio))
        guest_fail("bench", "bad pio= value");
    if (cmdline_find(cmdline, "msr", &v, &n) && !parse_u64(v, n, &msr))
        guest_fail("bench", "bad msr= value");
    printf("bench: pio=%llu msr=%llu\n", pio, msr);
    idt_set_gate(13, bench_gp_entry);

    outb(MARK_PORT, 1);
    bench_pio_loop(pio);
    outb(MARK_PORT, 2);
    bench_rdmsr_loop(msr, BOGUS_MSR);
    outb(MARK_PORT, 3);

    puts("bench: ok");
    guest_exit(0);
}
