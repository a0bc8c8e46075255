import CSynthVM
import KVM
import Machine

/// Completes the few instructions this host's KVM fails to emulate (`Machine/EmulationFixup.swift`
/// says which and how; docs/pvm.md why). Called by the exit loop on KVM_EXIT_INTERNAL_ERROR with
/// the emulation suberror, before it gives up with a crash report. The one place where SynthVM
/// changes guest state on an emulation failure.
enum EmulationFixups {
    enum Outcome: Equatable {
        case completed(EmulationFixup.Instruction)
        /// Why not; the crash report shows it.
        case notCompleted(String)
    }

    static func complete(vcpu: KVMVCPU, memory: GuestMemory) -> Outcome {
        do {
            var regs = try vcpu.getRegs()
            let sregs = try vcpu.getSregs()
            let size: EmulationFixup.CodeSize = InstructionAtRIP.is64Bit(sregs) ? .bits64 : (sregs.cs.db == 1 ? .bits32 : .bits16)
            guard let physical = InstructionAtRIP.physicalAddress(regs: regs, sregs: sregs, memory: memory),
                let bytes = try? memory.read(count: min(EmulationFixup.maxLength, 4096 - Int(physical & 0xFFF)), at: physical)
            else { return .notCompleted("the instruction at RIP is not readable") }
            guard let instruction = EmulationFixup.decode(bytes) else {
                return .notCompleted("not an instruction SynthVM completes (int3, fwait, clac, stac)")
            }
            var events = try vcpu.getVCPUEvents()
            var state = EmulationFixup.State(
                rip: regs.rip, rflags: regs.rflags, cr0: sregs.cr0, codeSize: size,
                eventPending: events.exception.injected != 0 || events.exception.pending != 0
                    || events.interrupt.injected != 0 || events.nmi.injected != 0,
                cpl: UInt8(sregs.cs.selector & 3), smapSupported: guestSeesSMAP)
            if instruction == .fwait {
                let fpu = try vcpu.getFPU()
                state.x87 = .init(controlWord: fpu.fcw, statusWord: fpu.fsw)
            }
            // The instruction ends any interrupt shadow (STI, MOV SS) it sat in, as executing it would.
            events.flags = UInt32(KVM_VCPUEVENT_VALID_SHADOW)
            events.interrupt.shadow = 0
            switch EmulationFixup.plan(instruction, state: state) {
            case let .refuse(why):
                return .notCompleted("\(instruction.rawValue): \(why)")
            case let .skip(rip):
                regs.rip = rip
                try vcpu.setRegs(regs)
                try vcpu.setVCPUEvents(events)
            case let .setFlags(rflags, rip):
                regs.rflags = rflags
                regs.rip = rip
                try vcpu.setRegs(regs)
                try vcpu.setVCPUEvents(events)
            case let .trap(vector, rip):
                regs.rip = rip
                try vcpu.setRegs(regs)
                try vcpu.setVCPUEvents(inject(vector, into: events))
            case let .fault(vector):
                try vcpu.setVCPUEvents(inject(vector, into: events))
            }
            return .completed(instruction)
        } catch {
            return .notCompleted("\(error)")
        }
    }

    /// CPUID.(7,0):EBX[20] (SMAP) as the guest sees it. Fix-ups only happen on hosts whose KVM
    /// emulates guest kernel code (PVM), and those pass leaf 7 through from the host whatever
    /// KVM_SET_CPUID2 says (docs/pvm.md), so the host's own CPUID is what the guest sees.
    static let guestSeesSMAP: Bool = {
        var r: [UInt32] = [0, 0, 0, 0]
        svm_host_cpuid(7, 0, &r)
        return r[1] & (1 << 20) != 0
    }()

    /// `events` with `vector` (no error code: #BP, #NM and #MF have none) injected at the next entry.
    private static func inject(_ vector: UInt8, into events: kvm_vcpu_events) -> kvm_vcpu_events {
        var e = events
        e.exception.injected = 1
        e.exception.nr = vector
        e.exception.has_error_code = 0
        e.exception.error_code = 0
        return e
    }
}
