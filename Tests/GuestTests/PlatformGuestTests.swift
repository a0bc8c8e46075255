import Foundation
import Machine
@testable import Monitor
import Testing

@Suite("Legacy platform devices: CMOS RTC, i8042, no PCI")
struct PlatformGuestTests {
    /// "rtc: bcd 2026-11-27 12:23:35 wday 6" -> seconds since the epoch (UTC) and the weekday.
    static func parseTime(_ line: String) -> (seconds: Int64, weekday: Int)? {
        let f = line.split(separator: " ")
        guard f.count == 6, f[3] != "", f[4] == "wday" else { return nil }
        let d = f[2].split(separator: "-").compactMap { Int($0) }
        let t = f[3].split(separator: ":").compactMap { Int($0) }
        guard d.count == 3, t.count == 3, let wd = Int(f[5]) else { return nil }
        let c = CivilTime(year: d[0], month: d[1], day: d[2], hour: t[0], minute: t[1], second: t[2])
        return (c.epochSeconds, wd)
    }

    @Test("the guest reads the host's time from the RTC in BCD, binary and 12-hour modes, sees UIP, sets the clock")
    func rtc() throws {
        let before = Int64(Date().timeIntervalSince1970.rounded(.down))
        let run = try GuestHarness.boot("rtc")
        let after = Int64(Date().timeIntervalSince1970.rounded(.up))
        #expect(run.lines.contains("rtc: ok"), "\(run.serial)")
        #expect(run.status == 0)
        // C shows UF if an update happened since the VM was made; nothing else is ever set.
        #expect(run.lines.contains("rtc: status a=0x26 b=0x02 c=0x00 d=0x80")
            || run.lines.contains("rtc: status a=0x26 b=0x02 c=0x10 d=0x80"), "\(run.serial)")
        for mode in ["bcd", "binary"] {
            let line = try #require(run.lines.first { $0.hasPrefix("rtc: \(mode) ") })
            let (seconds, weekday) = try #require(Self.parseTime(line), "\(line)")
            // Read during the run, so between the host's clock before and after it.
            #expect(seconds >= before && seconds <= after, "\(line): host clock was \(before)...\(after)")
            #expect(weekday == CivilTime(epochSeconds: seconds).dayOfWeek)
        }
        #expect(run.lines.contains { $0.hasPrefix("rtc: update seen after ") })
        #expect(run.lines.contains("rtc: set 2001-02-03 04:05:06 wday 7"))
        #expect(run.lines.contains("rtc: ram ok"))
    }

    @Test("i8042 status and self test; PCI configuration space reads all-ones at every width")
    func probes() throws {
        let run = try GuestHarness.boot("platform")
        #expect(run.lines.contains("platform: i8042 status=0x14 selftest=0x55 ctr=0x45"), "\(run.serial)")
        #expect(run.lines.contains("platform: pci cf8=0xffffffff cfc=0xffffffff cfe=0xffff cfd=0xff (no PCI)"))
        #expect(run.lines.contains("platform: ok"))
        #expect(run.status == 0)
        // The 32-bit write to 0xCF8 carrying 0x06 in its second byte did not reset the VM, and
        // the configuration ports went to no device.
        #expect(run.outcome.totals.unknownPortReads == 4)
    }

    @Test("the i8042 reset line (0xFE, or the output port's bit 0) resets the platform",
          arguments: ["kbd-reset", "outport-reset"])
    func keyboardControllerReset(action: String) throws {
        let run = try GuestHarness.boot("platform", cmdline: "action=\(action)")
        #expect(run.lines.contains { $0.hasPrefix("platform: resetting through the i8042") }, "\(run.serial)")
        #expect(run.outcome.reason == .platformReset)
        #expect(run.status == 10)
    }

    @Test("`synthvm run` honours --on-reset for the keyboard-controller reset")
    func keyboardControllerResetCLI() throws {
        try GuestHarness.requireKVM()
        let guest = try GuestHarness.guestPath("platform")
        let exit = try CommandLineTests.synthvm(["run", "--kernel", guest, "--cmdline", "action=kbd-reset", "--on-reset", "exit"])
        #expect(exit.status == 10)
        #expect(exit.stderr.contains("keyboard controller"), "\(exit.stderr)")
        let restart = try CommandLineTests.synthvm(["run", "--kernel", guest, "--cmdline", "action=kbd-reset", "--timeout", "3"])
        #expect(restart.status == 124)
        #expect(restart.stdout.components(separatedBy: "platform: resetting").count > 2, "\(restart.stdout)")
        #expect(restart.stderr.contains("restarting the VM"))
    }
}
