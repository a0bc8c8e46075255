/* Entry of the 64-bit direct-boot guests: long mode, RDI = boot info. */
#include "entry.h"

    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    ENTER64
    call runtime_main          /* RDI still holds the boot-info address */
    HALT_FOREVER

    BOOT_STACK

    .section .note.GNU-stack, "", @progbits
