import HyperV
import Testing
@testable import VMBus

@Suite("VMBusServer: INITIATE_CONTACT, versions, offers, UNLOAD and reconnects")
struct ServerConnectionTests {
    typealias F = ServerFixture

    @Test(arguments: VMBusVersion.supported, [UInt32(1), 4])
    func everySupportedVersionIsAcceptedOnBothMessageConnections(version: VMBusVersion, conn: UInt32) {
        var f = F()
        let r = F.posted(f.send(F.contact(version, target: 1), conn: conn))
        // 5.x names the message connection for everything after; target_vcpu counts from 3.0 on.
        let expectedVP: UInt32 = version >= .win8_1 ? 1 : 0
        #expect(r.count == 1 && r[0].vp == expectedVP)
        #expect(r[0].message == .versionResponse(VMBusVersionResponse(versionSupported: true, connectionState: .successful,
                                                                       messageConnectionID: version >= .win10_v5 ? 1 : 0)))
        #expect(f.server.connection == .connected(.init(version: version, targetVP: expectedVP, monitorPage1: 0x8000, monitorPage2: 0x9000)))
    }

    @Test func linuxNegotiationRefusesWhatItDoesNotSpeakThenSettles() {
        var f = F()
        for v in [VMBusVersion.win10_v6_0, .win7, .ws2008, VMBusVersion(rawValue: 0x0005_0004), VMBusVersion(rawValue: 0xFFFF_FFFF)] {
            let r = F.messages(f.send(F.contact(v), conn: 4))
            #expect(r == [.versionResponse(VMBusVersionResponse(versionSupported: false))])
            #expect(f.server.connection == .disconnected)
        }
        #expect(f.server.drops.count(.refused) == 5)
        f.connect(.win10_v5_3)
    }

    @Test func contactWithBadParametersIsRefusedWithAFailureState() {
        var f = F()
        // Target VP 7 of 2: answered to the sender.
        let a = F.posted(f.send(F.contact(.win10_v5_2, target: 7), vp: 1))
        #expect(a.count == 1 && a[0].vp == 1)
        #expect(a[0].message == .versionResponse(VMBusVersionResponse(versionSupported: false, connectionState: .failedUnknownFailure)))
        // msg_sint other than 2 at 5.x.
        #expect(F.messages(f.send(F.contact(.win10_v5, sint: 3), conn: 4))
                == [.versionResponse(VMBusVersionResponse(versionSupported: false, connectionState: .failedUnknownFailure))])
        // One monitor page only.
        let half = VMBusInitiateContact(versionRequested: .win10, targetVCPU: 0, interruptPageOrMessageSINT: 0,
                                        monitorPage1: 0x8000, monitorPage2: 0)
        #expect(F.messages(f.send(.initiateContact(half)))
                == [.versionResponse(VMBusVersionResponse(versionSupported: false, connectionState: .failedUnknownFailure))])
        // Below 3.0 the target is VP 0 whatever the guest wrote.
        let old = F.posted(f.send(F.contact(.win8, target: 7)))
        #expect(old.count == 1 && old[0].vp == 0 && old[0].message == .versionResponse(VMBusVersionResponse(versionSupported: true)))
    }

    @Test func offersOnRequestInRelidOrderThenAllDelivered() throws {
        var f = F()
        #expect(F.messages(f.send(.requestOffers)).isEmpty)      // before contact: dropped
        #expect(f.server.drops.count(.outOfOrder) == 1)
        f.send(F.contact(.win10_v5_3, target: 1), conn: 4)
        let r = F.posted(f.send(.requestOffers, vp: 0))
        #expect(r.map(\.vp) == [1, 1, 1])
        guard case .offerChannel(let o1) = r[0].message, case .offerChannel(let o2) = r[1].message else {
            Issue.record("expected two offers, got \(r)"); return
        }
        #expect(o1.childRelID == 1 && o1.connectionID == 0x2001 && o1.offer == F.offers[0] && o1.monitorID == 0xFF
                && !o1.monitorAllocated && o1.isDedicatedInterrupt)
        #expect(o2.childRelID == 2 && o2.connectionID == 0x2002 && o2.offer.channelFlags == 0x11)
        #expect(r[2].message == .allOffersDelivered)
        #expect(F.messages(f.send(.requestOffers)).isEmpty && f.server.drops.count(.outOfOrder) == 2)
    }

    @Test func unloadIsAlwaysAnsweredAndAFreshContactFollows() {
        var f = F()
        // Not connected: answered at once, to the sender.
        let r0 = F.posted(f.send(.unload, vp: 1))
        #expect(r0.count == 1 && r0[0].vp == 1 && r0[0].message == .unloadResponse)
        f.connect(.win10_v5_2)
        f.gpadl(relID: 2, id: 5, pfns: [1, 2, 3, 4])
        #expect(F.messages(f.send(.unload)) == [.unloadResponse])
        #expect(f.server.connection == .disconnected && f.server.gpadls.isEmpty)
        f.connect(.win10_v5_3)
        #expect(f.server.gpadls.isEmpty)
    }

    @Test func unloadWithAnOpenChannelWaitsForTheDevice() {
        var f = F()
        f.openSCSI()
        let a = f.send(.unload)
        #expect(a == [.closeChannel(relID: 1)])
        #expect(F.messages(f.send(F.contact(.win10_v5_3), conn: 4)).isEmpty)   // the guest retries: the reset goes on
        // The device lets go: the GPADL is freed and the latest request (the contact) answered.
        let done = F.messages(f.step(.closeComplete(relID: 1)))
        #expect(done == [.versionResponse(VMBusVersionResponse(versionSupported: true, messageConnectionID: 1))])
        #expect(f.server.gpadls.isEmpty && f.server.channels[1]?.state == .closed)
    }

    @Test func contactWhileConnectedResetsEverythingFirst() {
        var f = F()
        f.openSCSI(.win10_v4_1)
        let a = f.send(F.contact(.win10_v5_3), conn: 4)
        #expect(a == [.closeChannel(relID: 1)])
        #expect(F.messages(f.send(.requestOffers)).isEmpty)   // out of order during the reset
        let r = F.messages(f.step(.closeComplete(relID: 1)))
        #expect(r == [.versionResponse(VMBusVersionResponse(versionSupported: true, messageConnectionID: 1))])
        #expect(F.messages(f.send(.requestOffers)).count == 3)   // offered again to the new kernel
    }

    @Test func unloadWhileADeviceIsStillOpeningClosesAfterItsAnswer() {
        var f = F()
        f.connect()
        f.gpadl(relID: 1, id: 9, pfns: (0..<8).map { UInt64($0) + 0x200 })
        #expect(f.send(F.open(relID: 1, gpadl: 9, offset: 4)).count == 1)
        #expect(f.send(.unload) == [.closeChannel(relID: 1)])
        #expect(f.step(.openComplete(relID: 1, status: .success)).isEmpty)   // overtaken by the close: ignored
        #expect(F.messages(f.step(.closeComplete(relID: 1))) == [.unloadResponse])
        #expect(f.drops == 0)
    }

    @Test func messagesOnTheWrongConnectionTypeOrVPAreDroppedAndCounted() {
        var f = F()
        let c = F.contact(.win10_v5_3).encoded()
        #expect(f.sendRaw(c, conn: 2).allSatisfy { if case .log = $0 { true } else { false } })
        #expect(f.sendRaw(c, conn: 4, type: HvMessageType(rawValue: 2)).count == 1)
        #expect(F.messages(f.sendRaw(c, conn: 4, vp: 2)).isEmpty)
        #expect(f.server.drops.count(.wrongConnection) == 1 && f.server.drops.count(.wrongMessageType) == 1
                && f.server.drops.count(.unknownVP) == 1)
        #expect(f.server.connection == .disconnected)
    }

    @Test func floodsAreCountedExactlyAndLoggedLogarithmically() {
        var f = F()
        var logs = 0
        for _ in 0..<100 {
            logs += f.sendRaw([14, 0, 0, 0, 0, 0, 0, 0]).filter { if case .log = $0 { true } else { false } }.count
        }
        #expect(f.server.drops.count(.malformed) == 100)
        #expect(logs == 7)   // the 1st, 2nd, 4th, ... 64th
    }

    @Test func theOutboundQueueIsBoundedForTheGuestAndFreedByReceipts() {
        var f = F(limits: VMBusServer.Limits(maxOutbound: 8))
        f.connect()                       // 1 + 3 messages waiting
        for i in 0..<4 { f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: 1, gpadl: UInt32(i)))) }  // dropped: unknown
        for i in 0..<6 { f.send(.gpadlHeader(VMBusGPADLHeader(childRelID: 99, gpadl: UInt32(i), rangeBufferLength: 16,
                                                              rangeCount: 1, words: [4096, 1]))) }
        #expect(f.server.outbound.count == 8)
        #expect(f.server.drops.count(.outboundFull) == 2)
        let seqs = f.server.outbound.map(\.sequence)
        #expect(seqs == Array(0..<8))
        f.step(.posted(throughSequence: 5))
        #expect(f.server.outbound.map(\.sequence) == [6, 7])
        #expect(F.messages(f.send(.unload)) == [.unloadResponse])
    }
}
