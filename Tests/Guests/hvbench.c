/* hvbench: HV#1 cost measurement. Port 0x81 marks phases: 4 null hypercalls start, 5
 * TIME_REF_COUNT reads start, 6 TSC-page reads start, 7 done. Command line: hvcall=N tref=M
 * tscpage=K (defaults 1000). A null hypercall is an unknown call code (0x7FFF), answered with
 * HV_STATUS_INVALID_HYPERCALL_CODE. TSC-page reads must not exit at all. Ends by writing 0 to
 * port 0xf4 (status 1). */
#include "rt.h"
#include "x86.h"
#include "bootinfo.h"

#define MARK_PORT 0x81
#define MSR_GUEST_OS_ID 0x40000000u
#define MSR_HYPERCALL 0x40000001u
#define MSR_TIME_REF_COUNT 0x40000020u
#define MSR_REFERENCE_TSC 0x40000021u

static u8 hypercall_page[4096] __attribute__((aligned(4096)));
static volatile u8 tsc_page[4096] __attribute__((aligned(4096)));

static u64 arg(const char *cmdline, const char *key)
{
    const char *v;
    usize n;
    u64 out = 1000;
    if (cmdline_find(cmdline, key, &v, &n) && !parse_u64(v, n, &out))
        guest_fail("hvbench", "bad %s= value", key);
    return out;
}

static inline u64 null_hypercall(void)
{
    u64 status;
    register u64 r8 __asm__("r8") = 0;
    __asm__ volatile("call *%[page]"
                     : "=a"(status)
                     : [page] "r"(hypercall_page), "c"(0x7FFFull), "d"(0ull), "r"(r8)
                     : "memory", "cc");
    return status;
}

/* Reference time from the TSC page: ((tsc * scale) >> 64) + offset, retried on a sequence change. */
static u64 tsc_page_time(void)
{
    for (;;) {
        u32 seq = *(volatile u32 *)tsc_page;
        u64 scale = *(volatile u64 *)(tsc_page + 8);
        s64 offset = *(volatile s64 *)(tsc_page + 16);
        u64 tsc = rdtsc();
        u64 hi;
        __asm__("mulq %3" : "=d"(hi), "=a"(tsc) : "a"(tsc), "r"(scale) : "cc");
        if (*(volatile u32 *)tsc_page == seq)
            return hi + (u64)offset;
    }
}

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    const char *cmdline = boot_cmdline();
    u64 calls = arg(cmdline, "hvcall"), trefs = arg(cmdline, "tref"), pages = arg(cmdline, "tscpage");
    printf("hvbench: hvcall=%llu tref=%llu tscpage=%llu\n", calls, trefs, pages);
    wrmsr(MSR_GUEST_OS_ID, 0x8100060100000000ull);
    wrmsr(MSR_HYPERCALL, (u64)(usize)hypercall_page | 1);
    wrmsr(MSR_REFERENCE_TSC, (u64)(usize)tsc_page | 1);
    /* raw=1: driven by the benchmark's bare KVM_RUN loop, which answers nothing. */
    const char *v;
    usize n;
    bool raw = cmdline_find(cmdline, "raw", &v, &n);
    if (raw) {
        /* Nobody fills the page in the bare loop: write SynthVM's stub (out 0xe5, al; ret) ourselves,
         * so both sides execute the same instructions. */
        hypercall_page[0] = 0xE6;
        hypercall_page[1] = 0xE5;
        hypercall_page[2] = 0xC3;
    }
    if (!raw && null_hypercall() != 2)
        guest_fail("hvbench", "null hypercall did not return HV_STATUS_INVALID_HYPERCALL_CODE");

    u64 sink = 0;
    outb(MARK_PORT, 4);
    for (u64 i = 0; i < calls; i++)
        sink += null_hypercall();
    outb(MARK_PORT, 5);
    for (u64 i = 0; i < trefs; i++)
        sink += rdmsr(MSR_TIME_REF_COUNT);
    outb(MARK_PORT, 6);
    for (u64 i = 0; i < pages; i++)
        sink += tsc_page_time();
    outb(MARK_PORT, 7);
    printf("hvbench: ok (%llu)\n", sink & 1);
    guest_exit(0);
}
