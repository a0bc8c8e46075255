import Foundation
import Machine
@testable import Monitor
import Testing

/// What the host did with one probed instruction.
enum ProbeOutcome: String {
    case executed = "executed"
    case emulationFailure = "emulation failure (crash report)"
    case invalidOpcode = "#UD from the host's emulator"
}

@Suite("PVM hosts: detection, the guest's CPUID, the Linux profile, and the emulation fix-ups")
struct EmulationGuestTests {
    static func hexValue(after prefix: String, in line: String) -> UInt64? {
        guard let r = line.range(of: prefix) else { return nil }
        let rest = line[r.upperBound...].prefix { $0.isHexDigit || $0 == "x" }
        return UInt64(rest.dropFirst(2), radix: 16)
    }

    @Test("stac and clac set and clear RFLAGS.AC at CPL 0 (completed by SynthVM where the host's emulator cannot)")
    func stacClac() throws {
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let smap = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").contains("smap") ?? false
        let run = try GuestHarness.boot("emulate", cmdline: "test=clac")
        if smap {
            #expect(run.lines.contains("clac: ac-after-stac=1 ac-after-clac=0"), "\(run.serial)")
        } else {
            #expect(run.lines.contains("clac: SMAP not advertised"), "\(run.serial)")
        }
        #expect(run.status == 0, "\(run.serial)")
    }

    @Test("int3 delivers #BP as a trap: the handler sees RIP after it and returns")
    func int3() throws {
        let run = try GuestHarness.boot("emulate", cmdline: "test=int3")
        let line = try #require(run.lines.first { $0.hasPrefix("int3: #BP") }, "\(run.serial)")
        let rip = try #require(Self.hexValue(after: "rip=", in: line))
        let next = try #require(Self.hexValue(after: "next=", in: line))
        let insn = try #require(Self.hexValue(after: "insn=", in: line))
        #expect(rip == next && next == insn + 1)
        #expect(run.lines.contains("int3: returned"))
        #expect(run.status == 0)
        // Completed by SynthVM exactly once on a PVM host; by the CPU elsewhere.
        #expect(run.outcome.totals.emulationFixups == (PVMHost.detect().isPVM ? 1 : 0))
    }

    @Test("fwait with no unmasked x87 exception pending continues")
    func fwait() throws {
        let run = try GuestHarness.boot("emulate", cmdline: "test=fwait")
        #expect(run.lines.contains("fwait: continued"), "\(run.serial)")
        #expect(!run.serial.contains("#MF") && !run.serial.contains("#NM"))
        #expect(run.status == 0)
        #expect(run.outcome.totals.emulationFixups == (PVMHost.detect().isPVM ? 1 : 0))
    }

    @Test("fwait with CR0.TS and CR0.MP set raises #NM at the fwait; after CLTS it continues")
    func fwaitDeviceNotAvailable() throws {
        let run = try GuestHarness.boot("emulate", cmdline: "test=fwait-ts")
        let line = try #require(run.lines.first { $0.hasPrefix("fwait: #NM") }, "\(run.serial)")
        #expect(Self.hexValue(after: "rip=", in: line) == Self.hexValue(after: "insn=", in: line))
        #expect(run.lines.contains("fwait: continued"))
        #expect(run.status == 0)
        #expect(run.outcome.totals.emulationFixups == (PVMHost.detect().isPVM ? 2 : 0))
    }

    @Test("fwait with an unmasked x87 exception pending raises #MF at the fwait")
    func fwaitPendingException() throws {
        try GuestHarness.requireKVM()
        var config = try MachineConfig.load(kernelPath: try GuestHarness.guestPath("emulate"), commandLine: "test=fwait-pending",
                                            memory: "64M", serial: "none")
        config.console = .capture
        config.timeoutSeconds = 60
        let vm = try VirtualMachine(config: config)
        // Divide-by-zero unmasked (FCW bit 2 clear) and flagged (FSW ZE, ES), as after a faulting fdiv.
        var fpu = try vm.vcpus[0].getFPU()
        fpu.fcw = 0x037B
        fpu.fsw = 0x0084
        try vm.vcpus[0].setFPU(fpu)
        let outcome = vm.run()
        let lines = vm.console.captured.split(separator: "\n").map(String.init)
        let line = try #require(lines.first { $0.hasPrefix("fwait: #MF") }, "\(vm.console.captured)")
        #expect(Self.hexValue(after: "rip=", in: line) == Self.hexValue(after: "insn=", in: line))
        #expect(lines.contains("fwait: continued"))
        #expect(outcome.exitStatus == 0)
        #expect(outcome.totals.emulationFixups == (PVMHost.detect().isPVM ? 1 : 0))
    }

    /// Encodings the emulate guest uses (emulate_asm.S), for checking the crash report's bytes.
    static let probes: [(name: String, bytes: String, value: String)] = [
        ("popcnt", "f3 48 0f b8 c7", "0x20"), ("cmpxchg16b", "f0 48 0f c7 0f", "0x40301"),
        ("ldmxcsr", "0f ae 17", "0x7f80"), ("xsetbv", "0f 01 d1", "0x1"), ("xgetbv", "0f 01 d0", "0x1"),
        ("xrstor", "0f ae 2f", "0x1"),
        ("fxsave", "0f ae 07", "0x37f"), ("pxor", "66 0f ef c0", "0x0"), ("movsb", "f3 a4", "0x0"),
        ("fninit", "db e3", "0x37f"), ("crc32", "f2 48 0f 38 f1 c7", "0xe9986aa9"), ("movbe", "48 0f 38 f0 07", "0x807060504030201"),
        ("clac", "0f 01 ca", "0x0"),
    ]

    @Test("each probed instruction runs correctly, or stops the VM with a report naming its RIP and bytes")
    func failingSet() throws {
        var table: [String] = []
        var outcomes: [String: ProbeOutcome] = [:]
        for probe in Self.probes {
            let run = try GuestHarness.boot("emulate", cmdline: "probe=\(probe.name)")
            let at = try #require(run.lines.first { $0.hasPrefix("probe \(probe.name) at 0x") }, "\(run.serial)")
            let address = try #require(Self.hexValue(after: " at ", in: at))
            let outcome: ProbeOutcome
            if run.lines.contains("probe \(probe.name): ok \(probe.value)") {
                #expect(run.status == 0)
                outcome = .executed
            } else if run.status == 4 {
                let report = try #require(run.outcome.crashReport)
                #expect(report.contains("KVM internal error, emulation failure"), "\(report)")
                #expect(report.contains("not completed by SynthVM"), "\(report)")
                #expect(report.contains(String(format: "RIP %016llx", address)), "\(report)")
                #expect(report.contains("bytes at RIP: \(probe.bytes)"), "\(report)")
                outcome = .emulationFailure
            } else {
                // KVM's emulator refuses MOVBE when the vCPU's CPUID table lacks it.
                #expect(run.lines.contains { $0.hasPrefix("exception 6 (#UD invalid opcode) at rip=0x\(String(address, radix: 16))") },
                        "\(probe.name): \(run.serial) status \(run.status)")
                outcome = .invalidOpcode
            }
            outcomes[probe.name] = outcome
            table.append("  \(probe.name): \(outcome.rawValue)")
        }
        print("Instructions at CPL 0 on this host:")
        table.forEach { print($0) }
        // A host that runs guest kernel code on the CPU executes them all.
        if !PVMHost.detect().isPVM {
            #expect(outcomes.values.allSatisfy { $0 == .executed }, "\(outcomes)")
        }
    }

    @Test("the probe guest sees what the cpuid guest sees; the overrides are exactly the known leaves")
    func guestCPUIDProbe() throws {
        try GuestHarness.requireKVM()
        let probe = try PVMHost.probeGuestCPUID()
        let cpuidRun = try GuestHarness.boot(kernelPath: try GuestHarness.guestPath("cpuid"), hyperv: "off")
        let dumped = CPUIDGuestTests.parse(cpuidRun.lines)
        for o in probe.observed {
            let d = try #require(dumped.first { $0.function == o.function && $0.index == o.index })
            // OSXSAVE (leaf 1 ECX bit 27) and the XSAVE sizes follow each guest's own CR4 / XCR0.
            #expect(d.eax == o.eax && d.ecx & ~(1 << 27) == o.ecx & ~(1 << 27) && d.edx == o.edx, "leaf \(o.function).\(o.index)")
            if o.function != 0xD && o.function != 1 { #expect(d.ebx == o.ebx) }
        }
        let overridden = Set(probe.overridden.map(\.leaf))
        #expect(overridden.isSubset(of: [1, 7, 0xD]), "\(overridden)")
        if PVMHost.detect().isPVM {
            #expect(overridden.contains(1), "a PVM host shows the guest the host's leaf 1")
        } else {
            #expect(overridden.isEmpty)
        }
    }

    @Test("the Linux profile follows the probe: every option names a feature the guest sees, on PVM only")
    func linuxProfile() throws {
        try GuestHarness.requireKVM()
        let host = PVMHost.detect()
        let guest = try PVMHost.probeGuestCPUID()
        let options = host.linuxCommandLineAdditions(guest: guest)
        guard host.isPVM else {
            #expect(options.isEmpty)
            return
        }
        #expect(options.contains("noxsave") == LinuxPVMProfile.isVisible(LinuxPVMProfile.xsave, in: guest.observed))
        let names = options.first { $0.hasPrefix("clearcpuid=") }.map { $0.dropFirst(11).split(separator: ",").map(String.init) } ?? []
        for f in LinuxPVMProfile.clearedFeatures {
            #expect(names.contains(f.name) == LinuxPVMProfile.isVisible(f, in: guest.observed), "\(f.name)")
        }
    }
}
