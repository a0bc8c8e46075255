/// One CPUID leaf as KVM describes it (`struct kvm_cpuid_entry2`): the registers returned for
/// `function` (EAX input) and, when `flags` has KVM_CPUID_FLAG_SIGNIFCANT_INDEX, `index` (ECX).
public struct CPUIDEntry: Equatable, Sendable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(
        function: UInt32, index: UInt32 = 0, flags: UInt32 = 0, eax: UInt32 = 0, ebx: UInt32 = 0,
        ecx: UInt32 = 0, edx: UInt32 = 0
    ) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }

    /// KVM_CPUID_FLAG_SIGNIFCANT_INDEX (sic, as spelled in linux/kvm.h).
    public static let flagSignificantIndex: UInt32 = 1 << 0
}

/// The CPUID table a vCPU is given (KVM_SET_CPUID2), derived from what the host supports
/// (KVM_GET_SUPPORTED_CPUID).
///
/// KVM reports what it *can* virtualize; a VMM must still adjust it, because some leaves are
/// per-vCPU (APIC IDs, topology), some advertise features SynthVM does not emulate (MONITOR/
/// MWAIT, thermal and power management, PMU, SGX, debug store, VMX), and the hypervisor leaves
/// at 0x40000000 are SynthVM's to define (it presents Hyper-V's, added by a later layer), not
/// KVM's paravirtual ones. Each rule below says why the guest must not see the host value.
public enum CPUIDTable {
    /// The hypervisor leaf range (Intel SDM: "invalid" on bare metal, reserved for hypervisors).
    public static let hypervisorLeaves: ClosedRange<UInt32> = 0x4000_0000...0x4FFF_FFFF

    /// Builds the table for vCPU `vcpuIndex` of `vcpuCount`. The vCPU index is the initial
    /// (x2)APIC ID, as the in-kernel local APIC numbers vCPUs by their KVM vCPU id.
    public static func build(supported: [CPUIDEntry], vcpuIndex: UInt32, vcpuCount: UInt32) -> [CPUIDEntry] {
        let logicalCount = max(vcpuCount, 1)
        var table: [CPUIDEntry] = []
        table.reserveCapacity(supported.count)
        for var entry in supported {
            switch entry.function {
            case hypervisorLeaves:
                // KVM's paravirtual signature ("KVMKVMKVM") and features: a Hyper-V guest must
                // see only the Hyper-V leaves, which are added by the partition layer.
                continue
            case 0x12:
                // SGX enumeration: no enclave support is virtualized.
                continue
            case 0x1:
                entry.ebx = (entry.ebx & 0x0000_FFFF)
                    | (vcpuIndex & 0xFF) << 24  // initial APIC ID
                    | (min(logicalCount, 0xFF)) << 16  // logical processors per package
                entry.ecx |= 1 << 31  // hypervisor present: guests then look at 0x40000000
                entry.ecx &= ~leaf1ClearedECX
                entry.edx &= ~leaf1ClearedEDX
                // HTT: without it guests ignore the logical count in EBX[23:16] (QEMU sets it
                // likewise for more than one vCPU).
                if logicalCount > 1 { entry.edx |= 1 << 28 } else { entry.edx &= ~(1 << 28) }
            case 0x5:
                // MONITOR/MWAIT is not exposed (ECX bit 3 cleared above); its leaf goes too.
                entry.eax = 0
                entry.ebx = 0
                entry.ecx = 0
                entry.edx = 0
            case 0x6:
                // Thermal and power management is the host's business; only ARAT (the APIC
                // timer keeps running in deep C-states) is true of the virtual LAPIC and
                // lets guests use it as a clock-event device.
                entry.eax &= 1 << 2
                entry.ebx = 0
                entry.ecx = 0
                entry.edx = 0
            case 0x7 where entry.index == 0:
                entry.ebx &= ~(1 << 2)  // SGX
                entry.ecx &= ~(1 << 5)  // WAITPKG: UMWAIT/TPAUSE would idle the host core
                entry.ecx &= ~(1 << 30)  // SGX_LC
            case 0xA:
                // No virtual PMU: counters would leak host activity and need save/restore.
                entry.eax = 0
                entry.ebx = 0
                entry.ecx = 0
                entry.edx = 0
            case 0xB, 0x1F:
                // Extended topology: EDX is the x2APIC ID of the executing logical processor.
                entry.edx = vcpuIndex
            case 0x4:
                // Deterministic cache parameters: EAX[31:26] is "cores per package - 1". Null
                // subleaves (cache type 0, which end the enumeration) stay all zero.
                if entry.eax & 0x1F != 0 {
                    entry.eax = (entry.eax & 0x03FF_FFFF) | min(logicalCount - 1, 63) << 26
                }
            default:
                break
            }
            table.append(entry)
        }
        return table
    }

    /// Leaf 1 ECX features removed: DTES64 (2), MONITOR (3), DS-CPL (4), VMX (5), SMX (6),
    /// EST (7), TM2 (8), xTPR (14), PDCM (15), DCA (18). All are debug-store, power, thermal,
    /// nested-virtualization or chipset features that SynthVM does not emulate.
    static let leaf1ClearedECX: UInt32 =
        1 << 2 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 14 | 1 << 15 | 1 << 18
    /// Leaf 1 EDX features removed: DS (21), ACPI thermal monitor (22), TM (29), PBE (31).
    static let leaf1ClearedEDX: UInt32 = 1 << 21 | 1 << 22 | 1 << 29 | 1 << 31

    /// One line per (function, index) present in both lists whose registers differ, naming
    /// each differing register with both values and the bits set and cleared in `observed`.
    /// The guest test uses it to report which leaves the host (KVM) overrides after
    /// KVM_SET_CPUID2. Order follows `expected`; only the first entry of each key counts.
    public static func describeDifferences(expected: [CPUIDEntry], observed: [CPUIDEntry]) -> [String] {
        var observedByKey: [UInt64: CPUIDEntry] = [:]
        for entry in observed {
            let key = UInt64(entry.function) << 32 | UInt64(entry.index)
            if observedByKey[key] == nil { observedByKey[key] = entry }
        }
        var seen = Set<UInt64>()
        var lines: [String] = []
        for want in expected {
            let key = UInt64(want.function) << 32 | UInt64(want.index)
            guard seen.insert(key).inserted, let got = observedByKey[key] else { continue }
            var parts: [String] = []
            for (name, a, b) in [("eax", want.eax, got.eax), ("ebx", want.ebx, got.ebx),
                                 ("ecx", want.ecx, got.ecx), ("edx", want.edx, got.edx)] where a != b {
                parts.append(
                    "\(name) expected \(hex32(a)) observed \(hex32(b)) (set \(hex32(b & ~a)), cleared \(hex32(a & ~b)))")
            }
            if !parts.isEmpty {
                lines.append("leaf \(hex32(want.function)) subleaf \(want.index): " + parts.joined(separator: "; "))
            }
        }
        return lines
    }
}

/// `0x` followed by exactly eight hex digits, so columns of register values line up.
private func hex32(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
