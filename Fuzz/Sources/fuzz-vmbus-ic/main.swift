// The VMBus integration services (`VMBusICChannel` over `VMBusIntegrationService`,
// Sources/VMBus): one IC channel's pump over two flat rings whose control pages and data the
// input scribbles on between operations, with a guest that answers like Linux hv_utils (its
// replies damaged at will) or writes whatever packets the input holds; time passes; the state
// is saved, decoded and restored into a new pump over the same rings.
//
// Header: u8 kind (% 3: heartbeat, shutdown, timesync), u8 ring size (each ring's data area is
// 8 × (32 + 2 × n) bytes: 256...4336, so a 2088-byte shutdown request sometimes does not fit).
// Operations:
//
//   0  guest packet: u8 type (bit 7 clear: INBAND; else u8 % 14), u8 transaction id,
//      u16 length (% 4200), bytes
//   1  guest answers every host packet as Linux does (negotiate with Linux's lists, heartbeat
//      seq + 1, shutdown S_OK/E_FAIL, timesync), then u8 damage: 0 none, else one byte of each
//      reply at u16 offset set to u8 value, or (bit 7 of the damage) the transaction id + 1
//   2  pump                               3  time passes: u16 milliseconds × 16
//   4  request shutdown: u8 flags (% 8)   5  guest reads host packets and drops them
//   6  scribble a control field: u8 ring (bit 0: host-to-guest), u8 which (write_index,
//      read_index, interrupt_mask, pending_send_sz, feature bits), u32 value (bit 31 set:
//      value % (size + 16))
//   7  scribble data: u8 ring, u16 offset, u8 length (% 32), bytes
//   8  save, decode, restore into a new pump over the same rings (when the rings re-attach)
//   9  decode arbitrary bytes as a saved state: u8 length, bytes; or (length 0) the current
//      state with u8 count flips of {u8 offset, u8 xor}
//
// Checked: nothing traps (ASan: no access outside the rings and the payload buffer); the
// service is always in a state it can be in (negotiating with a NEGOTIATE outstanding, ready
// with versions it offered and only its own request type outstanding, none otherwise); a pump
// once cut off stays cut off and reports its corruption once; the saved state decodes to
// itself and re-encodes to the same bytes; any bytes that decode re-encode to themselves.
import FuzzSupport
import VMBus

typealias Service = VMBusIntegrationService
typealias Channel = VMBusICChannel<VMBusFlatRingMemory>

let controlFields = [0, 4, 8, 12, 64]

/// Linux hv_utils, as much as the host can observe of it.
final class Guest {
    let kind: Service.Kind
    var consumer: VMBusRingConsumer<VMBusFlatRingMemory>?
    var producer: VMBusRingProducer<VMBusFlatRingMemory>?
    var timesync4 = false

    init(kind: Service.Kind, hostToGuest: VMBusFlatRingMemory, guestToHost: VMBusFlatRingMemory) {
        self.kind = kind
        consumer = try? VMBusRingConsumer(memory: hostToGuest)
        producer = try? VMBusRingProducer(memory: guestToHost)
    }

    func read(answer: Bool, damage: (inout [UInt8], inout UInt64) -> Void) {
        guard let consumer else { return }
        var buffer: [UInt8] = []
        while case .packet(let p) = consumer.next() {
            let payload = p.payload
            guard payload.count <= 4096 else { continue }
            buffer = [UInt8](repeating: 0, count: payload.count)
            guard buffer.withUnsafeMutableBytes({ payload.copyBytes(to: $0) }) else { continue }
            var tid = p.descriptor.transactionID
            guard answer, reply(&buffer) else { continue }
            damage(&buffer, &tid)
            _ = producer?.tryWrite(type: .dataInBand, transactionID: tid, payload: buffer)
        }
        _ = consumer.commit()
        _ = producer?.commit()
    }

    private func u16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    private func put16(_ b: inout [UInt8], _ o: Int, _ v: UInt16) { b[o] = UInt8(v & 0xFF); b[o + 1] = UInt8(v >> 8) }

    private func reply(_ b: inout [UInt8]) -> Bool {
        guard b.count >= 28 else { return false }
        let type = u16(b, 12)
        if type == 0 {
            guard b.count >= 44 else { return false }
            let fw = Int(u16(b, 28)), msg = Int(u16(b, 30))
            var found: (VMBusICVersion, VMBusICVersion)?
            if fw <= 100, msg <= 100, 36 + 4 * (fw + msg) <= b.count {
                let offered = (0..<(fw + msg)).map { VMBusICVersion(u16(b, 36 + 4 * $0), u16(b, 38 + 4 * $0)) }
                let mine: [VMBusICVersion] = switch kind {
                case .heartbeat: [VMBusICVersion(3, 0), VMBusICVersion(1, 0)]
                case .shutdown: [VMBusICVersion(3, 2), VMBusICVersion(3, 1), VMBusICVersion(3, 0), VMBusICVersion(1, 0)]
                case .timesync: [VMBusICVersion(4, 0), VMBusICVersion(3, 0), VMBusICVersion(1, 0)]
                }
                if let f = [VMBusICVersion(3, 0), VMBusICVersion(1, 0)].first(where: { offered[..<fw].contains($0) }),
                   let m = mine.first(where: { offered[fw...].contains($0) }) {
                    found = (f, m)
                }
            }
            put16(&b, 18, 16)
            put16(&b, 28, found == nil ? 0 : 1)
            put16(&b, 30, found == nil ? 0 : 1)
            if let (f, m) = found {
                put16(&b, 36, f.major); put16(&b, 38, f.minor); put16(&b, 40, m.major); put16(&b, 42, m.minor)
                timesync4 = m >= VMBusICVersion(4, 0)
            }
        } else if type == Service.Kind.heartbeat.rawValue {
            guard b.count >= 36 else { return false }
            var seq: UInt64 = 0
            for i in 0..<8 { seq |= UInt64(b[28 + i]) << (8 * UInt64(i)) }
            seq &+= 1
            for i in 0..<8 { b[28 + i] = UInt8(truncatingIfNeeded: seq >> (8 * UInt64(i))) }
        } else if type == Service.Kind.shutdown.rawValue {
            guard b.count >= 2088 else { return false }
            b[23] = b[36] <= 3 ? 0 : 0x80; b[20] = b[36] <= 3 ? 0 : 0x05; b[21] = b[36] <= 3 ? 0 : 0x40
        } else if type == Service.Kind.timesync.rawValue {
            guard b.count >= (timesync4 ? 50 : 53) else { return false }
        }
        b[25] = 5
        return true
    }
}

func checkState(_ s: Service) {
    switch s.phase {
    case .created, .failed:
        precondition(s.outstanding == nil, "a request outstanding in \(s.phase)")
    case .negotiating:
        precondition(s.outstanding?.messageType == .negotiate, "negotiating without a NEGOTIATE outstanding")
    case .ready:
        guard let fw = s.frameworkVersion, let msg = s.messageVersion else { preconditionFailure("ready without versions") }
        precondition(VMBusICVersion.frameworkVersions.contains(fw) && s.kind.messageVersions.contains(msg), "versions not offered")
        if let o = s.outstanding { precondition(o.messageType == s.kind.messageType, "a \(o.messageType) outstanding on \(s.kind)") }
    }
    let saved = s.save()
    let bytes = saved.encoded()
    guard let back = try? Service.Saved(decoding: bytes) else { preconditionFailure("own saved state does not decode") }
    precondition(back == saved && back.encoded() == bytes, "saved state does not round-trip")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVMBusIC(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let kind = Service.Kind.allCases[input.below(3)]
    let dataCount = 8 * (32 + 2 * Int(input.u8()))
    let g2h = try! VMBusFlatRingMemory(dataCount: dataCount), h2g = try! VMBusFlatRingMemory(dataCount: dataCount)
    for m in [g2h, h2g] { m.control.storeBytes(of: UInt32(1), toByteOffset: 64, as: UInt32.self) }
    let timing = Service.Timing(heartbeatInterval: 1_000_000_000, timesyncInterval: 1_000_000_000, negotiateRetry: 2_000_000_000)
    guard var channel = try? Channel(service: Service(kind: kind, timing: timing), guestToHost: g2h, hostToGuest: h2g) else {
        preconditionFailure("zeroed rings do not attach")
    }
    var guest = Guest(kind: kind, hostToGuest: h2g, guestToHost: g2h)
    var clock = Service.Clock(monotonic: 1_000_000_000, unixNanoseconds: 1_767_225_600_000_000_000, referenceTime: 1)
    var cutOff = false
    func note(_ r: Channel.Result) {
        if cutOff { precondition(r.cutOff && r.corruption == nil, "a cut-off channel came back or reported twice") }
        if r.corruption != nil { precondition(r.cutOff, "corruption without cut-off") }
        if r.cutOff { cutOff = true }
        checkState(channel.service)
    }
    note(channel.start(clock))
    var ops = 0
    while !input.isEmpty, ops < 256 {
        ops += 1
        switch input.u8() % 10 {
        case 0:
            let t = input.u8()
            let type = VMBusPacketType(rawValue: t & 0x80 == 0 ? 6 : UInt16(input.u8() % 14))
            let tid = UInt64(input.u8())
            let payload = input.take(Int(input.u16()) % 4200)
            _ = guest.producer?.tryWrite(type: type, transactionID: tid, payload: payload)
            _ = guest.producer?.commit()
        case 1:
            let damage = input.u8()
            let at = Int(input.u16()), value = input.u8()
            guest.read(answer: true) { b, tid in
                guard damage != 0 else { return }
                if damage & 0x80 != 0 { tid &+= 1 } else if !b.isEmpty { b[at % b.count] = value }
            }
        case 2:
            note(channel.pump(clock))
        case 3:
            let ms = UInt64(input.u16()) * 16
            clock.monotonic &+= ms * 1_000_000
            clock.unixNanoseconds &+= Int64(ms) * 1_000_000
            clock.referenceTime &+= ms * 10_000
            note(channel.pump(clock))
        case 4:
            let flags = UInt32(input.u8() % 8)
            let (answer, r) = channel.requestShutdown(clock, message: VMBusICShutdownMessage(flags: .init(rawValue: flags)))
            note(r)
            if case .sent = answer { precondition(kind == .shutdown && channel.service.shutdown.state == .requested, "sent without state") }
        case 5:
            guest.read(answer: false) { _, _ in }
        case 6:
            let ring = input.bool() ? h2g : g2h
            let field = controlFields[input.below(controlFields.count)]
            var value = input.u32()
            if value & 0x8000_0000 != 0 { value %= UInt32(dataCount + 16) }
            ring.control.storeBytes(of: value.littleEndian, toByteOffset: field, as: UInt32.self)
        case 7:
            let ring = input.bool() ? h2g : g2h
            let at = Int(input.u16()) % dataCount
            for (i, b) in input.take(Int(input.u8() % 32)).enumerated() {
                ring.dataRun(at: (at + i) % dataCount).baseAddress!.storeBytes(of: b, as: UInt8.self)
            }
        case 8:
            guard let saved = try? Service.Saved(decoding: channel.save().encoded()) else { preconditionFailure("own state") }
            let service = Service(restoring: saved, timing: timing, clock)
            precondition(service.save() == Service.Saved(restoringCheck: saved, clock), "restore changed the state")
            if let c = try? Channel(service: service, guestToHost: g2h, hostToGuest: h2g) {
                channel = c
                cutOff = false
                guest = Guest(kind: kind, hostToGuest: h2g, guestToHost: g2h)
                checkState(channel.service)
            }
        default:
            let n = Int(input.u8())
            var bytes: [UInt8]
            if n == 0 {
                bytes = channel.save().encoded()
                for _ in 0..<Int(input.u8() % 8) {
                    let at = Int(input.u8()) % bytes.count
                    bytes[at] ^= input.u8()
                }
            } else {
                bytes = input.take(n)
            }
            if let s = try? Service.Saved(decoding: bytes) {
                precondition(s.encoded() == bytes, "decoded bytes re-encode differently")
                var restored = Service(restoring: s, timing: timing, clock)
                checkState(restored)
                _ = restored.poll(Service.Clock(monotonic: UInt64.max))
                checkState(restored)
            }
        }
    }
    return 0
}

extension Service.Saved {
    /// What a restore at `clock` must save: the same, with the outstanding request's time reset.
    init(restoringCheck s: Service.Saved, _ clock: Service.Clock) {
        self = s
        if var o = s.outstanding {
            o.sentAt = clock.monotonic
            outstanding = o
        }
    }
}
