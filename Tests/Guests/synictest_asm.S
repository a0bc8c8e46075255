/* Interrupt gates for synictest.c: one stub per vector 0x20-0xfe puts the vector in EDI and
 * joins st_gate_common (gate.h), which saves the registers a C function may change, calls
 * st_dispatch(vector) (the guest's st_irq and the xAPIC EOI) and returns. */
#include "gate.h"

    .code64
    .text

st_gate_common:
    GATE_CALL st_dispatch

    .balign 16
st_stubs_start:
    .set vec, 0x20
    .rept 0xff - 0x20
    .balign 16
    push %rdi
    movl $vec, %edi
    jmp st_gate_common
    .set vec, vec + 1
    .endr

    .section .rodata
    .balign 8
    .globl st_gate_stubs
st_gate_stubs:
    .rept 0x20
    .quad 0
    .endr
    .set i, 0
    .rept 0xff - 0x20
    .quad st_stubs_start + 16 * i
    .set i, i + 1
    .endr
    .quad 0

    .section .note.GNU-stack, "", @progbits
