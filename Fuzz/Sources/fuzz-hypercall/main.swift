// Hypercalls as the monitor's vCPU exit hands them over: `HypercallDispatcher.dispatch` with
// the caller's registers, mode, CPL and advertised CPUID bits, over guest RAM the input fills
// (input blocks, sparse VP sets, misaligned and page-crossing GPAs). A sequence of operations:
//
//   0  scribble: u16 GPA, u8 length, bytes      (the guest writing an input block)
//   1  call:     u64 control, u64 input, u64 output, u8 mode/CPL/enable, u8 VP, u8 VP count,
//                u8 privileges/features/hints, u8 connection answer, u8 XMM (0: none, else 12 u64)
//
// Checked: the dispatcher never traps; a completed call leaves every register but the result
// ones as they were; reps completed never exceed the rep count; a connection gets exactly the
// payload size it was told.
import FuzzSupport
import HyperV
import Partition

/// The guest's RAM: 64 KiB, so that random GPAs often hit it (and often miss it).
let memory = FuzzMemory(size: 64 << 10)
let sinks = FuzzSinks()

/// HvCallPostMessage / HvCallSignalEvent land here; the answer comes from the input.
final class FuzzConnections: HypercallConnections, @unchecked Sendable {
    var answer: HvStatus? = nil
    func postMessage(_ message: HvPostMessageInput, fromVP vp: UInt32) -> HvStatus? {
        precondition(message.payload.count <= HvPostMessageInput.maxPayloadSize, "payload over 240 bytes")
        return answer
    }
    func signalEvent(_ event: HvSignalEventInput, fromVP vp: UInt32) -> HvStatus? { answer }
}
let connections = FuzzConnections()

/// The calls SynthVM implements and their neighbours, so most calls reach a handler.
let codes: [HvCallCode] = [.notifyLongSpinWait, .sendSyntheticClusterIpi, .sendSyntheticClusterIpiEx, .postMessage,
                           .signalEvent, .flushVirtualAddressSpace, .flushVirtualAddressListEx, .getVpIndexFromApicId]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHypercall(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    memory.clear()
    var calls = 0
    while !input.isEmpty, calls < 64 {
        switch input.u8() % 3 {
        case 0:
            let gpa = Int(input.u16())
            memory.scribble(input.take(Int(input.u8())), at: gpa)
        default:
            calls += 1
            call(&input)
        }
    }
    return 0
}

func call(_ input: inout FuzzInput) {
    var raw = input.u64()
    // Half the time, one of the implemented call codes in the low 16 bits.
    let pick = input.u8()
    if pick & 1 != 0 { raw = raw & ~HvHypercallControl.callCodeMask | UInt64(codes[Int(pick >> 1) % codes.count].rawValue) }
    let inputValue = input.u64(), outputValue = input.u64()
    let flags = input.u8()
    let mode: VPExecutionMode = [.long64, .long64, .protected32, .other][Int(flags & 3)]
    let vp = UInt32(input.u8() % 8)
    let vpCount = Int(input.u8() % 8)
    let bits = input.u8()
    let answerByte = input.u8()
    connections.answer = [nil, .success, .insufficientBuffers, .invalidPortID][Int(answerByte & 3)]
    let xmm: [UInt64] = input.u8() & 1 != 0 ? (0..<12).map { _ in input.u64() } : []

    let control = HvHypercallControl(rawValue: raw)
    let before = HypercallInput(control: control, inputValue: inputValue, outputValue: outputValue)
        .encode(into: VPRegisters(rax: 0xA1, rbx: 0xB2, rcx: 0xC3, rdx: 0xD4, rsi: 0xE5, rdi: 0xF6, r8: 0x78), mode: mode == .other ? .long64 : mode)
    var regs = before
    regs.xmm = xmm
    let context = HypercallContext(
        vp: vp, vpCount: vpCount,
        privilegesEBX: bits & 1 != 0 ? HvPrivilegeEBX.postMessages | HvPrivilegeEBX.signalEvents : 0,
        featuresEDX: bits & 2 != 0 ? HvFeatureEDX.xmmHypercallInput : 0,
        hintsEAX: bits & 4 != 0 ? HvHintEAX.syntheticClusterIpi | HvHintEAX.exProcessorMasks : 0,
        interfaceEnabled: flags & 4 == 0, cpl: flags & 8 != 0 ? 3 : 0, mode: mode,
        memory: memory, interrupts: sinks, connections: connections)
    _ = HypercallDispatcher.needsXMMInput(before.hypercallInput(mode: mode), featuresEDX: context.featuresEDX)
    switch HypercallDispatcher.dispatch(regs, context: context) {
    case .invalidOpcode:
        break
    case .completed(let after):
        // Only the result registers change: RAX in 64-bit mode, EDX:EAX in 32-bit mode.
        // (and in 64-bit mode RCX, whose rep start index a successful rep call advances).
        precondition(after.rbx == regs.rbx && after.rsi == regs.rsi && after.rdi == regs.rdi && after.r8 == regs.r8
                     && after.xmm == regs.xmm, "a hypercall changed an input register")
        let result = HypercallABI.result(in: after, mode: mode)
        if mode == .long64 {
            precondition(after.rdx == regs.rdx, "a 64-bit hypercall changed RDX")
            let repAdvanced = control.callCode.isRep && result.status == .success
            precondition(repAdvanced || after.rcx == regs.rcx, "a 64-bit hypercall changed RCX")
        } else {
            precondition(after.rcx == regs.rcx, "a 32-bit hypercall changed ECX")
        }
        precondition(result.repsCompleted <= control.repCount, "more reps completed than asked")
    }
}

extension VPRegisters {
    func hypercallInput(mode: VPExecutionMode) -> HypercallInput {
        HypercallInput(registers: self, mode: mode == .other ? .long64 : mode)
            ?? HypercallInput(control: HvHypercallControl(rawValue: 0))
    }
}
