import Foundation
@testable import Monitor
import Testing

@Suite("Exceptions, the exit device, and crash reports")
struct ExceptionGuestTests {
    @Test("#UD, #GP (from an unknown MSR) and #DE reach the guest's own handlers")
    func handledExceptions() throws {
        let run = try GuestHarness.boot("exceptions")
        let lines = run.lines
        #expect(lines.contains { $0.hasPrefix("caught #UD at rip=0x") })
        #expect(lines.contains { $0.hasPrefix("caught #GP at rip=0x") && $0.hasSuffix("error=0x0") })
        #expect(lines.contains { $0.hasPrefix("caught #DE at rip=0x") })
        #expect(lines.contains("exceptions: ok"))
        #expect(run.status == 0)
        // The #GP came from the monitor: one unknown-MSR read reached user space.
        #expect(run.outcome.totals.unknownMSRReads == 1)
    }

    @Test("an unhandled #UD is reported by the guest runtime, which exits through port 0xf4")
    func unhandledException() throws {
        let run = try GuestHarness.boot("exceptions", cmdline: "unhandled=1")
        #expect(run.lines.contains { $0.hasPrefix("exception 6 (#UD invalid opcode) at rip=0x") })
        #expect(run.outcome.reason == .exitDevice(value: 0x46))
        #expect(run.status == Int32(((0x46 << 1) | 1) & 0xFF))
    }

    @Test("the exit device status is (v << 1) | 1, and unknown ports and MSRs are counted")
    func exitDeviceAndCounters() throws {
        let run = try GuestHarness.boot("bench", cmdline: "pio=100 msr=25")
        #expect(run.outcome.reason == .exitDevice(value: 0))
        #expect(run.status == 1)
        let t = run.outcome.totals
        #expect(t.unknownMSRReads == 25)
        #expect(t.unknownPortWrites == 3) // the phase markers on port 0x81
        #expect(t.portIO >= 100 + 3 + 1)
    }

    @Test("a triple fault stops the VM with status 2 and a one-screen report")
    func tripleFault() throws {
        // ud2 with no IDT (direct boot starts with IDT limit 0): #UD -> #DF -> triple fault.
        let path = try GuestHarness.temporaryFile(GuestHarness.rawELF64(code: [0x0F, 0x0B]), name: "triple.elf")
        let run = try GuestHarness.boot(kernelPath: path)
        #expect(run.outcome.reason == .tripleFault(vcpu: 0))
        #expect(run.status == 2)
        let report = try #require(run.outcome.crashReport)
        #expect(report.contains("vCPU 0 stopped: triple fault"))
        #expect(report.contains("RIP "))
        #expect(report.contains("RAX "))
    }

    @Test("an instruction the host cannot run gives a crash report with RIP and its bytes")
    func crashReport() throws {
        // int3 with no IDT: on a normal KVM this triple-faults; this host's emulator cannot
        // execute int3 at all and reports an emulation failure. Either way the VM must stop
        // with a report that shows the faulting bytes.
        let path = try GuestHarness.temporaryFile(GuestHarness.rawELF64(code: [0x90, 0xCC, 0xF4]), name: "int3.elf")
        let run = try GuestHarness.boot(kernelPath: path)
        #expect(run.status == 2 || run.status == 4, "status \(run.status)")
        let report = try #require(run.outcome.crashReport)
        #expect(report.contains("bytes at RIP: cc f4") || report.contains("bytes at RIP: 90 cc f4"), "\(report)")
        #expect(report.contains("RIP 0000000000100079") || report.contains("RIP 0000000000100078"), "\(report)")
    }
}
