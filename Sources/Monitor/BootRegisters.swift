import CSynthVM
import KVM
import Machine

/// Turns the loader's `BootCPUState` into KVM register state for the boot vCPU.
enum BootRegisters {
    static func segment(selector: UInt16, code: Bool, long: Bool) -> kvm_segment {
        var s = kvm_segment()
        s.base = 0
        s.limit = 0xFFFF_FFFF
        s.selector = selector
        s.type = code ? 11 : 3 // exec/read accessed, read/write accessed
        s.present = 1
        s.dpl = 0
        s.db = long && code ? 0 : 1
        s.s = 1
        s.l = long && code ? 1 : 0
        s.g = 1
        return s
    }

    static func apply(_ state: BootCPUState, to vcpu: KVMVCPU) throws(KVMError) {
        var sregs = try vcpu.getSregs()
        let long = state.mode == .long64
        let cs = segment(selector: long ? BootLayout.code64Selector : BootLayout.code32Selector, code: true, long: long)
        let ds = segment(selector: BootLayout.dataSelector, code: false, long: long)
        sregs.cs = cs
        sregs.ds = ds
        sregs.es = ds
        sregs.fs = ds
        sregs.gs = ds
        sregs.ss = ds
        sregs.gdt.base = BootLayout.gdt
        sregs.gdt.limit = BootLayout.gdtLimit
        sregs.idt.base = 0
        sregs.idt.limit = 0
        // CR0: PE | MP | ET | NE, plus WP | PG in long mode.
        let pe: UInt64 = 1, mp: UInt64 = 1 << 1, et: UInt64 = 1 << 4, ne: UInt64 = 1 << 5
        let wp: UInt64 = 1 << 16, pg: UInt64 = 1 << 31
        if long {
            sregs.cr0 = pe | mp | et | ne | wp | pg
            sregs.cr3 = state.cr3
            sregs.cr4 = 1 << 5 // PAE
            sregs.efer = (1 << 8) | (1 << 10) // LME | LMA
        } else {
            sregs.cr0 = pe | et
            sregs.cr3 = 0
            sregs.cr4 = 0
            sregs.efer = 0
        }
        try vcpu.setSregs(sregs)

        var regs = kvm_regs()
        regs.rip = state.rip
        regs.rsp = state.rsp
        regs.rax = state.rax
        regs.rbx = state.rbx
        regs.rdi = state.rdi
        regs.rsi = state.rsi
        regs.rflags = 0x2
        try vcpu.setRegs(regs)
    }
}
