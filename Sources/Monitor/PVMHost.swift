import Glibc
import KVM
import Machine

/// Whether this host's KVM is PVM, and what a guest will see of the CPUID there (docs/pvm.md).
///
/// PVM ("pagetable-based virtual machine") is a KVM vendor module, `kvm_pvm`, that runs guests
/// without hardware virtualization, for hosts that are themselves VMs. Guest user code runs on
/// the CPU, guest kernel code in KVM's instruction emulator, so instructions that emulator lacks
/// end the vCPU with KVM_EXIT_INTERNAL_ERROR (emulation failure). How SynthVM tells:
///
/// - the module: `/sys/module/kvm_pvm` exists (it is loaded, or built in with its parameters);
///   on hardware-virtualizing hosts the vendor module is `kvm_intel` or `kvm_amd`;
/// - the behaviour, observed with a probe guest (`CPUIDProbeGuest`): leaves 1, 7 and 0xD show
///   the host's values, not the table SynthVM set with KVM_SET_CPUID2. On the development host
///   KVM_GET_SUPPORTED_CPUID offers, say, no SSE3 or POPCNT in leaf 1 ECX (0x81202000), and the
///   guest sees both (0xf7f83203).
///
/// The host's own CPUID says nothing specific: a PVM host is usually a KVM guest itself
/// ("KVMKVMKVM" at 0x40000000, the hypervisor bit), like any nested host.
public struct PVMHost: Sendable, Equatable {
    public static let modulePath = "/sys/module/kvm_pvm"

    public var moduleLoaded: Bool

    /// Guest kernel code runs in KVM's emulator: the emulation fix-ups and the Linux profile apply.
    public var isPVM: Bool { moduleLoaded }

    public static func detect() -> PVMHost {
        PVMHost(moduleLoaded: access(modulePath, F_OK) == 0)
    }

    /// What a guest sees: the probe guest's CPUID leaves next to the table SynthVM gave KVM.
    public struct GuestCPUID: Sendable {
        public var table: [CPUIDEntry]
        public var observed: [CPUIDEntry]
        /// The leaves whose stable bits differ: the ones this host does not let SynthVM set.
        public var overridden: [(leaf: UInt32, subleaf: UInt32)] {
            CPUIDProbeGuest.overriddenLeaves(table: table, observed: observed)
        }
    }

    /// Boots the probe guest in a small VM built like any other (no Hyper-V leaves, no console)
    /// and reads back the leaves it saw.
    public static func probeGuestCPUID() throws(MonitorError) -> GuestCPUID {
        var config = try MachineConfig.load(kernelPath: nil, memory: "2M", serial: "none", hyperv: "off")
        do { config.kernel = try KernelImage.open(CPUIDProbeGuest.elf(), decompressedSizeLimit: Int(config.layout.ramSize)) } catch {
            throw .config("CPUID probe guest: \(error)")
        }
        config.kernelName = "CPUID probe guest"
        config.timeoutSeconds = 30
        try config.validate()
        let vm = try VirtualMachine(config: config)
        let outcome = vm.run()
        guard outcome.reason == .exitDevice(value: 0) else {
            throw .config("CPUID probe guest: \(outcome.reason.description)")
        }
        let bytes: [UInt8]
        do { bytes = try vm.memory.read(count: CPUIDProbeGuest.resultSize, at: CPUIDProbeGuest.resultAddress) } catch {
            throw .memory(error)
        }
        guard let observed = CPUIDProbeGuest.parse(bytes) else { throw .config("CPUID probe guest: short result") }
        return GuestCPUID(table: vm.cpuidTables[0], observed: observed)
    }

    /// The `--profile linux-pvm` additions for this host: derived from what the guest sees, and
    /// none unless guest kernel code runs in KVM's emulator.
    public func linuxCommandLineAdditions(guest: GuestCPUID) -> [String] {
        isPVM ? LinuxPVMProfile.commandLineAdditions(guestCPUID: guest.observed) : []
    }
}
