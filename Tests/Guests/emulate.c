/* emulate: instructions the host's KVM may be unable to emulate when it runs guest kernel code
 * in its instruction emulator (a PVM host), and the ones SynthVM completes itself (docs/pvm.md).
 *
 * test=int3: a #BP handler records the RIP it was given (a trap: the next instruction) and
 *   returns; prints "int3: #BP rip=0x.. next=0x.. insn=0x..", then "int3: returned".
 * test=fwait: fwait with no unmasked x87 exception pending: "fwait: continued".
 * test=clac: stac then clac at CPL 0 (when CPUID.(7,0):EBX advertises SMAP):
 *   "clac: ac-after-stac=1 ac-after-clac=0".
 * test=fwait-pending: the host loads an FPU state with an unmasked exception pending before the
 *   run; the #MF handler records the RIP and skips the fwait: "fwait: #MF rip=0x.. insn=0x..",
 *   "fwait: continued".
 * test=fwait-ts: CR0.TS set (CR0.MP is set at boot): #NM at the fwait; the handler clears TS
 *   and returns, so the fwait runs again: "fwait: #NM rip=0x.. insn=0x..", "fwait: continued".
 * probe=<name>: prints "probe <name> at 0x<address of the instruction>", runs it, then prints
 *   "probe <name>: ok <value>" if the value is right or FAILs. Names: popcnt cmpxchg16b ldmxcsr
 *   xsetbv xgetbv xrstor fxsave pxor movsb fninit crc32 movbe clac. SSE state is enabled first
 *   (CR4.OSFXSR, and CR4.OSXSAVE for the XSAVE family; xgetbv and xrstor run with XCR0 at its reset
 *   value, x87 only); clac runs with CR4.SMAP set (these page tables have no user pages, so SMAP
 *   changes nothing else) and RFLAGS.AC set before it. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "bootinfo.h"

extern char int3_insn[], int3_next[], fwait_insn[], fwait_next[];
void do_int3(void);
void do_stac_clac(u64 out[2]);
void do_fwait(void);

#define PROBES(X) X(popcnt) X(cmpxchg16b) X(ldmxcsr) X(xsetbv) X(xgetbv) X(xrstor) X(fxsave) X(pxor) X(movsb) \
    X(fninit) X(crc32) X(movbe) X(clac)
#define DECLARE(n) extern char probe_##n##_insn[]; u64 probe_##n();
PROBES(DECLARE)

static volatile u64 seen_rip;
static volatile u32 seen_vector, seen_count;

static bool on_bp(struct int_frame *f)
{
    seen_vector = 3;
    seen_rip = f->rip;
    seen_count++;
    return true; /* a trap: f->rip is already past the int3 */
}

static bool on_mf(struct int_frame *f)
{
    if (f->rip != (uptr)fwait_insn)
        return false;
    seen_vector = 16;
    seen_rip = f->rip;
    seen_count++;
    f->rip += 1; /* leave the exception pending; skip the fwait */
    return true;
}

static bool on_nm(struct int_frame *f)
{
    if (f->rip != (uptr)fwait_insn)
        return false;
    seen_vector = 7;
    seen_rip = f->rip;
    seen_count++;
    __asm__ volatile("clts");
    return true; /* run the fwait again */
}

static u64 read_cr0(void) { u64 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static void write_cr0(u64 v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static u64 read_cr4(void) { u64 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static void write_cr4(u64 v) { __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }

static u8 area[4096] __attribute__((aligned(64)));

static void check(const char *name, u64 got, u64 want)
{
    if (got != want)
        guest_fail("emulate", "probe %s: got 0x%llx, want 0x%llx", name, got, want);
    printf("probe %s: ok 0x%llx\n", name, got);
}

static void probe(const char *name)
{
    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    write_cr4(read_cr4() | (1u << 9) | (1u << 10)); /* OSFXSR, OSXMMEXCPT */
    if (!strcmp(name, "xsetbv") || !strcmp(name, "xgetbv") || !strcmp(name, "xrstor")) {
        if (!(c & (1u << 26)))
            guest_fail("emulate", "no XSAVE in CPUID: cannot probe %s", name);
        write_cr4(read_cr4() | (1u << 18)); /* OSXSAVE */
    }
    if (!strcmp(name, "clac")) {
        cpuid(7, 0, &a, &b, &c, &d);
        if (!(b & (1u << 20)))
            guest_fail("emulate", "no SMAP in CPUID: cannot probe %s", name);
        write_cr4(read_cr4() | (1u << 21)); /* SMAP: CLAC/STAC are #UD without it */
    }
#define ADDRESS(n) if (!strcmp(name, #n)) printf("probe %s at 0x%llx\n", name, (u64)(uptr)probe_##n##_insn);
    PROBES(ADDRESS)
    if (!strcmp(name, "popcnt")) {
        check(name, probe_popcnt(0xF0F0F0F0F0F0F0F0ull), 32);
    } else if (!strcmp(name, "cmpxchg16b")) {
        u64 *p = (u64 *)area;
        p[0] = 1, p[1] = 2;
        check(name, probe_cmpxchg16b(p) | p[0] << 8 | p[1] << 16, 1 | 3 << 8 | 4 << 16);
    } else if (!strcmp(name, "ldmxcsr")) {
        u32 *m = (u32 *)area;
        m[0] = 0x1f80 | 0x6000; /* round toward zero */
        check(name, probe_ldmxcsr(m), 0x7f80);
    } else if (!strcmp(name, "xsetbv")) {
        check(name, probe_xsetbv(), 1);
    } else if (!strcmp(name, "xgetbv")) {
        check(name, probe_xgetbv(), 1);
    } else if (!strcmp(name, "xrstor")) {
        memset(area, 0, sizeof area); /* XSTATE_BV 0: the init state */
        check(name, probe_xrstor(area), 1);
    } else if (!strcmp(name, "fxsave")) {
        check(name, probe_fxsave(area), 0x37f);
    } else if (!strcmp(name, "pxor")) {
        check(name, probe_pxor(), 0);
    } else if (!strcmp(name, "movsb")) {
        for (int i = 0; i < 64; i++)
            area[i] = (u8)i;
        u64 left = probe_movsb(area + 1024, area, 64);
        check(name, left | (u64)memcmp(area + 1024, area, 64) << 8, 0);
    } else if (!strcmp(name, "fninit")) {
        check(name, probe_fninit(), 0x37f);
    } else if (!strcmp(name, "crc32")) {
        check(name, probe_crc32(0x0123456789abcdefull), 0xe9986aa9u);
    } else if (!strcmp(name, "movbe")) {
        u64 *p = (u64 *)area;
        p[0] = 0x0102030405060708ull;
        check(name, probe_movbe(p), 0x0807060504030201ull);
    } else if (!strcmp(name, "clac")) {
        check(name, probe_clac(), 0); /* RFLAGS.AC after clac */
    } else {
        guest_fail("emulate", "unknown probe %s", name);
    }
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    char test[32], name[32];
    const char *cmd = boot_cmdline();
    if (cmdline_get(cmd, "probe", name, sizeof name)) {
        probe(name);
        return;
    }
    if (!cmdline_get(cmd, "test", test, sizeof test))
        guest_fail("emulate", "no test= or probe= on the command line");
    if (!strcmp(test, "clac")) {
        u32 a, b, c, d;
        cpuid(7, 0, &a, &b, &c, &d);
        if (!(b & (1u << 20))) {
            puts("clac: SMAP not advertised");
        } else {
            u64 flags[2];
            do_stac_clac(flags);
            printf("clac: ac-after-stac=%llu ac-after-clac=%llu\n", (flags[0] >> 18) & 1, (flags[1] >> 18) & 1);
        }
    } else if (!strcmp(test, "int3")) {
        set_exception_handler(3, on_bp);
        do_int3();
        printf("int3: #BP rip=0x%llx next=0x%llx insn=0x%llx\n", seen_rip, (u64)(uptr)int3_next, (u64)(uptr)int3_insn);
        if (seen_count != 1 || seen_rip != (uptr)int3_next)
            guest_fail("emulate", "int3: %u #BP, rip 0x%llx", seen_count, seen_rip);
        puts("int3: returned");
    } else if (!strcmp(test, "fwait") || !strcmp(test, "fwait-pending") || !strcmp(test, "fwait-ts")) {
        set_exception_handler(16, on_mf);
        set_exception_handler(7, on_nm);
        if (!strcmp(test, "fwait-ts"))
            write_cr0(read_cr0() | (1u << 3)); /* TS */
        do_fwait();
        if (seen_count)
            printf("fwait: %s rip=0x%llx insn=0x%llx\n", seen_vector == 16 ? "#MF" : "#NM", seen_rip,
                   (u64)(uptr)fwait_insn);
        puts("fwait: continued");
    } else {
        guest_fail("emulate", "unknown test %s", test);
    }
}
