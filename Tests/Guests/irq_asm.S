/* Interrupt gates for the irq guest: count the arrival, EOI the xAPIC, return. */
    .code64
    .data
    .globl irq_count_50, irq_count_51
    .balign 4
irq_count_50: .long 0
irq_count_51: .long 0

    .text
    .globl irq_entry_50, irq_entry_51
irq_entry_50:
    push %rax
    lock incl irq_count_50(%rip)
    jmp 1f
irq_entry_51:
    push %rax
    lock incl irq_count_51(%rip)
1:  movabs $0xfee000b0, %rax        /* xAPIC EOI */
    movl $0, (%rax)
    pop %rax
    iretq

    .section .note.GNU-stack, "", @progbits
