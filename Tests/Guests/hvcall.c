/* hvcall: 64-bit hypercalls through the hypercall page. Status codes for good and malformed
 * calls (TLFS "Hypercall Inputs", "Alignment Requirements", "Common Hypercall Status Codes",
 * HvPostMessage/HvSignalEvent/HvNotifyLongSpinWait/HvSendSyntheticClusterIpi[Ex]), which
 * registers a call may change (only RAX), and #UD from the page once GUEST_OS_ID is 0 again.
 * Expected codes for calls behind a privilege (PostMessages, SignalEvents) or a hint (cluster
 * IPIs) follow what CPUID 0x40000003/0x40000004 advertise. */
#include "rt.h"
#include "x86.h"
#include "idt.h"
#include "hyperv.h"
#include "bootinfo.h"

#define NAME "hvcall"
#define S(x) (1ull << (x))             /* a set of accepted status codes (all < 64 here) */
#define ANY_ERROR (~1ull)
#define UD_MARK 0xdead000000000006ull

static u8 hypercall_page[4096] __attribute__((aligned(4096)));
static u8 input_pages[3 * 4096] __attribute__((aligned(4096)));

struct hc_regs {
    u64 rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15;
};
void hvcall_regs(struct hc_regs *r);

static u32 mismatches;

static void check(const char *name, u64 result, u64 accepted)
{
    u32 st = HV_STATUS(result);
    printf("hypercall %s status=0x%x\n", name, st);
    if (st >= 64 || !(accepted & S(st))) {
        printf("mismatch: hypercall %s status=0x%x, expected", name, st);
        for (u32 i = 0; i < 64; i++)
            if (accepted & S(i))
                printf(" 0x%x", i);
        printf(" (result 0x%llx)\n", result);
        mismatches++;
    }
    if (HV_REPS_COMPLETED(result) != 0) {
        printf("mismatch: hypercall %s: reps completed %u on a simple call (result 0x%llx)\n", name,
               HV_REPS_COMPLETED(result), result);
        mismatches++;
    }
}

/* A connection nobody publishes (VMBus owns 1 and 4, its channels 0x2001 up). */
#define NO_CONN 0x77u

static struct hv_post_message_input *post_input(u64 gpa, u32 conn, u32 type, u32 size)
{
    struct hv_post_message_input *m = phys_ptr(gpa);
    memset(m, 0, sizeof(*m));
    m->connection_id = conn;
    m->message_type = type;
    m->payload_size = size;
    for (u32 i = 0; i < 30; i++)
        m->payload[i] = 0x0101010101010101ull * (i + 1);
    return m;
}

/* Compares every register but RAX with what went in. */
static void check_preserved(const char *name, const struct hc_regs *in, const struct hc_regs *out)
{
    static const char *const names[15] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8",
                                           "r9", "r10", "r11", "r12", "r13", "r14", "r15" };
    const u64 *a = (const u64 *)in, *b = (const u64 *)out;
    u32 changed = 0;
    for (u32 i = 1; i < 15; i++) {
        if (a[i] != b[i]) {
            printf("mismatch: hypercall %s changed %s: 0x%llx -> 0x%llx\n", name, names[i], a[i], b[i]);
            changed++;
        }
    }
    mismatches += changed;
    printf("hypercall %s registers: %s\n", name, changed ? "changed" : "preserved");
}

static void regs_sentinels(struct hc_regs *r)
{
    u64 *p = (u64 *)r;
    for (u32 i = 0; i < 15; i++)
        p[i] = 0x5a5a000000000000ull | ((u64)i << 32) | (0x1000u + i);
}

static volatile u64 ud_rip;
static volatile u32 ud_count;

/* #UD inside the hypercall page: record it and return to the caller as the page's `ret`
 * would, with RAX = UD_MARK. */
static bool on_ud(struct int_frame *f)
{
    uptr pg = (uptr)hypercall_page;
    if (f->rip < pg || f->rip >= pg + 4096)
        return false;
    ud_rip = f->rip;
    ud_count++;
    f->rip = *(u64 *)phys_ptr(f->rsp);
    f->rsp += 8;
    f->rax = UD_MARK;
    return true;
}

static u64 top_of_ram(const struct boot_info *bi)
{
    const struct e820_entry *e = boot_e820();
    u64 top = 0;
    for (u32 i = 0; i < bi->e820_count; i++)
        if (e[i].addr + e[i].size > top)
            top = e[i].addr + e[i].size;
    return top;
}

void guest_main(const struct boot_info *bi)
{
    puts("hvcall: start");
    struct hv_info hv;
    hv_require(NAME, &hv);
    if (!(hv.priv_eax & HV_PRIV_HYPERCALL))
        guest_fail(NAME, "0x40000003.EAX bit 5 (AccessHypercallMsrs) clear");
    printf("privileges eax=0x%x ebx=0x%x hints eax=0x%x\n", hv.priv_eax, hv.priv_ebx, hv.hints_eax);
    const bool post = hv.priv_ebx & HV_PRIV_POST_MESSAGES;
    const bool signal = hv.priv_ebx & HV_PRIV_SIGNAL_EVENTS;
    const bool ipi = hv.hints_eax & HV_HINT_CLUSTER_IPI;
    const bool ipi_ex = ipi && (hv.hints_eax & HV_HINT_EX_PROCESSOR_MASKS);
    /* Without the privilege, ACCESS_DENIED is the preferred answer (TLFS "Ordering of Error
     * Conditions"), but another error is legal too. */
    const u64 denied = S(HV_STATUS_ACCESS_DENIED);

    u64 hc = hv_enable_hypercall_page(hypercall_page);
    if (!(hc & HV_HYPERCALL_ENABLE))
        guest_fail(NAME, "hypercall page not enabled (HYPERCALL=0x%llx)", hc);

    u64 in = (u64)(uptr)input_pages;
    const u64 ok_post = post ? S(HV_STATUS_INVALID_CONNECTION_ID) : denied;

    /* Control word */
    post_input(in, NO_CONN, 1, 16);
    check("unknown call code 0x7fff", hv_hypercall(0x7fff, in, 0), S(HV_STATUS_INVALID_HYPERCALL_CODE));
    check("reserved control bit 27", hv_hypercall(HVCALL_NOTIFY_LONG_SPIN_WAIT | HV_CONTROL_FAST | (1ull << 27), 0, 0),
          S(HV_STATUS_INVALID_HYPERCALL_INPUT));
    check("reserved control bit 47", hv_hypercall(HVCALL_NOTIFY_LONG_SPIN_WAIT | HV_CONTROL_FAST | (1ull << 47), 0, 0),
          S(HV_STATUS_INVALID_HYPERCALL_INPUT));
    check("reserved control bit 63", hv_hypercall(HVCALL_NOTIFY_LONG_SPIN_WAIT | HV_CONTROL_FAST | (1ull << 63), 0, 0),
          S(HV_STATUS_INVALID_HYPERCALL_INPUT));
    check("rep count on a simple call",
          hv_hypercall(HVCALL_NOTIFY_LONG_SPIN_WAIT | HV_CONTROL_FAST | HV_CONTROL_REP_COUNT(1), 0, 0),
          S(HV_STATUS_INVALID_HYPERCALL_INPUT));
    check("rep start index on a simple call",
          hv_hypercall(HVCALL_NOTIFY_LONG_SPIN_WAIT | HV_CONTROL_FAST | HV_CONTROL_REP_START(1), 0, 0),
          S(HV_STATUS_INVALID_HYPERCALL_INPUT));
    check("variable header on post message", hv_hypercall(HVCALL_POST_MESSAGE | HV_CONTROL_VARHEAD(1), in, 0),
          post ? S(HV_STATUS_INVALID_HYPERCALL_INPUT) : denied | S(HV_STATUS_INVALID_HYPERCALL_INPUT));

    /* HvNotifyLongSpinWait: advisory, always SUCCESS. */
    check("notify long spin wait", hv_fast8(HVCALL_NOTIFY_LONG_SPIN_WAIT, 0x100), S(HV_STATUS_SUCCESS));
    *(volatile u64 *)phys_ptr(in) = 0x100;
    check("notify long spin wait (slow)", hv_hypercall(HVCALL_NOTIFY_LONG_SPIN_WAIT, in, 0), S(HV_STATUS_SUCCESS));

    /* Input GPAs */
    const u64 align = post ? S(HV_STATUS_INVALID_ALIGNMENT) : denied | S(HV_STATUS_INVALID_ALIGNMENT);
    post_input(in, NO_CONN, 1, 16);
    check("post message misaligned input", hv_hypercall(HVCALL_POST_MESSAGE, in + 4, 0), align);
    u64 cross = in + 2 * 4096 - 64;   /* 8-aligned, 256 bytes: crosses into the third page */
    post_input(cross, NO_CONN, 1, 16);
    check("post message input crossing a page", hv_hypercall(HVCALL_POST_MESSAGE, cross, 0), align);
    u32 bits = cpu_phys_addr_bits();
    u64 beyond = bits >= 63 ? (1ull << 62) : (1ull << bits);
    printf("(input beyond the GPA space: 0x%llx, %u address bits)\n", beyond, bits);
    check("post message input beyond gpa space", hv_hypercall(HVCALL_POST_MESSAGE, beyond, 0), align);
    u64 top = top_of_ram(bi);
    u64 unbacked = top > (4ull << 30) ? top : (4ull << 30);
    unbacked = (unbacked + (1ull << 30) - 1) & ~((1ull << 30) - 1);
    printf("(input outside RAM: 0x%llx, RAM ends at 0x%llx)\n", unbacked, top);
    if (bits < 63 && unbacked < (1ull << bits))
        check("post message input outside ram", hv_hypercall(HVCALL_POST_MESSAGE, unbacked, 0),
              (post ? 0 : denied) | S(HV_STATUS_INVALID_ALIGNMENT) | S(HV_STATUS_INVALID_PARAMETER));

    /* HvPostMessage to a connection nobody owns: a well-formed message gets INVALID_CONNECTION_ID. */
    post_input(in, NO_CONN, 1, 16);
    check("post message", hv_hypercall(HVCALL_POST_MESSAGE, in, 0), ok_post);
    post_input(in, NO_CONN, 1, 16);
    check("post message misaligned unused output", hv_hypercall(HVCALL_POST_MESSAGE, in, 3), ok_post);
    const u64 param = post ? S(HV_STATUS_INVALID_PARAMETER) : denied | S(HV_STATUS_INVALID_PARAMETER);
    post_input(in, NO_CONN, 1, 241);
    check("post message payload 241", hv_hypercall(HVCALL_POST_MESSAGE, in, 0), param);
    post_input(in, NO_CONN, 0, 16);
    check("post message type 0", hv_hypercall(HVCALL_POST_MESSAGE, in, 0), param);
    post_input(in, NO_CONN, 0x80000001u, 16);
    check("post message type 0x80000001", hv_hypercall(HVCALL_POST_MESSAGE, in, 0), param);

    /* HvSignalEvent: fast as vmbus does it, and slow. */
    const u64 ok_signal = signal ? S(HV_STATUS_INVALID_CONNECTION_ID) : denied;
    check("signal event", hv_fast8(HVCALL_SIGNAL_EVENT, 1), ok_signal);
    *(volatile u64 *)phys_ptr(in) = 1;
    check("signal event (slow)", hv_hypercall(HVCALL_SIGNAL_EVENT, in, 0), ok_signal);

    /* Cluster IPIs with an illegal vector (must be 0x10-0xFF). */
    check("send synthetic cluster ipi vector 0x05", hv_fast16(HVCALL_SEND_IPI, 0x05, 1),
          ipi ? S(HV_STATUS_INVALID_PARAMETER) : ANY_ERROR);
    {
        volatile u64 *p = phys_ptr(in);
        p[0] = 0x05;   /* vector, target VTL 0 */
        p[1] = 0;      /* HV_VP_SET format: sparse 4K banks */
        p[2] = 1;      /* valid banks: bank 0 */
        p[3] = 1;      /* bank 0: VP 0 */
        check("send synthetic cluster ipi ex vector 0x05", hv_hypercall(HVCALL_SEND_IPI_EX | HV_CONTROL_VARHEAD(1), in, 0),
              ipi_ex ? S(HV_STATUS_INVALID_PARAMETER) : ANY_ERROR);
    }

    /* Which registers a call changes: only RAX (TLFS "Volatile Registers"). */
    {
        struct hc_regs r, o;
        regs_sentinels(&r);
        r.rcx = HVCALL_NOTIFY_LONG_SPIN_WAIT | HV_CONTROL_FAST;
        r.rdx = 0x55;
        o = r;
        hvcall_regs(&o);
        check("notify long spin wait (register check)", o.rax, S(HV_STATUS_SUCCESS));
        check_preserved("notify long spin wait", &r, &o);

        post_input(in, NO_CONN, 1, 16);
        regs_sentinels(&r);
        r.rcx = HVCALL_POST_MESSAGE;
        r.rdx = in;
        r.r8 = 0;
        o = r;
        hvcall_regs(&o);
        check("post message (register check)", o.rax, ok_post);
        check_preserved("post message", &r, &o);
    }

    if (mismatches)
        guest_fail(NAME, "%u mismatch(es)", mismatches);

    /* GUEST_OS_ID = 0 disables the hypercall page; a call through it must then #UD. */
    wrmsr(HV_MSR_GUEST_OS_ID, 0);
    u64 after = rdmsr(HV_MSR_HYPERCALL);
    printf("hypercall msr after guest os id 0: 0x%llx\n", after);
    if (after & HV_HYPERCALL_ENABLE)
        guest_fail(NAME, "HYPERCALL still enabled (0x%llx) after GUEST_OS_ID = 0", after);
    bool blank = true;
    for (u32 i = 0; i < 64; i++)
        if (hypercall_page[i])
            blank = false;
    if (blank)
        guest_fail(NAME, "the hypercall page is blank after disabling: not calling it");
    set_exception_handler(6, on_ud);
    u64 r = hv_fast8(HVCALL_NOTIFY_LONG_SPIN_WAIT, 0x100);
    set_exception_handler(6, NULL);
    if (ud_count != 1 || r != UD_MARK)
        guest_fail(NAME, "hypercall after disable returned 0x%llx instead of raising #UD", r);
    puts("hypercall after disable: #UD");
    printf("hypercall after disable: rip=page+0x%llx\n", ud_rip - (uptr)hypercall_page);
    puts("hvcall: ok");
}
