/* mbhvcall: hypercalls from 32-bit protected mode (multiboot, paging off). The hypervisor
 * tells the modes apart by EFER.LMA and CS.L; here the convention is EDX:EAX = control,
 * EBX:ECX = input GPA / fast input, EDI:ESI = output GPA, result in EDX:EAX. */
#include "rt.h"
#include "x86.h"
#include "hyperv.h"

#define NAME "mbhvcall"
#define MB_BOOT_MAGIC 0x2BADB002u

static u8 hypercall_page[4096] __attribute__((aligned(4096)));
static u8 input_page[4096] __attribute__((aligned(4096)));

static u32 mismatches;

static void check(const char *name, u64 result, u32 expected)
{
    printf("hypercall %s status=0x%x result=0x%llx\n", name, HV_STATUS(result), result);
    if (HV_STATUS(result) != expected || HV_REPS_COMPLETED(result) != 0) {
        printf("mismatch: hypercall %s: result 0x%llx, expected status 0x%x\n", name, result, expected);
        mismatches++;
    }
}

void mb_main(u32 magic, u32 info);
void mb_main(u32 magic, u32 info)
{
    (void)info;
    puts("mbhvcall: start");
    if (magic != MB_BOOT_MAGIC)
        guest_fail(NAME, "EAX=0x%08x, expected 0x%08x", magic, MB_BOOT_MAGIC);
    struct hv_info hv;
    hv_require(NAME, &hv);
    if (!(hv.priv_eax & HV_PRIV_HYPERCALL))
        guest_fail(NAME, "0x40000003.EAX bit 5 (AccessHypercallMsrs) clear");

    u64 hc = hv_enable_hypercall_page(hypercall_page);
    printf("hypercall msr=0x%llx page=0x%x\n", hc, (u32)(uptr)hypercall_page);
    if (!(hc & HV_HYPERCALL_ENABLE) || (hc & ~0xfffull) != (uptr)hypercall_page)
        guest_fail(NAME, "hypercall page not enabled (HYPERCALL=0x%llx)", hc);

    /* Slow unknown code with a real input GPA; then the fast and slow spin-wait notification. */
    check("unknown call code 0x7fff", hv_hypercall(0x7fff, (uptr)input_page, 0), HV_STATUS_INVALID_HYPERCALL_CODE);
    check("notify long spin wait", hv_fast8(HVCALL_NOTIFY_LONG_SPIN_WAIT, 0x100), HV_STATUS_SUCCESS);
    *(volatile u64 *)input_page = 0x100;
    check("notify long spin wait (slow)", hv_hypercall(HVCALL_NOTIFY_LONG_SPIN_WAIT, (uptr)input_page, 0),
          HV_STATUS_SUCCESS);
    /* A reserved bit in the high half of the control word (EDX) must be seen. */
    check("reserved control bit 63",
          hv_hypercall(HVCALL_NOTIFY_LONG_SPIN_WAIT | HV_CONTROL_FAST | (1ull << 63), 0, 0),
          HV_STATUS_INVALID_HYPERCALL_INPUT);

    if (mismatches)
        guest_fail(NAME, "%u mismatch(es)", mismatches);
    puts("mbhvcall: ok");
    guest_exit_success();
}
