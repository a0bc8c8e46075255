/* The uart guest's interrupt gate: calls uart_interrupt() and returns. */
#include "gate.h"

    .code64
    .text
    IRQ_GATE uart_entry, uart_interrupt

    .section .note.GNU-stack, "", @progbits
