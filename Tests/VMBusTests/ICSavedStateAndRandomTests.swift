import FuzzSeeds
import Testing
@testable import VMBus

/// The IC saved state (round trips, a restarted pump continuing the conversation, hostile
/// bytes) and seeded random guest traffic against the pump.
@Suite("VMBus ICs: saved state and random guests")
struct ICSavedStateAndRandomTests {
    typealias Service = VMBusIntegrationService

    /// Services in many states: fresh, negotiating, ready with and without a request out,
    /// failed, shutdown answered.
    static func states() throws -> [Service.Saved] {
        var out: [Service.Saved] = []
        for kind in Service.Kind.allCases {
            var h = try ICHarness(kind)
            out.append(h.channel.save())
            _ = h.channel.start(h.clock)
            out.append(h.channel.save())
            h.guest.run()
            _ = h.channel.pump(h.clock)
            out.append(h.channel.save())
            h.guest.run()
            _ = h.channel.pump(h.clock)
            out.append(h.channel.save())
            if kind == .shutdown {
                _ = h.channel.requestShutdown(h.clock)
                out.append(h.channel.save())
                h.guest.run()
                _ = h.channel.pump(h.clock)
                out.append(h.channel.save())
            } else {
                h.guest.silent = true
                h.advance(seconds: 5)
                _ = h.channel.pump(h.clock)
                h.advance(seconds: 5)
                _ = h.channel.pump(h.clock)
                out.append(h.channel.save())
            }
            let failed = try ICHarness(kind) { $0.frameworkVersions = [] }
            _ = failed.negotiate()
            out.append(failed.channel.save())
        }
        return out
    }

    @Test func roundTripsAndLayout() throws {
        let all = try Self.states()
        #expect(all.count == 19)
        for s in all {
            let bytes = s.encoded()
            #expect(bytes.count == Service.Saved.headerSize + Service.Saved.bodySize)
            #expect(bytes.count == 168)
            #expect(bytes[0..<4] == [0x56, 0x4D, 0x49, 0x43])   // "VMIC"
            #expect(bytes[16] == UInt8(s.kind.rawValue))
            let back = try Service.Saved(decoding: bytes)
            #expect(back == s)
            #expect(back.encoded() == bytes)
        }
        let ready = try #require(all.first { $0.kind == .timesync && $0.phase == .ready && $0.outstanding != nil })
        let b = ready.encoded()
        #expect(b[16 + 2] == 2)                           // phase ready
        #expect(b[16 + 8..<16 + 16] == [3, 0, 0, 0, 4, 0, 0, 0])   // framework 3.0, message 4.0
        #expect(b[16 + 24] == 1 && b[16 + 26] == 4)       // a timesync request outstanding
    }

    @Test func restoredPumpContinuesTheConversation() throws {
        var h = try ICHarness(.heartbeat)
        _ = h.negotiate()
        h.advance(seconds: 5)
        _ = h.channel.pump(h.clock)                       // heartbeat 2 out, not answered yet
        let saved = try Service.Saved(decoding: h.channel.save().encoded())
        // A new worker: new pump over the same rings, restored service.
        let restored = try VMBusICChannel(service: Service(restoring: saved, h.clock), guestToHost: h.guestToHost,
                                          hostToGuest: h.hostToGuest)
        #expect(h.guest.run() == 1)
        let r = restored.pump(h.clock)
        #expect(r.events == [.heartbeat(sequence: 2)])
        #expect(restored.service.heartbeat.replies == 2 && restored.service.nextDeadline == h.now + 5_000_000_000)
        h.advance(seconds: 5)
        _ = restored.pump(h.clock)
        #expect(h.guest.run() == 1)
        #expect(restored.pump(h.clock).events == [.heartbeat(sequence: 3)])
        #expect(h.guest.requests.map(\.transactionID) == [1, 2, 3, 4])
    }

    @Test func restoredShutdownAnswerStillMatches() throws {
        let h = try ICHarness(.shutdown)
        _ = h.negotiate()
        _ = h.channel.requestShutdown(h.clock)
        let service = Service(restoring: h.channel.save(), h.clock)
        let restored = try VMBusICChannel(service: service, guestToHost: h.guestToHost, hostToGuest: h.hostToGuest)
        #expect(restored.requestShutdown(h.clock).0 == .alreadyPending)
        h.guest.run()
        _ = restored.pump(h.clock)
        #expect(restored.service.shutdown.state == .accepted)
    }

    @Test func headerAndFieldRefusals() throws {
        let good = try #require(try Self.states().first { $0.kind == .heartbeat && $0.phase == .ready && $0.outstanding != nil }).encoded()
        func decode(_ b: [UInt8]) -> VMBusSavedStateError? {
            do { _ = try Service.Saved(decoding: b); return nil } catch { return error }
        }
        func with(_ offset: Int, _ bytes: [UInt8]) -> [UInt8] {
            var b = good
            for (i, v) in bytes.enumerated() { b[offset + i] = v }
            return b
        }
        #expect(decode(good) == nil)
        #expect(decode(with(0, [0x56, 0x4D, 0x42, 0x53])) == .badMagic(0x5342_4D56))
        #expect(decode(with(4, [2, 0])) == .unsupportedVersion(2))
        #expect(decode(with(6, [1])) != nil)               // reserved
        #expect(decode(with(8, [151])) != nil)             // length
        #expect(decode(good + [0]) != nil)                 // trailing
        for n in 0..<good.count { #expect(decode(Array(good.prefix(n))) != nil) }
        let body = 16
        #expect(decode(with(body + 0, [2])) != nil)        // kind 2 (KVP) is not served
        #expect(decode(with(body + 2, [4])) != nil)        // phase
        #expect(decode(with(body + 4, [1])) != nil)        // failure outside failed
        #expect(decode(with(body + 8, [2])) != nil)        // framework 2.0 not offered
        #expect(decode(with(body + 12, [9])) != nil)       // message 9.0 not offered
        #expect(decode(with(body + 16, [0, 0, 0, 0, 0, 0, 0, 0])) != nil)   // next transaction id 0
        #expect(decode(with(body + 24, [2])) != nil)       // outstanding flag
        #expect(decode(with(body + 26, [3])) != nil)       // outstanding type not heartbeat
        #expect(decode(with(body + 28, [1])) != nil)       // reserved
        #expect(decode(with(body + 32, [0, 0, 0, 0, 0, 0, 0, 0])) != nil)   // outstanding id 0
        #expect(decode(with(body + 96, [4])) != nil)       // heartbeat flags
        #expect(decode(with(body + 100, [1])) != nil)      // reserved
        #expect(decode(with(body + 104, [1])) != nil)      // shutdown state on a heartbeat channel
        #expect(decode(with(body + 120, [1])) != nil)      // timesync counter on a heartbeat channel
    }

    @Test func randomAndDamagedBytesNeverTrapAndReencodeCanonically() throws {
        var rng = SeededRandom(seed: 0x1C_5A7E)
        let all = try Self.states()
        var decoded = 0
        for _ in 0..<4000 {
            var b = all[Int.random(in: 0..<all.count, using: &rng)].encoded()
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if let s = try? Service.Saved(decoding: b) {
                decoded += 1
                #expect(s.encoded() == b)
                // Whatever decodes restores and runs.
                var service = Service(restoring: s, Service.Clock(monotonic: 7))
                _ = service.poll(Service.Clock(monotonic: UInt64.max))
            }
        }
        #expect(decoded > 0)
        for _ in 0..<2000 {
            let b = rng.bytes(Int.random(in: 0...200, using: &rng))
            _ = try? Service.Saved(decoding: b)
        }
    }

    /// Random guests: well-framed packets with random payloads, real replies with random
    /// damage, random packet types and transaction ids, and now and then scribbles on the
    /// ring indices; time moves on. Nothing traps; the state stays one the service can be in;
    /// a channel once cut off stays cut off.
    @Test(arguments: [1, 2, 3, 4, 5, 6] as [UInt64])
    func seededRandomGuests(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        for kind in Service.Kind.allCases {
            var h = try ICHarness(kind, timing: Service.Timing(heartbeatInterval: 1_000_000_000, timesyncInterval: 1_000_000_000,
                                                               negotiateRetry: 2_000_000_000))
            var damageRate = 0
            h.guest.damage = { b, tid in
                guard Int.random(in: 0..<100, using: &rng) < damageRate else { return }
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: if !b.isEmpty { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
                case 1: tid = UInt64.random(in: 0...4, using: &rng)
                case 2: b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng)))
                default: if b.count > 25 { b[25] = 3 }
                }
            }
            _ = h.channel.start(h.clock)
            var cutOff = false, wasReady = false
            for step in 0..<400 {
                damageRate = step < 50 ? 0 : 30
                switch Int.random(in: 0..<10, using: &rng) {
                case 0...3:
                    h.guest.run()
                case 4:
                    let type = [VMBusPacketType.dataInBand, .completion, .dataUsingGPADirect][Int.random(in: 0..<3, using: &rng)]
                    let payload = rng.bytes(Int.random(in: 0...2200, using: &rng))
                    _ = h.guest.producer.tryWrite(type: type, transactionID: UInt64.random(in: 0...6, using: &rng), payload: payload)
                    _ = h.guest.producer.commit()
                case 5:
                    if Int.random(in: 0..<20, using: &rng) == 0 {
                        let ring = Bool.random(using: &rng) ? h.guestToHost : h.hostToGuest
                        ring.setControlU32(Int.random(in: 0..<2, using: &rng) * 4, UInt32.random(in: 0..<13000, using: &rng))
                    }
                case 6:
                    _ = h.channel.requestShutdown(h.clock)
                default:
                    h.advance(seconds: UInt64.random(in: 0...2, using: &rng))
                }
                let r = h.channel.pump(h.clock)
                if cutOff { #expect(r.cutOff && r.corruption == nil) }
                if r.cutOff { cutOff = true }
                let s = h.channel.service
                switch s.phase {
                case .ready:
                    wasReady = true
                    #expect(s.frameworkVersion != nil && s.messageVersion != nil)
                    if let o = s.outstanding { #expect(o.messageType == kind.messageType) }
                case .negotiating:
                    #expect(s.outstanding?.messageType == .negotiate)
                case .created, .failed:
                    #expect(s.outstanding == nil)
                }
                // The state saves, decodes and re-encodes at every step.
                let bytes = s.save().encoded()
                let back = try Service.Saved(decoding: bytes)
                #expect(back == s.save())
            }
            // The traffic reached the interesting states: negotiated, then hostile packets dropped.
            #expect(wasReady)
            #expect(h.channel.service.drops.total > 0 || cutOff)
        }
    }
}
