/// A guest that reports the CPUID leaves it sees, to learn what a guest will really see on this
/// host: some KVMs (PVM) show the host's own values for leaves 1, 7 and 0xD whatever
/// KVM_SET_CPUID2 says. Hand-assembled like `BuiltinGuest`, so no toolchain is needed at run time.
///
/// The code executes CPUID for each (leaf, subleaf) in `leaves`, stores EAX, EBX, ECX, EDX at
/// `resultAddress` + 16 * i, and writes 0 to the exit device (VM status 1).
public enum CPUIDProbeGuest {
    /// Leaves 1, 7 and 0xD carry the features a Linux guest's command line may need to clear.
    public static let leaves: [(leaf: UInt32, subleaf: UInt32)] = [(1, 0), (7, 0), (7, 1), (0xD, 0), (0xD, 1)]
    /// In the guest-free area below 1 MiB (docs/boot-protocol.md).
    public static let resultAddress: UInt64 = 0x8000
    public static var resultSize: Int { leaves.count * 16 }

    public static func elf() -> [UInt8] {
        func imm32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        var code: [UInt8] = [0xBF] + imm32(UInt32(resultAddress))  // mov edi, resultAddress
        for (leaf, subleaf) in leaves {
            code += [0xB8] + imm32(leaf)  // mov eax, leaf
            code += [0xB9] + imm32(subleaf)  // mov ecx, subleaf
            code += [0x0F, 0xA2]  // cpuid
            code += [0x89, 0x07, 0x89, 0x5F, 0x04, 0x89, 0x4F, 0x08, 0x89, 0x57, 0x0C]  // [rdi..rdi+12] = eax, ebx, ecx, edx
            code += [0x48, 0x83, 0xC7, 0x10]  // add rdi, 16
        }
        code += [0x66, 0xBA, 0xF4, 0x00, 0x31, 0xC0, 0xEF]  // mov dx, 0xf4; xor eax, eax; out dx, eax
        code += [0xFA, 0xF4, 0xEB, 0xFD]  // cli; hlt; jmp hlt (not reached)
        return BuiltinGuest.elf64(code: code)
    }

    /// The entries the guest stored; nil unless `bytes` is exactly the result area.
    public static func parse(_ bytes: [UInt8]) -> [CPUIDEntry]? {
        guard bytes.count == resultSize else { return nil }
        func word(_ at: Int) -> UInt32 {
            UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        }
        return leaves.enumerated().map { i, l in
            CPUIDEntry(function: l.leaf, index: l.subleaf, eax: word(16 * i), ebx: word(16 * i + 4),
                       ecx: word(16 * i + 8), edx: word(16 * i + 12))
        }
    }

    /// Bits that change at run time on any KVM and so say nothing about who controls a leaf:
    /// leaf 1 EBX (APIC ID, counts), ECX bit 27 (OSXSAVE mirrors CR4); leaf 7 ECX bit 4 (OSPKE);
    /// leaf 0xD EBX (the size for the features enabled in XCR0 / XSS).
    static func stableMask(leaf: UInt32, subleaf: UInt32) -> (eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
        switch (leaf, subleaf) {
        case (1, _): return (~0, 0, ~(1 << 27), ~0)
        case (7, 0): return (~0, ~0, ~(1 << 4), ~0)
        case (0xD, _): return (~0, 0, ~0, ~0)
        default: return (~0, ~0, ~0, ~0)
        }
    }

    /// The (leaf, subleaf) pairs whose stable bits the guest sees differently from the table
    /// SynthVM gave KVM: the leaves this host does not let the VMM control.
    public static func overriddenLeaves(table: [CPUIDEntry], observed: [CPUIDEntry]) -> [(leaf: UInt32, subleaf: UInt32)] {
        observed.compactMap { o in
            let want = table.first {
                $0.function == o.function && ($0.index == o.index || $0.flags & CPUIDEntry.flagSignificantIndex == 0)
            } ?? CPUIDEntry(function: o.function, index: o.index)
            let m = stableMask(leaf: o.function, subleaf: o.index)
            let same = (want.eax ^ o.eax) & m.eax == 0 && (want.ebx ^ o.ebx) & m.ebx == 0
                && (want.ecx ^ o.ecx) & m.ecx == 0 && (want.edx ^ o.edx) & m.edx == 0
            return same ? nil : (o.function, o.index)
        }
    }
}
