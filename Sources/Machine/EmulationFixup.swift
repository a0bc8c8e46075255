/// The instructions SynthVM completes itself when the host's KVM reports an emulation failure
/// for them (docs/pvm.md): on a PVM host guest kernel code runs in KVM's instruction emulator,
/// which decodes `int3` and `fwait` but cannot execute them. Anything else keeps the crash report.
///
/// Pure: `decode` looks at the bytes at RIP, `plan` says what the instruction does to the
/// architectural state; the monitor (`Monitor/EmulationFixups.swift`) reads the state and applies
/// the plan. Completing means exactly what the CPU would do, or refusing:
///
/// - `int3` (CC): #BP, a trap: delivered with RIP after the instruction.
/// - `fwait` / `wait` (9B): #NM (a fault, RIP at the instruction) if CR0.MP and CR0.TS are both
///   set; else #MF (a fault) if an unmasked x87 exception is pending (FSW exception flags 5:0
///   against the FCW masks) and CR0.NE is set; else nothing happens and RIP moves past it.
///
/// - `clac` / `stac` (0F 01 CA / 0F 01 CB; the kernel's SMAP user-access brackets): #UD (a fault)
///   if CPL > 0 or the CPU the guest sees has no SMAP (CPUID.(7,0):EBX[20]); else RFLAGS.AC is
///   cleared / set and RIP moves past the 3 bytes. CR4.SMAP does not matter (Intel SDM, AMD APM).
///
/// Refused (crash report): prefixed forms, virtual-8086 mode, a pending unmasked x87 exception
/// with CR0.NE clear (that is reported through FERR# and IRQ 13, not modelled), RFLAGS.TF set
/// (the single-step trap after the instruction is not modelled), and an exit that already carries
/// an event being delivered.
public enum EmulationFixup {
    public enum Instruction: String, Sendable, Equatable, CaseIterable {
        case int3
        case fwait
        case clac
        case stac

        /// Bytes of the exact form `decode` accepts.
        public var length: UInt64 {
            switch self {
            case .int3, .fwait: 1
            case .clac, .stac: 3
            }
        }
    }

    /// The longest instruction `decode` looks for.
    public static let maxLength = 3

    /// The default operand size of the code segment, which bounds RIP arithmetic.
    public enum CodeSize: Sendable, Equatable {
        case bits16, bits32, bits64
    }

    /// x87 control and status words (KVM_GET_FPU's fcw, fsw).
    public struct X87: Sendable, Equatable {
        public var controlWord: UInt16
        public var statusWord: UInt16
        public init(controlWord: UInt16, statusWord: UInt16) {
            self.controlWord = controlWord
            self.statusWord = statusWord
        }

        /// An exception flag (IE, DE, ZE, OE, UE, PE: bits 5:0) whose mask bit is clear.
        public var unmaskedExceptionPending: Bool {
            statusWord & ~controlWord & 0x3F != 0
        }
    }

    public struct State: Sendable, Equatable {
        public var rip: UInt64
        public var rflags: UInt64
        public var cr0: UInt64
        public var codeSize: CodeSize
        /// An exception, interrupt or NMI is already injected or pending on this exit.
        public var eventPending: Bool
        /// Needed for `fwait` only; nil when not read.
        public var x87: X87?
        /// CS.RPL: the current privilege level (clac/stac).
        public var cpl: UInt8
        /// The guest's CPUID.(7,0):EBX[20] (clac/stac).
        public var smapSupported: Bool

        public init(rip: UInt64, rflags: UInt64, cr0: UInt64, codeSize: CodeSize, eventPending: Bool = false,
                    x87: X87? = nil, cpl: UInt8 = 0, smapSupported: Bool = false) {
            self.rip = rip
            self.rflags = rflags
            self.cr0 = cr0
            self.codeSize = codeSize
            self.eventPending = eventPending
            self.x87 = x87
            self.cpl = cpl
            self.smapSupported = smapSupported
        }
    }

    public enum Action: Sendable, Equatable {
        /// Set RIP, then deliver `vector` (a trap: the handler sees the new RIP).
        case trap(vector: UInt8, rip: UInt64)
        /// Deliver `vector` with RIP unchanged (a fault: the instruction runs again after the handler).
        case fault(vector: UInt8)
        /// The instruction completed with no effect but moving RIP.
        case skip(rip: UInt64)
        /// The instruction completed: RFLAGS and RIP take these values.
        case setFlags(rflags: UInt64, rip: UInt64)
        /// Not completed; the reason goes into the crash report.
        case refuse(String)
    }

    public static let breakpointVector: UInt8 = 3
    public static let deviceNotAvailableVector: UInt8 = 7
    public static let x87ErrorVector: UInt8 = 16
    public static let invalidOpcodeVector: UInt8 = 6
    static let rflagsAC: UInt64 = 1 << 18

    static let cr0MP: UInt64 = 1 << 1
    static let cr0TS: UInt64 = 1 << 3
    static let cr0NE: UInt64 = 1 << 5
    static let rflagsTF: UInt64 = 1 << 8
    static let rflagsVM: UInt64 = 1 << 17

    /// The instruction at RIP, if it is one SynthVM completes: only the exact one-byte forms.
    /// A prefix in front (legal but meaningless for both) makes it unknown, so it is reported.
    public static func decode(_ bytes: [UInt8]) -> Instruction? {
        switch bytes.first {
        case 0xCC: return .int3
        case 0x9B: return .fwait
        case 0x0F where bytes.count >= 3 && bytes[1] == 0x01 && bytes[2] == 0xCA: return .clac
        case 0x0F where bytes.count >= 3 && bytes[1] == 0x01 && bytes[2] == 0xCB: return .stac
        default: return nil
        }
    }

    public static func plan(_ instruction: Instruction, state: State) -> Action {
        if state.eventPending { return .refuse("an event is already being delivered on this exit") }
        if state.rflags & rflagsVM != 0 { return .refuse("virtual-8086 mode is not handled") }
        if state.rflags & rflagsTF != 0 { return .refuse("RFLAGS.TF is set: the single-step trap is not modelled") }
        let next = advance(state.rip, by: instruction.length, size: state.codeSize)
        switch instruction {
        case .int3:
            return .trap(vector: breakpointVector, rip: next)
        case .fwait:
            if state.cr0 & cr0MP != 0, state.cr0 & cr0TS != 0 { return .fault(vector: deviceNotAvailableVector) }
            guard let x87 = state.x87 else { return .refuse("the x87 state is unavailable") }
            if x87.unmaskedExceptionPending {
                if state.cr0 & cr0NE != 0 { return .fault(vector: x87ErrorVector) }
                return .refuse("x87 exception pending with CR0.NE clear (FERR#, IRQ 13) is not modelled")
            }
            return .skip(rip: next)
        case .clac, .stac:
            if state.cpl != 0 || !state.smapSupported { return .fault(vector: invalidOpcodeVector) }
            let flags = instruction == .clac ? state.rflags & ~rflagsAC : state.rflags | rflagsAC
            return .setFlags(rflags: flags, rip: next)
        }
    }

    /// RIP + n, wrapping as the code size does (IP and EIP wrap at 16 and 32 bits).
    static func advance(_ rip: UInt64, by n: UInt64, size: CodeSize) -> UInt64 {
        switch size {
        case .bits16: return (rip &+ n) & 0xFFFF
        case .bits32: return (rip &+ n) & 0xFFFF_FFFF
        case .bits64: return rip &+ n
        }
    }
}
