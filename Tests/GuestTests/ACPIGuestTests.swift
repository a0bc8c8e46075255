import Foundation
@testable import Monitor
import Testing

@Suite("ACPI tables in guest memory, power-off and reset through the FADT's registers")
struct ACPIGuestTests {
    @Test("the guest finds the RSDP, checks every table, and powers off through PM1a_CNT", arguments: [1, 4])
    func powerOff(cpus: Int) throws {
        let run = try GuestHarness.boot("acpi", cpus: cpus, cmdline: "action=poweroff")
        #expect(run.lines.contains("acpi: \(cpus) local APICs, pm1a_cnt=0x604 reset=0xcf9/0x6"), "\(run.serial)")
        #expect(run.outcome.reason == .poweredOff)
        #expect(run.status == 0)
    }

    @Test("a write of the FADT's reset value to 0xCF9 resets the platform (status 10 when not restarting)")
    func reset() throws {
        let run = try GuestHarness.boot("acpi", cmdline: "action=reset")
        #expect(run.lines.contains("acpi: resetting"), "\(run.serial)")
        #expect(run.outcome.reason == .platformReset)
        #expect(run.status == 10)
    }

    @Test("PM1 registers: SCI_EN reads set, status is write-1-to-clear, only SLP_TYP 5 with SLP_EN powers off")
    func powerManagementRegisters() throws {
        let control = try VMControl(vcpuCount: 1)
        let pm = ACPIPowerManagement(control: control)
        #expect(pm.read(port: 0x604, size: 2) & 1 == 1)
        pm.write(port: 0x602, size: 2, value: 0x0121)
        #expect(pm.read(port: 0x602, size: 2) == 0x0121)
        #expect(pm.read(port: 0x600, size: 4) == 0x0121_0000)
        pm.write(port: 0x604, size: 2, value: (3 << 10) | (1 << 13)) // S3: not supported, ignored
        #expect(control.stopReason == nil)
        pm.write(port: 0x604, size: 2, value: 5 << 10) // SLP_TYP without SLP_EN
        #expect(control.stopReason == nil)
        #expect(pm.read(port: 0x604, size: 2) & (1 << 13) == 0) // SLP_EN is not kept
        pm.write(port: 0x604, size: 2, value: (5 << 10) | (1 << 13))
        #expect(control.stopReason == .poweredOff)
    }
}
