import Testing
@testable import VMBus

/// The IC state machine and pump against a fake Linux 6.1 hv_utils guest over real rings.
@Suite("VMBus ICs: negotiation, heartbeat, shutdown, timesync")
struct ICTests {
    typealias Service = VMBusIntegrationService

    @Test(arguments: Service.Kind.allCases)
    func linuxNegotiatesTheNewestVersions(kind: Service.Kind) throws {
        let h = try ICHarness(kind)
        let results = h.negotiate()
        #expect(results[0].interruptGuest)   // the first packet into an empty ring
        let expected: VMBusICVersion = switch kind {
        case .heartbeat: VMBusICVersion(3, 0)
        case .shutdown: VMBusICVersion(3, 2)
        case .timesync: VMBusICVersion(4, 0)
        }
        #expect(h.channel.service.phase == .ready)
        #expect(h.channel.service.frameworkVersion == VMBusICVersion(3, 0))
        #expect(h.channel.service.messageVersion == expected)
        #expect(h.guest.negotiated?.framework == VMBusICVersion(3, 0) && h.guest.negotiated?.message == expected)
        #expect(results[1].events.first == .negotiated(framework: VMBusICVersion(3, 0), message: expected))
        #expect(h.channel.service.drops.total == 0 && h.guest.writeFailures == 0 && h.guest.dropped == 0)
        // The negotiate request: host first, TRANSACTION | REQUEST, packet transaction id 1.
        let first = try #require(h.guest.requests.first)
        #expect(first.transactionID == 1 && first.payload[25] == 3 && first.payload[12] == 0)
    }

    @Test func heartbeatEveryIntervalWithTheGuestsSequence() throws {
        var h = try ICHarness(.heartbeat, timing: Service.Timing(heartbeatInterval: 2_000_000_000))
        _ = h.negotiate()
        // The first heartbeat went out with the negotiation's answer, and was answered.
        #expect(h.channel.service.heartbeat.requests == 1)
        #expect(h.channel.service.heartbeat.replies == 1)
        #expect(h.channel.service.heartbeat.lastSequence == 1)
        #expect(h.channel.service.heartbeat.lastReplyAt == h.now)
        #expect(h.channel.service.nextDeadline == h.now + 2_000_000_000)
        // Not due yet: nothing.
        h.advance(seconds: 1)
        _ = h.channel.pump(h.clock)
        #expect(h.guest.run() == 0)
        for i in 2...5 {
            h.advance(seconds: 2)
            let r = h.channel.pump(h.clock)
            #expect(r.interruptGuest)
            #expect(h.guest.run() == 1)
            let r2 = h.channel.pump(h.clock)
            #expect(r2.events == [.heartbeat(sequence: UInt64(i))])
            #expect(h.channel.service.heartbeat.lastSequence == UInt64(i))
            #expect(h.channel.service.heartbeat.lastReplyAt == h.now)
        }
        #expect(h.channel.service.heartbeat.replies == 5 && h.channel.service.heartbeat.unanswered == 0)
        // The request carried the previous reply's number.
        let last = try #require(h.guest.requests.last)
        #expect(last.payload[28] == 4 && last.payload.count == 72)   // 68 padded to 8
    }

    @Test func unansweredHeartbeatIsCountedAndReplaced() throws {
        var h = try ICHarness(.heartbeat)
        _ = h.negotiate()
        h.guest.silent = true
        h.advance(seconds: 5)
        _ = h.channel.pump(h.clock)
        h.guest.run()
        h.advance(seconds: 5)
        let r = h.channel.pump(h.clock)
        #expect(r.events == [.unanswered(.heartbeat)])
        #expect(h.channel.service.heartbeat.unanswered == 1 && h.channel.service.heartbeat.requests == 3)
        // A late answer to the replaced request does not count.
        h.guest.silent = false
        let stale = try #require(h.guest.requests.last)   // the second heartbeat; the third is still unread
        var payload = stale.payload
        payload[25] = 5
        payload[28] &+= 1
        #expect(h.guest.producer.tryWrite(type: .dataInBand, transactionID: stale.transactionID, payload: payload) == .written)
        _ = h.guest.producer.commit()
        _ = h.channel.pump(h.clock)
        #expect(h.channel.service.drops.count(.unexpectedTransaction) == 1)
        h.guest.run()
        _ = h.channel.pump(h.clock)
        #expect(h.channel.service.heartbeat.replies == 2)
    }

    @Test func shutdownRequestAndSOK() throws {
        let h = try ICHarness(.shutdown)
        // Before negotiation: the caller must stop the VM another way.
        #expect(h.channel.requestShutdown(h.clock).0 == .notNegotiated)
        _ = h.negotiate()
        #expect(h.channel.service.nextDeadline == nil)   // shutdown sends nothing on its own
        let (answer, r) = h.channel.requestShutdown(h.clock)
        guard case .sent = answer else { Issue.record("not sent: \(answer)"); return }
        #expect(r.interruptGuest)
        #expect(h.channel.service.shutdown.state == .requested)
        #expect(h.channel.requestShutdown(h.clock).0 == .alreadyPending)
        #expect(h.guest.run() == 1)
        let request = try #require(h.guest.requests.last)
        #expect(request.payload.count == 2088)
        #expect(h.guest.shutdownFlags == [0])
        let done = h.channel.pump(h.clock)
        #expect(done.events == [.shutdownAnswered(status: 0)])
        #expect(h.channel.service.shutdown.state == .accepted && h.channel.service.shutdown.requests == 1)
    }

    @Test func shutdownRefusedWithEFail() throws {
        let h = try ICHarness(.shutdown)
        _ = h.negotiate()
        _ = h.channel.requestShutdown(h.clock, message: VMBusICShutdownMessage(flags: .hibernate))
        h.guest.run()
        _ = h.channel.pump(h.clock)
        #expect(h.channel.service.shutdown.state == .refused && h.channel.service.shutdown.lastStatus == VMBusICStatus.fail)
        // After an answer, a new request is allowed.
        guard case .sent = h.channel.requestShutdown(h.clock).0 else { Issue.record("not sent"); return }
    }

    @Test func shutdownOnlyOnTheShutdownChannel() throws {
        let h = try ICHarness(.heartbeat)
        _ = h.negotiate()
        #expect(h.channel.requestShutdown(h.clock).0 == .notShutdownChannel)
    }

    @Test func timesyncSyncThenSamples() throws {
        var h = try ICHarness(.timesync)
        _ = h.negotiate()
        #expect(h.guest.timesyncs.count == 1)
        let sync = try #require(h.guest.timesyncs.first)
        #expect(sync.flags == VMBusICTimesyncMessage.Flags.sync)
        #expect(sync.parent == VMBusICTimesyncMessage.parentTime(unixNanoseconds: h.unix))
        #expect(sync.reference == h.reference)
        #expect(h.channel.service.timesync.syncsSent == 1 && h.channel.service.timesync.replies == 1)
        for i in 1...3 {
            h.advance(seconds: 5)
            _ = h.channel.pump(h.clock)
            h.guest.run()
            let r = h.channel.pump(h.clock)
            #expect(r.events == [.timesyncAnswered(flags: VMBusICTimesyncMessage.Flags.sample)])
            let s = try #require(h.guest.timesyncs.last)
            #expect(s.flags == VMBusICTimesyncMessage.Flags.sample && s.reference == h.reference)
            #expect(s.parent == VMBusICTimesyncMessage.parentTime(unixNanoseconds: h.unix))
            #expect(h.channel.service.timesync.samplesSent == UInt64(i))
        }
    }

    @Test func timesyncOldLayoutForAnOldGuest() throws {
        let h = try ICHarness(.timesync) { $0.messageVersions = [VMBusICVersion(3, 0), VMBusICVersion(1, 0)] }
        _ = h.negotiate()
        #expect(h.channel.service.messageVersion == VMBusICVersion(3, 0))
        let s = try #require(h.guest.timesyncs.first)
        #expect(s.reference == nil && s.flags == VMBusICTimesyncMessage.Flags.sync)
        #expect(h.guest.requests.last?.payload.count == 56)
    }

    @Test(arguments: Service.Kind.allCases)
    func noCommonVersionMarksTheChannelUnusable(kind: Service.Kind) throws {
        for variant in 0..<2 {
            var h = try ICHarness(kind) {
                if variant == 0 { $0.frameworkVersions = [VMBusICVersion(2, 0)] } else { $0.messageVersions = [VMBusICVersion(9, 9)] }
            }
            let results = h.negotiate()
            #expect(h.channel.service.phase == .failed(.noCommonVersion))
            #expect(results[1].events == [.negotiationFailed(.noCommonVersion)])
            #expect(h.channel.service.nextDeadline == nil)
            h.advance(seconds: 60)
            _ = h.channel.pump(h.clock)
            #expect(h.guest.run() == 0)
            #expect(h.channel.requestShutdown(h.clock).0 == (kind == .shutdown ? .notNegotiated : .notShutdownChannel))
        }
    }

    @Test func negotiateIsRetriedWhenUnanswered() throws {
        var h = try ICHarness(.heartbeat)
        h.guest.silent = true
        _ = h.channel.start(h.clock)
        h.guest.run()
        #expect(h.channel.service.nextDeadline == h.now + 10_000_000_000)
        h.advance(seconds: 9)
        _ = h.channel.pump(h.clock)
        #expect(h.guest.run() == 0 && h.guest.requests.count == 1)
        h.advance(seconds: 1)
        _ = h.channel.pump(h.clock)
        h.guest.silent = false
        #expect(h.guest.run() == 1)
        #expect(h.guest.requests.last?.transactionID == 2)
        _ = h.channel.pump(h.clock)
        #expect(h.channel.service.phase == .ready)
    }

    @Test func chosenVersionTheHostDidNotOfferFails() throws {
        let h = try ICHarness(.heartbeat)
        h.guest.damage = { b, _ in if b[12] == 0 { b[40] = 7 } }   // message version 7.0
        _ = h.negotiate()
        #expect(h.channel.service.phase == .failed(.unofferedVersion))
    }

    @Test func badVersionCountsFail() throws {
        let h = try ICHarness(.heartbeat)
        h.guest.damage = { b, _ in if b[12] == 0 { b[28] = 2 } }
        _ = h.negotiate()
        #expect(h.channel.service.phase == .failed(.badVersionCounts))
    }

    @Test func wrongTransactionIDsAreDropped() throws {
        let h = try ICHarness(.heartbeat)
        h.guest.damage = { _, tid in tid &+= 100 }
        _ = h.negotiate()
        #expect(h.channel.service.phase == .negotiating)
        #expect(h.channel.service.drops.count(.unexpectedTransaction) == 1)
        _ = h.channel.start(h.clock)   // no second NEGOTIATE from start
        #expect(h.guest.run() == 0)
    }

    @Test func repliesThatAreNotResponsesOrOfAnotherTypeAreDropped() throws {
        for (damage, reason) in [({ (b: inout [UInt8]) in b[25] = 3 }, VMBusICDropLog.Reason.notAResponse),
                                 ({ (b: inout [UInt8]) in b[12] = 1 }, .wrongMessageType),
                                 ({ (b: inout [UInt8]) in b[24] = 1 }, .wrongMessageType)] {
            let h = try ICHarness(.shutdown)
            h.guest.damage = { b, _ in damage(&b) }
            _ = h.negotiate()
            #expect(h.channel.service.phase == .negotiating)
            #expect(h.channel.service.drops.count(reason) == 1)
        }
    }

    @Test func truncatedOversizedAndForeignPacketsAreDropped() throws {
        let h = try ICHarness(.heartbeat)
        _ = h.channel.start(h.clock)
        h.guest.silent = true
        h.guest.run()
        let negotiate = try #require(h.guest.requests.first)
        let p = h.guest.producer
        // Truncated below the framing; a negotiate reply without its versions.
        #expect(p.tryWrite(type: .dataInBand, transactionID: 1, payload: [UInt8](repeating: 0, count: 16)) == .written)
        var short = Array(negotiate.payload.prefix(40))
        short[25] = 5
        #expect(p.tryWrite(type: .dataInBand, transactionID: 1, payload: short) == .written)
        // Oversized, a completion, a GPA-direct packet.
        #expect(p.tryWrite(type: .dataInBand, transactionID: 1, payload: [UInt8](repeating: 5, count: 4088)) == .written)
        #expect(p.tryWrite(type: .completion, transactionID: 1, payload: negotiate.payload) == .written)
        #expect(p.tryWrite(type: .dataUsingGPADirect, transactionID: 1, payload: []) == .written)
        _ = p.commit()
        let r = h.channel.pump(h.clock)
        let drops = h.channel.service.drops
        #expect(drops.count(.truncated) == 2 && drops.count(.oversized) == 1 && drops.count(.wrongPacketType) == 2)
        #expect(r.logs.count == 5)   // the first of each reason, then the second (power of two)
        #expect(h.channel.service.phase == .negotiating && r.corruption == nil)
        // The real answer still works afterwards.
        h.guest.silent = false
        var good = negotiate.payload
        h.guest.requests.removeAll()
        #expect(p.tryWrite(type: .dataInBand, transactionID: 1, payload: {
            good[25] = 5; good[28] = 1; good[30] = 1; good[36] = 3; good[38] = 0; good[40] = 3; good[42] = 0; return good
        }()) == .written)
        _ = p.commit()
        _ = h.channel.pump(h.clock)
        #expect(h.channel.service.phase == .ready && h.channel.service.messageVersion == VMBusICVersion(3, 0))
    }

    @Test func heartbeatWithAWrongSequenceIsDropped() throws {
        let h = try ICHarness(.heartbeat)
        h.guest.damage = { b, _ in if b[12] == 1 { b[28] &+= 1 } }
        _ = h.negotiate()
        #expect(h.channel.service.heartbeat.replies == 0 && h.channel.service.drops.count(.malformed) == 1)
    }

    @Test func hostPacketsWaitForRoomAndGoOutWhenTheGuestReads() throws {
        // A host-to-guest ring with room for one shutdown request (2088 + 24) but not two.
        let h = try ICHarness(.shutdown, dataCount: 4096)
        _ = h.negotiate()
        h.guest.silent = true
        guard case .sent = h.channel.requestShutdown(h.clock).0 else { Issue.record("not sent"); return }
        // Answer nothing, but pretend the answer came: a second request needs the room.
        h.channel.testingClearOutstanding()
        let (_, r) = h.channel.requestShutdown(h.clock)
        #expect(r.waitingForSpace && !r.interruptGuest)
        #expect(h.hostToGuest.controlU32(12) != 0)   // pending_send_sz armed
        h.guest.run()                                 // the guest reads and frees the room
        let r2 = h.channel.pump(h.clock)
        #expect(!r2.waitingForSpace && r2.interruptGuest)
        #expect(h.hostToGuest.controlU32(12) == 0)
        #expect(h.guest.run() == 0 && h.guest.requests.count == 3)   // negotiate + two shutdowns
    }

    @Test func corruptRingsCutTheChannelOff() throws {
        let h = try ICHarness(.heartbeat)
        _ = h.negotiate()
        h.guestToHost.setControlU32(0, 3)   // write_index not 8-aligned
        let r = h.channel.pump(h.clock)
        #expect(r.cutOff && r.corruption != nil)
        let again = h.channel.pump(h.clock)
        #expect(again.cutOff && again.corruption == nil && again.logs.isEmpty)
        #expect(h.channel.requestShutdown(h.clock).0 == .notNegotiated)
    }

    @Test func readingIsBoundedPerPump() throws {
        let h = try ICHarness(.heartbeat)
        _ = h.channel.start(h.clock)
        for _ in 0..<(VMBusICChannel<VMBusFlatRingMemory>.maxPacketsPerPump + 3) {
            #expect(h.guest.producer.tryWrite(type: .completion, transactionID: 9, payload: [1]) == .written)
        }
        _ = h.guest.producer.commit()
        let r = h.channel.pump(h.clock)
        #expect(r.moreToRead)
        #expect(h.channel.service.drops.count(.wrongPacketType) == UInt64(VMBusICChannel<VMBusFlatRingMemory>.maxPacketsPerPump))
        let r2 = h.channel.pump(h.clock)
        #expect(!r2.moreToRead && h.channel.service.drops.count(.wrongPacketType) == UInt64(VMBusICChannel<VMBusFlatRingMemory>.maxPacketsPerPump + 3))
    }

    /// Direct hostile payloads into the state machine, at every length, never trap.
    @Test func everyTruncationOfEveryReplyIsSafe() throws {
        for kind in Service.Kind.allCases {
            let h = try ICHarness(kind)
            _ = h.negotiate()
            if kind == .shutdown { _ = h.channel.requestShutdown(h.clock) }
            h.guest.silent = true
            h.guest.run()
            var service = h.channel.service
            let request = try #require(h.guest.requests.last)
            for n in 0...request.payload.count {
                var copy = service
                var b = Array(request.payload.prefix(n))
                if b.count > 25 { b[25] = 5 }
                _ = b.withUnsafeBytes { copy.receive(payload: $0, transactionID: request.transactionID, h.clock) }
                if n < 28 { #expect(copy.drops.count(.truncated) == 1) }
            }
            _ = [UInt8](repeating: 0xFF, count: 5000).withUnsafeBytes { service.receive(payload: $0, transactionID: 1, h.clock) }
            #expect(service.drops.count(.oversized) == 1)
        }
    }
}

extension VMBusICChannel {
    /// For the full-ring test: forget the outstanding request as if it had been answered.
    func testingClearOutstanding() { service.outstanding = nil; service.shutdown.state = .accepted }
}
