/* Entry of the bootparams guest, as Linux's startup_64 is entered by the 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst): long mode, identity-mapped, RSI = boot_params. The "Linux"
 * note marks the ELF as a vmlinux, so SynthVM uses that protocol rather than its direct boot. */
    .section .note.Linux, "a", @note
    .balign 4
    .long 6                            /* namesz: "Linux\0" */
    .long 4                            /* descsz */
    .long 0x100                        /* LINUX_ELFNOTE_BUILD_SALT */
    .asciz "Linux"
    .balign 4
    .long 0
    .balign 4

    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    cli
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov %rsi, %rdi                     /* bootparams_main(boot_params, cr0, cr4, rdi at entry) */
    mov %cr0, %rsi
    mov %cr4, %rdx
    xor %ecx, %ecx
    call bootparams_main
1:  cli
    hlt
    jmp 1b

    .section .bss
    .balign 16
boot_stack:
    .skip 16384
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
