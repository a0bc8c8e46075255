/* hvcrash: reports a guest crash through the crash MSRs, as Linux's hyperv_report_panic_msg
 * does: P0-P2 = 0x11, 0x22, 0x33, P3 = GPA of a message, P4 = its length, then
 * CRASH_CTL = CrashNotify | CrashMessage. The VMM stops the VM there by default; if it lets the
 * guest go on, the guest says so and ends normally. */
#include "rt.h"
#include "x86.h"
#include "hyperv.h"
#include "bootinfo.h"

#define NAME "hvcrash"

static const char message_text[] = "synthvm test bugcheck";
static char message[4096] __attribute__((aligned(4096)));

void guest_main(const struct boot_info *bi)
{
    (void)bi;
    puts("hvcrash: start");
    struct hv_info hv;
    hv_require(NAME, &hv);
    if (!(hv.features_edx & HV_FEAT_CRASH_MSRS))
        guest_fail(NAME, "0x40000003.EDX bit 10 (GuestCrashMsrs) clear");
    u64 caps = rdmsr(HV_MSR_CRASH_CTL);
    printf("crash ctl capabilities=0x%llx\n", caps);
    if (!(caps & HV_CRASH_CTL_NOTIFY))
        guest_fail(NAME, "CRASH_CTL does not offer CrashNotify (bit 63)");

    usize len = strlen(message_text);
    memcpy(message, message_text, len + 1);
    wrmsr(HV_MSR_CRASH_P0, 0x11);
    wrmsr(HV_MSR_CRASH_P1, 0x22);
    wrmsr(HV_MSR_CRASH_P2, 0x33);
    wrmsr(HV_MSR_CRASH_P3, (u64)(uptr)message);
    wrmsr(HV_MSR_CRASH_P4, len);
    puts("hvcrash: notified");
    wrmsr(HV_MSR_CRASH_CTL, HV_CRASH_CTL_NOTIFY | HV_CRASH_CTL_MESSAGE);
    puts("hvcrash: still running");
    puts("hvcrash: ok");
}
