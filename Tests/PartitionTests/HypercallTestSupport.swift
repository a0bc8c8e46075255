import HyperV
import Partition
import Synchronization

// Helpers for the Hypercall*Tests files: a harness that builds a HypercallContext over the
// shared fakes (FakePartitionEnvironment.swift) and issues calls the way a guest would.

/// Records every HvCallPostMessage / HvCallSignalEvent that reaches the connection seam and
/// answers with a fixed status (nil = "no such connection").
final class HcConnections: HypercallConnections, @unchecked Sendable {
    private struct Log {
        var messages: [(HvPostMessageInput, UInt32)] = []
        var events: [(HvSignalEventInput, UInt32)] = []
    }
    private let log = Mutex(Log())
    let answer: HvStatus?

    init(answer: HvStatus?) { self.answer = answer }

    func postMessage(_ message: HvPostMessageInput, fromVP vp: UInt32) -> HvStatus? {
        log.withLock { $0.messages.append((message, vp)) }
        return answer
    }

    func signalEvent(_ event: HvSignalEventInput, fromVP vp: UInt32) -> HvStatus? {
        log.withLock { $0.events.append((event, vp)) }
        return answer
    }

    var messages: [(message: HvPostMessageInput, vp: UInt32)] { log.withLock { $0.messages.map { ($0.0, $0.1) } } }
    var events: [(event: HvSignalEventInput, vp: UInt32)] { log.withLock { $0.events.map { ($0.0, $0.1) } } }
}

/// Registers nobody should touch carry these, so a test can see they survive a call.
let hcSentinelRegisters = VPRegisters(
    rax: 0xAAAA_AAAA_AAAA_AAAA, rbx: 0xBBBB_BBBB_BBBB_BBBB, rcx: 0xCCCC_CCCC_CCCC_CCCC,
    rdx: 0xDDDD_DDDD_DDDD_DDDD, rsi: 0x5151_5151_5151_5151, rdi: 0xD1D1_D1D1_D1D1_D1D1,
    r8: 0x8888_8888_8888_8888)

/// Every hint and privilege the dispatcher looks at, granted.
let hcAllHints = HvHintEAX.syntheticClusterIpi | HvHintEAX.exProcessorMasks
let hcAllPrivileges = HvPrivilegeEBX.postMessages | HvPrivilegeEBX.signalEvents

/// One VP's view of a partition with 1 MiB of RAM at GPA 0.
struct HcHarness {
    let memory = FakeMemory(size: 1 << 20)
    let interrupts = FakeInterrupts()
    var connections: any HypercallConnections = NoHypercallConnections.shared
    var vp: UInt32 = 0
    var vpCount = 4
    var privilegesEBX = hcAllPrivileges
    var featuresEDX: UInt32 = 0
    var hintsEAX = hcAllHints
    var interfaceEnabled = true
    var cpl: UInt8 = 0
    var mode = VPExecutionMode.long64

    var context: HypercallContext {
        HypercallContext(
            vp: vp, vpCount: vpCount, privilegesEBX: privilegesEBX, featuresEDX: featuresEDX,
            hintsEAX: hintsEAX, interfaceEnabled: interfaceEnabled, cpl: cpl, mode: mode,
            memory: memory, interrupts: interrupts, connections: connections)
    }

    /// The registers a guest in `mode` loads before calling the hypercall page.
    func registers(_ control: HvHypercallControl, input: UInt64 = 0, output: UInt64 = 0, xmm: [UInt64] = []) -> VPRegisters {
        var r = HypercallInput(control: control, inputValue: input, outputValue: output)
            .encode(into: hcSentinelRegisters, mode: mode == .other ? .long64 : mode)
        r.xmm = xmm
        return r
    }

    func call(_ control: HvHypercallControl, input: UInt64 = 0, output: UInt64 = 0, xmm: [UInt64] = []) -> HypercallOutcome {
        HypercallDispatcher.dispatch(registers(control, input: input, output: output, xmm: xmm), context: context)
    }

    /// The result the guest reads back, or nil when the call raised #UD.
    func result(_ control: HvHypercallControl, input: UInt64 = 0, output: UInt64 = 0, xmm: [UInt64] = []) -> HvHypercallResult? {
        switch call(control, input: input, output: output, xmm: xmm) {
        case .completed(let regs): HypercallABI.result(in: regs, mode: mode)
        case .invalidOpcode: nil
        }
    }

    /// The status the guest reads back, or nil when the call raised #UD.
    func status(_ control: HvHypercallControl, input: UInt64 = 0, output: UInt64 = 0, xmm: [UInt64] = []) -> HvStatus? {
        result(control, input: input, output: output, xmm: xmm)?.status
    }

    /// Writes little-endian quadwords at `gpa`.
    func store(_ quadwords: [UInt64], at gpa: UInt64) {
        for (index, value) in quadwords.enumerated() {
            memory.store64(value, at: gpa + UInt64(8 * index))
        }
    }
}

/// The first quadword of the cluster-IPI inputs: u32 vector, u8 TargetVtl, u8 pad[3].
func hcVectorWord(_ vector: UInt32, reserved: UInt32 = 0) -> UInt64 {
    UInt64(vector) | UInt64(reserved) << 32
}
