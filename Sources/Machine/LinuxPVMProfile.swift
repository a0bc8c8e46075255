/// The Linux command-line additions for a guest on a PVM host (`--profile linux-pvm`,
/// docs/pvm.md), derived from the CPUID the guest will see.
///
/// On a PVM host guest kernel code runs in KVM's instruction emulator, which cannot execute
/// XSAVE-family, SSE and newer SIMD instructions, POPCNT or CMPXCHG16B, while the guest still
/// sees the host's CPUID leaves 1, 7 and 0xD (KVM_SET_CPUID2 does not apply to them), so Linux
/// would use those instructions. These options make it not use them, each only when the guest
/// actually sees the feature:
///
/// - `noxsave` when XSAVE is visible: no XSAVE/XRSTOR/XSETBV. Linux also drops everything that
///   depends on XSAVE through its cpuid-deps table (AVX, and through it AVX2, AVX-512, FMA, F16C,
///   VAES, VPCLMULQDQ), so those need no `clearcpuid` entry;
/// - `clearcpuid=` with the /proc/cpuinfo names (accepted since Linux 5.19; 6.1 is the reference
///   guest) of the visible features in `clearedFeatures`: CMPXCHG16B, POPCNT, the SSE3-and-later
///   integer/crypto set (SSE3, PCLMULQDQ, SSSE3, SSE4.1, SSE4.2, AES, SHA-NI, and GFNI, which
///   newer kernels tie to SSE2 rather than AVX-512VL) and the fast
///   string flags ERMS/FSRM (with them Linux copies with `rep movsb`, which the emulator runs an
///   element at a time; without them it uses wider moves), and SMAP (the emulator fails on CLAC,
///   which Linux runs at every exception entry and user access once SMAP is on).
///
/// MOVBE stays: KVM's emulator implements it (it raises #UD when the vCPU's own CPUID lacks it,
/// and Linux's kernel code does not use it). Linux keeps at most 127 characters of the
/// `clearcpuid=` value; the full list is well below that.
public enum LinuxPVMProfile {
    public struct Feature: Sendable, Equatable {
        /// The Linux /proc/cpuinfo name.
        public var name: String
        public var leaf: UInt32
        public var subleaf: UInt32
        public var register: CPUIDRegister
        public var bit: UInt32
    }

    public enum CPUIDRegister: Sendable, Equatable { case eax, ebx, ecx, edx }

    /// Leaf 1 ECX bit 26.
    public static let xsave = Feature(name: "xsave", leaf: 1, subleaf: 0, register: .ecx, bit: 26)

    public static let clearedFeatures: [Feature] = [
        Feature(name: "pni", leaf: 1, subleaf: 0, register: .ecx, bit: 0),  // SSE3
        Feature(name: "pclmulqdq", leaf: 1, subleaf: 0, register: .ecx, bit: 1),
        Feature(name: "ssse3", leaf: 1, subleaf: 0, register: .ecx, bit: 9),
        Feature(name: "cx16", leaf: 1, subleaf: 0, register: .ecx, bit: 13),  // CMPXCHG16B
        Feature(name: "sse4_1", leaf: 1, subleaf: 0, register: .ecx, bit: 19),
        Feature(name: "sse4_2", leaf: 1, subleaf: 0, register: .ecx, bit: 20),  // and CRC32
        Feature(name: "popcnt", leaf: 1, subleaf: 0, register: .ecx, bit: 23),
        Feature(name: "aes", leaf: 1, subleaf: 0, register: .ecx, bit: 25),
        Feature(name: "erms", leaf: 7, subleaf: 0, register: .ebx, bit: 9),
        Feature(name: "smap", leaf: 7, subleaf: 0, register: .ebx, bit: 20),  // CLAC/STAC
        Feature(name: "sha_ni", leaf: 7, subleaf: 0, register: .ebx, bit: 29),
        Feature(name: "gfni", leaf: 7, subleaf: 0, register: .ecx, bit: 8),
        Feature(name: "fsrm", leaf: 7, subleaf: 0, register: .edx, bit: 4),
    ]

    /// Linux copies the `clearcpuid=` value into a 128-byte buffer.
    public static let clearCPUIDLimit = 127

    public static func isVisible(_ f: Feature, in cpuid: [CPUIDEntry]) -> Bool {
        guard let e = cpuid.first(where: { $0.function == f.leaf && $0.index == f.subleaf }) else { return false }
        let value: UInt32
        switch f.register {
        case .eax: value = e.eax
        case .ebx: value = e.ebx
        case .ecx: value = e.ecx
        case .edx: value = e.edx
        }
        return value >> f.bit & 1 == 1
    }

    /// The options to append to the guest's command line, from the CPUID leaves the guest sees
    /// (`CPUIDProbeGuest`). Empty when none of the features is visible.
    public static func commandLineAdditions(guestCPUID: [CPUIDEntry]) -> [String] {
        var options: [String] = []
        if isVisible(xsave, in: guestCPUID) { options.append("noxsave") }
        let names = clearedFeatures.filter { isVisible($0, in: guestCPUID) }.map(\.name)
        if !names.isEmpty { options.append("clearcpuid=" + names.joined(separator: ",")) }
        return options
    }

    /// `commandLine` with `additions` appended. Options already there are not repeated; a
    /// `clearcpuid=` the operator gave is extended in place with the features it lacks (Linux
    /// reads a single `clearcpuid=`).
    public static func merge(_ additions: [String], into commandLine: String) -> String {
        var words = commandLine.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        for option in additions where !words.contains(option) {
            let prefix = "clearcpuid="
            if option.hasPrefix(prefix), let i = words.firstIndex(where: { $0.hasPrefix(prefix) }) {
                let given = words[i].dropFirst(prefix.count).split(separator: ",").map(String.init)
                let more = option.dropFirst(prefix.count).split(separator: ",").map(String.init).filter { !given.contains($0) }
                words[i] = prefix + (given + more).joined(separator: ",")
            } else {
                words.append(option)
            }
        }
        return words.joined(separator: " ")
    }
}
