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
        let vm = try VirtualMachine(config: try config(raw: true))
        let vcpu = vm.vcpus[0]
        let run = vcpu.run
        var marks = [UInt64](repeating: 0, count: 8)
        var phase = 0
        var pageExits = 0
        loop: while true {
            let r = svm_ioctl_val(vcpu.fd.rawValue, svm_KVM_RUN, 0)
            if r < 0 {
                if r == -Int(EINTR) || r == -Int(EAGAIN) { continue }
                throw BenchError("KVM_RUN failed: \(-r)")
            }
            if phase == 6 { pageExits += 1 }
            switch run.pointee.exit_reason {
            case UInt32(KVM_EXIT_IO):
                let data = UnsafeMutableRawPointer(run).advanced(by: Int(run.pointee.io.data_offset))
                switch run.pointee.io.port {
                case 0x81:
                    let v = Int(data.load(as: UInt8.self))
                    if v < 8 {
                        marks[v] = nowNanoseconds()
                        phase = v
                    }
                case 0xF4:
                    break loop
                default:
                    if run.pointee.io.direction == UInt8(KVM_EXIT_IO_IN) { data.storeBytes(of: 0x60, as: UInt8.self) }
                }
            case UInt32(KVM_EXIT_X86_RDMSR), UInt32(KVM_EXIT_X86_WRMSR):
                run.pointee.msr.data = 0
                run.pointee.msr.error = 0
            default:
                throw BenchError("raw loop: unexpected \(KVMExitReason.name(run.pointee.exit_reason))")
            }
        }
        guard marks[4] > 0, marks[5] > marks[4], marks[6] > marks[5], marks[7] > marks[6] else {
            throw BenchError("raw loop: missing phase marks")
        }
        return Sample(hypercallNs: Double(marks[5] - marks[4]) / Double(calls),
                      timeRefNs: Double(marks[6] - marks[5]) / Double(reads),
                      tscPageNs: Double(marks[7] - marks[6]) / Double(reads), tscPageExits: pageExits - 1)
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
