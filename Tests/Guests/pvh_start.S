/* PVH entry of the pvh guest (xen/include/public/arch-x86/hvm/start_info.h): 32-bit protected
 * mode, paging off, EBX = hvm_start_info. The "Xen" note XEN_ELFNOTE_PHYS32_ENTRY (18) gives
 * the loader this entry's physical address; the ELF entry point is deliberately elsewhere, so
 * a loader that ignores the note fails the test. */
#include "entry.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

    ELF_NOTE .note.Xen, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, .long pvh_start

    .section .text.entry, "ax"
    .code32
    .globl _start
_start:                                /* the ELF entry: not where PVH enters */
    mov $0x3e, %eax
    out %eax, $0xf4
    HALT_FOREVER

    .globl pvh_start
pvh_start:
    pushfl                             /* EFLAGS as the loader left it */
    popl %edx
    ENTER32
    push %edx                          /* pvh_main(info, cr0, cr4, eflags) */
    mov %cr4, %eax
    push %eax
    mov %cr0, %eax
    push %eax
    push %ebx
    call pvh_main
    HALT_FOREVER

    BOOT_STACK

    .section .note.GNU-stack, "", @progbits
