/* Interrupt entry for hvipi's vector 0x40: calls hvipi_irq() (count and EOI) and returns. */
#include "gate.h"

    .code64
    .text
    IRQ_GATE hvipi_entry, hvipi_irq

    .section .note.GNU-stack, "", @progbits
