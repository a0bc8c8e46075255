/* Pieces of the guests' _start code (assembler only): runtime/start64.S and mbstart.S, and the
 * Linux-protocol entries pvh_start.S and bootparams_start.S, which each enter differently but
 * set up the same stack and end the same way. */
#ifndef ENTRY_H
#define ENTRY_H
#ifdef __ASSEMBLER__

/* BOOT_STACK: a 16 KiB stack in .bss; its top is boot_stack_top (local to the object). */
.macro BOOT_STACK
    .pushsection .bss
    .balign 16
boot_stack:
    .skip 16384
boot_stack_top:
    .popsection
.endm

/* ENTER64 / ENTER32: interrupts off, RSP/ESP = boot_stack_top, a zero frame pointer for the
 * C code (the 32-bit entries also clear the direction flag). */
.macro ENTER64
    cli
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
.endm

.macro ENTER32
    cli
    cld
    mov $boot_stack_top, %esp
    xor %ebp, %ebp
.endm

/* HALT_FOREVER: where a guest's main returns to, and where nothing else may run. */
.macro HALT_FOREVER
.Lhalt\@:
    cli
    hlt
    jmp .Lhalt\@
.endm

/* ELF_NOTE section, name, type, desc...: an ELF note (namesz, descsz, type, name, desc, each
 * padded to 4 bytes) in its own section, which linux.ld keeps. desc is assembler data, e.g.
 * `.long pvh_start`. */
.macro ELF_NOTE section, name, type, desc:vararg
    .pushsection \section, "a", @note
    .balign 4
    .long .Lnote_name_end\@ - .Lnote_name\@
    .long .Lnote_desc_end\@ - .Lnote_desc\@
    .long \type
.Lnote_name\@:
    .asciz "\name"
.Lnote_name_end\@:
    .balign 4
.Lnote_desc\@:
    \desc
.Lnote_desc_end\@:
    .balign 4
    .popsection
.endm

#endif
#endif
