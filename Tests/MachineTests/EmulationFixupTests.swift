import Testing

@testable import Machine

private let cr0 = UInt64(0x8005_0033)  // PE MP ET NE WP PG, as SynthVM's direct boot sets it
private let defaultFPU = EmulationFixup.X87(controlWord: 0x037F, statusWord: 0)

@Suite struct EmulationFixupTests {
    @Test("only the exact one-byte int3 and fwait decode")
    func decode() {
        #expect(EmulationFixup.decode([0xCC]) == .int3)
        #expect(EmulationFixup.decode([0xCC, 0x90]) == .int3)
        #expect(EmulationFixup.decode([0x9B, 0xDB, 0xE3]) == .fwait)  // finit: the fwait half
        for bytes: [UInt8] in [[], [0xCD, 0x03], [0x66, 0x9B], [0xF3, 0x48, 0x0F, 0xB8], [0xF0, 0x48, 0x0F, 0xC7, 0x0F],
                               [0x0F, 0xAE, 0x17], [0xDB, 0xE3]] {
            #expect(EmulationFixup.decode(bytes) == nil, "\(bytes)")
        }
    }

    @Test("clac and stac decode only in their exact three-byte forms")
    func decodeClacStac() {
        #expect(EmulationFixup.decode([0x0F, 0x01, 0xCA, 0xFC]) == .clac)
        #expect(EmulationFixup.decode([0x0F, 0x01, 0xCB]) == .stac)
        for bytes: [UInt8] in [[0x0F, 0x01], [0x0F, 0x01, 0xC9], [0x0F, 0x01, 0xCC], [0x66, 0x0F, 0x01, 0xCA], [0x0F, 0x02, 0xCA]] {
            #expect(EmulationFixup.decode(bytes) == nil, "\(bytes)")
        }
    }

    @Test("clac clears and stac sets RFLAGS.AC and skip 3 bytes; #UD at CPL > 0 or without SMAP; CR4.SMAP irrelevant")
    func clacStac() {
        let ac: UInt64 = 1 << 18
        let s = EmulationFixup.State(rip: 0xFFFF_FFFF_81C0_1070, rflags: 0x92 | ac, cr0: cr0, codeSize: .bits64,
                                     cpl: 0, smapSupported: true)
        #expect(EmulationFixup.plan(.clac, state: s) == .setFlags(rflags: 0x92, rip: 0xFFFF_FFFF_81C0_1073))
        var t = s
        t.rflags = 0x92
        #expect(EmulationFixup.plan(.stac, state: t) == .setFlags(rflags: 0x92 | ac, rip: 0xFFFF_FFFF_81C0_1073))
        var user = s
        user.cpl = 3
        #expect(EmulationFixup.plan(.clac, state: user) == .fault(vector: 6))
        var noSMAP = s
        noSMAP.smapSupported = false
        #expect(EmulationFixup.plan(.stac, state: noSMAP) == .fault(vector: 6))
        var w = t
        w.rip = 0xFFFF_FFFE
        w.codeSize = .bits32
        #expect(EmulationFixup.plan(.clac, state: w) == .setFlags(rflags: 0x92, rip: 1))
    }

    @Test("int3 is a #BP trap: RIP moves past it first, wrapping with the code size")
    func int3() {
        let s = EmulationFixup.State(rip: 0x10_1FBD, rflags: 0x2, cr0: cr0, codeSize: .bits64)
        #expect(EmulationFixup.plan(.int3, state: s) == .trap(vector: 3, rip: 0x10_1FBE))
        var w = s
        w.rip = 0xFFFF
        w.codeSize = .bits16
        #expect(EmulationFixup.plan(.int3, state: w) == .trap(vector: 3, rip: 0))
        w.rip = 0xFFFF_FFFF
        w.codeSize = .bits32
        #expect(EmulationFixup.plan(.int3, state: w) == .trap(vector: 3, rip: 0))
        w.codeSize = .bits64
        #expect(EmulationFixup.plan(.int3, state: w) == .trap(vector: 3, rip: 0x1_0000_0000))
        // int3 never needs the x87 state.
        #expect(s.x87 == nil)
    }

    @Test("fwait: skipped with nothing pending, masked exceptions do not count")
    func fwaitSkips() {
        var s = EmulationFixup.State(rip: 0x1000, rflags: 0x202, cr0: cr0, codeSize: .bits64, x87: defaultFPU)
        #expect(EmulationFixup.plan(.fwait, state: s) == .skip(rip: 0x1001))
        s.x87 = .init(controlWord: 0x037F, statusWord: 0x003F)  // every flag, every one masked
        #expect(EmulationFixup.plan(.fwait, state: s) == .skip(rip: 0x1001))
        s.x87 = .init(controlWord: 0x037F, statusWord: 0x3800)  // TOP and C3 only
        #expect(EmulationFixup.plan(.fwait, state: s) == .skip(rip: 0x1001))
    }

    @Test("fwait: #MF for each unmasked pending exception when CR0.NE is set", arguments: 0..<6)
    func fwaitMF(bit: Int) {
        let flag = UInt16(1) << UInt16(bit)
        var s = EmulationFixup.State(rip: 0x1000, rflags: 0x2, cr0: cr0, codeSize: .bits64,
                                     x87: .init(controlWord: 0x037F & ~flag, statusWord: flag | 0x80))
        #expect(EmulationFixup.plan(.fwait, state: s) == .fault(vector: 16))
        // The same exception masked: nothing pending.
        s.x87 = .init(controlWord: 0x037F, statusWord: flag)
        #expect(EmulationFixup.plan(.fwait, state: s) == .skip(rip: 0x1001))
        // Unmasked but CR0.NE clear: FERR#/IRQ 13 is not modelled.
        s.x87 = .init(controlWord: 0x037F & ~flag, statusWord: flag)
        s.cr0 &= ~(1 << 5)
        guard case .refuse = EmulationFixup.plan(.fwait, state: s) else {
            Issue.record("NE clear must be refused")
            return
        }
    }

    @Test("fwait: #NM when CR0.MP and CR0.TS are both set, before any x87 check")
    func fwaitNM() {
        var s = EmulationFixup.State(rip: 0x1000, rflags: 0x2, cr0: cr0 | 1 << 3, codeSize: .bits64, x87: nil)
        #expect(EmulationFixup.plan(.fwait, state: s) == .fault(vector: 7))
        s.cr0 &= ~UInt64(1 << 1)  // TS without MP: fwait ignores TS
        s.x87 = defaultFPU
        #expect(EmulationFixup.plan(.fwait, state: s) == .skip(rip: 0x1001))
        s.x87 = nil
        guard case .refuse = EmulationFixup.plan(.fwait, state: s) else {
            Issue.record("fwait without the x87 state must be refused")
            return
        }
    }

    @Test("refused: a pending event, virtual-8086 mode, single-stepping", arguments: [
        EmulationFixup.State(rip: 0x1000, rflags: 0x2, cr0: cr0, codeSize: .bits64, eventPending: true, x87: defaultFPU),
        EmulationFixup.State(rip: 0x1000, rflags: 0x2_0202, cr0: cr0, codeSize: .bits16, x87: defaultFPU),
        EmulationFixup.State(rip: 0x1000, rflags: 0x302, cr0: cr0, codeSize: .bits64, x87: defaultFPU),
    ])
    func refusals(state: EmulationFixup.State) {
        for instruction in EmulationFixup.Instruction.allCases {
            guard case .refuse = EmulationFixup.plan(instruction, state: state) else {
                Issue.record("\(instruction) completed in \(state)")
                continue
            }
        }
    }
}
