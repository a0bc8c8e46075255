import Foundation
@testable import Monitor
import Sandbox
import Testing

/// The VMBus control plane and the integration-service channels of the `synthvm-vmbus` worker,
/// driven by a freestanding guest (Tests/Guests/vmbus.c): every version, refusals, offers,
/// GPADLs, the heartbeat and shutdown channels, hostile messages and a corrupt ring descriptor,
/// UNLOAD and reconnect. Run through the real `synthvm` binary with its defaults, so the router
/// and the VMBus worker are jailed and filtered, and everything any process says reaches stderr.
@Suite("VMBus from a freestanding guest (Tests/Guests/vmbus.c)")
struct VMBusGuestTests {
    struct Run {
        var stdout: String
        var stderr: String
        var status: Int32
        var lines: [String] { stdout.split(separator: "\n").map(String.init) }
        /// stderr lines other than the VMBus server's rate-limited drop and refusal lines, the ICs'
        /// own lines (negotiated, the corrupt ring), the worker's line for the channel it cut off
        /// and synthvm's SIGTERM line.
        var unexpectedStderr: [Substring] {
            stderr.split(separator: "\n").filter {
                !$0.contains(": synthvm-vmbus: vmbus: dropped: ") && !$0.contains(": synthvm-vmbus: vmbus: refused: ")
                    && !$0.contains(": synthvm-vmbus: vmbus ic ")
                    && !$0.contains(": synthvm-vmbus: heartbeat: ring of relid 1 cut off: ")
                    && !$0.hasPrefix("synthvm: SIGTERM: asked the guest to shut down")
            }
        }
    }

    /// Runs the guest; when `sigtermAfter` appears on the serial console, sends SIGTERM once.
    static func run(cpus: Int, cmdline: String, sigtermAfter: String? = nil) throws -> Run {
        try GuestHarness.requireKVM()
        let p = Process()
        p.executableURL = CommandLineTests.binary
        p.arguments = ["run", "--kernel", try GuestHarness.guestPath("vmbus"), "--cpus", "\(cpus)",
                       "--cmdline", cmdline, "--timeout", "120", "--serial", "stdio"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        let buffer = LockedData(), errBuffer = LockedData()
        out.fileHandleForReading.readabilityHandler = { h in buffer.append(h.availableData) }
        err.fileHandleForReading.readabilityHandler = { h in errBuffer.append(h.availableData) }
        try p.run()
        var signalled = false
        while p.isRunning {
            if let marker = sigtermAfter, !signalled, buffer.string.contains(marker) {
                kill(p.processIdentifier, SIGTERM)
                signalled = true
            }
            usleep(20_000)
        }
        p.waitUntilExit()
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
        buffer.append(out.fileHandleForReading.readDataToEndOfFile())
        errBuffer.append(err.fileHandleForReading.readDataToEndOfFile())
        return Run(stdout: buffer.string, stderr: errBuffer.string, status: p.terminationStatus)
    }

    /// What every run prints, in this order (the channel steps once the ICs are offered).
    static let versionLines = [
        "vmbus: version 5.3 on connection 4 accepted, unloaded", "vmbus: version 5.2 on connection 4 accepted, unloaded",
        "vmbus: version 5.1 on connection 4 accepted, unloaded", "vmbus: version 5.0 on connection 4 accepted, unloaded",
        "vmbus: version 4.1 on connection 1 accepted, unloaded", "vmbus: version 4.0 on connection 1 accepted, unloaded",
        "vmbus: version 3.0 on connection 1 accepted, unloaded", "vmbus: version 2.4 on connection 1 accepted, unloaded",
        "vmbus: version 6.0 refused", "vmbus: version 0.13 refused", "vmbus: target vp 9 refused (state 2)",
    ]

    static func checkCommon(_ r: Run, cpus: Int) {
        let lines = r.lines
        #expect(lines.first == "vmbus: start", "\(r.stdout)")
        for line in versionLines { #expect(lines.contains(line), "no \"\(line)\":\n\(r.stdout)") }
        if cpus > 1 {
            #expect(lines.contains { $0.hasPrefix("vmbus: target vp 1: VERSION_RESPONSE and UNLOAD_RESPONSE in vp 1's slot") },
                    "\(r.stdout)")
        }
        // The three integration services, in relid order: heartbeat, shutdown, timesync.
        let offers = lines.filter { $0.hasPrefix("vmbus: offer relid=") }
        #expect(offers.count == 3, "\(r.stdout)")
        for (i, guid) in ["57164f39-9115-4e78-ab55-382f3bd5422d", "0e0b6031-5213-4934-818b-38d90ced39db",
                          "9527e630-d0ae-497b-adce-e80ab0175caf"].enumerated() where i < offers.count {
            #expect(offers[i].hasPrefix("vmbus: offer relid=\(i + 1) class=\(guid) "), "\(offers[i])")
            #expect(offers[i].contains(" conn=0x\(String(0x2001 + i, radix: 16)) "), "\(offers[i])")
        }
        #expect(lines.contains("vmbus: 3 offers, then ALLOFFERS_DELIVERED"), "\(r.stdout)")
        for line in [
            "vmbus: 15 truncated, unknown and host-to-guest messages dropped; still serving",
            "vmbus: body for an unknown gpadl dropped; still serving",
            "vmbus: open of unknown relid 77 dropped; still serving",
            "vmbus: heartbeat negotiated framework 3.0 message 3.0 (host offered",
            "vmbus: shutdown negotiated framework 3.0 message 3.2 (host offered",
            "vmbus: descriptor past the ring in heartbeat's ring: control path still served",
            "vmbus: timesync negotiated framework 3.0 message 4.0 (host offered",
            "vmbus: timesync (relid 3) served after heartbeat's ring was cut off: flags=0x1 answered (vp \(cpus - 1))",
            "vmbus: unloaded, reconnected at 5.3, 3 offers again",
        ] {
            #expect(lines.contains { $0.hasPrefix(line) }, "no \"\(line)\":\n\(r.stdout)")
        }
        for prefix in ["vmbus: gpadl 0x", "vmbus: gpadl with pfns outside RAM refused", "vmbus: heartbeat (relid 1) open on vp 0,",
                       "vmbus: shutdown (relid 2) open on vp 0,", "vmbus: timesync (relid 3) open on vp \(cpus - 1),", "vmbus: heartbeat seq=", "vmbus: heartbeat closed, ring gpadl"] {
            #expect(lines.contains { $0.hasPrefix(prefix) }, "no \"\(prefix)...\":\n\(r.stdout)")
        }
        #expect(lines.last == "vmbus: ok", "\(r.stdout)")
        // No worker died, was killed or cut a ring off; the hostile steps left drop lines.
        #expect(r.unexpectedStderr.isEmpty, "stderr:\n\(r.stderr)")
        #expect(r.stderr.contains("synthvm-vmbus: vmbus: dropped: malformed message: "), "\(r.stderr)")
        #expect(r.stderr.contains("synthvm-vmbus: vmbus: dropped: unknown GPADL: GPADL_BODY"), "\(r.stderr)")
        #expect(r.stderr.contains("synthvm-vmbus: vmbus: dropped: unknown channel: "), "\(r.stderr)")
        #expect(r.stderr.contains("synthvm-vmbus: vmbus ic heartbeat: ring corrupted: packet of 524160 bytes with 24 published"),
                "\(r.stderr)")
        #expect(!r.stderr.contains("killed by signal") && !r.stderr.contains("exited with status"), "\(r.stderr)")
    }

    @Test("versions, refusals, offers, GPADLs, the heartbeat and shutdown channels, hostile messages, UNLOAD and reconnect",
          arguments: [1, 2])
    func controlPlaneAndICs(cpus: Int) throws {
        let r = try Self.run(cpus: cpus, cmdline: "heartbeats=1")
        Self.checkCommon(r, cpus: cpus)
        #expect(r.status == 0, "status \(r.status)\n\(r.stdout)\n\(r.stderr)")
    }

    @Test("SIGTERM to synthvm: the shutdown channel carries the request, the guest answers S_OK")
    func gracefulShutdown() throws {
        let r = try Self.run(cpus: 1, cmdline: "heartbeats=1 shutdown=1", sigtermAfter: "vmbus: waiting for a shutdown request")
        Self.checkCommon(r, cpus: 1)
        #expect(r.lines.contains { $0.hasPrefix("vmbus: shutdown request flags=0x0 ") && $0.hasSuffix(" answered") },
                "\(r.stdout)")
        #expect(r.stderr.contains("synthvm: SIGTERM: asked the guest to shut down (shutdown IC)"), "\(r.stderr)")
        #expect(r.status == 0, "status \(r.status)\n\(r.stdout)\n\(r.stderr)")
    }

    @Test("--test-echo-device: one more relid's event connection published, the echo device offered after the standard ones; default unchanged")
    func echoDeviceConfiguration() throws {
        var c = try MachineConfig.load(kernelPath: try GuestHarness.guestPath("vmbus"), memory: "64M", serial: "none")
        #expect(c.vmbusRelIDs == MachineConfig.standardVMBusRelIDs)
        c.workerArguments = [WorkerCommandLine.testEchoDeviceArgument]
        #expect(c.vmbusRelIDs == MachineConfig.standardVMBusRelIDs.lowerBound...(MachineConfig.standardVMBusRelIDs.upperBound + 1))
        #expect(try WorkerCommandLine.parse(["--no-jail", "--test-echo-device"]).testEchoDevice)
        #expect(try !WorkerCommandLine.parse(["--no-jail"]).testEchoDevice)
        #expect(throws: JailError.self) { try WorkerCommandLine.parse(["--no-jail", "--test-echo-device", "--test-echo-device"]) }
    }

    @Test("the vmbus bench's guest runs over the echo device (floor, round trips, batches) and prints its line")
    func benchRuns() throws {
        let run = try GuestHarness.boot(kernelPath: try GuestHarness.guestPath("vmbus"), cmdline: "bench=50 batch=16 batches=5") {
            $0.workerArguments = [WorkerCommandLine.testEchoDeviceArgument]
        }
        let line = run.lines.first { $0.hasPrefix("vmbus-bench: n=50 floor=") }
        #expect(line != nil, "\(run.serial)")
        #expect(line?.contains(" batch=16 batches=5 ") == true, "\(run.serial)")
        // One signal per batch: the whole batch is published at once.
        #expect(line?.contains(" signals=5 ") == true, "\(run.serial)")
        #expect(run.lines.contains("vmbus: ok"), "\(run.serial)")
        #expect(run.status == 0)
        for w in run.outcome.workers { #expect(w.exit == .exited(status: 0), "\(w.name): \(w.exit)") }
    }
}
