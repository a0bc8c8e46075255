import CSynthVM
import KVM
import Machine

/// The one-screen report for a vCPU that died: exit reason, vCPU, RIP, the instruction bytes at
/// RIP (read through the guest's own page tables), registers, and KVM's diagnostic words.
enum CrashReport {
    static func hex(_ v: UInt64, width: Int = 16) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    static func make(vcpu: KVMVCPU, headline: String, detail: [String], memory: GuestMemory) -> String {
        var lines = ["SynthVM: vCPU \(vcpu.id) stopped: \(headline)"]
        lines += detail.map { "  " + $0 }
        guard let regs = try? vcpu.getRegs(), let sregs = try? vcpu.getSregs() else {
            lines.append("  (registers unavailable)")
            return lines.joined(separator: "\n")
        }
        let physical = InstructionAtRIP.physicalAddress(regs: regs, sregs: sregs, memory: memory)
        var bytesText = "unreadable"
        if let pa = physical {
            let got = InstructionAtRIP.bytes(at: pa, count: 16, memory: memory)
            if !got.isEmpty { bytesText = got.map { hex(UInt64($0), width: 2) }.joined(separator: " ") }
        }
        let mode = (sregs.efer & (1 << 10)) != 0 ? (sregs.cs.l == 1 ? "64-bit" : "compat")
            : (sregs.cr0 & 1) != 0 ? (sregs.cs.db == 1 ? "32-bit protected" : "16-bit protected") : "real"
        lines.append("  RIP \(hex(regs.rip))  CS \(hex(UInt64(sregs.cs.selector), width: 4)) (\(mode) mode, CPL \(sregs.cs.selector & 3))"
            + (physical.map { "  GPA \(hex($0))" } ?? "  GPA unmapped"))
        lines.append("  bytes at RIP: \(bytesText)")
        let g: [(String, UInt64)] = [
            ("RAX", regs.rax), ("RBX", regs.rbx), ("RCX", regs.rcx), ("RDX", regs.rdx),
            ("RSI", regs.rsi), ("RDI", regs.rdi), ("RBP", regs.rbp), ("RSP", regs.rsp),
            ("R8 ", regs.r8), ("R9 ", regs.r9), ("R10", regs.r10), ("R11", regs.r11),
            ("R12", regs.r12), ("R13", regs.r13), ("R14", regs.r14), ("R15", regs.r15),
        ]
        for row in stride(from: 0, to: g.count, by: 4) {
            lines.append("  " + g[row..<(row + 4)].map { "\($0.0) \(hex($0.1))" }.joined(separator: "  "))
        }
        lines.append("  RFLAGS \(hex(regs.rflags))  CR0 \(hex(sregs.cr0))  CR2 \(hex(sregs.cr2))")
        lines.append("  CR3 \(hex(sregs.cr3))  CR4 \(hex(sregs.cr4))  EFER \(hex(sregs.efer))")
        lines.append("  GDT \(hex(sregs.gdt.base))/\(hex(UInt64(sregs.gdt.limit), width: 4))"
            + "  IDT \(hex(sregs.idt.base))/\(hex(UInt64(sregs.idt.limit), width: 4))")
        return lines.joined(separator: "\n")
    }
}
