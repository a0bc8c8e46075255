// The VMBus control plane (`VMBusServer`, Sources/VMBus) as the VMBus worker drives it: guest
// control messages on a connection from a VP, the devices' answers, the shell's delivery
// receipts, host rescinds, and save/restore of a restarted worker. A header, then operations:
//
//   header: u8 VP count - 1 (% 4), u8 offers - 1 (% 4), u8 limits (0: default, else small)
//    0  raw message:  u8 connection (low 2 bits: 1, 4, 0, or the other 6 bits), u8 VP,
//                     u8 (bit 0: HvMessageType 2 instead of 1), u8 length, bytes
//    1  INITIATE_CONTACT: u8 version (index into the known list, or raw), u8 target VP, u8 SINT,
//                         u8 monitor pages (bit 0 page 1, bit 1 page 2), u8 sender VP
//    2  REQUESTOFFERS   u8 VP
//    3  GPADL_HEADER + bodies: u8 relid, u8 handle, u8 pages, u8 shape (below), u8 words in the header
//    4  GPADL_BODY: u8 handle, u8 count, count u64 words
//    5  GPADL_TEARDOWN: u8 relid, u8 handle
//    6  OPENCHANNEL: u8 relid, u8 openid, u8 handle, u8 target VP, u8 downstream offset
//    7  CLOSECHANNEL u8 relid        8  RELID_RELEASED u8 relid      9  MODIFYCHANNEL u8 relid, u8 VP
//   10  UNLOAD u8 VP                11  openComplete: u8 relid, u8 status (bit 0 failure)
//   12  closeComplete u8 relid      13  posted: u8 (0: all, else the oldest n)
//   14  rescind u8 relid (bit 7 set: instead, the device asks for u8 % 6 sub-channels of the relid)
//   15  save -> encode -> decode -> restore, continue on the copy
//   16  decode arbitrary bytes as a saved state: u16 length (% 2048), bytes; restore what decodes
//   17  the current saved state with bytes flipped: u8 count, count × (u16 offset, u8 xor)
//
// GPADL shape bits: 0 a PFN outside RAM (with bit 7: in the hole between the two RAM ranges),
// 1 byte_offset 8, 2 byte_count one short, 3 two ranges, 4 range_buflen one word short; bits 5-7
// n put the first PFN at 16 + 64 n. Relids and handles are small (relid % 8, handle % 8 + 0xE1E10)
// so they collide with the server's own; the well-formed messages come from VP (u8 % 5) or VP 0.
// Relid 1 may have three sub-channels, at relids 5, 6 and 7 (the offers take at most 1...4).
//
// Checked after every step: `checkInvariants()` is empty; every posted message goes to a VP that
// exists and decodes; every device action names a channel in the matching state; a saved state
// encodes, decodes to itself and re-encodes to the same bytes, and restores to a server that
// saves the same; a decoded saved state re-encodes to the bytes it came from; a restore that
// succeeds yields a consistent server.
import FuzzSupport
import HyperV
import VMBus

let ramBytes: UInt64 = 16 << 20
let ramPages = ramBytes / 4096

func guid(_ n: UInt8) -> VMBusGUID { VMBusGUID(wireBytes: (0..<16).map { UInt8($0) &+ n })! }

func header(_ type: VMBusMessageType) -> [UInt8] { le32(type.rawValue) + le32(0) }
func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }

func relid(_ b: UInt8) -> UInt32 { UInt32(b % 8) }
func handle(_ b: UInt8) -> UInt32 { 0xE1E10 + UInt32(b % 8) }

struct Harness {
    var server: VMBusServer
    let configuration: VMBusServer.Configuration
    var vpCount: Int { configuration.vpCount }

    mutating func step(_ input: VMBusServerInput) {
        let actions = server.handle(input)
        check(actions)
    }

    mutating func message(_ bytes: [UInt8], vp: UInt8, connection: UInt32 = VMBusMessageConnection.id) {
        step(.message(VMBusPostedMessage(connectionID: connection, vp: UInt32(vp % 5), bytes: bytes)))
    }

    func check(_ actions: [VMBusServerAction]) {
        let problems = server.checkInvariants()
        precondition(problems.isEmpty, "invariants: \(problems)")
        for a in actions {
            switch a {
            case .post(let m):
                precondition(Int(m.vp) < vpCount, "message to VP \(m.vp)")
                precondition(m.bytes.count >= 8 && m.bytes.count <= 240, "message of \(m.bytes.count) bytes")
                precondition((try? VMBusHostMessage.decode(m.bytes)) != nil, "posted message does not decode")
            case .openChannel(let o):
                guard let ch = server.channels[o.relID] else { preconditionFailure("open of unknown relid \(o.relID)") }
                switch ch.state {
                case .opening: precondition(!o.restored, "a new open marked restored")
                case .open: precondition(o.restored, "an open channel handed over again")
                default: preconditionFailure("open of relid \(o.relID) in state \(ch.state)")
                }
                precondition(Int(o.targetVP) < vpCount, "open to VP \(o.targetVP)")
                precondition(o.connectionID == ch.connectionID, "open with another connection id")
                precondition(o.downstreamPageOffset >= 2 && Int(o.downstreamPageOffset) + 2 <= o.ringPFNs.count,
                             "open with downstream offset \(o.downstreamPageOffset) of \(o.ringPFNs.count)")
                precondition(o.ringPFNs.allSatisfy { $0 < ramPages }, "ring page outside RAM")
                precondition(VMBusChannelRings.split(pfns: o.ringPFNs, downstreamPageOffset: o.downstreamPageOffset) != nil,
                             "ring does not split")
            case .closeChannel(let r):
                guard let ch = server.channels[r], case .closing = ch.state else {
                    preconditionFailure("close of relid \(r) not closing")
                }
            case .modifyChannel(let r, let vp):
                guard let ch = server.channels[r], case .open(let req) = ch.state else {
                    preconditionFailure("modify of relid \(r) not open")
                }
                precondition(req.targetVP == vp && Int(vp) < vpCount, "modify to VP \(vp)")
            case .log(let line):
                precondition(!line.isEmpty, "empty log line")
            }
        }
    }

    /// Save, encode, decode, restore: the copy must be the same server.
    mutating func roundTrip() {
        let saved = server.save()
        let bytes = saved.encoded()
        let decoded: VMBusServer.Saved
        do { decoded = try VMBusServer.Saved(decoding: bytes) } catch { preconditionFailure("own saved state: \(error)") }
        precondition(decoded == saved, "saved state changed through encode/decode")
        precondition(decoded.encoded() == bytes, "saved state re-encodes differently")
        let restored: (VMBusServer, [VMBusServerAction])
        do { restored = try VMBusServer.restore(decoded, configuration: configuration) } catch {
            preconditionFailure("own saved state refused: \(error)")
        }
        precondition(restored.0.save() == saved, "restored server differs")
        server = restored.0
        check(restored.1)
    }

    /// Arbitrary bytes as a saved state: no trap; what decodes re-encodes to the same bytes;
    /// what restores is consistent.
    func hostileSaved(_ bytes: [UInt8]) {
        guard let saved = try? VMBusServer.Saved(decoding: bytes) else { return }
        precondition(saved.encoded() == bytes, "a decoded saved state re-encodes differently")
        guard let (s, actions) = try? VMBusServer.restore(saved, configuration: configuration) else { return }
        var h = Harness(server: s, configuration: configuration)
        h.check(actions)
        h.roundTrip()
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVMBusServer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let vpCount = 1 + input.below(4)
    let offers = (0...input.below(4)).map { VMBusOffer.pipe(interfaceType: guid(0x10), interfaceInstance: guid(UInt8($0))) }
    let l = input.u8()
    let limits = l == 0 ? VMBusServer.Limits()
        : VMBusServer.Limits(maxOutbound: 2 + Int(l & 7), maxGPADLs: 1 + Int(l >> 3 & 3), maxGPADLWords: 8 + Int(l >> 5) * 8)
    let configuration = VMBusServer.Configuration(vpCount: vpCount, ram: [0..<ramBytes / 2, ramBytes / 2 + 4096..<ramBytes],
                                                  limits: limits, subChannelRelIDs: [1: [5, 6, 7]])
    var h = Harness(server: VMBusServer(configuration: configuration, offers: offers), configuration: configuration)
    h.check([])
    var ops = 0
    while !input.isEmpty, ops < 256 {
        ops += 1
        operation(&h, &input)
    }
    return 0
}

func operation(_ h: inout Harness, _ input: inout FuzzInput) {
    switch input.u8() % 19 {
    case 0:
        let c = input.u8()
        let connection: UInt32 = [VMBusMessageConnection.id, VMBusMessageConnection.id4, 0, UInt32(c >> 2)][Int(c & 3)]
        let vp = UInt32(input.u8())
        let type: HvMessageType = input.bool() ? HvMessageType(rawValue: 2) : .vmbus
        let bytes = input.take(Int(input.u8()))
        h.step(.message(VMBusPostedMessage(connectionID: connection, vp: vp, messageType: type, bytes: bytes)))
    case 1:
        let v = input.u8()
        let known = VMBusVersion.supported
        let version = Int(v) < known.count * 2 ? known[Int(v) % known.count] : VMBusVersion(rawValue: UInt32(v) << 16 | UInt32(v & 7))
        let target = UInt32(input.u8() % 5), sint = input.u8() % 4, pages = input.u8(), vp = input.u8()
        let bytes = header(.initiateContact) + le32(version.rawValue) + le32(target) + le64(UInt64(sint == 0 ? 2 : sint))
            + le64(pages & 1 != 0 ? 0x10_0000 : 0) + le64(pages & 2 != 0 ? 0x10_1000 : 0)
        h.message(bytes, vp: vp, connection: pages & 4 != 0 ? VMBusMessageConnection.id4 : VMBusMessageConnection.id)
    case 2:
        h.message(header(.requestOffers), vp: input.u8())
    case 3:
        gpadl(&h, &input)
    case 4:
        let g = handle(input.u8())
        let words = (0..<Int(input.u8() % 29)).map { _ in UInt64(input.u16()) }
        h.message(header(.gpadlBody) + le32(0) + le32(g) + words.flatMap(le64), vp: 0)
    case 5:
        let r = relid(input.u8()), g = handle(input.u8())
        h.message(header(.gpadlTeardown) + le32(r) + le32(g), vp: 0)
    case 6:
        let r = relid(input.u8()), openID = UInt32(input.u8()), g = handle(input.u8())
        let vp = UInt32(input.u8() % 5), offset = UInt32(input.u8() % 10)
        h.message(header(.openChannel) + le32(r) + le32(openID) + le32(g) + le32(vp) + le32(offset)
                  + [UInt8](repeating: 0xAB, count: 120), vp: 0)
    case 7:
        h.message(header(.closeChannel) + le32(relid(input.u8())), vp: 0)
    case 8:
        h.message(header(.relIDReleased) + le32(relid(input.u8())), vp: 0)
    case 9:
        let r = relid(input.u8())
        h.message(header(.modifyChannel) + le32(r) + le32(UInt32(input.u8() % 5)), vp: 0)
    case 10:
        h.message(header(.unload), vp: input.u8())
    case 11:
        let r = relid(input.u8())
        h.step(.openComplete(relID: r, status: input.bool() ? .unsuccessful : .success))
    case 12:
        h.step(.closeComplete(relID: relid(input.u8())))
    case 13:
        let n = Int(input.u8())
        let out = h.server.outbound
        if let last = n == 0 ? out.last : out.prefix(n).last { h.step(.posted(throughSequence: last.sequence)) }
    case 14:
        let b = input.u8()
        if b & 0x80 != 0 {
            h.step(.offerSubChannels(primaryRelID: relid(b), total: UInt16(input.u8() % 6)))
        } else {
            h.step(.rescind(relID: relid(b)))
        }
    case 15:
        h.roundTrip()
    case 16:
        h.hostileSaved(input.take(Int(input.u16() % 2048)))
    case 18:
        // The VMBus worker's envelope around the server's state (VMBusWorkerSaved): its own bytes
        // round-trip; damaged bytes never trap, and what decodes re-encodes to the same bytes.
        var devices: [UInt32: [UInt8]] = [:]
        for _ in 0..<Int(input.u8() % 4) {
            let bytes = input.take(1 + Int(input.u8()))
            if !bytes.isEmpty { devices[1 + UInt32(input.u8() % 8)] = bytes }
        }
        let saved = VMBusWorkerSaved(inboundNext: input.u64(), outboundBase: input.u64(), server: h.server.save(), devices: devices)
        var bytes = saved.encoded()
        precondition((try? VMBusWorkerSaved(decoding: bytes)) == saved, "the worker's own state does not round-trip")
        for _ in 0..<Int(input.u8() % 8) {
            let at = Int(input.u16()) % bytes.count
            bytes[at] ^= input.u8()
        }
        if let decoded = try? VMBusWorkerSaved(decoding: bytes) {
            precondition(decoded.encoded() == bytes, "a decoded worker state re-encodes differently")
        }
    default:
        var bytes = h.server.save().encoded()
        for _ in 0..<Int(input.u8() % 8) {
            let at = Int(input.u16()) % bytes.count
            bytes[at] ^= input.u8()
        }
        h.hostileSaved(bytes)
    }
}

/// GPADL_HEADER, then as many GPADL_BODY messages as the rest of the words need.
func gpadl(_ h: inout Harness, _ input: inout FuzzInput) {
    let r = relid(input.u8()), g = handle(input.u8())
    let pages = 1 + Int(input.u8() % 40)
    let shape = input.u8()
    let inHeader = Int(input.u8() % 28)
    let base = UInt64(16 + Int(shape >> 5) * 64)
    var pfns = (0..<pages).map { base + UInt64($0) }
    if shape & 1 != 0 { pfns[pages / 2] = shape & 0x80 != 0 ? ramPages / 2 : ramPages + 3 }
    var byteCount = UInt64(pages) * 4096, byteOffset: UInt64 = 0
    if shape & 2 != 0 { byteOffset = 8; byteCount -= 8 }
    if shape & 4 != 0 { byteCount -= 1 }
    var words = [byteCount | byteOffset << 32] + pfns
    var rangeCount: UInt16 = 1
    if shape & 8 != 0 { words += [4096, base + 100]; rangeCount = 2 }
    var buflen = words.count * 8
    if shape & 16 != 0 { buflen -= 8 }
    let first = Array(words.prefix(inHeader))
    h.message(header(.gpadlHeader) + le32(r) + le32(g) + le16(UInt16(truncatingIfNeeded: buflen)) + le16(rangeCount)
              + first.flatMap(le64), vp: 0)
    var rest = words.dropFirst(first.count)
    while !rest.isEmpty {
        let chunk = rest.prefix(28)
        rest = rest.dropFirst(chunk.count)
        h.message(header(.gpadlBody) + le32(0) + le32(g) + chunk.flatMap(le64), vp: 0)
    }
}
