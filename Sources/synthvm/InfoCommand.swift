import ArgumentParser
import Glibc
import KVM

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
    }
}
