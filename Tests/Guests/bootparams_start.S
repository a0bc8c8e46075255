/* Entry of the bootparams guest, as Linux's startup_64 is entered by the 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst): long mode, identity-mapped, RSI = boot_params. The "Linux"
 * note marks the ELF as a vmlinux, so SynthVM uses that protocol rather than its direct boot. */
#include "entry.h"

#define LINUX_ELFNOTE_BUILD_SALT 0x100

    ELF_NOTE .note.Linux, "Linux", LINUX_ELFNOTE_BUILD_SALT, .long 0

    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    ENTER64
    mov %rsi, %rdi                     /* bootparams_main(boot_params, cr0, cr4, rdi at entry) */
    mov %cr0, %rsi
    mov %cr4, %rdx
    xor %ecx, %ecx
    call bootparams_main
    HALT_FOREVER

    BOOT_STACK

    .section .note.GNU-stack, "", @progbits
