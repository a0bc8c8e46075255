/* PVH entry of the pvh guest (xen/include/public/arch-x86/hvm/start_info.h): 32-bit protected
 * mode, paging off, EBX = hvm_start_info. The "Xen" note XEN_ELFNOTE_PHYS32_ENTRY (18) gives
 * the loader this entry's physical address; the ELF entry point is deliberately elsewhere, so
 * a loader that ignores the note fails the test. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

    .section .note.Xen, "a", @note
    .balign 4
    .long 4                            /* namesz: "Xen\0" */
    .long 4                            /* descsz */
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .long pvh_start
    .balign 4

    .section .text.entry, "ax"
    .code32
    .globl _start
_start:                                /* the ELF entry: not where PVH enters */
    mov $0x3e, %eax
    out %eax, $0xf4
1:  cli
    hlt
    jmp 1b

    .globl pvh_start
pvh_start:
    pushfl                             /* EFLAGS as the loader left it */
    popl %edx
    cli
    cld
    mov $pvh_stack_top, %esp
    xor %ebp, %ebp
    push %edx                          /* pvh_main(info, cr0, cr4, eflags) */
    mov %cr4, %eax
    push %eax
    mov %cr0, %eax
    push %eax
    push %ebx
    call pvh_main
1:  cli
    hlt
    jmp 1b

    .section .bss
    .balign 16
pvh_stack:
    .skip 16384
pvh_stack_top:

    .section .note.GNU-stack, "", @progbits
