import CSynthVM
import Machine

/// Where a vCPU's next instruction is in guest-physical memory, found through the guest's own
/// page tables, and its bytes: what a crash report shows, what the emulation fix-ups decode, and
/// what the benchmarks' bare loop prints for an exit it did not expect.
public enum InstructionAtRIP {
    /// Whether the vCPU runs 64-bit code (EFER.LMA and CS.L).
    public static func is64Bit(_ sregs: kvm_sregs) -> Bool {
        sregs.efer & (1 << 10) != 0 && sregs.cs.l == 1
    }

    /// The guest-physical address of CS:RIP (in 64-bit mode CS has no base), or nil if the guest's
    /// page tables do not map it.
    public static func physicalAddress(regs: kvm_regs, sregs: kvm_sregs, memory: GuestMemory) -> UInt64? {
        let linear = (is64Bit(sregs) ? 0 : sregs.cs.base) &+ regs.rip
        return PageWalk.translate(virtual: linear, cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4, efer: sregs.efer,
                                  readPhysical64: { gpa in try? memory.readLE(UInt64.self, at: gpa) })
    }

    /// Up to `count` bytes from `physical` on, one at a time, so an instruction that ends where RAM
    /// does still shows the bytes it has.
    public static func bytes(at physical: UInt64, count: Int, memory: GuestMemory) -> [UInt8] {
        var got: [UInt8] = []
        for i in 0..<count {
            guard let b = try? memory.read(count: 1, at: physical &+ UInt64(i)) else { break }
            got += b
        }
        return got
    }
}
