import HyperV

/// HvCallSendSyntheticClusterIpi (0x000B) and HvCallSendSyntheticClusterIpiEx (0x0015): a
/// fixed, edge-triggered interrupt with one vector to a set of VPs, the enlightened way to send
/// IPIs (Linux arch/x86/hyperv/hv_apic.c). Delivery is `PartitionInterrupts.sendFixedInterrupt`
/// per target (VP index == APIC ID in SynthVM); KVM's `kvm_hv_send_ipi` is the model.
///
/// What is refused, and why that status:
///
/// | case | status | source |
/// |---|---|---|
/// | hint SyntheticClusterIpi (0x40000004.EAX bit 10) clear; for Ex also ExProcessorMasks (bit 11) | ACCESS_DENIED | KVM `hv_check_hypercall_access` |
/// | rep count / start index, or a variable header on the non-Ex call | INVALID_HYPERCALL_INPUT | TLFS, KVM |
/// | TargetVtl/padding word (bytes 4-7) non-zero | INVALID_HYPERCALL_INPUT | KVM (fast form; we apply it to both forms: SynthVM has only VTL 0) |
/// | vector outside 0x10...0xFF | INVALID_PARAMETER | SynthVM's requirement (issue #3); KVM answers INVALID_HYPERCALL_INPUT, the TLFS states the range but no status |
/// | Ex: banks declared (variable header) != set bits of ValidBanksMask, or more than 64 | INVALID_HYPERCALL_INPUT | KVM |
/// | Ex: fast form whose banks do not fit in XMM0-5 (more than 11) | INVALID_HYPERCALL_INPUT | KVM |
/// | Ex: Format neither SPARSE_4K nor ALL | INVALID_PARAMETER | ours (KVM treats it as sparse) |
///
/// Target bits at or beyond the partition's VP count are ignored, as KVM ignores VP indices
/// that match no vCPU; the TLFS gives no status for them. The calling VP may target itself.
enum HypercallClusterIPI {
    /// `HV_IPI_LOW_VECTOR` / `HV_IPI_HIGH_VECTOR`: vectors 0-15 are exceptions/reserved.
    static let vectors: ClosedRange<UInt32> = 0x10...0xFF

    /// The checks both calls share on the first quadword {u32 Vector, u8 TargetVtl, u8 pad[3]}.
    static func vector(from input: HypercallInputBlock) -> Result<UInt8, HvStatus> {
        guard input.u32(at: 4) == 0 else { return .failure(.invalidHypercallInput) }
        let vector = input.u32(at: 0)
        guard vectors.contains(vector) else { return .failure(.invalidParameter) }
        return .success(UInt8(vector))
    }

    static func deliver(vector: UInt8, to vps: [UInt32], context: HypercallContext) {
        for vp in vps {
            context.interrupts.sendFixedInterrupt(vp: vp, vector: vector)
        }
    }

    static func hasHint(_ bits: UInt32, _ context: HypercallContext) -> Bool {
        context.hintsEAX & bits == bits
    }
}

/// HvCallSendSyntheticClusterIpi: {u32 Vector, u8 TargetVtl, u8 pad[3], u64 ProcessorMask},
/// 16 bytes; Linux sends it fast (RDX = vector, R8 = mask) for VPs below 64.
enum HypercallSendSyntheticClusterIpi: HypercallHandler {
    static let code = HvCallCode.sendSyntheticClusterIpi
    static let size = 16

    static func accessStatus(_ context: HypercallContext) -> HvStatus? {
        HypercallClusterIPI.hasHint(HvHintEAX.syntheticClusterIpi, context) ? nil : .accessDenied
    }

    static func inputSize(_ control: HvHypercallControl) -> Int { size }

    static func handle(_ input: HypercallInputBlock, control: HvHypercallControl, context: HypercallContext) -> HvStatus {
        let vector: UInt8
        switch HypercallClusterIPI.vector(from: input) {
        case .success(let v): vector = v
        case .failure(let status): return status
        }
        let mask = input.u64(at: 8)
        let set = HvVPSet(format: .sparse4K, validBankMask: 1, bankContents: [mask])
        HypercallClusterIPI.deliver(vector: vector, to: set.vpIndices(vpCount: context.vpCount), context: context)
        return .success
    }
}

/// HvCallSendSyntheticClusterIpiEx: {u32 Vector, u8 TargetVtl, u8 pad[3], HV_VP_SET}; the
/// variable header is the VP set's banks, one quadword each. Linux sends it memory-based
/// (`hv_do_rep_hypercall(HVCALL_SEND_IPI_EX, 0, nr_bank, ...)`), with ALL and no banks when
/// every present CPU is targeted. The fast form needs XMM input: RDX = vector, R8 = Format,
/// XMM0 low = ValidBanksMask, then the banks.
enum HypercallSendSyntheticClusterIpiEx: HypercallHandler {
    static let code = HvCallCode.sendSyntheticClusterIpiEx
    /// Vector word, Format, ValidBanksMask.
    static let fixedSize = 8 + HvVPSet.headerSize

    static func accessStatus(_ context: HypercallContext) -> HvStatus? {
        HypercallClusterIPI.hasHint(HvHintEAX.syntheticClusterIpi | HvHintEAX.exProcessorMasks, context)
            ? nil : .accessDenied
    }

    /// More banks than a u64 ValidBanksMask can name can never match it; refusing before the
    /// fetch keeps a huge header from being answered as a page-crossing INVALID_ALIGNMENT.
    static func validate(_ control: HvHypercallControl) -> HvStatus? {
        Int(control.variableHeaderSize) > HvVPSet.maxBanks ? .invalidHypercallInput : nil
    }

    static func inputSize(_ control: HvHypercallControl) -> Int {
        fixedSize + 8 * Int(control.variableHeaderSize)
    }

    static func handle(_ input: HypercallInputBlock, control: HvHypercallControl, context: HypercallContext) -> HvStatus {
        let bankCount = Int(control.variableHeaderSize)
        let set: HvVPSet
        do {
            set = try HvVPSet.parse(quadwords: input.quadwords(from: 8, count: 2 + bankCount), bankCount: bankCount)
        } catch {
            return error.status
        }
        let vector: UInt8
        switch HypercallClusterIPI.vector(from: input) {
        case .success(let v): vector = v
        case .failure(let status): return status
        }
        HypercallClusterIPI.deliver(vector: vector, to: set.vpIndices(vpCount: context.vpCount), context: context)
        return .success
    }
}
