import HyperV
import Partition
import Synchronization
import Testing

/// Records which VPs the partition told the message router to rescan (`endOfMessage`).
final class RecordingSynICShared: PartitionSynICShared, @unchecked Sendable {
    private let log = Mutex<[UInt32]>([])
    var rescans: [UInt32] { log.withLock { $0 } }
    func publish(vp: UInt32, registers: SynICRegisters) {}
    func endOfMessage(vp: UInt32) { log.withLock { $0.append(vp) } }
    func lockMessageSlot(vp: UInt32, sint: Int) -> Bool { true }
    func unlockMessageSlot(vp: UInt32, sint: Int) {}
}

/// When the router (which holds the queues of every message but the timers') is told to rescan a
/// VP: after every write that can let a queued message into its SIMP.
@Suite struct SynICRouterNotificationTests {
    let env = FakePartitionEnvironment()
    let shared = RecordingSynICShared()
    var p: Partition {
        Partition(configuration: PartitionConfiguration(enlightenments: synicEnlightenments, vpCount: 2),
                  memory: env.memory, clock: env.clock, interrupts: env.interrupts, events: env.events,
                  synicInterrupts: env.sints, timers: env.timers, synicShared: shared)
    }

    @Test("EOM, enabling SIMP and enabling SCONTROL each ask the router to rescan that VP")
    func rescanTriggers() {
        let p = self.p
        #expect(p.writeMSR(vp: 0, index: HvMSR.eom, value: 0) == .written)
        #expect(shared.rescans == [0])
        #expect(p.writeMSR(vp: 1, index: HvMSR.simp, value: 0x3000 | 1) == .written)
        #expect(shared.rescans == [0, 1])
        #expect(p.writeMSR(vp: 1, index: HvMSR.scontrol, value: 1) == .written)
        #expect(shared.rescans == [0, 1, 1])
    }

    @Test("writes that cannot let a message in do not wake the router")
    func noRescan() {
        let p = self.p
        #expect(p.writeMSR(vp: 0, index: HvMSR.scontrol, value: 0) == .written)
        #expect(p.writeMSR(vp: 0, index: HvMSR.simp, value: 0x3000) == .written)
        #expect(p.writeMSR(vp: 0, index: HvMSR.siefp, value: 0x4000 | 1) == .written)
        #expect(p.writeMSR(vp: 0, index: HvMSR.sint(2), value: 0x52) == .written)
        #expect(shared.rescans.isEmpty, "\(shared.rescans)")
    }

    @Test("Linux's order (SIMP, SIEFP, SINTs, then SCONTROL): the last write, the one that makes the message page usable, wakes the router")
    func linuxOrder() {
        let p = self.p
        #expect(p.writeMSR(vp: 0, index: HvMSR.simp, value: 0x3000 | 1) == .written)
        #expect(p.writeMSR(vp: 0, index: HvMSR.siefp, value: 0x4000 | 1) == .written)
        #expect(p.writeMSR(vp: 0, index: HvMSR.sint(2), value: 0x52) == .written)
        let before = shared.rescans.count
        #expect(p.writeMSR(vp: 0, index: HvMSR.scontrol, value: 1) == .written)
        #expect(shared.rescans.count == before + 1 && shared.rescans.last == 0)
    }
}
