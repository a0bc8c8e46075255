import Foundation
@testable import Monitor
import Testing

@Suite("Application processors start through INIT/SIPI with distinct APIC IDs")
struct SMPGuestTests {
    @Test("every vCPU checks in with LAPIC ID == CPUID initial APIC ID == its index", arguments: [1, 4, 8])
    func smp(cpus: Int) throws {
        let run = try GuestHarness.boot("smp", cpus: cpus)
        let lines = run.lines
        for i in 0..<cpus {
            #expect(lines.contains("cpu apic=\(i) cpuid_apic=\(i)"), "vCPU \(i) did not check in")
        }
        #expect(lines.filter { $0.hasPrefix("cpu apic=") }.count == cpus)
        #expect(lines.contains("smp: \(cpus)/\(cpus) vCPUs checked in"))
        #expect(lines.contains("smp: ok"))
        #expect(run.outcome.reason == .halted)
        #expect(run.outcome.counters.count == cpus)
    }
}
