#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "extable.h"

struct idt_gate {
    u16 offset_lo;
    u16 selector;
    u8 ist;
    u8 type_attr;
    u16 offset_mid;
    u32 offset_hi;
    u32 reserved;
} __attribute__((packed));

/* All 256 vectors: 0-31 get the runtime's exception stubs, 32-255 stay not-present until a
 * guest installs a gate (an unexpected interrupt there then shows up as #NP). */
static struct idt_gate idt[256] __attribute__((aligned(16)));
static exception_handler handlers[32];

static const char *const names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available", "#DF double fault",
    "coprocessor segment overrun", "#TS invalid TSS", "#NP segment not present",
    "#SS stack fault", "#GP general protection", "#PF page fault", "reserved 15",
    "#MF x87 error", "#AC alignment check", "#MC machine check", "#XM SIMD error",
    "#VE virtualization", "#CP control protection", "reserved 22", "reserved 23",
    "reserved 24", "reserved 25", "reserved 26", "reserved 27", "#HV hypervisor injection",
    "#VC VMM communication", "#SX security", "reserved 31",
};

const char *exception_name(u32 vector)
{
    return vector < 32 ? names[vector] : "interrupt";
}

void idt_set_gate(u32 vector, void (*entry)(void))
{
    if (vector >= ARRAY_SIZE(idt))
        return;
    u64 a = (u64)(uptr)entry;
    u16 cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    idt[vector].offset_lo = (u16)a;
    idt[vector].selector = cs;
    idt[vector].ist = 0;
    idt[vector].type_attr = 0x8e;   /* present, DPL 0, 64-bit interrupt gate */
    idt[vector].offset_mid = (u16)(a >> 16);
    idt[vector].offset_hi = (u32)(a >> 32);
    idt[vector].reserved = 0;
}

void idt_load(void)
{
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) idtr = { sizeof(idt) - 1, (u64)(uptr)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
}

void idt_init(void)
{
    for (u32 v = 0; v < 32; v++)
        idt_set_gate(v, isr_stubs[v]);
    idt_load();
}

void set_exception_handler(u32 vector, exception_handler h)
{
    if (vector < 32)
        handlers[vector] = h;
}

/* Exception fixups (extable.h): __extable_start..__extable_end come from link.ld. */
extern const struct extable_entry __extable_start[], __extable_end[];

static bool extable_fixup(struct int_frame *f, u32 v)
{
    for (const struct extable_entry *e = __extable_start; e < __extable_end; e++) {
        if (e->insn == f->rip && v < 32 && (e->vectors & (1u << v))) {
            f->rip = e->fixup;
            f->rax = v;
            f->rdx = f->error;
            return true;
        }
    }
    return false;
}

void exception_dispatch(struct int_frame *f);
void exception_dispatch(struct int_frame *f)
{
    u32 v = (u32)f->vector;
    if (extable_fixup(f, v))
        return;
    if (v < 32 && handlers[v] && handlers[v](f))
        return;
    printf("exception %u (%s) at rip=0x%llx error=0x%llx\n", v, exception_name(v), f->rip, f->error);
    guest_exit(EXIT_EXCEPTION_BASE + v);
}
