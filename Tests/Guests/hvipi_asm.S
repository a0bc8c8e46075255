/* Interrupt entry for hvipi's vector 0x40: saves the registers a C function may change, calls
 * hvipi_irq() (count and EOI) and returns. */
    .code64
    .text
    .globl hvipi_entry
hvipi_entry:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    cld
    call hvipi_irq
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq

    .section .note.GNU-stack, "", @progbits
