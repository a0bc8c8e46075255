import IPC

/// The byte form of `VMBusServer.Saved`, by the `WireRecord` rules: little-endian fields at
/// fixed offsets, reserved and unused fields zero, counts checked before they size anything,
/// no trailing bytes. Decoding treats the bytes as hostile (a predecessor that parsed guest
/// bytes wrote them) and accepts exactly what `encoded()` produces: `decode` then `encoded()`
/// gives the same bytes back.
///
/// ```
/// header (16 bytes)
///    0 u32 magic "VMBS"   4 u16 layout version (1)   6 u16 reserved   8 u32 body length   12 u32 reserved
/// body
///    connection (88 bytes)
///       0 u32 kind: 0 disconnected, 1 connected, 2 resetting
///       4 u32 flags: bit 0 offers sent                       } connected only,
///       8 u32 version   12 u32 target VP                      } else zero
///      16 u64 monitor page 1   24 u64 monitor page 2          }
///      32 u32 pending: 0 none, 1 unload, 2 contact            } resetting only,
///      36 u32 reply VP (unload) / sending VP (contact)        } else zero
///      40 u32 contact connection id   44 u32 contact version  } contact only,
///      48 u32 contact target_vcpu   52 u32 reserved           } else zero
///      56 u64 contact interrupt page / msg_sint
///      64 u64 contact monitor page 1   72 u64 contact monitor page 2
///      80 u64 next outbound sequence
///    u32 channel count (<= 2047), u32 reserved, then per channel (312 bytes):
///       0 u32 relid   4 u16 flags (bit 0 revoked, bit 1 released)   6 u16 state: 0 closed,
///         1 opening, 2 open, 3 closing   8 u64 reserved
///      16 if_type (16)   32 if_instance (16)   48 u16 chn_flags   50 u16 mmio_megabytes
///      52 u16 sub_channel_index   54 u16 reserved   56 user_def (120)
///     176 u32 openid   180 u32 ring gpadl   184 u32 target VP   188 u32 downstream offset
///     192 userdata (120)                      (176...311 zero when closed)
///    u32 gpadl count (<= 65535), u32 reserved, then per GPADL (24 + 8n bytes):
///       0 u32 handle   4 u32 relid   8 u32 state: 0 building, 1 created, 2 tearing down
///      12 u16 range count   14 u16 reserved   16 u32 expected words (<= 8191)   20 u32 n (<= expected)
///      24 n u64 words
///    u32 outbound count (<= 65535), u32 reserved, then per message (16 + length rounded up to 8):
///       0 u64 sequence   8 u32 VP   12 u32 length (8...240)   16 bytes, zero padding
/// ```
extension VMBusServer.Saved {
    /// "VMBS" in memory order.
    public static let magic: UInt32 = 0x5342_4D56
    public static let layoutVersion: UInt16 = 1
    static let headerSize = 16
    static let channelEntrySize = 312
    static let maxGPADLs = 65535
    static let maxOutbound = 65535
    /// range_buflen is a u16: a GPADL has at most this many words.
    static let maxWordsPerGPADL = Int(UInt16.max) / 8
    /// Labels `WireError`s from this codec.
    static let label: UInt16 = 0

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        encodeConnection(&w)
        w.u32(UInt32(channels.count)); w.u32(0)
        for ch in channels { Self.encode(ch, &w) }
        w.u32(UInt32(gpadls.count)); w.u32(0)
        for g in gpadls {
            w.u32(g.id); w.u32(g.relID); w.u32(g.state.rawValue); w.u16(g.rangeCount); w.u16(0)
            w.u32(UInt32(g.expectedWords)); w.u32(UInt32(g.words.count))
            for word in g.words { w.u64(word) }
        }
        w.u32(UInt32(outbound.count)); w.u32(0)
        for m in outbound {
            w.u64(m.sequence); w.u32(m.vp); w.u32(UInt32(m.bytes.count))
            w.raw(m.bytes + [UInt8](repeating: 0, count: Self.padding(m.bytes.count)))
        }
        var h = WireWriter()
        h.u32(Self.magic); h.u16(Self.layoutVersion); h.u16(0); h.u32(UInt32(w.bytes.count)); h.u32(0)
        return h.bytes + w.bytes
    }

    private func encodeConnection(_ w: inout WireWriter) {
        var kind: UInt32 = 0, flags: UInt32 = 0, version: UInt32 = 0, target: UInt32 = 0, m1: UInt64 = 0, m2: UInt64 = 0
        var pending: UInt32 = 0, pendingVP: UInt32 = 0
        var contact: (conn: UInt32, c: VMBusInitiateContact)? = nil
        switch connection {
        case .disconnected: break
        case .connected(let c):
            kind = 1; flags = c.offersSent ? 1 : 0; version = c.version.rawValue; target = c.targetVP
            m1 = c.monitorPage1; m2 = c.monitorPage2
        case .resetting(.unload(let vp)):
            kind = 2; pending = 1; pendingVP = vp
        case .resetting(.contact(let c, let conn, let vp)):
            kind = 2; pending = 2; pendingVP = vp; contact = (conn, c)
        }
        w.u32(kind); w.u32(flags); w.u32(version); w.u32(target); w.u64(m1); w.u64(m2)
        w.u32(pending); w.u32(pendingVP)
        w.u32(contact?.conn ?? 0); w.u32(contact?.c.versionRequested.rawValue ?? 0)
        w.u32(contact?.c.targetVCPU ?? 0); w.u32(0)
        w.u64(contact?.c.interruptPageOrMessageSINT ?? 0)
        w.u64(contact?.c.monitorPage1 ?? 0); w.u64(contact?.c.monitorPage2 ?? 0)
        w.u64(nextSequence)
    }

    private static func encode(_ ch: VMBusServer.Channel, _ w: inout WireWriter) {
        let (state, r): (UInt16, VMBusServer.OpenRequest?) = switch ch.state {
        case .closed: (0, nil)
        case .opening(let r): (1, r)
        case .open(let r): (2, r)
        case .closing(let r): (3, r)
        }
        w.u32(ch.relID)
        w.u16((ch.revoked ? 1 : 0) | (ch.released ? 2 : 0))
        w.u16(state)
        w.u64(0)
        w.raw(ch.offer.interfaceType.bytes); w.raw(ch.offer.interfaceInstance.bytes)
        w.u16(ch.offer.channelFlags); w.u16(ch.offer.mmioMegabytes); w.u16(ch.offer.subChannelIndex); w.u16(0)
        w.raw(ch.offer.userDefined)
        w.u32(r?.openID ?? 0); w.u32(r?.ringGPADL ?? 0); w.u32(r?.targetVP ?? 0); w.u32(r?.downstreamPageOffset ?? 0)
        w.raw(r?.userData ?? [UInt8](repeating: 0, count: VMBusOpenChannel.userDataSize))
    }

    static func padding(_ n: Int) -> Int { (8 - n % 8) % 8 }

    /// Decodes bytes written by `encoded()`, checking every rule; never traps.
    public init(decoding bytes: [UInt8]) throws(VMBusSavedStateError) {
        let result: Result<VMBusServer.Saved, VMBusSavedStateError> = bytes.withUnsafeBytes { raw in
            do throws(VMBusSavedStateError) {
                return .success(try Self.decode(raw))
            } catch {
                return .failure(error)
            }
        }
        self = try result.get()
    }

    private static func decode(_ raw: UnsafeRawBufferPointer) throws(VMBusSavedStateError) -> VMBusServer.Saved {
        var h = WireReader(raw, type: label)
        let magic: UInt32, version: UInt16
        do throws(WireError) {
            magic = try h.u32()
            version = try h.u16()
        } catch {
            throw .format(error)
        }
        guard magic == Self.magic else { throw .badMagic(magic) }
        guard version == layoutVersion else { throw .unsupportedVersion(version) }
        do throws(WireError) {
            try h.reserved16()
            let length = try h.u32()
            try h.reserved32()
            guard UInt64(length) == UInt64(h.remaining) else { throw WireError.lengthMismatch(declared: length, available: h.remaining) }
            var r = WireReader(UnsafeRawBufferPointer(rebasing: raw[headerSize...]), type: label)
            let saved = try decodeBody(&r)
            try r.finish()
            return saved
        } catch {
            throw .format(error)
        }
    }

    private static func invalid(_ field: String, _ value: UInt64) -> WireError {
        .invalidField(type: label, field: field, value: value)
    }

    private static func zero(_ r: inout WireReader, _ value: UInt64, _ at: Int) throws(WireError) {
        if value != 0 { throw .reservedNotZero(type: label, offset: at) }
    }

    private static func decodeBody(_ r: inout WireReader) throws(WireError) -> VMBusServer.Saved {
        // Connection.
        let start = r.position
        let kind = try r.u32(), flags = try r.u32(), version = try r.u32(), target = try r.u32()
        let m1 = try r.u64(), m2 = try r.u64()
        let pending = try r.u32(), pendingVP = try r.u32()
        let cConn = try r.u32(), cVersion = try r.u32(), cTarget = try r.u32()
        try r.reserved32()
        let cUnion = try r.u64(), cM1 = try r.u64(), cM2 = try r.u64()
        let nextSequence = try r.u64()
        let contactFields = [UInt64(cConn), UInt64(cVersion), UInt64(cTarget), cUnion, cM1, cM2]
        let connection: VMBusServer.Connection
        switch kind {
        case 0, 1:
            try zero(&r, UInt64(pending) | UInt64(pendingVP), start + 32)
            for v in contactFields { try zero(&r, v, start + 40) }
            if kind == 0 {
                for v in [UInt64(flags), UInt64(version), UInt64(target), m1, m2] { try zero(&r, v, start + 4) }
                connection = .disconnected
            } else {
                guard flags & ~1 == 0 else { throw invalid("connection flags", UInt64(flags)) }
                connection = .connected(VMBusServer.Connected(version: VMBusVersion(rawValue: version), targetVP: target,
                                                              monitorPage1: m1, monitorPage2: m2, offersSent: flags & 1 != 0))
            }
        case 2:
            for v in [UInt64(flags), UInt64(version), UInt64(target), m1, m2] { try zero(&r, v, start + 4) }
            switch pending {
            case 1:
                for v in contactFields { try zero(&r, v, start + 40) }
                connection = .resetting(.unload(replyVP: pendingVP))
            case 2:
                let c = VMBusInitiateContact(versionRequested: VMBusVersion(rawValue: cVersion), targetVCPU: cTarget,
                                             interruptPageOrMessageSINT: cUnion, monitorPage1: cM1, monitorPage2: cM2)
                connection = .resetting(.contact(c, connectionID: cConn, fromVP: pendingVP))
            default:
                throw invalid("pending reset", UInt64(pending))
            }
        default:
            throw invalid("connection kind", UInt64(kind))
        }

        // Channels.
        let channelCount = try r.u32()
        try r.reserved32()
        guard channelCount <= VMBusRelID.last else { throw .tooManyEntries(type: label, count: channelCount, limit: Int(VMBusRelID.last)) }
        var channels: [VMBusServer.Channel] = []
        for _ in 0..<channelCount { channels.append(try decodeChannel(&r)) }

        // GPADLs.
        let gpadlCount = try r.u32()
        try r.reserved32()
        guard gpadlCount <= UInt32(maxGPADLs) else { throw .tooManyEntries(type: label, count: gpadlCount, limit: maxGPADLs) }
        var gpadls: [VMBusServer.GPADL] = []
        for _ in 0..<gpadlCount {
            let id = try r.u32(), relID = try r.u32(), rawState = try r.u32(), rangeCount = try r.u16()
            try r.reserved16()
            let expected = try r.u32(), n = try r.u32()
            guard let state = VMBusServer.GPADLState(rawValue: rawState) else { throw invalid("gpadl state", UInt64(rawState)) }
            guard expected <= UInt32(maxWordsPerGPADL) else { throw invalid("gpadl expected words", UInt64(expected)) }
            guard n <= expected else { throw invalid("gpadl words", UInt64(n)) }
            var words: [UInt64] = []
            words.reserveCapacity(Int(n))
            for _ in 0..<n { words.append(try r.u64()) }
            gpadls.append(VMBusServer.GPADL(id: id, relID: relID, rangeCount: rangeCount, expectedWords: Int(expected),
                                            words: words, state: state))
        }

        // Outbound messages.
        let outboundCount = try r.u32()
        try r.reserved32()
        guard outboundCount <= UInt32(maxOutbound) else { throw .tooManyEntries(type: label, count: outboundCount, limit: maxOutbound) }
        var outbound: [VMBusOutboundMessage] = []
        for _ in 0..<outboundCount {
            let sequence = try r.u64(), vp = try r.u32(), length = try r.u32()
            guard (UInt32(VMBusMessageHeader.size)...UInt32(VMBusMessageHeader.maxMessageSize)).contains(length) else {
                throw invalid("outbound length", UInt64(length))
            }
            let message = try r.rawBytes(Int(length))
            let padAt = r.position
            for byte in try r.rawBytes(padding(Int(length))) where byte != 0 { throw .reservedNotZero(type: label, offset: padAt) }
            outbound.append(VMBusOutboundMessage(sequence: sequence, vp: vp, bytes: message))
        }
        return VMBusServer.Saved(connection: connection, channels: channels, gpadls: gpadls, outbound: outbound,
                                 nextSequence: nextSequence)
    }

    private static func decodeChannel(_ r: inout WireReader) throws(WireError) -> VMBusServer.Channel {
        let start = r.position
        let relID = try r.u32(), flags = try r.u16(), rawState = try r.u16()
        try zero(&r, try r.u64(), start + 8)
        guard flags & ~3 == 0 else { throw invalid("channel flags", UInt64(flags)) }
        let type = VMBusGUID(wireBytes: try r.rawBytes(16)) ?? .zero
        let instance = VMBusGUID(wireBytes: try r.rawBytes(16)) ?? .zero
        let chnFlags = try r.u16(), mmio = try r.u16(), sub = try r.u16()
        try r.reserved16()
        let userDefined = try r.rawBytes(VMBusOfferChannel.userDefinedSize)
        let openID = try r.u32(), ring = try r.u32(), target = try r.u32(), downstream = try r.u32()
        let userData = try r.rawBytes(VMBusOpenChannel.userDataSize)
        let request = VMBusServer.OpenRequest(openID: openID, ringGPADL: ring, targetVP: target, downstreamPageOffset: downstream,
                                              userData: userData)
        let state: VMBusServer.ChannelState
        switch rawState {
        case 0:
            let unused = [UInt64(openID), UInt64(ring), UInt64(target), UInt64(downstream)] + userData.map { UInt64($0) }
            for v in unused { try zero(&r, v, start + 176) }
            state = .closed
        case 1: state = .opening(request)
        case 2: state = .open(request)
        case 3: state = .closing(request)
        default: throw invalid("channel state", UInt64(rawState))
        }
        let offer = VMBusOffer(interfaceType: type, interfaceInstance: instance, channelFlags: chnFlags, mmioMegabytes: mmio,
                               userDefined: userDefined, subChannelIndex: sub)
        return VMBusServer.Channel(relID: relID, offer: offer, state: state, revoked: flags & 1 != 0, released: flags & 2 != 0)
    }
}
