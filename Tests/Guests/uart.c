/* uart: COM1 driven by interrupts, as Linux's 8250 driver does. ISA IRQ 4 is routed through the
 * IOAPIC (pin 4, edge, active high, vector 0x34; the PICs are masked). The guest sets 8N1, FIFOs,
 * DTR | RTS | OUT2 (OUT2 gates the IRQ on a PC; RTS lets the host send), enables the
 * received-data interrupt, and echoes every byte it receives through interrupt-driven transmit:
 * bytes go to a queue, start_tx sets IER.THRI (which raises THRE at once while THR is empty),
 * the THRE handler sends one byte per THRE report and clears IER.THRI when the queue is empty.
 * A '.' ends the input; once the echo has drained it prints the totals (polled, interrupts off).
 * Output: "uart: ready", the echo, then "uart: received <n> bytes fnv=<hash> irqs=<i> rx=<r>
 * thre=<t>". Bytes must come in while RTS is set: the host holds them back before that. */
#include "rt.h"
#include "x86.h"
#include "bootinfo.h"
#include "idt.h"
#include "mp.h"

#define COM1 0x3f8
#define RBR 0
#define THR 0
#define IER 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define IER_RDI 0x01
#define IER_THRI 0x02
#define UART_VECTOR 0x34
#define IOAPIC_BASE 0xfec00000ull

void uart_entry(void);
void uart_interrupt(void);

#define QUEUE 8192
static volatile u8 rxq[QUEUE], txq[QUEUE];
static volatile u32 rx_head, rx_tail, tx_head, tx_tail;
static volatile u32 irqs, rx_reports, thre_reports, other_reports;
static volatile u8 ier;

static void ioapic_write(u32 reg, u32 value)
{
    mmio_write32(IOAPIC_BASE, reg);
    mmio_write32(IOAPIC_BASE + 0x10, value);
}

/* Called from uart_entry (uart_asm.S) with interrupts off. */
void uart_interrupt(void)
{
    irqs++;
    for (int guard = 0; guard < 100000; guard++) {
        u8 iir = inb(COM1 + IIR);
        if (iir & 0x01)
            break;
        switch (iir & 0x0e) {
        case 0x04: /* received data available */
        case 0x0c: /* character timeout */
            rx_reports++;
            while (inb(COM1 + LSR) & 0x01) {
                u8 b = inb(COM1 + RBR);
                if (rx_head - rx_tail < QUEUE)
                    rxq[rx_head++ % QUEUE] = b;
            }
            break;
        case 0x02: /* THR empty: the IIR read acknowledged it */
            thre_reports++;
            if (tx_tail != tx_head) {
                outb(COM1 + THR, txq[tx_tail++ % QUEUE]);
            } else {
                ier &= ~IER_THRI; /* stop_tx */
                outb(COM1 + IER, ier);
            }
            break;
        case 0x06:
            other_reports++;
            (void)inb(COM1 + LSR);
            break;
        default:
            other_reports++;
            (void)inb(COM1 + MSR);
            break;
        }
    }
    mmio_write32(LAPIC_BASE + LAPIC_EOI, 0);
}

static void start_tx(void)
{
    cli();
    if (!(ier & IER_THRI)) {
        ier |= IER_THRI;
        outb(COM1 + IER, ier);
    }
    __asm__ volatile("sti" ::: "memory");
}

static void wait_interrupt(void)
{
    /* sti; hlt is atomic with respect to interrupts: one arriving in between wakes the hlt. */
    __asm__ volatile("sti; hlt; cli" ::: "memory");
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    idt_set_gate(UART_VECTOR, uart_entry);
    outb(0x21, 0xff); /* mask both PICs: the IOAPIC delivers */
    outb(0xa1, 0xff);
    lapic_enable();
    ioapic_write(0x10 + 2 * 4, UART_VECTOR); /* pin 4: fixed, physical, edge, high, unmasked */
    ioapic_write(0x10 + 2 * 4 + 1, lapic_id() << 24);

    outb(COM1 + IER, 0);
    outb(COM1 + LCR, 0x80);
    outb(COM1 + 0, 1); /* 115200 baud */
    outb(COM1 + 1, 0);
    outb(COM1 + LCR, 0x03);
    outb(COM1 + FCR, 0x07);
    (void)inb(COM1 + LSR);
    (void)inb(COM1 + IIR);
    (void)inb(COM1 + MSR);
    puts("uart: ready");
    outb(COM1 + MCR, 0x0b); /* DTR | RTS | OUT2 */
    ier = IER_RDI;
    outb(COM1 + IER, ier);

    u32 count = 0, hash = 2166136261u;
    bool done = false;
    cli();
    while (!done) {
        while (rx_tail == rx_head)
            wait_interrupt();
        while (rx_tail != rx_head && !done) {
            u8 b = rxq[rx_tail++ % QUEUE];
            count++;
            hash = (hash ^ b) * 16777619u;
            while (tx_head - tx_tail >= QUEUE)
                wait_interrupt();
            txq[tx_head++ % QUEUE] = b;
            done = b == '.';
        }
        start_tx();
        cli();
    }
    /* Let the echo drain: the THRE handler clears IER.THRI once the queue is empty. */
    while (tx_tail != tx_head || (ier & IER_THRI))
        wait_interrupt();
    outb(COM1 + IER, 0);
    printf("\nuart: received %u bytes fnv=%08x irqs=%u rx=%u thre=%u other=%u\n", count, hash, irqs, rx_reports,
           thre_reports, other_reports);
}
