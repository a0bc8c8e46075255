import HyperV

/// HvCallNotifyLongSpinWait (0x0008, simple): the guest has spun `SpinCount` times on a lock
/// that another VP may hold. Advisory: the TLFS says only HV_STATUS_SUCCESS is returned (beyond
/// the common control-word checks, which KVM also applies: a rep count or variable header is
/// INVALID_HYPERCALL_INPUT).
///
/// The input (u32 SpinCount, u32 RsvdZ) is not read, fast or slow, so its GPA is not checked.
/// The monitor may yield the vCPU thread after a successful call with this code (KVM does
/// `kvm_vcpu_on_spin`); the dispatcher stays pure and leaves that to it.
///
/// Not gated on CPUID: KVM (with enforce_cpuid) answers ACCESS_DENIED when 0x40000004.EBX is
/// 0 or 0xFFFFFFFF ("never notify"), but a guest told never to notify that notifies anyway has
/// only asked for a hint; the TLFS gives the call no error status.
enum HypercallNotifyLongSpinWait: HypercallHandler {
    static let code = HvCallCode.notifyLongSpinWait

    static func inputSize(_ control: HvHypercallControl) -> Int { 0 }

    static func handle(_ input: HypercallInputBlock, control: HvHypercallControl, context: HypercallContext) -> HvStatus {
        .success
    }
}
