import Testing
@testable import VMBus

@Suite("VMBusServer: GPADLs, open, close, teardown, rescind, MODIFYCHANNEL")
struct ServerChannelTests {
    typealias F = ServerFixture

    @Test func linuxStorvscSequenceEndToEnd() throws {
        var f = F()
        f.connect()
        let pfns = (0..<64).map { 0x100 + UInt64($0) }
        let msgs = F.gpadlMessages(relID: 1, gpadl: 0xE1E10, pfns: pfns)
        // The reference's sizes: a 236-byte header, a 240-byte body, a 96-byte body.
        #expect(msgs.map { $0.encoded().count } == [236, 240, 96])
        // hv_utils' 8-page ring: one 92-byte header.
        #expect(F.gpadlMessages(relID: 2, gpadl: 1, pfns: Array(1...8)).map { $0.encoded().count } == [92])
        #expect(F.messages(f.send(msgs[0])).isEmpty && F.messages(f.send(msgs[1])).isEmpty)
        #expect(F.messages(f.send(msgs[2])) == [.gpadlCreated(VMBusGPADLCreated(childRelID: 1, gpadl: 0xE1E10, status: .success))])
        let userData = [UInt8](repeating: 0, count: 120)
        let open = f.send(F.open(relID: 1, gpadl: 0xE1E10, vp: 1, offset: 32))
        #expect(open == [.openChannel(VMBusChannelOpen(relID: 1, connectionID: 0x2001, targetVP: 1, ringGPADL: 0xE1E10,
                                                       ringPFNs: pfns, downstreamPageOffset: 32, userData: userData, restored: false))])
        #expect(F.messages(f.step(.openComplete(relID: 1, status: .success)))
                == [.openChannelResult(VMBusOpenChannelResult(childRelID: 1, openID: 1, status: .success))])
        // Close: no reply; the device is told. Teardown waits for the device.
        #expect(f.send(.closeChannel(VMBusCloseChannel(childRelID: 1))) == [.closeChannel(relID: 1)])
        #expect(f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: 1, gpadl: 0xE1E10))).isEmpty)
        #expect(f.server.gpadls[0xE1E10]?.state == .tearingDown)
        #expect(F.messages(f.step(.closeComplete(relID: 1))) == [.gpadlTorndown(VMBusGPADLTorndown(gpadl: 0xE1E10))])
        #expect(f.server.gpadls.isEmpty && f.drops == 0)
        // And again: a closed channel opens anew.
        f.gpadl(relID: 1, id: 0xE1E11, pfns: pfns)
        #expect(f.send(F.open(relID: 1, gpadl: 0xE1E11, offset: 32)).count == 1)
    }

    @Test func gpadlPagesOutsideRAMAreRefused() {
        var f = F()
        f.connect()
        let last = F.ramEnd / 4096 - 1
        #expect(F.messages(f.gpadl(relID: 2, id: 1, pfns: [last]))
                == [.gpadlCreated(VMBusGPADLCreated(childRelID: 2, gpadl: 1, status: .success))])
        for bad: UInt64 in [last + 1, 1 << 52, UInt64.max] {
            #expect(F.messages(f.gpadl(relID: 2, id: 2, pfns: [1, bad, 3]))
                    == [.gpadlCreated(VMBusGPADLCreated(childRelID: 2, gpadl: 2, status: .unsuccessful))])
            #expect(f.server.gpadls[2] == nil)
        }
    }

    @Test func malformedGPADLsGetAFailureAnswer() {
        var f = F()
        f.connect()
        func header(_ relID: UInt32 = 1, _ id: UInt32, _ len: UInt16, _ count: UInt16, _ words: [UInt64]) -> VMBusGuestMessage {
            .gpadlHeader(VMBusGPADLHeader(childRelID: relID, gpadl: id, rangeBufferLength: len, rangeCount: count, words: words))
        }
        let failed = { (id: UInt32, relID: UInt32) in [VMBusHostMessage.gpadlCreated(VMBusGPADLCreated(childRelID: relID, gpadl: id, status: .unsuccessful))] }
        #expect(F.messages(f.send(header(99, 1, 16, 1, [4096, 1]))) == failed(1, 99))          // unknown relid
        #expect(F.messages(f.send(header(1, 2, 16, 0, [4096, 1]))) == failed(2, 1))            // no range
        #expect(F.messages(f.send(header(1, 3, 15, 1, [4096, 1]))) == failed(3, 1))            // not whole words
        #expect(F.messages(f.send(header(1, 4, 8, 1, [4096]))) == failed(4, 1))                // no PFN
        #expect(F.messages(f.send(header(1, 5, 16, 1, [4096 | 4096 << 32, 1]))) == failed(5, 1))  // offset not in page
        #expect(F.messages(f.send(header(1, 6, 24, 1, [4096, 1, 2]))) == failed(6, 1))          // a word too many
        #expect(F.messages(f.send(header(1, 7, 16, 1, [8192, 1]))) == failed(7, 1))             // a PFN too few
        #expect(F.messages(f.send(header(1, 8, 16, 1, [0, 1]))) == failed(8, 1))                // empty range
        #expect(F.messages(f.send(header(1, 9, 16, 2, [4096, 1]))) == failed(9, 1))             // second range missing
        // Two ranges, the second 200 bytes at offset 4000: two pages. Fine.
        #expect(F.messages(f.send(header(1, 10, 40, 2, [4096, 1, 200 | 4000 << 32, 2, 3])))
                == [.gpadlCreated(VMBusGPADLCreated(childRelID: 1, gpadl: 10, status: .success))])
        #expect(F.messages(f.send(header(1, 10, 16, 1, [4096, 1]))) == failed(10, 1))           // handle in use
        #expect(f.server.gpadls.keys.sorted() == [10])
    }

    @Test func gpadlBodiesAreMatchedTrimmedAndOtherwiseDropped() {
        var f = F()
        f.connect()
        #expect(f.send(.gpadlBody(VMBusGPADLBody(gpadl: 77, words: [1]))).allSatisfy { if case .log = $0 { true } else { false } })
        #expect(f.server.drops.count(.unknownGPADL) == 1)
        // A header asking for 4 words, then a body carrying 28: only 2 are taken.
        f.send(.gpadlHeader(VMBusGPADLHeader(childRelID: 1, gpadl: 1, rangeBufferLength: 32, rangeCount: 1, words: [12288, 1])))
        #expect(F.messages(f.send(.gpadlBody(VMBusGPADLBody(gpadl: 1, words: (2..<30).map { UInt64($0) }))))
                == [.gpadlCreated(VMBusGPADLCreated(childRelID: 1, gpadl: 1, status: .success))])
        #expect(f.server.gpadls[1]?.words == [12288, 1, 2, 3])
        // A body after completion is dropped.
        #expect(F.messages(f.send(.gpadlBody(VMBusGPADLBody(gpadl: 1, words: [5])))).isEmpty)
        #expect(f.server.drops.count(.unknownGPADL) == 2)
        // Tearing down a GPADL still being built answers at once.
        f.send(.gpadlHeader(VMBusGPADLHeader(childRelID: 1, gpadl: 2, rangeBufferLength: 32, rangeCount: 1, words: [12288])))
        #expect(F.messages(f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: 1, gpadl: 2))))
                == [.gpadlTorndown(VMBusGPADLTorndown(gpadl: 2))])
        // Teardown naming the wrong relid: dropped.
        #expect(F.messages(f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: 2, gpadl: 1)))).isEmpty)
        #expect(f.server.gpadls[1] != nil)
    }

    @Test func gpadlLimitsHold() {
        var f = F(limits: VMBusServer.Limits(maxGPADLs: 2, maxGPADLWords: 6))
        f.connect()
        #expect(F.messages(f.gpadl(relID: 1, id: 1, pfns: [1, 2])).first
                == .gpadlCreated(VMBusGPADLCreated(childRelID: 1, gpadl: 1, status: .success)))
        #expect(F.messages(f.gpadl(relID: 1, id: 2, pfns: [1, 2, 3])).first
                == .gpadlCreated(VMBusGPADLCreated(childRelID: 1, gpadl: 2, status: .unsuccessful)))   // 3 + 4 words > 6
        #expect(F.messages(f.gpadl(relID: 1, id: 3, pfns: [1])).first
                == .gpadlCreated(VMBusGPADLCreated(childRelID: 1, gpadl: 3, status: .success)))
        #expect(F.messages(f.gpadl(relID: 1, id: 4, pfns: [1])).first
                == .gpadlCreated(VMBusGPADLCreated(childRelID: 1, gpadl: 4, status: .unsuccessful)))   // a third GPADL
    }

    @Test func openRefusalsAndDrops() {
        var f = F()
        f.connect()
        #expect(F.messages(f.send(F.open(relID: 9, gpadl: 1, offset: 2))).isEmpty)        // unknown relid: dropped
        #expect(f.server.drops.count(.unknownChannel) == 1)
        let refused = [VMBusHostMessage.openChannelResult(VMBusOpenChannelResult(childRelID: 1, openID: 1, status: .unsuccessful))]
        #expect(F.messages(f.send(F.open(relID: 1, gpadl: 1, offset: 2))) == refused)      // no such GPADL
        f.gpadl(relID: 2, id: 1, pfns: [1, 2, 3, 4])
        #expect(F.messages(f.send(F.open(relID: 1, gpadl: 1, offset: 2))) == refused)      // another channel's GPADL
        f.gpadl(relID: 1, id: 2, pfns: [1, 2, 3, 4])
        for offset: UInt32 in [0, 1, 3, 4, 0xFFFF_FFFF] {
            #expect(F.messages(f.send(F.open(relID: 1, gpadl: 2, offset: offset))) == refused)
        }
        #expect(F.messages(f.send(F.open(relID: 1, gpadl: 2, vp: 2, offset: 2))) == refused)   // VP 2 of 2
        // Two ranges are not a ring.
        f.send(.gpadlHeader(VMBusGPADLHeader(childRelID: 1, gpadl: 3, rangeBufferLength: 48, rangeCount: 2,
                                             words: [8192, 1, 2, 8192, 3, 4])))
        #expect(F.messages(f.send(F.open(relID: 1, gpadl: 3, offset: 2))) == refused)
        // A device refusal reaches the guest with the device's status, and the channel can open again.
        #expect(f.send(F.open(relID: 1, gpadl: 2, offset: 2)).count == 1)
        #expect(F.messages(f.send(F.open(relID: 1, gpadl: 2, offset: 2))).isEmpty)     // not closed: dropped
        let status = VMBusStatus(rawValue: 0xC000_009A)
        #expect(F.messages(f.step(.openComplete(relID: 1, status: status)))
                == [.openChannelResult(VMBusOpenChannelResult(childRelID: 1, openID: 1, status: status))])
        #expect(f.send(F.open(relID: 1, gpadl: 2, offset: 2)).count == 1)
    }

    @Test func aTeardownWhileTheDeviceIsOpeningIsAnsweredWhenItRefuses() {
        var f = F()
        f.connect()
        f.gpadl(relID: 1, id: 3, pfns: [1, 2, 3, 4])
        f.send(F.open(relID: 1, gpadl: 3, offset: 2))
        #expect(F.messages(f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: 1, gpadl: 3)))).isEmpty)
        #expect(F.messages(f.step(.openComplete(relID: 1, status: .unsuccessful)))
                == [.openChannelResult(VMBusOpenChannelResult(childRelID: 1, openID: 1, status: .unsuccessful)),
                    .gpadlTorndown(VMBusGPADLTorndown(gpadl: 3))])
        #expect(f.server.gpadls.isEmpty)
    }

    @Test func devicesAnswersThatDoNotFitAreCountedNotObeyed() {
        var f = F()
        f.connect()
        f.step(.openComplete(relID: 1, status: .success))
        f.step(.closeComplete(relID: 1))
        f.step(.openComplete(relID: 55, status: .success))
        f.step(.rescind(relID: 55))
        #expect(f.server.drops.count(.hostProtocol) == 4)
        #expect(f.server.channels[1]?.state == .closed)
    }

    @Test func rescindThenCloseAndReleaseFreesTheChannelAndItsGPADLs() {
        var f = F()
        f.openSCSI()
        f.gpadl(relID: 1, id: 0xE1E11, pfns: [7])
        #expect(F.messages(f.step(.rescind(relID: 1))) == [.rescindChannelOffer(VMBusRescindChannelOffer(childRelID: 1))])
        #expect(F.messages(f.send(F.open(relID: 1, gpadl: 0xE1E11, offset: 2))).isEmpty)   // ignored after rescind
        // GPADLs for a rescinded channel still succeed.
        #expect(F.messages(f.gpadl(relID: 1, id: 0xE1E12, pfns: [8])) == [.gpadlCreated(VMBusGPADLCreated(childRelID: 1, gpadl: 0xE1E12, status: .success))])
        #expect(f.send(.closeChannel(VMBusCloseChannel(childRelID: 1))) == [.closeChannel(relID: 1)])
        #expect(f.send(.relIDReleased(VMBusRelIDReleased(childRelID: 1))).isEmpty)
        #expect(f.server.channels[1] != nil)              // the device still holds the ring
        f.step(.closeComplete(relID: 1))
        #expect(f.server.channels[1] == nil && f.server.gpadls.isEmpty)
        // The next connection sees only relid 2.
        f.send(.unload)
        f.send(F.contact(.win10_v5_3), conn: 4)
        let offers = F.messages(f.send(.requestOffers))
        #expect(offers.count == 2)
    }

    @Test func releaseWithoutRescindIsDroppedAndRescindBeforeOffersIsSilent() {
        var f = F()
        f.connect()
        #expect(f.send(.relIDReleased(VMBusRelIDReleased(childRelID: 1))).count == 1)   // a log line only
        #expect(f.server.drops.count(.channelState) == 1)
        var g = F()
        g.send(F.contact(.win10_v5_3), conn: 4)
        #expect(g.step(.rescind(relID: 2)).isEmpty)
        #expect(F.messages(g.send(.requestOffers)).count == 2)   // relid 1 and ALLOFFERS_DELIVERED
    }

    @Test func releaseOfAnOpenRescindedChannelClosesIt() {
        var f = F()
        f.openSCSI()
        f.step(.rescind(relID: 1))
        #expect(f.send(.relIDReleased(VMBusRelIDReleased(childRelID: 1))) == [.closeChannel(relID: 1)])
        f.step(.closeComplete(relID: 1))
        #expect(f.server.channels[1] == nil && f.server.gpadls.isEmpty)
    }

    @Test func modifyChannelByVersion() {
        var f = F()
        f.openSCSI(.win10_v5_3)
        #expect(f.send(.modifyChannel(VMBusModifyChannel(childRelID: 1, targetVP: 1)))
                == [.modifyChannel(relID: 1, targetVP: 1),
                    .post(VMBusOutboundMessage(sequence: f.server.outbound.last!.sequence, vp: 0,
                                               bytes: VMBusModifyChannelResponse(childRelID: 1, status: .success).encoded()))])
        guard case .open(let r) = f.server.channels[1]?.state else { Issue.record("not open"); return }
        #expect(r.targetVP == 1)
        #expect(F.messages(f.send(.modifyChannel(VMBusModifyChannel(childRelID: 1, targetVP: 5))))
                == [.modifyChannelResponse(VMBusModifyChannelResponse(childRelID: 1, status: .unsuccessful))])
        #expect(F.messages(f.send(.modifyChannel(VMBusModifyChannel(childRelID: 2, targetVP: 0))))
                == [.modifyChannelResponse(VMBusModifyChannelResponse(childRelID: 2, status: .unsuccessful))])

        var g = F()
        g.openSCSI(.win10_v4_1)
        #expect(g.send(.modifyChannel(VMBusModifyChannel(childRelID: 1, targetVP: 1))) == [.modifyChannel(relID: 1, targetVP: 1)])
        var h = F()
        h.openSCSI(.win10)
        #expect(F.messages(h.send(.modifyChannel(VMBusModifyChannel(childRelID: 1, targetVP: 1)))).isEmpty)
        #expect(h.server.drops.count(.outOfOrder) == 1)
    }

    /// Found by fuzz-vmbus-server (its input: Fuzz/Corpus/vmbus-server/finding-teardown-during-reset).
    /// Two channels open, the guest tears down the first one's ring (waiting for the device),
    /// then UNLOAD: both channels close. When the first device lets go while the second is still
    /// closing, its ring GPADL must go (without GPADL_TORNDOWN: the reset frees every GPADL
    /// unanswered), not stay behind tearing down in nobody's use, which broke the invariants
    /// and made `restore` refuse the saved state of a worker restarted at that moment.
    @Test func aRingTornDownBeforeAResetIsFreedWhenItsDeviceLetsGo() throws {
        var f = F()
        f.openSCSI()
        f.gpadl(relID: 2, id: 7, pfns: Array(1...8))
        f.send(F.open(relID: 2, gpadl: 7, offset: 4))
        f.step(.openComplete(relID: 2, status: .success))
        #expect(f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: 1, gpadl: 0xE1E10))).isEmpty)
        #expect(f.server.gpadls[0xE1E10]?.state == .tearingDown)
        #expect(f.send(.unload) == [.closeChannel(relID: 1), .closeChannel(relID: 2)])
        #expect(F.messages(f.step(.closeComplete(relID: 1))).isEmpty)
        #expect(f.server.gpadls[0xE1E10] == nil && f.server.gpadls[7] != nil)
        #expect(f.server.checkInvariants() == [])
        let (restored, _) = try VMBusServer.restore(f.server.save(), configuration: f.server.configuration)
        #expect(restored.save() == f.server.save())
        #expect(F.messages(f.step(.closeComplete(relID: 2))) == [.unloadResponse])
        #expect(f.server.gpadls.isEmpty)
    }
}
