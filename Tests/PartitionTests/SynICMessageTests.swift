import Dispatch
import HyperV
import Partition
import Synchronization
import Testing

/// Message delivery: slots, queues, MessagePending, EOM, overflow, masked/polling/disabled SINTs.
@Suite struct SynICMessageTests {
    private typealias Raised = FakeSynICInterrupts.Raised

    @Test func messageLandsInTheSlotWithTheTLFSLayout() {
        let f = SynICFixture()
        f.enableSynIC()
        let m = HvMessage(type: .vmbus, payload: [1, 2, 3, 4, 5], originationID: 0x1122_3344_5566_7788)
        #expect(f.p.postMessage(m, vp: 0, sint: 2) == .success)
        let slot = f.slot(sint: 2)
        #expect(Array(slot[0..<4]) == [1, 0, 0, 0], "MessageType at +0")
        #expect(slot[4] == 5, "PayloadSize at +4")
        #expect(slot[5] == 0, "MessageFlags at +5: nothing pending")
        #expect(Array(slot[8..<16]) == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11], "OriginationId at +8")
        #expect(Array(slot[16..<21]) == [1, 2, 3, 4, 5], "payload at +16")
        #expect(f.message(sint: 2) == m)
        #expect(f.raised == [Raised(vp: 0, sint: 2, vector: 0xF3, autoEOI: false)])
        // Other slots untouched.
        #expect(f.message(sint: 1) == nil && f.message(sint: 3) == nil)
    }

    @Test func onlyPayloadSizeBytesAreCopied() {
        let f = SynICFixture()
        f.enableSynIC()
        f.env.memory.fill(0x5A, at: f.slotGPA(vp: 0, sint: 2), count: 256)
        f.env.memory.store32(0, at: f.slotGPA(vp: 0, sint: 2))  // free slot with stale bytes
        #expect(f.p.postMessage(SynICFixture.vmbus(9, size: 3), vp: 0, sint: 2) == .success)
        let slot = f.slot(sint: 2)
        #expect(Array(slot[16..<19]) == [9, 10, 11])
        #expect(slot[19...].allSatisfy { $0 == 0x5A })
        // A full 240-byte payload fills the slot exactly.
        let big = HvMessage(type: .vmbus, payload: (0..<240).map { UInt8($0) })
        f.consume(sint: 2)
        #expect(f.p.postMessage(big, vp: 0, sint: 2) == .success)
        #expect(f.message(sint: 2) == big)
    }

    @Test func messageTypeIsWrittenLast() {
        let f = SynICFixture()
        f.enableSynIC()
        let before = f.env.memory.writes.count
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .success)
        let writes = f.env.memory.writes[before...]
        #expect(writes.last?.gpa == f.slotGPA(vp: 0, sint: 2) && writes.last?.count == 4)
        #expect(writes.dropLast().allSatisfy { $0.gpa >= f.slotGPA(vp: 0, sint: 2) + 4 })
    }

    @Test func busySlotQueuesAndSetsMessagePending() {
        let f = SynICFixture()
        f.enableSynIC()
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .success)
        #expect(f.p.postMessage(SynICFixture.vmbus(2), vp: 0, sint: 2) == .success)
        #expect(f.message(sint: 2)?.payload.first == 1, "the occupant stays")
        #expect(f.slotPending(sint: 2), "and is flagged")
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 1)
        #expect(f.raised.count == 1, "no interrupt for a queued message")
        // The guest frees the slot; without EOM nothing moves.
        f.env.memory.store32(0, at: f.slotGPA(vp: 0, sint: 2))
        #expect(f.message(sint: 2) == nil)
        // EOM delivers the next one, with a new interrupt.
        #expect(f.wrmsr(HvMSR.eom, 0) == .written)
        #expect(f.message(sint: 2)?.payload.first == 2)
        #expect(!f.slotPending(sint: 2), "nothing else waits")
        #expect(f.raised.count == 2)
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 0)
    }

    @Test func messagesArriveInOrderAndCarryPendingWhileMoreWait() {
        let f = SynICFixture()
        f.enableSynIC()
        for tag: UInt8 in 1...10 { #expect(f.p.postMessage(SynICFixture.vmbus(tag), vp: 0, sint: 2) == .success) }
        var got: [UInt8] = []
        while let m = f.consume(sint: 2) {
            got.append(m.payload[0])
            // Every message but the last says more are pending; the guest's EOM fetches the next.
            #expect((m.flags & HvMessageFlags.pending != 0) == (got.count < 10), "message \(got.count)")
        }
        #expect(got == Array(1...10))
        #expect(f.raised.count == 10, "one interrupt per delivered message")
    }

    @Test func aNewPostRescansASlotFreedWithoutEOM() {
        let f = SynICFixture()
        f.enableSynIC()
        f.post(1, vp: 0, sint: 2)
        f.post(2, vp: 0, sint: 2)
        // The guest frees the slot but does not write EOM (it may not have looked at the flag yet).
        f.env.memory.store32(0, at: f.slotGPA(vp: 0, sint: 2))
        f.post(3, vp: 0, sint: 2)
        #expect(f.message(sint: 2)?.payload.first == 2, "the older message goes first")
        #expect(f.slotPending(sint: 2), "3 waits behind it")
        #expect(f.consume(sint: 2)?.payload.first == 2)
        #expect(f.consume(sint: 2)?.payload.first == 3)
        #expect(f.message(sint: 2) == nil)
    }

    @Test func overflowReportsInsufficientBuffers() {
        let f = SynICFixture(queueDepth: 4)
        f.enableSynIC()
        #expect(f.p.postMessage(SynICFixture.vmbus(0), vp: 0, sint: 2) == .success) // in the slot
        for tag: UInt8 in 1...4 { #expect(f.p.postMessage(SynICFixture.vmbus(tag), vp: 0, sint: 2) == .success) }
        #expect(f.p.postMessage(SynICFixture.vmbus(5), vp: 0, sint: 2) == .insufficientBuffers)
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 4)
        // Other SINTs and other VPs have their own queues.
        #expect(f.p.postMessage(SynICFixture.vmbus(6), vp: 0, sint: 3) == .success)
        // Once the guest drains one, there is room again; nothing accepted was lost.
        #expect(f.consume(sint: 2)?.payload.first == 0)
        #expect(f.p.postMessage(SynICFixture.vmbus(7), vp: 0, sint: 2) == .success)
        var got: [UInt8] = []
        while let m = f.consume(sint: 2) { got.append(m.payload[0]) }
        #expect(got == [1, 2, 3, 4, 7])
    }

    @Test func zeroDepthRefusesEverythingBehindABusySlot() {
        let f = SynICFixture(queueDepth: 0)
        f.enableSynIC()
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .insufficientBuffers)
        #expect(f.message(sint: 2) == nil)
    }

    @Test func maskedSintGetsTheMessageButNoInterrupt() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: 0x100F3])
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .success)
        #expect(f.message(sint: 2)?.payload.first == 1, "the TLFS: the interrupt is lost, the message is not")
        #expect(f.raised.isEmpty)
        // EOM drains a masked SINT's queue (TLFS "EOM Register").
        f.post(2, vp: 0, sint: 2)
        #expect(f.consume(sint: 2)?.payload.first == 1)
        #expect(f.message(sint: 2)?.payload.first == 2)
        #expect(f.raised.isEmpty)
        // Unmasking does not replay the lost interrupt; the next delivery interrupts.
        f.wrmsr(HvMSR.sint(2), 0xF3)
        #expect(f.raised.isEmpty)
        f.post(3, vp: 0, sint: 2)
        f.consume(sint: 2)
        #expect(f.raised == [Raised(vp: 0, sint: 2, vector: 0xF3, autoEOI: false)])
    }

    @Test func pollingSintGetsTheMessageWithoutInterrupt() {
        let f = SynICFixture(pollingEnlightenments)
        // Polling counts as unmasked even with Masked set.
        f.enableSynIC(sints: [2: HvMSR.Sint.polling | 0xF3, 3: HvMSR.Sint.polling | HvMSR.Sint.masked | 0xF3])
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .success)
        #expect(f.p.postMessage(SynICFixture.vmbus(2), vp: 0, sint: 3) == .success)
        #expect(f.message(sint: 2)?.payload.first == 1 && f.message(sint: 3)?.payload.first == 2)
        #expect(f.raised.isEmpty)
    }

    @Test func pollingBitIsIgnoredWhenNotAdvertised() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: HvMSR.Sint.polling | 0xF3])
        f.post(1, vp: 0, sint: 2)
        #expect(f.raised == [Raised(vp: 0, sint: 2, vector: 0xF3, autoEOI: false)])
    }

    @Test func autoEOIIsPassedToTheInterruptSink() {
        let f = SynICFixture()
        f.enableSynIC(sints: [2: HvMSR.Sint.autoEOI | 0xF3])
        f.post(1, vp: 0, sint: 2)
        #expect(f.raised == [Raised(vp: 0, sint: 2, vector: 0xF3, autoEOI: true)])
    }

    @Test func disabledSynICOrMessagePageRefusesPosts() {
        let f = SynICFixture()
        // Nothing enabled.
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .invalidSynicState)
        // SIMP enabled, SCONTROL not.
        f.wrmsr(HvMSR.simp, SynICFixture.simp(0) | 1)
        f.wrmsr(HvMSR.sint(2), 0xF3)
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .invalidSynicState)
        // SCONTROL enabled, SIMP not.
        f.wrmsr(HvMSR.simp, SynICFixture.simp(0))
        f.wrmsr(HvMSR.scontrol, 1)
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .invalidSynicState)
        #expect(f.message(sint: 2) == nil && f.raised.isEmpty)
        // Both: accepted.
        f.wrmsr(HvMSR.simp, SynICFixture.simp(0) | 1)
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .success)
    }

    @Test func queuedMessagesSurviveADisableAndArriveOnReEnable() {
        let f = SynICFixture()
        f.enableSynIC()
        f.post(1, vp: 0, sint: 2)
        f.post(2, vp: 0, sint: 2)
        f.env.memory.store32(0, at: f.slotGPA(vp: 0, sint: 2))
        // SynIC off: EOM cannot deliver, the message stays queued.
        f.wrmsr(HvMSR.scontrol, 0)
        f.wrmsr(HvMSR.eom, 0)
        #expect(f.message(sint: 2) == nil)
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 1)
        // On again: delivered at once.
        f.wrmsr(HvMSR.scontrol, 1)
        #expect(f.message(sint: 2)?.payload.first == 2)
        // Same with the message page: off, queue, move the page, on.
        f.post(3, vp: 0, sint: 2)
        f.wrmsr(HvMSR.simp, SynICFixture.simp(0))
        #expect(f.p.postMessage(SynICFixture.vmbus(4), vp: 0, sint: 2) == .invalidSynicState)
        f.wrmsr(HvMSR.simp, 0x30000 | 1)
        let moved = HvMessage(decoding: f.env.memory.bytes(at: 0x30000 + 2 * 256, count: 256))
        #expect(moved?.payload.first == 3, "delivered into the new (zeroed) page")
    }

    @Test func messagesToTheOtherVP() {
        let f = SynICFixture()
        f.enableSynIC(vp: 0)
        f.enableSynIC(vp: 1, sints: [2: 0xF3, 5: 0x55])
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 1, sint: 5) == .success)
        #expect(f.message(vp: 1, sint: 5)?.payload.first == 1)
        #expect(f.message(vp: 0, sint: 5) == nil)
        #expect(f.raised == [Raised(vp: 1, sint: 5, vector: 0x55, autoEOI: false)])
        // VP 1's EOM does not touch VP 0's queues and vice versa.
        f.post(2, vp: 1, sint: 5)
        f.env.memory.store32(0, at: f.slotGPA(vp: 1, sint: 5))
        f.wrmsr(HvMSR.eom, 0, vp: 0)
        #expect(f.message(vp: 1, sint: 5) == nil)
        f.wrmsr(HvMSR.eom, 0, vp: 1)
        #expect(f.message(vp: 1, sint: 5)?.payload.first == 2)
    }

    @Test func all16SintsAreIndependent() {
        let f = SynICFixture()
        f.enableSynIC(sints: Dictionary(uniqueKeysWithValues: (0..<16).map { ($0, UInt64(0x20 + $0)) }))
        for sint in 0..<16 { #expect(f.p.postMessage(SynICFixture.vmbus(UInt8(sint)), vp: 0, sint: sint) == .success) }
        for sint in 0..<16 { #expect(f.message(sint: sint)?.payload.first == UInt8(sint)) }
        #expect(f.raised.map(\.vector) == (0..<16).map { UInt8(0x20 + $0) })
        #expect(f.raised.map(\.sint) == Array(0..<16))
    }

    @Test func invalidArguments() {
        let f = SynICFixture()
        f.enableSynIC()
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 2, sint: 2) == .invalidVPIndex)
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 16) == .invalidParameter)
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: -1) == .invalidParameter)
        #expect(f.p.postMessage(HvMessage(type: .none), vp: 0, sint: 2) == .invalidParameter)
        #expect(f.p.postMessage(HvMessage(type: .vmbus, payload: [UInt8](repeating: 0, count: 241)), vp: 0, sint: 2)
            == .invalidParameter)
        #expect(f.message(sint: 2) == nil)
    }

    @Test func withoutTheSynicFeatureNothingIsDelivered() {
        let f = SynICFixture(.default)
        #expect(f.p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .invalidSynicState)
        #expect(f.p.signalEvent(vp: 0, sint: 2, flag: 1) == .invalidSynicState)
    }

    @Test func posterFlagsAreReplaced() {
        let f = SynICFixture()
        f.enableSynIC()
        var m = SynICFixture.vmbus(1)
        m.flags = 0xFF
        #expect(f.p.postMessage(m, vp: 0, sint: 2) == .success)
        #expect(f.slot(sint: 2)[5] == 0)
    }

    /// The guest frees the slot between the SynIC's first look at MessageType and its setting of
    /// MessagePending: that guest read the flags before they were set and will never write EOM,
    /// so the SynIC must notice the free slot after setting the flag and deliver at once.
    @Test func slotFreedWhileSettingPendingIsNotMissed() {
        let env = FakePartitionEnvironment(tscFrequencyHz: 10_000_000)
        let racing = RacingMemory(env.memory)
        let p = Partition(configuration: PartitionConfiguration(enlightenments: synicEnlightenments, vpCount: 1),
                          memory: racing, clock: env.clock, interrupts: env.interrupts, events: env.events,
                          synicInterrupts: env.sints, timers: env.timers)
        let slot = SynICFixture.simp(0) + 2 * 256
        #expect(p.writeMSR(vp: 0, index: HvMSR.simp, value: SynICFixture.simp(0) | 1) == .written)
        #expect(p.writeMSR(vp: 0, index: HvMSR.sint(2), value: 0xF3) == .written)
        #expect(p.writeMSR(vp: 0, index: HvMSR.scontrol, value: 1) == .written)
        #expect(p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .success)
        // The guest takes message 1 exactly while the SynIC sets MessagePending for message 2.
        let memory = env.memory
        racing.onFetchOr { gpa in if gpa == slot + 5 { memory.store32(0, at: slot) } }
        #expect(p.postMessage(SynICFixture.vmbus(2), vp: 0, sint: 2) == .success)
        let m = HvMessage(decoding: env.memory.bytes(at: slot, count: 256))
        #expect(m?.payload.first == 2, "delivered without an EOM")
        #expect(m?.flags == 0)
        #expect(env.sints.raised.count == 2)
    }
}

/// Guest memory that runs a hook inside `fetchOr`, to stage a guest racing with the SynIC.
final class RacingMemory: PartitionMemory, @unchecked Sendable {
    let inner: FakeMemory
    private let hook = Mutex<(@Sendable (UInt64) -> Void)?>(nil)

    init(_ inner: FakeMemory) { self.inner = inner }

    func onFetchOr(_ body: @escaping @Sendable (UInt64) -> Void) { hook.withLock { $0 = body } }

    func contains(gpa: UInt64, length: UInt64) -> Bool { inner.contains(gpa: gpa, length: length) }
    func read(gpa: UInt64, count: Int) -> [UInt8]? { inner.read(gpa: gpa, count: count) }
    func write(gpa: UInt64, bytes: [UInt8]) -> Bool { inner.write(gpa: gpa, bytes: bytes) }

    func fetchOr(gpa: UInt64, mask: UInt8) -> UInt8? {
        let old = inner.fetchOr(gpa: gpa, mask: mask)
        hook.withLock { $0 }?(gpa)
        return old
    }
}

/// Posters on other threads against a guest draining the slot at the same time.
@Suite struct SynICConcurrencyTests {
    /// Four posters, 250 messages each, into one slot a guest drains Linux-style: every message
    /// arrives exactly once, and each poster's messages arrive in the order it posted them.
    @Test func nothingIsLostOrReorderedUnderConcurrentPosts() {
        let f = SynICFixture(queueDepth: 1000)
        f.enableSynIC()
        let posters = 4, perPoster = 250
        let group = DispatchGroup()
        for poster in 0..<posters {
            DispatchQueue.global().async(group: group) {
                for i in 0..<perPoster {
                    let m = HvMessage(type: .vmbus, payload: [UInt8(poster), UInt8(i & 0xFF), UInt8(i >> 8)])
                    #expect(f.p.postMessage(m, vp: 0, sint: 2) == .success)
                }
            }
        }
        var received: [[Int]] = Array(repeating: [], count: posters)
        var total = 0, idle = 0
        while total < posters * perPoster && idle < 5_000_000 {
            if let m = f.consume(sint: 2) {
                received[Int(m.payload[0])].append(Int(m.payload[1]) | Int(m.payload[2]) << 8)
                total += 1
                idle = 0
            } else {
                idle += 1
            }
        }
        group.wait()
        while let m = f.consume(sint: 2) {
            received[Int(m.payload[0])].append(Int(m.payload[1]) | Int(m.payload[2]) << 8)
        }
        for poster in 0..<posters { #expect(received[poster] == Array(0..<perPoster), "poster \(poster)") }
        #expect(f.p.synicSnapshot(vp: 0)?.queuedMessages[2] == 0)
    }
}

/// A partition given no SynIC interrupt sink or host timers.
@Suite struct SynICDefaultsTests {
    @Test func sintsBecomeFixedInterruptsWithoutASink() {
        let env = FakePartitionEnvironment()
        let p = Partition(configuration: PartitionConfiguration(enlightenments: synicEnlightenments, vpCount: 1),
                          memory: env.memory, clock: env.clock, interrupts: env.interrupts, events: env.events)
        #expect(p.synicInterrupts is FixedInterruptSINTs && p.timers is NoPartitionTimers)
        #expect(p.writeMSR(vp: 0, index: HvMSR.simp, value: 0x10001) == .written)
        #expect(p.writeMSR(vp: 0, index: HvMSR.sint(2), value: 0x200F3) == .written)
        #expect(p.writeMSR(vp: 0, index: HvMSR.scontrol, value: 1) == .written)
        #expect(p.postMessage(SynICFixture.vmbus(1), vp: 0, sint: 2) == .success)
        #expect(env.interrupts.sent == [FakeInterrupts.Sent(vp: 0, vector: 0xF3)])
        // Without host timers a timer fires only when serviced.
        #expect(p.writeMSR(vp: 0, index: HvMSR.stimerConfig(0), value: 0x1ED9) == .written)
        #expect(p.writeMSR(vp: 0, index: HvMSR.stimerCount(0), value: p.referenceTime() + 1) == .written)
        env.clock.advance(nanoseconds: 1_000)
        #expect(env.interrupts.sent.count == 1)
        p.serviceSyntheticTimers(vp: 0)
        #expect(env.interrupts.sent.last == FakeInterrupts.Sent(vp: 0, vector: 0xED))
    }
}
