import Testing

@testable import Sandbox

private func limitsError(_ s: String) -> String? {
    do { _ = try JailLimits(argument: s); return nil } catch { return error.message }
}

private func commandLineError(_ args: [String]) -> String? {
    do { _ = try WorkerCommandLine.parse(args); return nil } catch { return error.message }
}

/// The jail's configuration, the limits' command-line spelling and the worker's command line:
/// pure, every error case.
@Suite struct JailConfigTests {
    @Test func defaultsMapOneUnprivilegedIdToTheDedicatedHostIdWhenRoot() {
        let ids = JailConfig().ids(monitorUID: 0, monitorGID: 0)
        #expect(ids == JailIDs(uid: 1000, gid: 1000, hostUID: 0x7FFF_0000, hostGID: 0x7FFF_0000, denySetgroups: false))
        #expect(ids.uidMap == "1000 2147418112 1" && ids.gidMap == "1000 2147418112 1")
    }

    @Test func anUnprivilegedMonitorMapsItsOwnIdsAndDeniesSetgroups() {
        let ids = JailConfig().ids(monitorUID: 1234, monitorGID: 567)
        #expect(ids == JailIDs(uid: 1000, gid: 1000, hostUID: 1234, hostGID: 567, denySetgroups: true))
    }

    @Test func explicitHostIdsWin() {
        var c = JailConfig()
        c.uid = 7
        c.gid = 8
        c.hostUID = 100_000
        c.hostGID = 100_001
        #expect(c.ids(monitorUID: 0, monitorGID: 0) == JailIDs(uid: 7, gid: 8, hostUID: 100_000, hostGID: 100_001, denySetgroups: false))
        #expect(c.ids(monitorUID: 5, monitorGID: 5).hostUID == 100_000)
    }

    @Test func addressSpaceIsRegionsPlusHeadroomSaturating() {
        var c = JailConfig()
        #expect(c.limits(regionBytes: 64 << 20) == JailLimits(openFiles: 128, processes: 16, addressSpace: (64 << 20) + MemoryBudget.defaultHeadroom))
        #expect(c.limits(regionBytes: UInt64.max - 1).addressSpace == UInt64.max)
        c.addressSpaceHeadroom = nil
        #expect(c.limits(regionBytes: 64 << 20).addressSpace == nil)
    }

    @Test func memoryBudgetIsSmallAndDescribed() {
        // The default budget is what the router needs plus a margin (MemoryBudget), far below the
        // old 1 GiB that let one guest take ~1.3 GiB of the host.
        #expect(MemoryBudget.defaultHeadroom == 64 << 20)
        #expect(MemoryBudget.describe(64 << 20) == "64 MiB")
        #expect(MemoryBudget.describe(1 << 30) == "1 GiB")
        #expect(MemoryBudget.describe((1 << 30) + (300 << 20)) == "1.3 GiB")
        #expect(MemoryBudget.describe((64 << 20) + 96 * 1024) == "64.1 MiB")
        #expect(MemoryBudget.describe((2 << 20) - 1) == "2.0 MiB")
        #expect(MemoryBudget.describe(512 << 10) == "512 KiB")
        #expect(MemoryBudget.describe(1000) == "1000 bytes")
        // Outside what a worker otherwise exits with, and the 128 + signal range.
        #expect(![0, 1].contains(MemoryBudget.exitStatus) && MemoryBudget.exitStatus < 128)
    }

    @Test func validation() {
        #expect(throws: Never.self) { try JailConfig().validate() }
        for change in [{ (c: inout JailConfig) in c.uid = 0 }, { $0.gid = 0 }, { $0.uid = UInt32.max }, { $0.openFiles = 3 },
                       { $0.openFiles = (1 << 20) + 1 }, { $0.processes = 0 }] {
            var c = JailConfig()
            change(&c)
            #expect(throws: JailError.self) { try c.validate() }
        }
    }

    @Test func limitsRoundTrip() throws {
        for l in [JailLimits(openFiles: 128, processes: 16, addressSpace: 1_140_850_688),
                  JailLimits(openFiles: 4, processes: 1, addressSpace: nil),
                  JailLimits(openFiles: 1 << 20, processes: UInt64.max, addressSpace: UInt64.max)] {
            #expect(try JailLimits(argument: l.argument) == l, "\(l.argument)")
        }
        #expect(JailLimits(openFiles: 128, processes: 16, addressSpace: 5).argument == "nofile=128,nproc=16,as=5")
        #expect(try JailLimits(argument: "as=9,nproc=2,nofile=10") == JailLimits(openFiles: 10, processes: 2, addressSpace: 9))
    }

    @Test("limits parse strictly", arguments: [
        ("", "expected key=value"), ("nofile=128", "nofile and nproc are required"),
        ("nproc=1", "nofile and nproc are required"), ("nofile=128,nproc=1,", "expected key=value"),
        ("nofile=128,,nproc=1", "expected key=value"), ("nofile=128,nproc=1,cpu=1", "unknown limit cpu"),
        ("nofile=128,nofile=64,nproc=1", "nofile given twice"), ("nofile=0x80,nproc=1", "not a decimal number"),
        ("nofile=+128,nproc=1", "not a decimal number"), ("nofile= 128,nproc=1", "not a decimal number"),
        ("nofile=,nproc=1", "not a decimal number"), ("nofile=99999999999999999999,nproc=1", "not a decimal number"),
        ("nofile=3,nproc=1", "nofile outside"), ("nofile=1048577,nproc=1", "nofile outside"),
        ("nofile=128,nproc=0", "nproc must be at least 1"), ("NOFILE=128,nproc=1", "unknown limit NOFILE"),
    ])
    func limitsErrors(_ text: String, _ message: String) {
        let e = limitsError(text)
        #expect(e?.contains(message) == true, "\(text): \(e ?? "accepted")")
    }

    @Test func workerCommandLines() throws {
        let jailed = try WorkerCommandLine.parse(["--jail", "nofile=128,nproc=16"])
        #expect(jailed.jail == JailLimits(openFiles: 128, processes: 16, addressSpace: nil))
        #expect(!jailed.testForbiddenSyscall && jailed.testCrashAfterMilliseconds == nil && jailed.jailProbes == nil)
        let free = try WorkerCommandLine.parse(["--no-jail", "--test-forbidden-syscall", "--test-crash-after-ms", "250"])
        #expect(free.jail == nil && free.testForbiddenSyscall && free.testCrashAfterMilliseconds == 250)
        let probed = try WorkerCommandLine.parse(["--test-jail-probes", "42:8080:name:with:colons", "--jail", "nofile=4,nproc=1"])
        #expect(probed.jailProbes == JailProbes.Targets(monitorPID: 42, tcpPort: 8080, unixName: "name:with:colons"))
        #expect(jailed.testPrint == nil)
        let printing = try WorkerCommandLine.parse(["--no-jail", "--test-print", "1b5B0a00ff"])
        #expect(printing.testPrint == [0x1b, 0x5b, 0x0a, 0x00, 0xff])
        #expect(try WorkerCommandLine.parse(["--no-jail", "--test-print", ""]).testPrint == [])
        #expect(!jailed.testExhaustMemory)
        #expect(try WorkerCommandLine.parse(["--no-jail", "--test-exhaust-memory"]).testExhaustMemory)
        let bytes: [UInt8] = Array(0...255)
        #expect(WorkerCommandLine.hexBytes(WorkerCommandLine.hex(bytes)) == bytes)
        let limits = JailLimits(openFiles: 9, processes: 3, addressSpace: 77)
        #expect(try WorkerCommandLine.parse(WorkerCommandLine.jailArguments(limits)).jail == limits)
        #expect(try WorkerCommandLine.parse(WorkerCommandLine.jailArguments(nil)).jail == nil)
    }

    @Test("worker command lines parse strictly", arguments: [
        ([], "neither --jail nor --no-jail"), (["--test-forbidden-syscall"], "neither --jail nor --no-jail"),
        (["--jail"], "--jail needs a value"), (["--no-jail", "--no-jail"], "given twice"),
        (["--no-jail", "--jail", "nofile=4,nproc=1"], "given twice"), (["--jail", "nofile=4"], "nproc are required"),
        (["--no-jail", "--bogus"], "unknown argument --bogus"), (["--no-jail", "--test-crash-after-ms"], "milliseconds"),
        (["--no-jail", "--test-crash-after-ms", "-1"], "milliseconds"),
        (["--no-jail", "--test-forbidden-syscall", "--test-forbidden-syscall"], "given twice"),
        (["--no-jail", "--test-jail-probes", "1:2:x"], "--test-jail-probes needs --jail"),
        (["--no-jail", "--test-print"], "hexadecimal bytes"), (["--no-jail", "--test-print", "abc"], "hexadecimal bytes"),
        (["--no-jail", "--test-print", "+1"], "hexadecimal bytes"), (["--no-jail", "--test-print", "0g"], "hexadecimal bytes"),
        (["--no-jail", "--test-print", "00", "--test-print", "00"], "given twice"),
        (["--no-jail", "--test-exhaust-memory", "--test-exhaust-memory"], "given twice"),
        (["--jail", "nofile=4,nproc=1", "--test-jail-probes", "1:2"], "expected PID:PORT:NAME"),
        (["--jail", "nofile=4,nproc=1", "--test-jail-probes", "0:2:x"], "expected PID:PORT:NAME"),
        (["--jail", "nofile=4,nproc=1", "--test-jail-probes", "1:0:x"], "expected PID:PORT:NAME"),
        (["--jail", "nofile=4,nproc=1", "--test-jail-probes", "1:70000:x"], "expected PID:PORT:NAME"),
        (["--jail", "nofile=4,nproc=1", "--test-jail-probes", "1:2:"], "expected PID:PORT:NAME"),
    ])
    func workerCommandLineErrors(_ args: [String], _ message: String) {
        let e = commandLineError(args)
        #expect(e?.contains(message) == true, "\(args): \(e ?? "accepted")")
    }
}
