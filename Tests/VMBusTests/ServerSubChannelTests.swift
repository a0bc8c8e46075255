import Testing
@testable import VMBus

/// Sub-channels: offered when the device asks, only for an open primary, up to the reserved
/// relids, never shrunk; rescinded before the primary; forgotten at a reset; saved and restored.
@Suite("VMBusServer sub-channels")
struct ServerSubChannelTests {
    typealias F = ServerFixture
    /// Relid 1 (the SCSI controller) may have three sub-channels, at relids 3, 4 and 5.
    static let reserved: [UInt32: [UInt32]] = [1: [3, 4, 5]]

    static func fixture(vpCount: Int = 2) -> F {
        var f = F(vpCount: vpCount)
        f.server = VMBusServer(configuration: .init(vpCount: vpCount, ram: [0..<F.ramEnd], subChannelRelIDs: reserved),
                               offers: F.offers)
        return f
    }

    static func offers(_ actions: [VMBusServerAction]) -> [VMBusOfferChannel] {
        F.messages(actions).compactMap { if case .offerChannel(let o) = $0 { o } else { nil } }
    }

    static func rescinds(_ actions: [VMBusServerAction]) -> [UInt32] {
        F.messages(actions).compactMap { if case .rescindChannelOffer(let r) = $0 { r.childRelID } else { nil } }
    }

    /// GPADL and OPENCHANNEL of sub-channel `relID` targeting `vp`, accepted by the device.
    static func openSub(_ f: inout F, relID: UInt32, vp: UInt32) -> VMBusChannelOpen? {
        f.gpadl(relID: relID, id: 0x5000 + relID, pfns: (0..<8).map { 0x400 + UInt64(relID) * 16 + UInt64($0) })
        let a = f.send(F.open(relID: relID, gpadl: 0x5000 + relID, vp: vp, offset: 4))
        let open = a.compactMap { if case .openChannel(let o) = $0 { o } else { nil } }.first
        let r = F.messages(f.step(.openComplete(relID: relID, status: .success)))
        #expect(r == [.openChannelResult(VMBusOpenChannelResult(childRelID: relID, openID: relID, status: .success))])
        return open
    }

    @Test func offersRepeatThePrimaryWithNewRelidsAndGrowIdempotently() throws {
        var f = Self.fixture()
        f.openSCSI()
        let primary = try #require(f.server.channels[1]).offer
        let first = Self.offers(f.step(.offerSubChannels(primaryRelID: 1, total: 2)))
        #expect(first.map(\.childRelID) == [3, 4])
        for (i, o) in first.enumerated() {
            #expect(o.offer.interfaceType == primary.interfaceType && o.offer.interfaceInstance == primary.interfaceInstance)
            #expect(o.offer.subChannelIndex == UInt16(i + 1))
            #expect(o.connectionID == o.childRelID | 0x2000)
            #expect(o.monitorID == 0xFF && !o.monitorAllocated && o.isDedicatedInterrupt)
        }
        // The same count again, or fewer: nothing new, nothing withdrawn.
        #expect(f.step(.offerSubChannels(primaryRelID: 1, total: 2)) == [])
        #expect(f.step(.offerSubChannels(primaryRelID: 1, total: 1)) == [])
        #expect(f.step(.offerSubChannels(primaryRelID: 1, total: 0)) == [])
        // A count past the limit offers up to the limit and says so.
        let drops = f.drops
        let more = f.step(.offerSubChannels(primaryRelID: 1, total: .max))
        #expect(Self.offers(more).map(\.childRelID) == [5] && f.drops == drops + 1)
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 1, total: .max))) == [])
        #expect(f.server.channels.count == 5)
        // The guest opens sub-channel 1 on VP 1: the device gets that VP and the sub-channel's connection.
        let open = try #require(Self.openSub(&f, relID: 3, vp: 1))
        #expect(open.targetVP == 1 && open.connectionID == 0x2003 && open.ringPFNs.count == 8 && open.downstreamPageOffset == 4)
    }

    @Test func onlyAnOpenPrimaryGetsSubChannels() {
        var f = Self.fixture()
        // Before a connection, before the offers, before the open: dropped, nothing offered.
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 1, total: 1))).isEmpty)
        f.connect()
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 1, total: 1))).isEmpty)
        f.gpadl(relID: 1, id: 0xE1E10, pfns: (0..<64).map { 0x100 + UInt64($0) })
        f.send(F.open(relID: 1, gpadl: 0xE1E10, offset: 32))
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 1, total: 1))).isEmpty)   // opening
        f.step(.openComplete(relID: 1, status: .success))
        // A relid with no reservation, an unknown relid, a sub-channel itself.
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 2, total: 1))).isEmpty)
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 99, total: 1))).isEmpty)
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 1, total: 1))).count == 1)
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 3, total: 1))).isEmpty)
        // The guest cannot open a sub-channel that was not offered.
        let drops = f.drops
        f.gpadl(relID: 4, id: 0x44, pfns: [1, 2, 3, 4])
        #expect(f.send(F.open(relID: 4, gpadl: 0x44, offset: 2)).allSatisfy { if case .openChannel = $0 { false } else { true } })
        #expect(f.drops > drops)
        // A closing primary gets none either.
        f.send(.closeChannel(VMBusCloseChannel(childRelID: 1)))
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 1, total: 3))).isEmpty)
    }

    @Test func closingThePrimaryRescindsItsSubChannelsAndAReopenOffersThemAgain() throws {
        var f = Self.fixture()
        f.openSCSI()
        f.step(.offerSubChannels(primaryRelID: 1, total: 2))
        _ = Self.openSub(&f, relID: 3, vp: 1)
        // Linux: sub-channels first (CLOSECHANNEL, GPADL_TEARDOWN), then the primary.
        #expect(f.send(.closeChannel(VMBusCloseChannel(childRelID: 3))) == [.closeChannel(relID: 3)])
        f.step(.closeComplete(relID: 3))
        let closing = f.send(.closeChannel(VMBusCloseChannel(childRelID: 1)))
        #expect(closing.first == .closeChannel(relID: 1))
        #expect(Self.rescinds(closing) == [3, 4])
        // The guest releases them; their relids and GPADLs are free again.
        f.send(.relIDReleased(VMBusRelIDReleased(childRelID: 3)))
        f.send(.relIDReleased(VMBusRelIDReleased(childRelID: 4)))
        #expect(f.server.channels[3] == nil && f.server.channels[4] == nil)
        #expect(!f.server.gpadls.values.contains { $0.relID == 3 })
        f.step(.closeComplete(relID: 1))
        // storvsc probes again: the primary reopens and asks again.
        f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: 1, gpadl: 0xE1E10)))
        f.gpadl(relID: 1, id: 0xE1E11, pfns: (0..<64).map { 0x100 + UInt64($0) })
        f.send(F.open(relID: 1, gpadl: 0xE1E11, offset: 32))
        f.step(.openComplete(relID: 1, status: .success))
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 1, total: 1))).map(\.childRelID) == [3])
    }

    @Test func aSubChannelNotYetReleasedKeepsItsRelidBusy() {
        var f = Self.fixture()
        f.openSCSI()
        f.step(.offerSubChannels(primaryRelID: 1, total: 1))
        f.send(.closeChannel(VMBusCloseChannel(childRelID: 1)))   // rescinds relid 3
        f.step(.closeComplete(relID: 1))
        f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: 1, gpadl: 0xE1E10)))
        f.gpadl(relID: 1, id: 0xE1E11, pfns: (0..<64).map { 0x100 + UInt64($0) })
        f.send(F.open(relID: 1, gpadl: 0xE1E11, offset: 32))
        f.step(.openComplete(relID: 1, status: .success))
        // Relid 3 is still the rescinded one: index 1 is skipped, index 2 offered.
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 1, total: 2))).map(\.childRelID) == [4])
    }

    @Test func aHostRescindOfThePrimaryRescindsSubChannelsFirst() {
        var f = Self.fixture()
        f.openSCSI()
        f.step(.offerSubChannels(primaryRelID: 1, total: 3))
        #expect(Self.rescinds(f.step(.rescind(relID: 1))) == [3, 4, 5, 1])
        // The guest may release in any order; the primary goes once closed.
        f.send(.relIDReleased(VMBusRelIDReleased(childRelID: 1)))
        f.step(.closeComplete(relID: 1))
        for r: UInt32 in [5, 3, 4] { f.send(.relIDReleased(VMBusRelIDReleased(childRelID: r))) }
        #expect(f.server.channels.keys.sorted() == [2])
    }

    @Test func unloadClosesSubChannelsBeforeThePrimaryAndForgetsThem() {
        var f = Self.fixture()
        f.openSCSI()
        f.step(.offerSubChannels(primaryRelID: 1, total: 2))
        _ = Self.openSub(&f, relID: 3, vp: 1)
        _ = Self.openSub(&f, relID: 4, vp: 0)
        let a = f.send(.unload)
        #expect(a == [.closeChannel(relID: 3), .closeChannel(relID: 4), .closeChannel(relID: 1)])
        f.step(.closeComplete(relID: 1))
        f.step(.closeComplete(relID: 4))
        #expect(F.messages(f.step(.closeComplete(relID: 3))) == [.unloadResponse])
        #expect(f.server.channels.keys.sorted() == [1, 2])
        // The next connection offers the primaries only, and new sub-channels on request.
        f.connect()
        f.gpadl(relID: 1, id: 0xE1E10, pfns: (0..<64).map { 0x100 + UInt64($0) })
        f.send(F.open(relID: 1, gpadl: 0xE1E10, offset: 32))
        f.step(.openComplete(relID: 1, status: .success))
        #expect(Self.offers(f.step(.offerSubChannels(primaryRelID: 1, total: 2))).map(\.childRelID) == [3, 4])
    }

    @Test func aReconnectWithoutUnloadForgetsThemToo() {
        var f = Self.fixture()
        f.openSCSI()
        f.step(.offerSubChannels(primaryRelID: 1, total: 1))
        _ = Self.openSub(&f, relID: 3, vp: 1)
        #expect(f.send(F.contact(.win10_v5_3), conn: 4) == [.closeChannel(relID: 3), .closeChannel(relID: 1)])
        f.step(.closeComplete(relID: 3))
        f.step(.closeComplete(relID: 1))
        #expect(f.server.channels[3] == nil)
        #expect(Self.offers(f.send(.requestOffers)).map(\.childRelID) == [1, 2])
    }

    @Test func savedStateWithSubChannelsRoundTripsAndIsCheckedAgainstTheReservation() throws {
        var f = Self.fixture()
        f.openSCSI()
        f.step(.offerSubChannels(primaryRelID: 1, total: 2))
        _ = Self.openSub(&f, relID: 3, vp: 1)
        let saved = f.server.save()
        let bytes = saved.encoded()
        let decoded = try VMBusServer.Saved(decoding: bytes)
        #expect(decoded == saved && decoded.encoded() == bytes)
        let (restored, actions) = try VMBusServer.restore(decoded, configuration: f.server.configuration)
        #expect(restored.save() == saved && restored.checkInvariants() == [])
        #expect(actions.contains { if case .openChannel(let o) = $0 { o.relID == 3 && o.restored && o.targetVP == 1 } else { false } })
        // The restored server grows as the old one would.
        var g = Self.fixture()
        g.server = restored
        #expect(Self.offers(g.step(.offerSubChannels(primaryRelID: 1, total: 3))).map(\.childRelID) == [5])
        // Without the reservation (another VM shape), or with another GUID, the state is refused.
        let bare = VMBusServer.Configuration(vpCount: 2, ram: [0..<F.ramEnd])
        #expect(throws: VMBusSavedStateError.self) { try VMBusServer.restore(decoded, configuration: bare) }
        var forged = saved
        if let i = forged.channels.firstIndex(where: { $0.relID == 4 }) { forged.channels[i].offer.interfaceInstance = F.shutdown }
        #expect(throws: VMBusSavedStateError.self) { try VMBusServer.restore(forged, configuration: f.server.configuration) }
        var misplaced = saved
        if let i = misplaced.channels.firstIndex(where: { $0.relID == 4 }) { misplaced.channels[i].offer.subChannelIndex = 3 }
        #expect(throws: VMBusSavedStateError.self) { try VMBusServer.restore(misplaced, configuration: f.server.configuration) }
        // A disconnected state holding a sub-channel is refused.
        var stale = saved
        stale.connection = .disconnected
        stale.gpadls = []
        stale.channels = stale.channels.map { var c = $0; c.state = .closed; return c }
        #expect(throws: VMBusSavedStateError.self) { try VMBusServer.restore(stale, configuration: f.server.configuration) }
    }

    @Test(arguments: [UInt64(21), 22, 23])
    func randomOrdersKeepTheInvariants(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        var f = Self.fixture()
        func r(_ n: UInt32) -> UInt32 { UInt32.random(in: 0...n, using: &rng) }
        for _ in 0..<3000 {
            if f.server.connection == .disconnected && r(2) == 0 { f.connect() }
            let relID = [1, 3, 4, 5, 2, r(8)][Int(r(5))]
            switch r(11) {
            case 0: f.step(.offerSubChannels(primaryRelID: r(3) == 0 ? r(6) : 1, total: UInt16(r(5))))
            case 1: f.gpadl(relID: relID, id: relID, pfns: (0..<8).map { UInt64($0) + 0x10 })
            case 2: f.send(F.open(relID: relID, gpadl: relID, vp: r(1), offset: 4))
            case 3: f.step(.openComplete(relID: relID, status: r(3) == 0 ? .unsuccessful : .success))
            case 4: f.send(.closeChannel(VMBusCloseChannel(childRelID: relID)))
            case 5: f.step(.closeComplete(relID: relID))
            case 6: f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: relID, gpadl: relID)))
            case 7: f.send(.relIDReleased(VMBusRelIDReleased(childRelID: relID)))
            case 8: if r(5) == 0 { f.send(.unload) }
            case 9: if r(20) == 0 { f.step(.rescind(relID: relID)) }
            case 10:
                if let (s, _) = try? VMBusServer.restore(f.server.save(), configuration: f.server.configuration) {
                    #expect(s.save() == f.server.save())
                } else {
                    Issue.record("a reachable state does not restore")
                }
            default: f.step(.posted(throughSequence: UInt64(r(1000))))
            }
            // Never more sub-channels than reserved, never one without its reservation.
            #expect(f.server.channels.values.filter { $0.offer.subChannelIndex != 0 }.count <= 3)
        }
    }
}
