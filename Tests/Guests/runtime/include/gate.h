/* Interrupt gates that call C (64-bit guests; assembler only). A C function may change RAX, RCX,
 * RDX, RSI, RDI and R8-R11 (SysV ABI), so a gate saves those, calls its handler with the direction
 * flag clear, restores them and returns with iretq. The CPU aligned RSP to 16 before pushing its
 * 5-quad frame, so after the 9 pushes the call sees the ABI's 16-byte alignment. */
#ifndef GATE_H
#define GATE_H
#ifdef __ASSEMBLER__

/* GATE_CALL handler: the rest of a gate whose stub has pushed RDI (and may have loaded the
 * handler's argument into EDI): saves the other caller-saved registers, calls handler, restores
 * everything including RDI, iretq. For many vectors sharing one handler (synictest_asm.S). */
.macro GATE_CALL handler
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %r8
    push %r9
    push %r10
    push %r11
    cld
    call \handler
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    pop %rdi
    iretq
.endm

/* IRQ_GATE name, handler: a global gate entry point `name` (for idt_set_gate) that calls
 * void handler(void). */
.macro IRQ_GATE name, handler
    .globl \name
\name:
    push %rdi
    GATE_CALL \handler
.endm

#endif
#endif
