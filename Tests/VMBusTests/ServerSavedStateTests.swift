import FuzzSeeds
import IPC
import Testing
@testable import VMBus

@Suite("VMBusServer.Saved: save, restore, the byte codec as hostile input")
struct ServerSavedStateTests {
    typealias F = ServerFixture

    /// A server in the middle of everything: connected, one channel open, one opening, a GPADL
    /// half built, one tearing down, messages not yet confirmed.
    static func busy() -> F {
        var f = F(offers: F.offers + [F.offers[0]])
        f.openSCSI()
        f.gpadl(relID: 2, id: 20, pfns: [1, 2, 3, 4])
        f.send(F.open(relID: 2, gpadl: 20, vp: 1, offset: 2))
        f.send(.gpadlHeader(VMBusGPADLHeader(childRelID: 3, gpadl: 30, rangeBufferLength: 24, rangeCount: 1, words: [8192, 9])))
        f.send(.closeChannel(VMBusCloseChannel(childRelID: 1)))
        f.send(.gpadlTeardown(VMBusGPADLTeardown(childRelID: 1, gpadl: 0xE1E10)))
        f.step(.posted(throughSequence: 2))
        return f
    }

    @Test func saveEncodeDecodeRestoreIsTheSameServer() throws {
        let f = Self.busy()
        let saved = f.server.save()
        let bytes = saved.encoded()
        let decoded = try VMBusServer.Saved(decoding: bytes)
        #expect(decoded == saved)
        #expect(decoded.encoded() == bytes)
        let (restored, actions) = try VMBusServer.restore(decoded, configuration: f.server.configuration)
        #expect(restored.save() == saved && restored.checkInvariants() == [])
        // Unconfirmed messages again, the opening channel handed over again, the close repeated.
        let posts = actions.compactMap { if case .post(let m) = $0 { m } else { nil } }
        #expect(posts == f.server.outbound && !posts.isEmpty)
        #expect(actions.contains(.closeChannel(relID: 1)))
        #expect(actions.contains { if case .openChannel(let o) = $0 { o.relID == 2 && !o.restored && o.ringPFNs == [1, 2, 3, 4] } else { false } })
    }

    @Test func aRestoredServerCarriesOnWhereTheOldOneStopped() throws {
        var f = Self.busy()
        let (restored, _) = try VMBusServer.restore(f.server.save(), configuration: f.server.configuration)
        var g = F()
        g.server = restored
        let next: [VMBusServerInput] = [.closeComplete(relID: 1), .openComplete(relID: 2, status: .success),
                                        .message(VMBusPostedMessage(connectionID: 1, vp: 0, bytes: VMBusGPADLBody(gpadl: 30, words: [10]).encoded()))]
        for input in next { #expect(f.step(input) == g.step(input)) }
        #expect(f.server.save() == g.server.save())
        // An open channel is re-announced as restored.
        let (_, again) = try VMBusServer.restore(g.server.save(), configuration: g.server.configuration)
        #expect(again.contains { if case .openChannel(let o) = $0 { o.relID == 2 && o.restored } else { false } })
    }

    @Test func everyStateOfTheConnectionRoundTrips() throws {
        var states: [VMBusServer.Saved] = [F().server.save()]
        var f = F()
        f.openSCSI()
        f.send(.unload)
        states.append(f.server.save())                             // resetting for UNLOAD
        f.send(F.contact(.win10_v5_1), conn: 4)
        states.append(f.server.save())                             // resetting for a contact
        f.step(.closeComplete(relID: 1))
        states.append(f.server.save())                             // connected, offers not sent
        f.step(.rescind(relID: 2))
        states.append(f.server.save())
        for s in states {
            let d = try VMBusServer.Saved(decoding: s.encoded())
            #expect(d == s)
            _ = try VMBusServer.restore(d, configuration: f.server.configuration)
        }
    }

    @Test func aRestoredResetWithNothingToWaitForIsFinished() throws {
        var f = F()
        f.connect()
        var s = f.server.save()
        s.connection = .resetting(.unload(replyVP: 1))
        let (restored, actions) = try VMBusServer.restore(s, configuration: f.server.configuration)
        #expect(restored.connection == .disconnected)
        let last = try #require(actions.last)
        guard case .post(let m) = last else { Issue.record("expected a post, got \(last)"); return }
        #expect(m.vp == 1 && (try? VMBusHostMessage.decode(m.bytes)) == .unloadResponse)
    }

    @Test func brokenBytesAreRefusedWithTheRightError() throws {
        let good = Self.busy().server.save().encoded()
        #expect(throws: VMBusSavedStateError.format(.bodyTooShort(type: 0, needed: 4, available: 0))) { try VMBusServer.Saved(decoding: []) }
        var b = good; b[0] ^= 1
        #expect(throws: VMBusSavedStateError.badMagic(0x5342_4D57)) { try VMBusServer.Saved(decoding: b) }
        b = good; b[4] = 2
        #expect(throws: VMBusSavedStateError.unsupportedVersion(2)) { try VMBusServer.Saved(decoding: b) }
        b = good; b[6] = 1
        #expect(throws: VMBusSavedStateError.format(.reservedNotZero(type: 0, offset: 6))) { try VMBusServer.Saved(decoding: b) }
        #expect(throws: VMBusSavedStateError.self) { try VMBusServer.Saved(decoding: good + [0]) }
        #expect(throws: VMBusSavedStateError.self) { try VMBusServer.Saved(decoding: Array(good.dropLast())) }
        b = good; b[16] = 7                                          // connection kind
        #expect(throws: VMBusSavedStateError.format(.invalidField(type: 0, field: "connection kind", value: 7))) {
            try VMBusServer.Saved(decoding: b)
        }
    }

    @Test func inconsistentStatesAreRefusedAtRestore() throws {
        let f = Self.busy()
        let config = f.server.configuration
        var s = f.server.save()
        s.gpadls[0].words[1] = 1 << 40                               // a page outside RAM
        #expect(throws: VMBusSavedStateError.self) { try VMBusServer.restore(s, configuration: config) }
        s = f.server.save()
        s.channels.append(s.channels[0])                             // a relid twice
        #expect(throws: VMBusSavedStateError.inconsistent("relid 1 twice")) { try VMBusServer.restore(s, configuration: config) }
        s = f.server.save()
        s.gpadls.removeAll { $0.id == 20 }                           // an opening channel's ring is gone
        #expect(throws: VMBusSavedStateError.self) { try VMBusServer.restore(s, configuration: config) }
        s = f.server.save()
        s.outbound[0].vp = 9                                         // a VP the partition lacks
        #expect(throws: VMBusSavedStateError.self) { try VMBusServer.restore(s, configuration: config) }
        s = f.server.save()
        s.nextSequence = 0
        #expect(throws: VMBusSavedStateError.self) { try VMBusServer.restore(s, configuration: config) }
    }

    /// Random bytes, and valid bytes with random damage: decoding never traps; whatever decodes
    /// re-encodes to the same bytes, and restore either refuses it or yields a consistent server.
    @Test(arguments: [UInt64(1), 2, 3])
    func randomAndDamagedBytes(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let f = Self.busy()
        let good = f.server.save().encoded()
        var decodedDamaged = 0
        for i in 0..<3000 {
            var b: [UInt8]
            if i % 3 == 0 {
                b = rng.bytes(Int.random(in: 0...400, using: &rng))
                if b.count >= 8 && i % 2 == 0 { b.replaceSubrange(0..<4, with: [0x56, 0x4D, 0x42, 0x53]); b[4] = 1; b[5] = 0 }
            } else {
                b = good
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            guard let d = try? VMBusServer.Saved(decoding: b) else { continue }
            if b != good { decodedDamaged += 1 }
            #expect(d.encoded() == b)
            if let (s, _) = try? VMBusServer.restore(d, configuration: f.server.configuration) {
                #expect(s.checkInvariants() == [])
            }
        }
        // Some damage lands in free-valued fields (GUIDs, user data, PFNs) and must still decode.
        #expect(decodedDamaged > 0)
    }
}

@Suite("VMBusServer under seeded random guest traffic")
struct ServerRandomTests {
    typealias F = ServerFixture

    /// Mixes well-formed messages with random field values, truncations, random bytes and
    /// device answers. The invariants hold after every step (checked by the fixture) and the
    /// server keeps answering a clean handshake afterwards.
    @Test(arguments: [UInt64(11), 12, 13, 14])
    func randomTrafficKeepsTheInvariants(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        // Four devices: a rescinded one is gone for good after the next reset, so rescinds are rare.
        var f = F(offers: F.offers + F.offers)
        func r32(_ max: UInt32) -> UInt32 { UInt32.random(in: 0...max, using: &rng) }
        for _ in 0..<8000 {
            if f.server.connection == .disconnected && r32(3) == 0 {
                // Like a guest after a reset: contact and ask for offers, so most traffic meets a live bus.
                f.send(F.contact(VMBusVersion.supported.randomElement(using: &rng)!, target: r32(1)), conn: 4)
                f.send(.requestOffers)
            }
            // Mostly the two relids that exist and three handles, so requests meet each other.
            let relID = r32(4) == 0 ? r32(5) : 1 + r32(3), gpadl = r32(2)
            let pick = Int.random(in: 0..<16, using: &rng)
            var m: VMBusGuestMessage? = nil
            switch pick {
            case 0: if r32(3) == 0 { m = F.contact(VMBusVersion.supported.randomElement(using: &rng)!, target: r32(2)) }
            case 1: m = .requestOffers
            case 2:
                if Bool.random(using: &rng) {
                    // A ring GPADL of 4...8 pages in one header, so channels really open.
                    let n = Int(r32(4)) + 4
                    let words = [UInt64(n * 4096)] + (0..<n).map { _ in UInt64(r32(4200)) }   // sometimes past RAM
                    m = .gpadlHeader(VMBusGPADLHeader(childRelID: relID, gpadl: gpadl, rangeBufferLength: UInt16(words.count * 8),
                                                      rangeCount: 1, words: words))
                } else {
                    m = .gpadlHeader(VMBusGPADLHeader(childRelID: relID, gpadl: gpadl, rangeBufferLength: UInt16(r32(6) * 8),
                                                      rangeCount: UInt16(r32(2)), words: [UInt64(r32(3)) * 4096, UInt64(r32(5000))]))
                }
            case 3: m = .gpadlBody(VMBusGPADLBody(gpadl: gpadl, words: (0..<Int(r32(5))).map { _ in UInt64(r32(5000)) }))
            case 4:
                // Mostly a GPADL that exists, named with its own relid, as a guest would.
                let g = r32(3) == 0 ? nil : f.server.gpadls.values.sorted { $0.id < $1.id }.randomElement(using: &rng)
                m = F.open(relID: g?.relID ?? relID, gpadl: g?.id ?? gpadl, vp: r32(5) == 0 ? 2 : r32(1), offset: r32(4) == 0 ? r32(9) : 2 + r32(2))
            case 5: m = .closeChannel(VMBusCloseChannel(childRelID: relID))
            case 6: m = .gpadlTeardown(VMBusGPADLTeardown(childRelID: relID, gpadl: gpadl))
            case 7: m = .relIDReleased(VMBusRelIDReleased(childRelID: relID))
            case 8: if r32(3) == 0 { m = .unload }
            case 9: m = .modifyChannel(VMBusModifyChannel(childRelID: relID, targetVP: r32(2)))
            case 10: f.step(.openComplete(relID: relID, status: r32(1) == 0 ? .success : .unsuccessful))
            case 11: f.step(.closeComplete(relID: relID))
            case 12: f.step(.posted(throughSequence: UInt64(r32(100_000))))
            case 13: if r32(150) == 0 { f.step(.rescind(relID: relID)) }
            case 14:
                var b = rng.bytes(Int.random(in: 0...240, using: &rng))
                if b.count >= 4 {
                    // Random bodies for every type but the two that reset the bus (they have their own cases).
                    let t = UInt8(r32(26))
                    b[0] = t == 14 || t == 16 ? 9 : t; b[1] = 0; b[2] = 0; b[3] = 0
                }
                f.sendRaw(b, conn: r32(1) == 0 ? 1 : 4, vp: r32(2))
            default:
                // A well-formed message cut short.
                let whole = F.open(relID: relID, gpadl: gpadl, offset: 2).encoded()
                f.sendRaw(Array(whole.prefix(Int(r32(147)))))
            }
            if let m { f.send(m, conn: r32(1) == 0 ? 1 : 4, vp: r32(8) == 0 ? 2 : r32(1)) }
            if f.server.outbound.count > 500 { f.step(.posted(throughSequence: UInt64.max)) }
        }
        // The traffic reached the interesting states: channels handed to devices, opened, closed.
        let opens = f.log.filter { if case .openChannel = $0 { true } else { false } }.count
        let closes = f.log.filter { if case .closeChannel = $0 { true } else { false } }.count
        let torndown = F.messages(f.log).filter { if case .gpadlTorndown = $0 { true } else { false } }.count
        #expect(opens >= 10 && closes >= 5 && torndown >= 1, "opens \(opens), closes \(closes), torndown \(torndown)")
        // Whatever state it is in, a guest that unloads (the devices answering) and reconnects is served.
        for relID in f.server.channels.keys.sorted() { f.step(.openComplete(relID: relID, status: .unsuccessful)) }
        f.send(.unload)
        for relID in f.server.channels.keys.sorted() where f.server.channels[relID]?.request != nil {
            f.step(.closeComplete(relID: relID))
        }
        f.step(.posted(throughSequence: UInt64.max))
        #expect(f.server.connection == .disconnected)
        f.connect()
        #expect(f.drops > 0)
    }
}
