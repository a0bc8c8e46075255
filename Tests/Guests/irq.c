/* irq: interrupts from the host through the in-kernel LAPIC. The guest enables its LAPIC,
 * installs gates for vectors 0x50 and 0x51, and asks the host (port 0x82) for one interrupt
 * at a time: 1 = through an irqfd bound to an MSI GSI route (vector 0x50), 2 = through
 * KVM_SIGNAL_MSI (vector 0x51). It waits with sti; hlt, so each arrival also proves a halted
 * vCPU is woken. */
#include "rt.h"
#include "x86.h"
#include "bootinfo.h"
#include "idt.h"
#include "mp.h"

#define REQUEST_PORT 0x82

extern volatile u32 irq_count_50, irq_count_51;
void irq_entry_50(void);
void irq_entry_51(void);

static bool wait_for(volatile u32 *count, u32 want)
{
    /* Each hlt returns on any interrupt; the kick of SynthVM's halt detector also counts as an
     * exit, so bound the loop rather than trusting a single hlt. */
    for (u32 i = 0; i < 100000 && *count < want; i++)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    return *count >= want;
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    puts("irq: start");
    idt_set_gate(0x50, irq_entry_50);
    idt_set_gate(0x51, irq_entry_51);
    lapic_enable();

    outb(REQUEST_PORT, 1);
    if (!wait_for(&irq_count_50, 1))
        guest_fail("irq", "no vector 0x50 through the irqfd");
    printf("irqfd: vector 0x50 delivered (%u)\n", irq_count_50);

    outb(REQUEST_PORT, 2);
    if (!wait_for(&irq_count_51, 1))
        guest_fail("irq", "no vector 0x51 through KVM_SIGNAL_MSI");
    printf("msi: vector 0x51 delivered (%u)\n", irq_count_51);
    if (irq_count_50 != 1 || irq_count_51 != 1)
        guest_fail("irq", "extra interrupts: 0x50 x%u, 0x51 x%u", irq_count_50, irq_count_51);
    puts("irq: ok");
}
