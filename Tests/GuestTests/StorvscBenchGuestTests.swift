import Foundation
import Testing

/// `synthvm-bench storvsc` (issue 13 item 7, the guest-level figure): the bench guest
/// Tests/Guests/storvscbench.c under the real `synthvm run` with a scratch disk, briefly. Every
/// workload must finish with its data verified (a read that does not bring the pattern, or a
/// write that does not read back, fails the guest and the bench) and a rate above zero, and both
/// floor lines must be printed. No time is asserted.
@Suite("synthvm-bench storvsc: the bench guest through synthvm run (Tests/Guests/storvscbench.c)", .serialized)
struct StorvscBenchGuestTests {
    @Test("a short run prints every workload with its rate and its data verified, and both floors (no timing asserted)")
    func shortRun() throws {
        try GuestHarness.requireKVM()
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (status, text) = try StorageWorkerTests.bench(["storvsc", "--synthvm", CommandLineTests.binary.path,
                                                           "--guest", try GuestHarness.guestPath("storvscbench"),
                                                           "--disk", dir + "/bench.img", "--disk-mib", "8", "--scale", "0.01",
                                                           "--depth", "4"])
        #expect(status == 0, "\(text)")
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("storvsc: the guest-level figure, for the record") == true, "\(text)")
        #expect(lines.contains { $0.contains("about 1 us an instruction") }, "\(text)")
        // The run is the bench's: nothing unexpected on synthvm's stderr.
        #expect(!lines.contains { $0.hasPrefix("storvsc: stderr: ") }, "\(text)")
        for name in ["4k randread qd1", "4k randwrite qd1", "4k randread qd4", "4k randwrite qd4", "1m seqread qd1", "1m seqwrite qd1"] {
            let line = try #require(lines.first { $0.hasPrefix("storvsc: \(name): ") }, "\(name): \(text)")
            let rate = line.range(of: #"([0-9]+) req/s"#, options: .regularExpression).map { line[$0].split(separator: " ")[0] }
            #expect(Int(rate ?? "") ?? 0 > 0, "\(line)")
            #expect(line.contains("; data verified ("), "\(line)")
            if name.hasPrefix("1m") { #expect(line.contains(" MiB/s"), "\(line)") }
            if name.contains("write") {
                // Read back after the workload: at least one request.
                let back = line.range(of: #"\(([0-9]+) requests read back"#, options: .regularExpression)
                    .map { line[$0].dropFirst().split(separator: " ")[0] }
                #expect(Int(back ?? "") ?? 0 > 0, "\(line)")
            }
        }
        #expect(lines.contains { $0.hasPrefix("storvsc: floor, the guest's own code for one 4 KiB request ") && $0.contains(" req/s ") },
                "\(text)")
        #expect(lines.contains { $0.hasPrefix("storvsc: floor, synthvm-bench vmbus's echo channel ") && $0.contains(" round trip ") },
                "\(text)")
    }

    @Test("the bench guest fails on data it did not expect: an image without the pattern fails the first read")
    func wrongDataFails() throws {
        try GuestHarness.requireKVM()
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Zeros, not pattern(offset, seed): what a read path that moved nothing would leave in a
        // zeroed buffer, and not what the guest expects.
        try StorageWorkerTests.image(dir + "/zero.img", bytes: 8 << 20)
        let r = try CommandLineTests.synthvm(["run", "--kernel", try GuestHarness.guestPath("storvscbench"), "--memory", "64M",
                                              "--disk", dir + "/zero.img", "--serial", "stdio", "--timeout", "120",
                                              "--cmdline", "qd1=8 deep=8 depth=2 seq=4 own=20"])
        #expect(r.status == 3, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("storvscbench: FAIL 4k-randread-qd1: disk offset 0x"), "\(r.stdout)")
        #expect(!r.stdout.contains("storvscbench: workload "), "\(r.stdout)")
    }
}
