import CSynthVM
import Glibc
import KVM
import Machine
import Monitor

/// `synthvm-bench exits`: cost of a port-write exit and of an unknown-MSR exit through SynthVM's
/// exit loop, against the floor: the same guest in an identically built VM driven by the most
/// minimal KVM_RUN loop possible in this process. Both sides run the same guest instructions,
/// so the ratio isolates what SynthVM's dispatch adds to the bare round trip.
struct ExitBenchmark {
    let benchGuest: String
    let pio: Int
    let msr: Int
    let rounds: Int

    struct Sample {
        var pioNs: Double
        var msrNs: Double
    }

    func config() throws -> MachineConfig {
        try MachineConfig.load(kernelPath: benchGuest, commandLine: "pio=\(pio) msr=\(msr)", cpus: 1,
                               memory: "64M", serial: "none")
    }

    /// SynthVM's own path: VirtualMachine.run() with its vCPU thread, bus and supervisor.
    func synthvm() throws -> Sample {
        let clock = PhaseClock()
        let vm = try VirtualMachine(config: try config(), extraDevices: [(clock, PhaseClock.port...PhaseClock.port)])
        let outcome = vm.run()
        guard outcome.reason == .exitDevice(value: 0), let t1 = clock.mark(1), let t2 = clock.mark(2),
              let t3 = clock.mark(3) else {
            throw BenchError("bench guest did not finish under SynthVM: \(outcome.reason.description)")
        }
        return Sample(pioNs: Double(t2 - t1) / Double(pio), msrNs: Double(t3 - t2) / Double(msr))
    }

    /// The floor: a `BareKVMLoop` that refuses the MSR (#GP, as SynthVM does for an unknown one)
    /// and answers nothing else. Like SynthVM's vCPUs it runs on a thread of its own, so thread
    /// placement is not part of the difference.
    func raw() throws -> Sample {
        try onOwnThread { try self.rawLoop() }
    }

    func rawLoop() throws -> Sample {
        let loop = try BareKVMLoop(config: try config())
        var marks = [UInt64](repeating: 0, count: 4)
        try loop.run { exit in
            switch exit.reason {
            case KVMExitReason.io:
                if exit.port == PhaseClock.port, exit.byte < 4 { marks[Int(exit.byte)] = nowNanoseconds() }
            case KVMExitReason.x86RDMSR, KVMExitReason.x86WRMSR:
                exit.refuseMSR()
            default:
                return .unexpected
            }
            return .resume
        }
        guard marks[1] > 0, marks[2] > marks[1], marks[3] > marks[2] else { throw BenchError("raw loop: missing phase marks") }
        return Sample(pioNs: Double(marks[2] - marks[1]) / Double(pio), msrNs: Double(marks[3] - marks[2]) / Double(msr))
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func runAndPrint() throws {
        var rawSamples: [Sample] = []
        var ourSamples: [Sample] = []
        _ = try raw() // warm-up: page in guest memory and code paths
        for _ in 0..<rounds {
            rawSamples.append(try raw())
            ourSamples.append(try synthvm())
        }
        let rawPIO = Self.median(rawSamples.map(\.pioNs)), rawMSR = Self.median(rawSamples.map(\.msrNs))
        let ourPIO = Self.median(ourSamples.map(\.pioNs)), ourMSR = Self.median(ourSamples.map(\.msrNs))
        let bestRawPIO = rawSamples.map(\.pioNs).min()!, bestOurPIO = ourSamples.map(\.pioNs).min()!
        let bestRawMSR = rawSamples.map(\.msrNs).min()!, bestOurMSR = ourSamples.map(\.msrNs).min()!
        func us(_ ns: Double) -> String { String(format2(ns / 1000)) + " us" }
        print("synthvm-bench exits: \(pio) port writes + \(msr) unknown-MSR reads per run, median of \(rounds) runs")
        print("  (each iteration also runs the guest's own loop instructions, identical on both sides)")
        print("  port write (out 0x80): raw KVM_RUN loop \(us(rawPIO))/exit, SynthVM \(us(ourPIO))/exit, ratio \(format2(ourPIO / rawPIO))")
        print("  unknown MSR (rdmsr, #GP): raw KVM_RUN loop \(us(rawMSR))/exit, SynthVM \(us(ourMSR))/exit, ratio \(format2(ourMSR / rawMSR))")
        print("  best-of-\(rounds) ratios: port write \(format2(bestOurPIO / bestRawPIO)), unknown MSR \(format2(bestOurMSR / bestRawMSR))")
        print("  target: ratio <= 1.10")
    }
}

/// Runs `body` on a fresh thread and waits for it, as a vCPU thread would run.
func onOwnThread<T>(_ body: @escaping @Sendable () throws -> T) throws -> T {
    nonisolated(unsafe) var result: Result<T, any Error> = .failure(BenchError("no result"))
    let t = try HostThread.spawn { result = Result { try body() } }
    t.join()
    return try result.get()
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func format2(_ x: Double) -> String {
    let scaled = (x * 100).rounded()
    let whole = Int(scaled) / 100, frac = abs(Int(scaled) % 100)
    return "\(whole).\(frac < 10 ? "0" : "")\(frac)"
}
