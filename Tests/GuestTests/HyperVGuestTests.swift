import Foundation
import Machine
@testable import Monitor
import Partition
import Testing

@Suite("The HV#1 interface, seen from inside a guest")
struct HyperVGuestTests {
    static func boot(_ guest: String, cpus: Int = 1, hyperv: String = "default", cmdline: String = "",
                     configure: (inout MachineConfig) -> Void = { _ in }) throws -> GuestHarness.Run {
        try GuestHarness.boot(kernelPath: try GuestHarness.guestPath(guest), cpus: cpus, cmdline: cmdline,
                              hyperv: hyperv, configure: configure)
    }

    @Test("a Linux-style probe finds Microsoft Hv, enables the hypercall and TSC pages and makes a fast call")
    func linuxStyleProbe() throws {
        let run = try Self.boot("hvprobe")
        #expect(run.lines.contains("hvprobe: ok"), "\(run.serial)")
        #expect(run.lines.contains { $0.hasPrefix("tsc page: sequence=") })
        #expect(run.lines.contains("signal event status=0x12"))
        #expect(run.status == 0)
        #expect(run.outcome.totals.hypercalls >= 1)
        #expect(run.outcome.totals.syntheticMSRWrites >= 3)
    }

    @Test("--hyperv off shows a plain x86 guest: no Hyper-V leaves, synthetic MSRs #GP")
    func hypervOff() throws {
        let run = try Self.boot("hvprobe", hyperv: "off", cmdline: "expect=off")
        #expect(run.lines.contains("hvprobe: no hypervisor leaves"), "\(run.serial)")
        #expect(run.lines.contains("hvprobe: ok"))
        #expect(run.status == 0)
        #expect(!run.cpuidTables[0].contains { $0.function >= 0x4000_0000 && $0.function <= 0x4FFF_FFFF })
    }

    @Test("the CPUID leaves the guest sees are exactly the partition's", arguments: ["default", "time", "crash,ipi", "off"])
    func cpuidLeaves(hyperv: String) throws {
        let run = try Self.boot("cpuid", hyperv: hyperv)
        let observed = CPUIDGuestTests.parse(run.lines)
        let expected = try HvCPUIDLeaves.leaves(for: Enlightenments.parse(hyperv), maxVPs: 1)
        if expected.isEmpty {
            let l = try #require(observed.first { $0.function == 0x4000_0000 })
            #expect(!(l.ebx == 0x7263_694D && l.ecx == 0x666F_736F && l.edx == 0x7648_2074))
        }
        for leaf in expected {
            let o = try #require(observed.first { $0.function == leaf.function }, "leaf \(String(leaf.function, radix: 16))")
            #expect(o.eax == leaf.eax && o.ebx == leaf.ebx && o.ecx == leaf.ecx && o.edx == leaf.edx,
                    "leaf \(String(leaf.function, radix: 16))")
        }
    }

    @Test("the synthetic MSR access matrix matches the advertised privileges", arguments: ["default", "time", "crash", "runtime,frequencies", "default,-synic,-stimer,-stimer-direct", "off"])
    func msrMatrix(hyperv: String) throws {
        let run = try Self.boot("hvmsr", hyperv: hyperv)
        #expect(run.lines.contains("hvmsr: ok"), "\(run.serial)")
        #expect(!run.lines.contains { $0.contains("FAIL") })
        #expect(run.status == 0)
    }

    @Test("64-bit hypercalls: status codes for good and malformed calls, #UD once disabled")
    func hypercalls64() throws {
        let run = try Self.boot("hvcall")
        #expect(run.lines.contains("hvcall: ok"), "\(run.serial)")
        #expect(run.lines.contains("hypercall after disable: #UD"))
        #expect(run.status == 0)
    }

    @Test("32-bit hypercalls from a multiboot guest use the EDX:EAX convention")
    func hypercalls32() throws {
        let run = try Self.boot("mbhvcall")
        #expect(run.lines.contains("mbhvcall: ok"), "\(run.serial)")
        #expect(run.status == 0)
    }

    @Test("TIME_REF_COUNT and the TSC page agree and are monotonic on every vCPU", arguments: [1, 2])
    func referenceClock(cpus: Int) throws {
        let run = try Self.boot("hvclock", cpus: cpus)
        for i in 0..<cpus { #expect(run.lines.contains { $0.hasPrefix("hvclock: vcpu \(i) ok") }, "\(run.serial)") }
        #expect(run.lines.contains("hvclock: ok"))
        #expect(run.status == 0)
    }

    @Test("synthetic cluster IPIs reach exactly the targeted vCPUs")
    func clusterIPIs() throws {
        let run = try Self.boot("hvipi", cpus: 4)
        #expect(run.lines.contains("hvipi: ok"), "\(run.serial)")
        #expect(run.status == 0)
    }

    @Test("a crash MSR notification produces the host-side report and stops the VM")
    func crashReport() throws {
        let run = try Self.boot("hvcrash")
        #expect(run.lines.contains("hvcrash: notified"))
        #expect(run.outcome.reason == .guestReportedCrash(vcpu: 0))
        #expect(run.status == 8)
        let n = try #require(run.outcome.guestCrashNotifications.first)
        #expect(Array(n.parameters.prefix(3)) == [0x11, 0x22, 0x33])
        #expect(n.message.map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } == "synthvm test bugcheck")
        let json = try #require(run.outcome.guestCrashReportJSON)
        #expect(json.contains("\"message\": \"synthvm test bugcheck\""))
        #expect(json.contains("\"0x11\""))
    }

    @Test("with --on-guest-crash continue the guest goes on after reporting")
    func crashContinue() throws {
        let run = try Self.boot("hvcrash") { $0.onGuestCrash = .continue }
        #expect(run.lines.contains("hvcrash: still running"), "\(run.serial)")
        #expect(run.status == 0)
        #expect(run.outcome.guestCrashNotifications.count == 1)
    }
}
