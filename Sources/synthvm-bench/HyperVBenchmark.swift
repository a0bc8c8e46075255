import CSynthVM
import Glibc
import KVM
import Machine
import Monitor

/// `synthvm-bench hyperv`: a null hypercall (unknown call code, HV_STATUS_INVALID_HYPERCALL_CODE)
/// through the hypercall page, a TIME_REF_COUNT read, and a reference-time read through the TSC
/// page, under SynthVM; against the floor: the same guest in an identically built VM driven by a
/// bare KVM_RUN loop that answers the hypercall port and the MSR with nothing (no register access,
/// no partition). Target: ratios <= 1.10, and no exits at all for TSC-page reads.
struct HyperVBenchmark {
    let guest: String
    let calls: Int
    let reads: Int
    let rounds: Int

    struct Sample {
        var hypercallNs: Double
        var timeRefNs: Double
        var tscPageNs: Double
        var tscPageExits: Int
    }

    func config(raw: Bool) throws -> MachineConfig {
        try MachineConfig.load(kernelPath: guest, commandLine: "hvcall=\(calls) tref=\(reads) tscpage=\(reads)"
                                   + (raw ? " raw=1" : ""),
                               cpus: 1, memory: "64M", serial: "none")
    }

    func synthvm() throws -> Sample {
        let clock = PhaseClock()
        let vm = try VirtualMachine(config: try config(raw: false),
                                    extraDevices: [(clock, PhaseClock.port...PhaseClock.port)])
        let outcome = vm.run()
        guard outcome.reason == .exitDevice(value: 0), let t4 = clock.mark(4), let t5 = clock.mark(5),
              let t6 = clock.mark(6), let t7 = clock.mark(7) else {
            throw BenchError("hvbench did not finish under SynthVM: \(outcome.reason.description)\n\(vm.console.captured)")
        }
        return Sample(hypercallNs: Double(t5 - t4) / Double(calls), timeRefNs: Double(t6 - t5) / Double(reads),
                      tscPageNs: Double(t7 - t6) / Double(reads), tscPageExits: -1)
    }

    func raw() throws -> Sample {
        try onOwnThread { try self.rawLoop() }
    }

    func rawLoop() throws -> Sample {
        let loop = try BareKVMLoop(config: try config(raw: true))
        var marks = [UInt64](repeating: 0, count: 8)
        var exitsAtMark = [Int](repeating: 0, count: 8)
        try loop.run { exit in
            switch exit.reason {
            case KVMExitReason.io:
                // The hypercall stub's port write (0xE5) is answered by resuming: a bare exit.
                if exit.port == PhaseClock.port, exit.byte < 8 {
                    marks[Int(exit.byte)] = nowNanoseconds()
                    exitsAtMark[Int(exit.byte)] = exit.number
                }
            case KVMExitReason.x86RDMSR, KVMExitReason.x86WRMSR:
                exit.answerMSR(0)
            default:
                return .unexpected
            }
            return .resume
        }
        guard marks[4] > 0, marks[5] > marks[4], marks[6] > marks[5], marks[7] > marks[6] else {
            throw BenchError("raw loop: missing phase marks")
        }
        // The exits from mark 6 to mark 7, the write of mark 7 itself not counted.
        return Sample(hypercallNs: Double(marks[5] - marks[4]) / Double(calls),
                      timeRefNs: Double(marks[6] - marks[5]) / Double(reads),
                      tscPageNs: Double(marks[7] - marks[6]) / Double(reads),
                      tscPageExits: exitsAtMark[7] - exitsAtMark[6] - 1)
    }

    func runAndPrint() throws {
        _ = try raw()
        var rawSamples: [Sample] = [], ours: [Sample] = []
        for _ in 0..<rounds {
            rawSamples.append(try raw())
            ours.append(try synthvm())
        }
        let m = ExitBenchmark.median
        func us(_ ns: Double) -> String { format2(ns / 1000) + " us" }
        let rh = m(rawSamples.map(\.hypercallNs)), oh = m(ours.map(\.hypercallNs))
        let rt = m(rawSamples.map(\.timeRefNs)), ot = m(ours.map(\.timeRefNs))
        let op = m(ours.map(\.tscPageNs))
        print("synthvm-bench hyperv: \(calls) null hypercalls, \(reads) TIME_REF_COUNT reads, \(reads) TSC-page reads; median of \(rounds) runs")
        print("  null hypercall (page stub, unknown code): bare exit \(us(rh)), SynthVM \(us(oh)), ratio \(format2(oh / rh))")
        print("  TIME_REF_COUNT rdmsr: bare exit \(us(rt)), SynthVM \(us(ot)), ratio \(format2(ot / rt))")
        print("  TSC-page read: SynthVM \(us(op)) per read, exits during the phase (bare loop): \(rawSamples.last!.tscPageExits)")
        print("  target: ratios <= 1.10; TSC-page reads: no exits")
    }
}
