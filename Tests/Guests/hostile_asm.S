/* hostile.c's assembler: its own hypercall stub and interrupt gates for the vectors
 * synictest_asm.S leaves alone. */
#include "extable.h"
#include "gate.h"

    .code64
    .text

    /* bool hc_call(u64 control, u64 in, u64 out, u64 *result): one hypercall through the same
     * port the hypercall page's stub uses (`out 0xe5, al`), from the guest's own code: the
     * campaign moves, disables and overwrites the hypercall page (on other vCPUs too), so it
     * never executes the page during the random phase. Returns false with *result = RAX, or
     * true (and *result = 0) when the call raised #UD (interface off, XMM input not offered).
     * SynthVM reports that #UD after the OUT (docs/hyperv.md "#UD RIP"), a hypervisor could
     * report it at the OUT: both are fixed up. */
    .globl hc_call
hc_call:
    push %rcx
    mov %rdx, %r8
    mov %rdi, %rcx
    mov %rsi, %rdx
1:  out %al, $0xe5
2:  pop %rcx
    mov %rax, (%rcx)
    xor %eax, %eax
    ret
3:  pop %rcx
    movq $0, (%rcx)
    mov $1, %eax
    ret
    EXTABLE 1b, 3b, EXTABLE_UD
    EXTABLE 2b, 3b, EXTABLE_UD

    /* Gates for vectors 0x10-0x1f and 0xff, which random SINT, timer and IPI vectors reach:
     * the runtime's exception stubs (16-31) and the LAPIC's spurious gate (0xff, no EOI) would
     * misread or strand them. None of 16-31 can be a real exception here (no x87/SSE, no CET,
     * AC off), so every arrival there is an interrupt. Each calls st_dispatch(vector)
     * (synictest.c: st_irq, then the xAPIC EOI). */
hostile_gate_common:
    GATE_CALL st_dispatch

    .balign 16
hostile_low_stubs:
    .set vec, 0x10
    .rept 0x10
    .balign 16
    push %rdi
    movl $vec, %edi
    jmp hostile_gate_common
    .set vec, vec + 1
    .endr
    .balign 16
    .globl hostile_gate_ff
hostile_gate_ff:
    push %rdi
    movl $0xff, %edi
    jmp hostile_gate_common

    .section .rodata
    .balign 8
    .globl hostile_low_gates
hostile_low_gates:
    .set i, 0
    .rept 0x10
    .quad hostile_low_stubs + 16 * i
    .set i, i + 1
    .endr

    .section .note.GNU-stack, "", @progbits
