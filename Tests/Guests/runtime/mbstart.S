/* Multiboot v1 header and 32-bit entry (EAX = 0x2BADB002, EBX = multiboot info). */
#include "entry.h"

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003            /* page-align modules, memory info */

    .section .multiboot, "a"
    .balign 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text.entry, "ax"
    .code32
    .globl _start
_start:
    ENTER32
    push %ebx                          /* mb_main(magic, info) */
    push %eax
    call mb_main
    HALT_FOREVER

    BOOT_STACK

    .section .note.GNU-stack, "", @progbits
