/* AP start-up for mp.c (same path as smp_asm.S): ap_tramp is copied to 0x8000 (SIPI vector
 * 0x08), enters 32-bit protected mode with the boot GDT, then long mode with CR3 = mp_ap_cr3;
 * each AP takes an arrival slot with lock xadd, switches to its stack and calls mp_ap_main. */

#define MP_AP_STACK_SHIFT 14             /* 16 KiB per AP; must match mp.c */

    .section .text, "ax"

    .code16
    .balign 16
    .globl mp_tramp_start, mp_tramp_end, mp_tramp_gdtr
mp_tramp_start:
    cli
    cld
    lgdtl %cs:(mp_tramp_gdtr - mp_tramp_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $mp_prot32
    .balign 8
mp_tramp_gdtr:
    .word 0
    .long 0
mp_tramp_end:

    .code32
mp_prot32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl %cr4, %eax
    orl $0x20, %eax                  /* PAE */
    movl %eax, %cr4
    movl mp_ap_cr3, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx           /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl $0x80010033, %eax           /* PG | WP | NE | ET | MP | PE */
    movl %eax, %cr0
    ljmpl $0x08, $mp_long64

    .code64
mp_long64:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movl $1, %eax
    lock xaddl %eax, mp_next_slot(%rip)
    movl %eax, %edi
    cmpl mp_max_slots(%rip), %eax
    jae 2f
    incl %eax
    shlq $MP_AP_STACK_SHIFT, %rax
    leaq mp_ap_stacks(%rip), %rsp
    addq %rax, %rsp
    xorl %ebp, %ebp
    call mp_ap_main
2:  cli
    hlt
    jmp 2b

    /* Spurious LAPIC interrupts (vector 0xFF): no EOI, just return. */
    .globl mp_spurious_entry
mp_spurious_entry:
    iretq

    .section .note.GNU-stack, "", @progbits
