import Foundation
import Machine
@testable import Monitor
import Testing

/// SynIC and synthetic timers inside a VM (opt-in features until the worker routing lands).
@Suite("SynIC and synthetic timers, seen from inside a guest")
struct SynICGuestTests {
    static let hyperv = "default"

    @Test("synthetic timers: 1000 direct periodic expirations at 1 ms never early, one-shot, past deadline, auto-enable, message mode, busy slot", arguments: [1, 2])
    func syntheticTimers(cpus: Int) throws {
        let run = try HyperVGuestTests.boot("stimer", cpus: cpus, hyperv: Self.hyperv)
        let lines = run.lines
        #expect(lines.contains("stimer: ok"), "\(run.serial)")
        #expect(!lines.contains { $0.contains("FAIL") })
        let periodic = lines.filter { $0.contains("direct periodic n=") }
        #expect(periodic.count == cpus)
        for p in periodic {
            // "stimer: [vcpu 1 ]direct periodic n=1000 elapsed=<100 ns units>": never early.
            let fields = Dictionary(uniqueKeysWithValues: p.split(separator: " ").compactMap { f -> (String, UInt64)? in
                let kv = f.split(separator: "=")
                return kv.count == 2 ? (String(kv[0]), UInt64(kv[1]) ?? 0) : nil
            })
            #expect((fields["n"] ?? 0) >= 1000)
            #expect((fields["elapsed"] ?? 0) >= (fields["n"] ?? 0) * 10_000, "\(p)")
        }
        #expect(lines.contains { $0.contains("busy slot pending=1") })
        #expect(run.status == 0)
    }

    @Test("SynIC registers, page zeroing, all 15 message SINTs to the right vector and vCPU, masked SINTs", arguments: [1, 2])
    func synic(cpus: Int) throws {
        let run = try HyperVGuestTests.boot("synic", cpus: cpus, hyperv: Self.hyperv)
        for i in 0..<cpus { #expect(run.lines.contains("synic: vcpu \(i) ok"), "\(run.serial)") }
        #expect(run.lines.contains("synic: ok"))
        #expect(run.status == 0)
    }

    @Test("without the synic/stimer enlightenments the guests see no SynIC and fail cleanly")
    func notAdvertised() throws {
        let run = try HyperVGuestTests.boot("stimer", hyperv: "default,-synic,-stimer,-stimer-direct")
        #expect(run.lines.contains { $0.contains("FAIL") && $0.contains("lacks") }, "\(run.serial)")
        #expect(run.status == 3)
    }
}
