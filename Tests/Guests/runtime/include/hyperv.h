/* HV#1 (Hyper-V TLFS) guest helpers: CPUID leaves, synthetic MSR numbers, hypercall page and
 * calls. Built for both widths: the 64-bit guests use RCX/RDX/R8 -> RAX, the 32-bit multiboot
 * guest EDX:EAX / EBX:ECX / EDI:ESI -> EDX:EAX (TLFS "Hypercall Register Conventions"). */
#ifndef HYPERV_H
#define HYPERV_H
#include "rt.h"

/* ---- CPUID ---- */
#define HV_CPUID_VENDOR 0x40000000u       /* EAX max leaf, EBX:ECX:EDX "Microsoft Hv" */
#define HV_CPUID_INTERFACE 0x40000001u    /* EAX "Hv#1" */
#define HV_CPUID_VERSION 0x40000002u
#define HV_CPUID_FEATURES 0x40000003u     /* EAX/EBX privileges, EDX features */
#define HV_CPUID_HINTS 0x40000004u        /* EAX recommendations, EBX spin retries */
#define HV_CPUID_LIMITS 0x40000005u
#define HV_VENDOR_EBX 0x7263694Du         /* "Micr" */
#define HV_VENDOR_ECX 0x666F736Fu         /* "osof" */
#define HV_VENDOR_EDX 0x76482074u         /* "t Hv" */
#define HV_INTERFACE_HV1 0x31237648u      /* "Hv#1" */

/* 0x40000003.EAX (partition privileges, MSR group) */
#define HV_PRIV_VP_RUNTIME (1u << 0)
#define HV_PRIV_TIME_REF_COUNT (1u << 1)
#define HV_PRIV_SYNIC (1u << 2)
#define HV_PRIV_SYNTIMER (1u << 3)
#define HV_PRIV_APIC_MSRS (1u << 4)       /* EOI/ICR/TPR and VP assist page */
#define HV_PRIV_HYPERCALL (1u << 5)
#define HV_PRIV_VP_INDEX (1u << 6)
#define HV_PRIV_RESET (1u << 7)
#define HV_PRIV_STATS (1u << 8)
#define HV_PRIV_REFERENCE_TSC (1u << 9)
#define HV_PRIV_GUEST_IDLE (1u << 10)
#define HV_PRIV_FREQUENCY (1u << 11)
/* 0x40000003.EBX (partition privileges, hypercall group) */
#define HV_PRIV_POST_MESSAGES (1u << 4)
#define HV_PRIV_SIGNAL_EVENTS (1u << 5)
/* 0x40000003.EDX (features) */
#define HV_FEAT_XMM_INPUT (1u << 4)
#define HV_FEAT_FREQUENCY_MSRS (1u << 8)
#define HV_FEAT_CRASH_MSRS (1u << 10)
#define HV_FEAT_SINT_POLLING (1u << 17)
#define HV_FEAT_HYPERCALL_MSR_LOCK (1u << 18)
#define HV_FEAT_DIRECT_STIMERS (1u << 19)
/* 0x40000004.EAX (hints) */
#define HV_HINT_RELAXED_TIMING (1u << 5)
#define HV_HINT_DEPRECATE_AEOI (1u << 9)
#define HV_HINT_CLUSTER_IPI (1u << 10)
#define HV_HINT_EX_PROCESSOR_MASKS (1u << 11)

/* ---- synthetic MSRs ---- */
#define HV_MSR_GUEST_OS_ID 0x40000000u
#define HV_MSR_HYPERCALL 0x40000001u
#define HV_MSR_VP_INDEX 0x40000002u
#define HV_MSR_RESET 0x40000003u
#define HV_MSR_VP_RUNTIME 0x40000010u
#define HV_MSR_TIME_REF_COUNT 0x40000020u
#define HV_MSR_REFERENCE_TSC 0x40000021u
#define HV_MSR_TSC_FREQUENCY 0x40000022u
#define HV_MSR_APIC_FREQUENCY 0x40000023u
#define HV_MSR_EOI 0x40000070u
#define HV_MSR_ICR 0x40000071u
#define HV_MSR_TPR 0x40000072u
#define HV_MSR_VP_ASSIST_PAGE 0x40000073u
#define HV_MSR_SCONTROL 0x40000080u
#define HV_MSR_SVERSION 0x40000081u
#define HV_MSR_SIEFP 0x40000082u
#define HV_MSR_SIMP 0x40000083u
#define HV_MSR_EOM 0x40000084u
#define HV_MSR_SINT0 0x40000090u
#define HV_MSR_STIMER0_CONFIG 0x400000B0u
#define HV_MSR_STIMER0_COUNT 0x400000B1u
#define HV_MSR_SINT(n) (HV_MSR_SINT0 + (u32)(n))                     /* n = 0..15 */
#define HV_MSR_STIMER_CONFIG(n) (HV_MSR_STIMER0_CONFIG + 2u * (u32)(n)) /* n = 0..3 */
#define HV_MSR_STIMER_COUNT(n) (HV_MSR_STIMER0_COUNT + 2u * (u32)(n))
#define HV_MSR_GUEST_IDLE 0x400000F0u     /* a read idles the VP: never read it */
#define HV_MSR_CRASH_P0 0x40000100u
#define HV_MSR_CRASH_P1 0x40000101u
#define HV_MSR_CRASH_P2 0x40000102u
#define HV_MSR_CRASH_P3 0x40000103u
#define HV_MSR_CRASH_P4 0x40000104u
#define HV_MSR_CRASH_CTL 0x40000105u      /* writing bit 63 reports a crash: stops the VM */

#define HV_HYPERCALL_ENABLE 1ull
#define HV_HYPERCALL_LOCKED 2ull
#define HV_REFERENCE_TSC_ENABLE 1ull
#define HV_CRASH_CTL_NOTIFY (1ull << 63)

/* SynIC (TLFS "SynIC MSRs"): SCONTROL bit 0; SIMP/SIEFP GPA 63:12 | enable; SINTx vector 7:0,
 * Masked 16, AutoEOI 17, Polling 18 (reset value: masked, vector 0). */
#define HV_SCONTROL_ENABLE 1ull
#define HV_SYNIC_PAGE_ENABLE 1ull
#define HV_SINT_MASKED (1ull << 16)
#define HV_SINT_AUTO_EOI (1ull << 17)
#define HV_SINT_POLLING (1ull << 18)
#define HV_SINT_RESET 0x10000ull
#define HV_SVERSION 1ull
/* STIMERn_CONFIG (TLFS "Synthetic Timers"): bits 15:13 and 63:20 RsvdZ. COUNT is the absolute
 * expiration (one-shot) or the period (periodic), in 100 ns reference time. */
#define HV_STIMER_ENABLE (1ull << 0)
#define HV_STIMER_PERIODIC (1ull << 1)
#define HV_STIMER_LAZY (1ull << 2)
#define HV_STIMER_AUTO_ENABLE (1ull << 3)
#define HV_STIMER_VECTOR(v) ((u64)(v) << 4)       /* bits 11:4, direct mode */
#define HV_STIMER_DIRECT (1ull << 12)
#define HV_STIMER_SINT(s) ((u64)(s) << 16)        /* bits 19:16, message mode */

/* The SIM page: 16 slots of 256 bytes, slot x for SINTx (TLFS "SynIC Message Page", layout as
 * in Linux's struct hv_message). The SIEF page: 16 arrays of 2048 flag bits. */
#define HV_MESSAGE_SLOT_SIZE 256u
#define HV_MSG_TYPE 0                   /* u32 MessageType (0 = slot free) */
#define HV_MSG_PAYLOAD_SIZE 4           /* u8 */
#define HV_MSG_FLAGS 5                  /* u8, bit 0 MessagePending */
#define HV_MSG_ORIGIN 8                 /* u64 */
#define HV_MSG_PAYLOAD 16               /* u64[30] */
#define HV_MSG_FLAG_PENDING 0x01u
#define HV_MESSAGE_TYPE_NONE 0u
#define HV_MESSAGE_TYPE_TIMER_EXPIRED 0x80000010u
/* TimerExpired payload (from the slot's start): u32 TimerIndex, u32 reserved, u64
 * ExpirationTime, u64 DeliveryTime (100 ns reference time); PayloadSize 24. */
#define HV_TIMER_MSG_INDEX 16
#define HV_TIMER_MSG_EXPIRATION 24
#define HV_TIMER_MSG_DELIVERY 32
#define HV_TIMER_MSG_PAYLOAD_SIZE 24u
#define HV_CRASH_CTL_MESSAGE (1ull << 62)

/* What Linux 6.1 writes: HV_LINUX_VENDOR_ID (0x8100) << 48 | LINUX_VERSION_CODE (6.1.0 =
 * 0x060100) << 16 (hv_generate_guest_id in include/asm-generic/mshyperv.h). */
#define HV_LINUX_GUEST_OS_ID 0x8100000601000000ull

/* ---- hypercalls ---- */
#define HVCALL_NOTIFY_LONG_SPIN_WAIT 0x0008u
#define HVCALL_SEND_IPI 0x000Bu
#define HVCALL_SEND_IPI_EX 0x0015u
#define HVCALL_POST_MESSAGE 0x005Cu
#define HVCALL_SIGNAL_EVENT 0x005Du

/* Control word (TLFS "Hypercall Inputs") */
#define HV_CONTROL_FAST (1ull << 16)
#define HV_CONTROL_VARHEAD(n) ((u64)(n) << 17)   /* bits 26:17, QWORDs */
#define HV_CONTROL_REP_COUNT(n) ((u64)(n) << 32) /* bits 43:32 */
#define HV_CONTROL_REP_START(n) ((u64)(n) << 48) /* bits 59:48 */

/* Result value: status in bits 15:0, reps completed in 43:32 */
#define HV_STATUS(r) ((u32)((r) & 0xffff))
#define HV_REPS_COMPLETED(r) ((u32)(((r) >> 32) & 0xfff))

#define HV_STATUS_SUCCESS 0x0
#define HV_STATUS_INVALID_HYPERCALL_CODE 0x2
#define HV_STATUS_INVALID_HYPERCALL_INPUT 0x3
#define HV_STATUS_INVALID_ALIGNMENT 0x4
#define HV_STATUS_INVALID_PARAMETER 0x5
#define HV_STATUS_ACCESS_DENIED 0x6
#define HV_STATUS_INVALID_CONNECTION_ID 0x12
#define HV_STATUS_INSUFFICIENT_BUFFERS 0x13

/* The HvPostMessage input block (256 bytes) */
struct hv_post_message_input {
    u32 connection_id;
    u32 reserved;
    u32 message_type;
    u32 payload_size;
    u64 payload[30];
};

/* ---- CPUID helpers ---- */

/* What leaves 0x40000000-0x40000004 say. All zero when 0x40000000 does not say
 * "Microsoft Hv" (then the other 0x4000xxxx leaves are not Hyper-V's and mean nothing). */
struct hv_info {
    bool present;          /* "Microsoft Hv" */
    u32 max_leaf;          /* 0x40000000.EAX */
    u32 interface;         /* 0x40000001.EAX */
    u32 priv_eax, priv_ebx, features_edx;   /* 0x40000003 (only if max_leaf >= it) */
    u32 hints_eax, spin_ebx;                /* 0x40000004 (only if max_leaf >= it) */
};
bool hv_vendor_is_microsoft(void);
/* Fills *hv; returns hv->present. */
bool hv_query(struct hv_info *hv);
/* Fills *hv; fails as guest ("no \"Microsoft Hv\" leaves") unless hv->present. */
void hv_require(const char *guest, struct hv_info *hv);
/* The guest's physical-address width (CPUID 0x80000008.EAX[7:0], 36 if that leaf is absent). */
u32 cpu_phys_addr_bits(void);

/* ---- hypercall page ---- */

/* Where hv_hypercall calls (set by hv_enable_hypercall_page). */
extern void *hv_hypercall_pg;
/* Writes GUEST_OS_ID (HV_LINUX_GUEST_OS_ID) if it reads 0, then HYPERCALL = GPA of page | enable,
 * and reads HYPERCALL back. page must be a 4 KiB-aligned page the guest owns and leaves alone.
 * Returns the value read back; the page is usable when it has the enable bit and page's GPFN.
 * Uses plain rdmsr/wrmsr: check CPUID first (an unadvertised MSR raises #GP). */
u64 hv_enable_hypercall_page(void *page);

/* One hypercall through hv_hypercall_pg: returns the result value (RAX, or EDX:EAX). */
u64 hv_hypercall(u64 control, u64 in, u64 out);
/* Fast (register) calls: 8 bytes of input in RDX (EBX:ECX), 16 bytes in RDX and R8. */
static inline u64 hv_fast8(u16 code, u64 in) { return hv_hypercall(code | HV_CONTROL_FAST, in, 0); }
static inline u64 hv_fast16(u16 code, u64 in1, u64 in2)
{
    return hv_hypercall(code | HV_CONTROL_FAST, in1, in2);
}

#ifdef __x86_64__
/* ---- faulting MSR access (64-bit guests; runtime/safe64.S, extable.h) ---- */

/* true if rdmsr raised #GP (then *val = 0) */
bool rdmsr_safe(u32 msr, u64 *val);
/* true if wrmsr raised #GP */
bool wrmsr_safe(u32 msr, u64 val);
/* 0 if rdtsc ran (value in *val), else 1 + the vector it raised (#UD 6, #GP 13) */
u32 rdtsc_safe(u64 *val);
#endif

#endif
