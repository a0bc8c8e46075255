import Machine
import Monitor
import Sandbox

/// `synthvm-bench vmbus`: a VMBus channel's ring round trip against its floor, measured in the
/// same run by the same guest code (Tests/Guests/vmbus.c with `bench=N`), over the VMBus
/// worker's test-only echo device (`--test-echo-device`, VMBusEchoDevice):
///
/// - floor: HvSignalEvent on the channel with an empty ring; the device, in floor mode, only
///   raises the channel interrupt (SIEF bit + SINT2 through the irqfd). What remains is the raw
///   path: the hypercall exit, the doorbell eventfd, the worker's wake-up, the interrupt.
/// - round trip: one 64-byte packet into the guest-to-host ring, HvSignalEvent, the device
///   echoes it into the host-to-guest ring and interrupts; the guest waits for the interrupt and
///   reads the packet. Target: round trip / floor <= 1.2.
/// - batches: `batch` packets, one signal (the ring rules: only the write that finds the ring
///   empty signals), every echo taken as it comes: packets per second.
///
/// The guest times each loop with TIME_REF_COUNT (100 ns units) around the whole loop, and also
/// times its own ring code alone (the same functions on a ring no host sees), which on a host that
/// emulates guest kernel code instruction by instruction is most of the difference.
struct VMBusBenchmark {
    let guest: String
    let n: Int
    let batch: Int
    let batches: Int
    let rounds: Int

    struct Sample {
        var floorNs: Double
        var roundTripNs: Double
        var guestRingNs: Double
        var packetsPerSecond: Double
        var signalsPerBatch: Double
    }

    func once() throws -> Sample {
        var config = try MachineConfig.load(kernelPath: guest, commandLine: "bench=\(n) batch=\(batch) batches=\(batches)",
                                            cpus: 1, memory: "64M", serial: "none")
        config.console = .capture
        config.timeoutSeconds = 300
        config.workerArguments = [WorkerCommandLine.testEchoDeviceArgument]
        let vm = try VirtualMachine(config: config)
        let outcome = vm.run()
        let out = vm.console.captured
        guard outcome.exitStatus == 0,
              let line = out.split(separator: "\n").first(where: { $0.hasPrefix("vmbus-bench: ") }) else {
            throw BenchError("the vmbus bench guest did not finish: \(outcome.reason.description)\n\(out)")
        }
        var fields: [String: Double] = [:]
        for word in line.split(separator: " ") {
            let kv = word.split(separator: "=")
            if kv.count == 2, let v = Double(kv[1]) { fields[String(kv[0])] = v }
        }
        guard let floor = fields["floor"], let rt = fields["roundtrip"], let batched = fields["batched"], let guestRing = fields["guestring"],
              let signals = fields["signals"] else { throw BenchError("bad bench line: \(line)") }
        return Sample(floorNs: floor * 100 / Double(n), roundTripNs: rt * 100 / Double(n),
                      guestRingNs: guestRing * 100 / Double(n),
                      packetsPerSecond: Double(batch * batches) / (batched * 100 / 1e9),
                      signalsPerBatch: signals / Double(batches))
    }

    func runAndPrint() throws {
        _ = try once()  // warm-up
        var samples: [Sample] = []
        for _ in 0..<rounds { samples.append(try once()) }
        let m = ExitBenchmark.median
        let floor = m(samples.map(\.floorNs)), rt = m(samples.map(\.roundTripNs))
        let ring = m(samples.map(\.guestRingNs))
        let pps = m(samples.map(\.packetsPerSecond)), spb = m(samples.map(\.signalsPerBatch))
        func us(_ ns: Double) -> String { format2(ns / 1000) + " us" }
        print("synthvm-bench vmbus: \(n) round trips and \(n) floor signals, \(batches) batches of \(batch) packets per run; median of \(rounds) runs")
        print("  ring round trip (64-byte packet -> echo device -> packet + interrupt): \(us(rt))")
        print("  floor (HvSignalEvent, empty ring, the device only raises the interrupt): \(us(floor))")
        print("  ratio round trip / floor: \(format2(rt / floor)) (target <= 1.2)")
        print("    of which the guest's own ring code (the same ring_write + ring_read on a ring no host sees; this host emulates guest kernel code at about 1 us an instruction): \(us(ring)); without it, round trip / floor \(format2((rt - ring) / floor)) (rough: a separate loop, and on this host the guest's own time varies from run to run)")
        print("  batched echo: \(Int(pps)) packets/s (\(batch) per batch, \(format2(spb)) signals per batch)")
    }
}
