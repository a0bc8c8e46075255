import Foundation
import Machine
@testable import Monitor
import Testing

/// SynIC messages and events through the router worker, driven by a QEMU-style guest over the
/// hyperv-testdev protocol (Tests/Guests/hvconn.c).
@Suite("SynIC routing through the router worker (hyperv-testdev)")
struct SynICRoutingGuestTests {
    static let hyperv = "default"

    @Test("all 16 SINTs incl. AutoEOI, messages and events to self and the other vCPU, busy slot, EOM, buffers, a slot shared with a timer",
          arguments: [1, 2])
    func connections(cpus: Int) throws {
        let run = try HyperVGuestTests.boot("hvconn", cpus: cpus, hyperv: Self.hyperv) { $0.hypervTestDevice = true }
        for i in 0..<cpus { #expect(run.lines.contains("hvconn: vcpu \(i) ok"), "\(run.serial)") }
        #expect(run.lines.contains("hvconn: ok"))
        #expect(run.lines.filter { $0.contains("busy slot pending=1 insufficient-buffers=0x13 eom-delivery ok") }.count == cpus)
        #expect(run.lines.filter { $0.contains("one slot shared by a timer and a connection: both delivered") }.count == cpus)
        #expect(run.status == 0)
        // 8 AutoEOI SINTs asserted 3 times on every vCPU went through the relay, not the LAPIC.
        #expect(run.outcome.totals.autoEOIInjections >= 24 * cpus, "\(run.outcome.totals.summary)")
        let router = try #require(run.outcome.workers.first { $0.name == "synic-router" })
        #expect(router.exit == .exited(status: 0))
    }

    @Test("without --hyperv-testdev the port is not there: the guest's writes are ignored")
    func deviceNotConfigured() throws {
        let run = try HyperVGuestTests.boot("hvconn", hyperv: Self.hyperv)
        #expect(run.lines.contains { $0.contains("FAIL SINT assert: 0 interrupts on SINT0") }, "\(run.serial)")
        #expect(run.status == 3) // guest_fail: exit device 1
    }

    @Test("--hyperv-testdev without a SynIC is refused before any VM exists")
    func testDeviceNeedsSynIC() throws {
        let r = try CommandLineTests.synthvm(["run", "--hyperv-testdev", "--hyperv", "time,crash"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--hyperv-testdev needs the synic enlightenment"), "\(r.stderr)")
    }
}
