import ArgumentParser
import Glibc
import KVM
import Machine
import Monitor

/// `synthvm info`: what this host's KVM offers, for bug reports and for choosing options.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show the host KVM's capabilities that SynthVM uses.")

    func run() throws {
        let system: KVMSystem
        do { system = try KVMSystem() } catch { fail("\(error)", status: 70) }
        let caps: [(String, Int32)] = [
            ("KVM_CAP_IRQCHIP", KVMCap.irqchip), ("KVM_CAP_PIT2", KVMCap.pit2),
            ("KVM_CAP_HYPERV", KVMCap.hyperv), ("KVM_CAP_X86_USER_SPACE_MSR", KVMCap.x86UserSpaceMSR),
            ("KVM_CAP_X86_MSR_FILTER", KVMCap.x86MSRFilter), ("KVM_CAP_IRQFD", KVMCap.irqfd),
            ("KVM_CAP_IOEVENTFD", KVMCap.ioeventfd), ("KVM_CAP_SIGNAL_MSI", KVMCap.signalMSI),
            ("KVM_CAP_MAX_VCPUS", KVMCap.maxVCPUs), ("KVM_CAP_IMMEDIATE_EXIT", KVMCap.immediateExit),
            ("KVM_CAP_GET_TSC_KHZ", KVMCap.getTSCKHz),
        ]
        for (name, cap) in caps { print("\(name) = \(system.checkExtension(cap))") }
        if let n = try? system.supportedCPUID().count { print("supported CPUID entries = \(n)") }
        printPVM()
    }

    /// PVM detection, what a guest sees of the CPUID, and the Linux profile (docs/pvm.md).
    private func printPVM() {
        let host = PVMHost.detect()
        print(host.isPVM
            ? "host KVM = PVM (\(PVMHost.modulePath) exists): guest kernel code runs in KVM's instruction emulator"
            : "host KVM = not PVM (no \(PVMHost.modulePath))")
        let guest: PVMHost.GuestCPUID
        do { guest = try PVMHost.probeGuestCPUID() } catch {
            print("guest CPUID probe failed: \(error)")
            return
        }
        let overridden = guest.overridden.map { "0x\(String($0.leaf, radix: 16)).\($0.subleaf)" }
        print("guest CPUID leaves KVM_SET_CPUID2 does not control = "
            + (overridden.isEmpty ? "none" : overridden.joined(separator: " ")))
        for e in guest.observed {
            print("guest sees CPUID 0x\(String(e.function, radix: 16)).\(e.index): "
                + [e.eax, e.ebx, e.ecx, e.edx].map { hex32($0) }.joined(separator: " "))
        }
        let additions = host.linuxCommandLineAdditions(guest: guest)
        print("--profile linux-pvm adds = " + (additions.isEmpty ? "nothing on this host" : additions.joined(separator: " ")))
        print("emulation fix-ups = " + (host.isPVM ? EmulationFixup.Instruction.allCases.map(\.rawValue).joined(separator: " ")
            + " (completed by SynthVM when KVM cannot emulate them)" : "none needed"))
    }

    private func hex32(_ v: UInt32) -> String {
        let d = String(v, radix: 16)
        return String(repeating: "0", count: 8 - d.count) + d
    }
}
