// Synthetic MSR traffic as the monitor's MSR exits deliver it: `Partition.readMSR` /
// `writeMSR` in any order and from any VP, with the things that happen between exits (time
// passing, timers serviced, messages and events posted into the SynIC, the guest writing its
// own pages, a reset). The partition's shape (enlightenments, VP count, queue depth) comes from
// the first bytes. Operations:
//
//   0  WRMSR  u8 VP, u8 MSR, value (u8 form: raw u64, page GPA | flag bits, small)
//   1  RDMSR  u8 VP, u8 MSR
//   2  time passes: u32 TSC ticks (<< u8 shift), then every VP's timers are serviced
//   3  postMessage: u8 VP, u8 SINT, u32 type, u8 length, payload
//   4  signalEvent: u8 VP, u8 SINT, u16 flag
//   5  the guest writes: u16 page, u8 offset, u8 length, bytes (frees slots, sets flags)
//   6  reset
//
// Checked: nothing traps; TIME_REF_COUNT never goes backwards; VP_INDEX reads the VP; an
// accepted WRMSR of GUEST_OS_ID reads back.
import FuzzSupport
import HyperV
import Partition

/// The MSRs the partition implements and a few it refuses; an index byte past the table is a
/// raw index in the synthetic range.
let msrs: [UInt32] = [HvMSR.guestOsId, HvMSR.hypercall, HvMSR.vpIndex, HvMSR.reset, HvMSR.vpRuntime,
                      HvMSR.timeRefCount, HvMSR.referenceTsc, HvMSR.tscFrequency, HvMSR.apicFrequency,
                      HvMSR.vpAssistPage, HvMSR.scontrol, HvMSR.sversion, HvMSR.siefp, HvMSR.simp, HvMSR.eom,
                      HvMSR.crashCtl, HvMSR.eoi, HvMSR.guestIdle]
    + Array(HvMSR.sints) + Array(HvMSR.stimers) + Array(HvMSR.crashParameters)

/// 1 MiB of RAM: every page-GPA form below lands in it.
let memory = FuzzMemory(size: 1 << 20)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMSR(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    memory.clear()
    let enlightenments = Enlightenments.fuzzed(input.u8(), input.u8())
    let vpCount = 1 + Int(input.u8() % 4)
    let clock = FuzzClock()
    let sinks = FuzzSinks()
    let partition = Partition(
        configuration: PartitionConfiguration(enlightenments: enlightenments, vpCount: vpCount,
                                              synicQueueDepth: 1 + Int(input.u8() % 16)),
        memory: memory, clock: clock, interrupts: sinks, events: sinks, synicInterrupts: sinks, timers: sinks)
    var lastReferenceTime: UInt64 = 0
    var ops = 0
    while !input.isEmpty, ops < 256 {
        ops += 1
        switch input.u8() % 7 {
        case 0:
            let vp = UInt32(input.u8() % 5)  // one past the last VP, sometimes
            let index = msrIndex(input.u8())
            let value = msrValue(&input)
            let result = partition.writeMSR(vp: vp, index: index, value: value)
            if index == HvMSR.guestOsId, result == .written {
                precondition(partition.readMSR(vp: vp, index: index) == .value(value), "GUEST_OS_ID did not read back")
            }
        case 1:
            let vp = UInt32(input.u8() % 5)
            let index = msrIndex(input.u8())
            let result = partition.readMSR(vp: vp, index: index)
            if case .value(let v) = result {
                if index == HvMSR.timeRefCount {
                    precondition(v >= lastReferenceTime, "TIME_REF_COUNT went backwards")
                    lastReferenceTime = v
                }
                if index == HvMSR.vpIndex { precondition(v == UInt64(vp), "VP_INDEX is not the VP") }
            }
        case 2:
            clock.tsc &+= UInt64(input.u32()) << UInt64(input.u8() % 24)
            for vp in 0..<vpCount { partition.serviceSyntheticTimers(vp: UInt32(vp)) }
        case 3:
            let vp = UInt32(input.u8() % 5), sint = Int(input.u8() % 17)
            let type = HvMessageType(rawValue: input.u32())
            let payload = input.take(Int(input.u8()))
            _ = partition.postMessage(HvMessage(type: type, payload: payload), vp: vp, sint: sint)
        case 4:
            let vp = UInt32(input.u8() % 5), sint = Int(input.u8() % 17)
            _ = partition.signalEvent(vp: vp, sint: sint, flag: Int(input.u16()))
        case 5:
            let gpa = Int(input.u16() % 256) << 12 | Int(input.u8()) << 4
            memory.scribble(input.take(Int(input.u8())), at: gpa)
        default:
            partition.reset()
        }
        _ = partition.synicSnapshot(vp: UInt32(input.u8() % 5))
    }
    return 0
}

func msrIndex(_ byte: UInt8) -> UInt32 {
    Int(byte) < msrs.count ? msrs[Int(byte)] : HvMSR.syntheticRange.lowerBound + UInt32(byte) * 2
}

func msrValue(_ input: inout FuzzInput) -> UInt64 {
    switch input.u8() % 4 {
    case 0: return input.u64()
    // A page in RAM with the enable bit (and maybe others) set: HYPERCALL, REFERENCE_TSC,
    // SIMP, SIEFP, VP_ASSIST_PAGE.
    case 1: return UInt64(input.u8()) << 12 | UInt64(input.u8() & 3)
    // A SINT or STIMER_CONFIG: vector, masked/auto-EOI/polling, enable/periodic/lazy/direct bits, SINTx.
    case 2: return UInt64(input.u32()) | UInt64(input.u8() & 0x0F) << 16
    default: return UInt64(input.u16())
    }
}
