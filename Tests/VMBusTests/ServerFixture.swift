import FuzzSeeds
import HyperV
import Testing
@testable import VMBus

/// A deterministic generator for seeded random tests (SplitMix64, shared from FuzzSeeds).
typealias SeededRandom = SplitMix64

extension SplitMix64 {
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

/// A server with the guest's side done by hand: every step checks the invariants, and the
/// messages posted to the guest are decoded for the assertions.
struct ServerFixture {
    static let ramEnd: UInt64 = 0x100_0000     // 16 MiB of guest RAM at GPA 0
    static let scsi = VMBusGUID("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f")!
    static let shutdown = VMBusGUID("0e0b6031-5213-4934-818b-38d90ced39db")!
    static let offers = [
        VMBusOffer(interfaceType: scsi, interfaceInstance: VMBusGUID("00000000-0000-0000-0000-000000000001")!),
        VMBusOffer.pipe(interfaceType: shutdown, interfaceInstance: VMBusGUID("b6650ff7-33bc-4840-8048-e0676786f393")!),
    ]

    var server: VMBusServer
    /// Every action of every step, in order.
    var log: [VMBusServerAction] = []

    init(vpCount: Int = 2, limits: VMBusServer.Limits = VMBusServer.Limits(), offers: [VMBusOffer] = ServerFixture.offers) {
        server = VMBusServer(configuration: .init(vpCount: vpCount, ram: [0..<Self.ramEnd], limits: limits), offers: offers)
    }

    @discardableResult
    mutating func step(_ input: VMBusServerInput, sourceLocation: SourceLocation = #_sourceLocation) -> [VMBusServerAction] {
        let actions = server.handle(input)
        log += actions
        #expect(server.checkInvariants() == [], sourceLocation: sourceLocation)
        return actions
    }

    @discardableResult
    mutating func send(_ m: VMBusGuestMessage, conn: UInt32 = 1, vp: UInt32 = 0,
                       sourceLocation: SourceLocation = #_sourceLocation) -> [VMBusServerAction] {
        step(.message(VMBusPostedMessage(connectionID: conn, vp: vp, bytes: m.encoded())), sourceLocation: sourceLocation)
    }

    @discardableResult
    mutating func sendRaw(_ bytes: [UInt8], conn: UInt32 = 1, vp: UInt32 = 0, type: HvMessageType = .vmbus,
                          sourceLocation: SourceLocation = #_sourceLocation) -> [VMBusServerAction] {
        step(.message(VMBusPostedMessage(connectionID: conn, vp: vp, messageType: type, bytes: bytes)), sourceLocation: sourceLocation)
    }

    /// The messages among `actions`, decoded, with their VPs.
    static func posted(_ actions: [VMBusServerAction]) -> [(vp: UInt32, message: VMBusHostMessage)] {
        actions.compactMap {
            guard case .post(let m) = $0, let d = try? VMBusHostMessage.decode(m.bytes) else { return nil }
            return (m.vp, d)
        }
    }

    static func messages(_ actions: [VMBusServerAction]) -> [VMBusHostMessage] { posted(actions).map(\.message) }

    static func contact(_ v: VMBusVersion, target: UInt32 = 0, sint: UInt64 = 2) -> VMBusGuestMessage {
        .initiateContact(VMBusInitiateContact(versionRequested: v, targetVCPU: target,
                                              interruptPageOrMessageSINT: v >= .win10_v5 ? sint : 0,
                                              monitorPage1: 0x8000, monitorPage2: 0x9000))
    }

    /// INITIATE_CONTACT at `v` (accepted) and REQUESTOFFERS.
    mutating func connect(_ v: VMBusVersion = .win10_v5_3, target: UInt32 = 0) {
        let r = Self.messages(send(Self.contact(v, target: target), conn: v >= .win10_v5 ? 4 : 1))
        #expect(r == [.versionResponse(VMBusVersionResponse(versionSupported: true, messageConnectionID: v >= .win10_v5 ? 1 : 0))])
        let offers = Self.messages(send(.requestOffers))
        #expect(offers.count == server.channels.count + 1 && offers.last == .allOffersDelivered)
    }

    /// The messages Linux sends for a GPADL of `pfns` (one range, offset 0): a header with up
    /// to 26 PFNs, then bodies of up to 28.
    static func gpadlMessages(relID: UInt32, gpadl: UInt32, pfns: [UInt64]) -> [VMBusGuestMessage] {
        let words = [UInt64(pfns.count * 4096)] + pfns
        var out: [VMBusGuestMessage] = [.gpadlHeader(VMBusGPADLHeader(childRelID: relID, gpadl: gpadl,
                                                                      rangeBufferLength: UInt16(words.count * 8), rangeCount: 1,
                                                                      words: Array(words.prefix(27))))]
        var rest = words.dropFirst(27)
        while !rest.isEmpty {
            out.append(.gpadlBody(VMBusGPADLBody(gpadl: gpadl, words: Array(rest.prefix(28)))))
            rest = rest.dropFirst(28)
        }
        return out
    }

    /// Builds a GPADL and returns what the last message produced.
    @discardableResult
    mutating func gpadl(relID: UInt32, id: UInt32, pfns: [UInt64], sourceLocation: SourceLocation = #_sourceLocation) -> [VMBusServerAction] {
        var last: [VMBusServerAction] = []
        for m in Self.gpadlMessages(relID: relID, gpadl: id, pfns: pfns) { last = send(m, sourceLocation: sourceLocation) }
        return last
    }

    static func open(relID: UInt32, gpadl: UInt32, vp: UInt32 = 0, offset: UInt32) -> VMBusGuestMessage {
        .openChannel(VMBusOpenChannel(childRelID: relID, openID: relID, ringBufferGPADLHandle: gpadl, targetVP: vp,
                                      downstreamRingBufferPageOffset: offset))
    }

    /// Connect, build a 64-page ring GPADL for relid 1, open it and let the device accept.
    mutating func openSCSI(_ v: VMBusVersion = .win10_v5_3) {
        connect(v)
        gpadl(relID: 1, id: 0xE1E10, pfns: (0..<64).map { 0x100 + UInt64($0) })
        send(Self.open(relID: 1, gpadl: 0xE1E10, offset: 32))
        step(.openComplete(relID: 1, status: .success))
    }

    var drops: UInt64 { server.drops.total }
}
