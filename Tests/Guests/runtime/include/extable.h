/* Exception fixup table (64-bit guests): an entry names a faulting instruction, the label to
 * resume at, and the exception vectors it covers. exception_dispatch (idt64.c) looks here
 * first; on a match it sets RIP = fixup, RAX = vector, RDX = error code and resumes, without
 * calling any handler. Entries live in the .extable section (link.ld collects them between
 * __extable_start and __extable_end). Usable from C and from .S files. */
#ifndef EXTABLE_H
#define EXTABLE_H

#define EXTABLE_GP (1 << 13)
#define EXTABLE_UD (1 << 6)

#ifdef __ASSEMBLER__
/* EXTABLE insn, fixup, vector-mask */
.macro EXTABLE insn, fixup, vectors
    .pushsection .extable, "a"
    .balign 8
    .quad \insn, \fixup
    .long \vectors, 0
    .popsection
.endm
#else
#include "rt.h"

struct extable_entry {
    u64 insn;      /* address of the instruction that may fault */
    u64 fixup;     /* where to resume */
    u32 vectors;   /* bit v set: vector v is covered */
    u32 zero;
};
#endif

#endif
