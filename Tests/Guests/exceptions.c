/* exceptions: #UD, #GP (unknown MSR) and #DE caught by registered handlers that resume
 * after the faulting instruction; with "unhandled=1" a final ud2 goes to the runtime's
 * default handler (exit 0x46). */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "bootinfo.h"

#define BOGUS_MSR 0x000c0fffu

extern char ud2_insn[], rdmsr_insn[], div0_insn[], div0_resume[];
void do_ud2(void);
u64 do_rdmsr(u32 msr);
u32 do_div0(void);

static volatile u32 caught_vector;
static volatile u64 caught_rip;
static volatile u64 caught_error;
static volatile u32 caught_count;

static void record(struct int_frame *f)
{
    caught_vector = (u32)f->vector;
    caught_rip = f->rip;
    caught_error = f->error;
    caught_count++;
}

static bool on_ud(struct int_frame *f)
{
    if (f->rip != (uptr)ud2_insn)
        return false;   /* not ours: report it */
    record(f);
    f->rip += 2;
    return true;
}

static bool on_gp(struct int_frame *f)
{
    if (f->rip != (uptr)rdmsr_insn)
        return false;
    record(f);
    f->rip += 2;
    return true;
}

static bool on_de(struct int_frame *f)
{
    if (f->rip != (uptr)div0_insn)
        return false;
    record(f);
    f->rip = (uptr)div0_resume;
    return true;
}

static void expect(const char *what, u32 vector, const char *insn, u32 count)
{
    if (caught_count != count)
        guest_fail("exceptions", "%s: no exception caught", what);
    if (caught_vector != vector)
        guest_fail("exceptions", "%s: vector %u, expected %u", what, caught_vector, vector);
    if (caught_rip != (uptr)insn)
        guest_fail("exceptions", "%s: rip=0x%llx, expected 0x%llx", what, caught_rip, (u64)(uptr)insn);
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    puts("exceptions: start");

    /* (a) #UD */
    set_exception_handler(6, on_ud);
    do_ud2();
    expect("ud2", 6, ud2_insn, 1);
    printf("caught #UD at rip=0x%llx\n", caught_rip);

    /* (b) #GP from rdmsr of an MSR that does not exist */
    set_exception_handler(13, on_gp);
    u64 v = do_rdmsr(BOGUS_MSR);
    expect("rdmsr", 13, rdmsr_insn, 2);
    printf("caught #GP at rip=0x%llx error=0x%llx\n", caught_rip, caught_error);
    if (caught_error != 0)
        guest_fail("exceptions", "#GP error code 0x%llx, expected 0", caught_error);
    if (v != 0)
        guest_fail("exceptions", "rdmsr returned 0x%llx after #GP", v);

    /* (c) #DE */
    set_exception_handler(0, on_de);
    u32 r = do_div0();
    expect("div0", 0, div0_insn, 3);
    printf("caught #DE at rip=0x%llx\n", caught_rip);
    if (r != 0xd100)
        guest_fail("exceptions", "did not resume after the divide (0x%x)", r);

    puts("exceptions: ok");

    if (cmdline_is(boot_cmdline(), "unhandled", "1")) {
        puts("exceptions: ud2 without a handler");
        set_exception_handler(6, NULL);
        do_ud2();
        guest_fail("exceptions", "unhandled ud2 returned");
    }
}
