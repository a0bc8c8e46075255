import HyperV

/// One hypervisor CPUID leaf as the guest sees it (subleaf 0; these leaves have no index).
public struct HvCPUIDLeaf: Equatable, Sendable {
    public var function: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(function: UInt32, eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }
}

/// The hypervisor CPUID leaves SynthVM shows a guest.
public enum HvCPUIDLeaves {
    /// SynthVM's version in 0x40000002: build 1, version 0.1. Guests only report it.
    public static let buildNumber: UInt32 = 1
    public static let majorVersion: UInt32 = 0
    public static let minorVersion: UInt32 = 1

    /// The leaves 0x40000000...0x4000000A for `enlightenments` (TLFS "Feature Discovery").
    ///
    /// Empty when off, so the guest sees no hypervisor leaves from us at all. Otherwise:
    /// - 0x40000000: max leaf 0x4000000A and "Microsoft Hv" (Linux insists on exactly that vendor);
    /// - 0x40000001: "Hv#1", the promise of GUEST_OS_ID, HYPERCALL and VP_INDEX;
    /// - 0x40000002: a version, for reporting only;
    /// - 0x40000003: the privileges and features derived from `enlightenments`;
    /// - 0x40000004: the derived hints, and never notify on spinlocks;
    /// - 0x40000005: `maxVPs` as both the VP and the LP limit. Not -1 ("no limit"), so the TLB
    ///   flush hints 1/2 (which SynthVM does not implement anyway) are not constrained by it;
    /// - 0x40000006...0x4000000A: zero (hardware features in use, root/nested leaves).
    ///
    /// Hints 1/2 (TLB flush hypercalls) and 4 (reboot through the reset MSR) are never set: no
    /// feature maps to them.
    public static func leaves(for enlightenments: Enlightenments, maxVPs: UInt32) -> [HvCPUIDLeaf] {
        if enlightenments.isOff { return [] }
        let bits = enlightenments.cpuidBits
        var leaves = [
            HvCPUIDLeaf(function: HvCPUID.vendorAndMaxFunction, eax: HvCPUID.maxFunction,
                        ebx: HvCPUID.vendorEBX, ecx: HvCPUID.vendorECX, edx: HvCPUID.vendorEDX),
            HvCPUIDLeaf(function: HvCPUID.interface, eax: HvCPUID.interfaceHv1),
            HvCPUIDLeaf(function: HvCPUID.version, eax: buildNumber, ebx: majorVersion << 16 | minorVersion),
            HvCPUIDLeaf(function: HvCPUID.features, eax: bits.privilegesEAX, ebx: bits.privilegesEBX,
                        edx: bits.featuresEDX),
            HvCPUIDLeaf(function: HvCPUID.enlightenmentInfo, eax: bits.hintsEAX,
                        ebx: Enlightenments.spinlockRetriesNever),
            HvCPUIDLeaf(function: HvCPUID.implementationLimits, eax: maxVPs, ebx: maxVPs),
        ]
        for function in HvCPUID.hardwareFeatures...HvCPUID.maxFunction {
            leaves.append(HvCPUIDLeaf(function: function))
        }
        return leaves
    }
}
