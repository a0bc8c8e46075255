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
        // nop; popcnt rax, rdi; cli; hlt. A PVM host's emulator cannot execute popcnt at CPL 0 and
        // SynthVM does not complete it: the VM stops with the report. A host that runs guest
        // kernel code on the CPU executes it and the guest halts.
        let path = try GuestHarness.temporaryFile(
            GuestHarness.rawELF64(code: [0x90, 0xF3, 0x48, 0x0F, 0xB8, 0xC7, 0xFA, 0xF4]), name: "popcnt.elf")
        let run = try GuestHarness.boot(kernelPath: path)
        if PVMHost.detect().isPVM { #expect(run.status == 4, "status \(run.status)") }
        guard run.status == 4 else {
            #expect(run.status == 0, "status \(run.status)")
            return
        }
        let report = try #require(run.outcome.crashReport)
        #expect(report.contains("KVM internal error, emulation failure"), "\(report)")
        #expect(report.contains("not completed by SynthVM: not an instruction SynthVM completes"), "\(report)")
        #expect(report.contains("bytes at RIP: f3 48 0f b8 c7 fa f4"), "\(report)")
        #expect(report.contains("RIP 0000000000100079"), "\(report)")
    }

    @Test("int3 with no IDT: #BP cannot be delivered, a triple fault on every host")
    func int3WithoutIDT() throws {
        // A PVM host fails to emulate the int3 and SynthVM injects the #BP; elsewhere the CPU
        // raises it. Either way there is no IDT to deliver it through.
        let path = try GuestHarness.temporaryFile(GuestHarness.rawELF64(code: [0x90, 0xCC, 0xF4]), name: "int3.elf")
        let run = try GuestHarness.boot(kernelPath: path)
        #expect(run.outcome.reason == .tripleFault(vcpu: 0))
        #expect(run.outcome.totals.emulationFixups <= 1)
    }
}
