import CSynthVM
import Glibc
import IPC
import KVM
import Machine
import Monitor

/// `synthvm-bench synic`: the SynIC routing paths against floors measured in the same run.
///
/// - Wake-up latency: guest HvSignalEvent -> the owning worker (the router) leaves poll(): guest
///   TSC just before the hypercall to host TSC just after poll() returns in the router (the
///   guest's TSC offset is read from KVM). The floor, `raw exit + raw eventfd wake`, is measured
///   the same way on the same guest code: the guest in raw mode makes the same call through the
///   same stub in a VM driven by a bare KVM_RUN loop that answers the exit by writing an eventfd
///   a sleeping forked process polls. Target: ratio <= 1.2. Also printed, as context: a bare
///   port-write exit and a bare eventfd wake-up, measured separately.
/// - Message echo: a guest HvPostMessage echoed by the router into the guest's SIMP slot, the
///   guest woken by the SINT; printed as messages per second and in raw exits per echo.
/// - Ring throughput: 240-byte records through a `RecordRing` between two threads, against memcpy
///   of the same bytes on one thread (the floor).
struct SynICBenchmark {
    let guest: String
    let exitGuest: String
    let n: Int
    let rounds: Int
    static let mailbox: UInt64 = 0x6000

    struct Sample {
        var wakeNs: Double
        var echoNs: Double
        var roundTripNs: Double
    }

    func synthvm() throws -> Sample {
        var config = try MachineConfig.load(kernelPath: guest, commandLine: "n=\(n)", cpus: 1, memory: "64M",
                                            serial: "none")
        config.hypervTestDevice = true
        config.workerArguments = ["--bench-wake-mailbox", "0x" + String(Self.mailbox, radix: 16)]
        let clock = PhaseClock()
        let vm = try VirtualMachine(config: config, extraDevices: [(clock, PhaseClock.port...PhaseClock.port)])
        // Guest TSC = host TSC + offset (KVM does not scale it here).
        let before = svm_rdtsc()
        guard let guestTSC = try vm.vcpus[0].getMSRs([0x10]).first?.1 else { throw BenchError("no IA32_TSC") }
        let offset = guestTSC &- (before / 2 &+ svm_rdtsc() / 2)
        let khz = try vm.vcpus[0].tscKHz()
        let outcome = vm.run()
        guard outcome.reason == .exitDevice(value: 0), let t1 = clock.mark(1), let t2 = clock.mark(2) else {
            throw BenchError("synicbench did not finish: \(outcome.reason.description)\n\(vm.console.captured)")
        }
        let mb = try vm.memory.read(count: 56, at: Self.mailbox)
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(mb[o + $1]) << (8 * UInt64($1)) } }
        let sumGuest = u64(48), sumHost = u64(24), count = u64(32)
        guard count > UInt64(n) / 2 else { throw BenchError("router counted \(count) wake-ups for \(n) signals") }
        // sum(host t1) - sum(guest t0 - offset), over the wake-ups that saw a new signal
        let ticks = Double(Int64(bitPattern: sumHost &- (sumGuest &- offset &* count))) / Double(count)
        return Sample(wakeNs: ticks * 1e6 / Double(khz), echoNs: Double(t2 - t1) / Double(n),
                      roundTripNs: Double(u64(40)) / Double(n) * 1e6 / Double(khz))
    }

    /// The floor: the same guest (raw mode) in a VM driven by a bare KVM_RUN loop; the hypercall
    /// port's exit is answered by one eventfd write that wakes a sleeping forked process, which
    /// takes the TSC as poll() returns. Same arithmetic as `synthvm()`.
    func rawWake(khz: UInt64) throws -> Double {
        try onOwnThread { try self.rawWakeLoop(khz: khz) }
    }

    func rawWakeLoop(khz: UInt64) throws -> Double {
        var config = try MachineConfig.load(kernelPath: guest, commandLine: "n=\(n) raw=1 tsckhz=\(khz)", cpus: 1,
                                            memory: "64M", serial: "none", hyperv: "off")
        config.handleSignals = false
        let loop = try BareKVMLoop(config: config)
        var go: Int32 = -1
        var shared: UnsafeMutablePointer<UInt64>?
        let child = svm_bench_waker_start(&go, &shared)
        guard child > 0, let shared else { throw BenchError("waker: \(String(cString: strerror(-child)))") }
        defer { svm_bench_waker_stop(child, go, shared) }
        let before = svm_rdtsc()
        guard let guestTSC = try loop.vcpu.getMSRs([0x10]).first?.1 else { throw BenchError("no IA32_TSC") }
        let offset = guestTSC &- (before / 2 &+ svm_rdtsc() / 2)
        var one: UInt64 = 1
        var sumGuest: UInt64 = 0, sumHost: UInt64 = 0, count: UInt64 = 0
        try loop.run { exit in
            switch exit.reason {
            case KVMExitReason.io where exit.port == 0xE5:
                // Wake the sleeper, and let it take its TSC before the guest runs on, so that
                // no two wake-ups merge (the guest's interval is already over by then).
                let before = svm_load_acquire_u64(shared + 1)
                _ = Glibc.write(go, &one, 8)
                let deadline = nowNanoseconds() + 100_000_000
                while svm_load_acquire_u64(shared + 1) == before && nowNanoseconds() < deadline { sched_yield() }
                if svm_load_acquire_u64(shared + 1) != before {
                    let t0 = try loop.vm.memory.read(count: 8, at: Self.mailbox + 16)
                    sumGuest &+= (0..<8).reduce(UInt64(0)) { $0 | UInt64(t0[$1]) << (8 * UInt64($1)) }
                    sumHost &+= shared[2]
                    count += 1
                }
            case KVMExitReason.io, KVMExitReason.mmio:
                break
            case KVMExitReason.x86RDMSR, KVMExitReason.x86WRMSR:
                exit.answerMSR(0)
            default:
                return .unexpected
            }
            return .resume
        }
        guard count > UInt64(n) / 2 else { throw BenchError("raw waker counted \(count) wake-ups for \(n) calls") }
        let ticks = Double(Int64(bitPattern: sumHost &- (sumGuest &- offset &* count))) / Double(count)
        return ticks * 1e6 / Double(khz)
    }

    /// Raw eventfd wake-up of a sleeping process, in ns.
    func eventfdWakeNs(khz: UInt64) throws -> Double {
        var sum: UInt64 = 0
        let r = svm_bench_eventfd_wake(Int32(n), 50, &sum)
        guard r == 0 else { throw BenchError("eventfd wake floor: \(String(cString: strerror(-r)))") }
        return Double(sum) / Double(n) * 1e6 / Double(khz)
    }

    /// Records/s through a ring between two threads, and memcpy records/s on one thread.
    func ringThroughput() throws -> (ring: Double, memcpy: Double) {
        let records = 200_000, size = 240
        let layout = try RecordRing.Layout(recordSize: 256, capacity: 256)
        let region = try SharedRegion(name: "bench-ring", size: layout.byteCount)
        try RecordRing.format(region, at: 0, layout: layout)
        let producer = try RecordRing.Producer(region: region, offset: 0, layout: layout)
        let consumer = try RecordRing.Consumer(region: region, offset: 0, layout: layout)
        let start = nowNanoseconds()
        let reader = try HostThread.spawn {
            var got = 0
            while got < records {
                if case .record = consumer.tryPop({ _ in }) { got += 1 } else { sched_yield() }
            }
        }
        let payload = [UInt8](repeating: 0xA5, count: size)
        var sent = 0
        while sent < records {
            if case .pushed = producer.tryPush(payload) { sent += 1 } else { sched_yield() }
        }
        reader.join()
        let ringNs = Double(nowNanoseconds() - start)
        var src = [UInt8](repeating: 0x5A, count: size), dst = [UInt8](repeating: 0, count: size * 256)
        let m0 = nowNanoseconds()
        for i in 0..<records {
            src[0] = UInt8(truncatingIfNeeded: i)
            dst.withUnsafeMutableBytes { d in src.withUnsafeBytes { s in _ = memcpy(d.baseAddress! + (i & 255) * size, s.baseAddress!, size) } }
        }
        let memcpyNs = Double(nowNanoseconds() - m0)
        _ = dst[Int.random(in: 0..<dst.count)]
        return (Double(records) / ringNs * 1e9, Double(records) / memcpyNs * 1e9)
    }

    func runAndPrint() throws {
        let exits = ExitBenchmark(benchGuest: exitGuest, pio: 20000, msr: 1, rounds: 1)
        let khz = try KVMSystem().createVM().createVCPU(id: 0).tscKHz()
        _ = try synthvm()
        var ours: [Sample] = [], rawExit: [Double] = [], wake: [Double] = [], floor: [Double] = []
        for _ in 0..<rounds {
            rawExit.append(try exits.raw().pioNs)
            wake.append(try eventfdWakeNs(khz: khz))
            floor.append(try rawWake(khz: khz))
            ours.append(try synthvm())
        }
        let m = ExitBenchmark.median
        let ort = m(ours.map(\.roundTripNs))
        let ow = m(ours.map(\.wakeNs)), oe = m(ours.map(\.echoNs)), re = m(rawExit), rw = m(wake), fl = m(floor)
        func us(_ ns: Double) -> String { format2(ns / 1000) + " us" }
        print("synthvm-bench synic: \(n) signals and \(n) echoes per run; median of \(rounds) runs")
        print("  HvSignalEvent -> router wake-up: SynthVM \(us(ow)); floor (same guest code, bare KVM_RUN loop, eventfd to a sleeping process) \(us(fl)); ratio \(format2(ow / fl)) (target <= 1.2)")
        print("    context: a bare port-write exit \(us(re)), a bare eventfd wake-up \(us(rw)) (sum \(us(re + rw)); the rest of the floor is the guest's own instructions, emulated at CPL0 on this host)")
        print("  HvSignalEvent -> router -> SIEF flag + SINT -> guest handler (round trip, guest TSC): \(us(ort))")
        print("  message echo (HvPostMessage -> router -> SIMP slot -> SINT): \(us(oe)) per message, \(Int(1e9 / oe)) messages/s, \(format2(oe / re)) raw exits' worth")
        let (ring, copy) = try ringThroughput()
        print("  ring (240-byte records, two threads): \(Int(ring)) records/s; memcpy floor \(Int(copy)) records/s; ratio \(format2(copy / ring))")
    }
}
