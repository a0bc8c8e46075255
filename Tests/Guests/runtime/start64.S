/* Entry of the 64-bit direct-boot guests: long mode, RDI = boot info. */
    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    cli
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    call runtime_main          /* RDI still holds the boot-info address */
1:  cli
    hlt
    jmp 1b

    .section .bss
    .balign 16
boot_stack:
    .skip 16384
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
