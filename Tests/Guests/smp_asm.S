/* AP start-up for the smp guest.
 *
 * ap_tramp_start..ap_tramp_end is copied to 0x8000 (SIPI vector 0x08): real mode,
 * CS = 0x0800, IP = 0. It loads the boot GDT (0x1000; patched into ap_tramp_gdtr by
 * the BSP) and enters 32-bit protected mode at ap_prot32, which runs from the kernel
 * image (flat segments) and enables PAE, CR3 = ap_cr3, EFER.LME and paging, then jumps
 * to ap_long64 in 64-bit mode. There each AP takes an arrival slot with lock xadd,
 * switches to its own stack and calls ap_main(slot). */

#define AP_STACK_SHIFT 12            /* 4 KiB per AP; must match smp.c */

    .section .text, "ax"

    .code16
    .balign 16
    .globl ap_tramp_start, ap_tramp_end, ap_tramp_gdtr
ap_tramp_start:
    cli
    cld
    lgdtl %cs:(ap_tramp_gdtr - ap_tramp_start)
    movl %cr0, %eax
    orl $1, %eax                     /* PE */
    movl %eax, %cr0
    ljmpl $0x18, $ap_prot32          /* flat 32-bit code */
    .balign 8
ap_tramp_gdtr:
    .word 0                          /* limit, patched */
    .long 0                          /* base, patched */
ap_tramp_end:

    .code32
ap_prot32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl %cr4, %eax
    orl $0x20, %eax                  /* PAE */
    movl %eax, %cr4
    movl ap_cr3, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx           /* EFER */
    rdmsr
    orl $0x100, %eax                 /* LME */
    wrmsr
    movl $0x80010033, %eax           /* PG | WP | NE | ET | MP | PE, caches on */
    movl %eax, %cr0
    ljmpl $0x08, $ap_long64

    .code64
ap_long64:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movl $1, %eax
    lock xaddl %eax, ap_next_slot(%rip)
    movl %eax, %edi                  /* ap_main(slot) */
    cmpl ap_max_slots(%rip), %eax
    jae 2f                           /* more APs than stacks: just halt */
    incl %eax
    shlq $AP_STACK_SHIFT, %rax
    leaq ap_stacks(%rip), %rsp
    addq %rax, %rsp                  /* top of stack[slot] */
    xorl %ebp, %ebp
    call ap_main
2:  cli
    hlt
    jmp 2b

    .section .note.GNU-stack, "", @progbits
