/* 64-bit IDT with reporting handlers for the CPU exceptions (vectors 0-31). */
#ifndef IDT_H
#define IDT_H
#include "rt.h"

/* Saved state of an interrupted context, as laid out by runtime/isr64.S. */
struct int_frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8;
    u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error;
    u64 rip, cs, rflags, rsp, ss;   /* pushed by the CPU */
};

/* Before the handlers below, exception_dispatch consults the fixup table of extable.h: a
 * fault at a listed instruction resumes at its fixup label with RAX = vector and RDX = error
 * code (rdmsr_safe and friends are built on it).
 *
 * A test's handler: return true to resume at f->rip (which it may change),
 * false to fall through to the default report-and-exit. */
typedef bool (*exception_handler)(struct int_frame *f);

/* Fills vectors 0-31 with the runtime's stubs and loads the IDT (the BSP, at start-up). */
void idt_init(void);
/* Loads the same IDT on the calling CPU (APs). */
void idt_load(void);
void set_exception_handler(u32 vector, exception_handler h);
/* Installs a raw interrupt gate (asm entry point) for vector 0-255 (shared by every CPU
 * that loaded the IDT). Vectors 32-255 are not present until a gate is installed. */
void idt_set_gate(u32 vector, void (*entry)(void));
/* Entry point of the runtime's stub for vector (for raw gates that chain to it). */
extern void (*const isr_stubs[32])(void);
const char *exception_name(u32 vector);

#define EXIT_EXCEPTION_BASE 0x40   /* unhandled exception v exits with 0x40 + v */
#define EXIT_BAD_BOOT_INFO 0x3f

#endif
