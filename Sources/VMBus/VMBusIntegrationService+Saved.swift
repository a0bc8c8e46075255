import IPC

/// What a restarted worker needs to continue an IC channel: the negotiated versions, the
/// outstanding request (so the guest's reply to it still matches), the transaction counter,
/// the heartbeat sequence and the counters. Not the timing (configuration) and not the drop
/// counters (diagnostics, restarting at zero, as the server's).
///
/// Byte form, by the `WireRecord` rules as `VMBusServer.Saved` (VMBusSavedStateCodec.swift):
/// little-endian fields at fixed offsets, reserved and unused fields zero, no trailing bytes,
/// canonical (what decodes re-encodes to the same bytes); decoding treats the bytes as hostile.
///
/// ```
/// header (16 bytes)
///    0 u32 magic "VMIC"   4 u16 layout version (1)   6 u16 reserved   8 u32 body length (152)   12 u32 reserved
/// body (152 bytes)
///      0 u16 kind (icmsgtype: 1 heartbeat, 3 shutdown, 4 timesync)
///      2 u16 phase: 0 created, 1 negotiating, 2 ready, 3 failed
///      4 u32 failure (1...3 when failed, else 0)
///      8 u16 u16 framework version   12 u16 u16 message version      (ready only, else 0)
///     16 u64 next transaction id (never 0)
///     24 u16 outstanding: 0 none, 1 present   26 u16 its icmsgtype   28 u32 reserved
///     32 u64 its transaction id (not 0)   40 u64 sent at   48 u64 detail   (zero when none)
///     56 heartbeat: u64 requests, u64 replies, u64 unanswered, u64 last sequence,
///        u64 last reply at, u32 flags (bit 0 last sequence set, bit 1 last reply at set), u32 reserved
///    104 shutdown: u32 state (0...3), u32 last status, u64 requests
///    120 timesync: u64 syncs sent, u64 samples sent, u64 replies, u64 unanswered
/// ```
/// The counters of the other two kinds are zero.
extension VMBusIntegrationService {
    public struct Saved: Equatable, Sendable {
        public var kind: Kind
        public var phase: Phase
        public var frameworkVersion: VMBusICVersion?
        public var messageVersion: VMBusICVersion?
        public var outstanding: Request?
        public var nextTransactionID: UInt64
        public var heartbeat: HeartbeatStatus
        public var shutdown: ShutdownStatus
        public var timesync: TimesyncStatus
    }

    public func save() -> Saved {
        Saved(kind: kind, phase: phase, frameworkVersion: frameworkVersion, messageVersion: messageVersion,
              outstanding: outstanding, nextTransactionID: nextTransactionID, heartbeat: heartbeat, shutdown: shutdown,
              timesync: timesync)
    }

    /// Rebuilds the service. The outstanding request is treated as sent at `clock.monotonic`
    /// (the guest gets a whole period to answer it) and the next periodic request is due one
    /// period from now.
    public init(restoring s: Saved, timing: Timing = Timing(), _ clock: Clock) {
        self.init(kind: s.kind, timing: timing)
        phase = s.phase
        frameworkVersion = s.frameworkVersion
        messageVersion = s.messageVersion
        outstanding = s.outstanding.map { Request(transactionID: $0.transactionID, messageType: $0.messageType,
                                                  sentAt: clock.monotonic, detail: $0.detail) }
        nextTransactionID = s.nextTransactionID
        heartbeat = s.heartbeat
        shutdown = s.shutdown
        timesync = s.timesync
        if phase == .ready {
            switch kind {
            case .heartbeat: dueAt = Self.after(clock.monotonic, timing.heartbeatInterval)
            case .timesync: dueAt = Self.after(clock.monotonic, timing.timesyncInterval)
            case .shutdown: dueAt = nil
            }
        }
    }
}

extension VMBusIntegrationService.Saved {
    /// "VMIC" in memory order.
    public static let magic: UInt32 = 0x4349_4D56
    public static let layoutVersion: UInt16 = 1
    public static let headerSize = 16
    public static let bodySize = 152
    static let label: UInt16 = 1

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        w.u32(Self.magic); w.u16(Self.layoutVersion); w.u16(0); w.u32(UInt32(Self.bodySize)); w.u32(0)
        let (rawPhase, failure): (UInt16, UInt32) = switch phase {
        case .created: (0, 0)
        case .negotiating: (1, 0)
        case .ready: (2, 0)
        case .failed(let f): (3, f.rawValue)
        }
        w.u16(kind.rawValue); w.u16(rawPhase); w.u32(failure)
        for v in [frameworkVersion, messageVersion] { w.u16(v?.major ?? 0); w.u16(v?.minor ?? 0) }
        w.u64(nextTransactionID)
        w.u16(outstanding == nil ? 0 : 1); w.u16(outstanding?.messageType.rawValue ?? 0); w.u32(0)
        w.u64(outstanding?.transactionID ?? 0); w.u64(outstanding?.sentAt ?? 0); w.u64(outstanding?.detail ?? 0)
        w.u64(heartbeat.requests); w.u64(heartbeat.replies); w.u64(heartbeat.unanswered)
        w.u64(heartbeat.lastSequence ?? 0); w.u64(heartbeat.lastReplyAt ?? 0)
        w.u32((heartbeat.lastSequence == nil ? 0 : 1) | (heartbeat.lastReplyAt == nil ? 0 : 2)); w.u32(0)
        w.u32(shutdown.state.rawValue); w.u32(shutdown.lastStatus); w.u64(shutdown.requests)
        w.u64(timesync.syncsSent); w.u64(timesync.samplesSent); w.u64(timesync.replies); w.u64(timesync.unanswered)
        return w.bytes
    }

    /// Decodes bytes written by `encoded()`, checking every rule; never traps.
    public init(decoding bytes: [UInt8]) throws(VMBusSavedStateError) {
        let result: Result<Self, VMBusSavedStateError> = bytes.withUnsafeBytes { raw in
            do throws(VMBusSavedStateError) {
                return .success(try Self.decode(raw))
            } catch {
                return .failure(error)
            }
        }
        self = try result.get()
    }

    private static func invalid(_ field: String, _ value: UInt64) -> VMBusSavedStateError {
        .format(.invalidField(type: label, field: field, value: value))
    }

    private static func decode(_ raw: UnsafeRawBufferPointer) throws(VMBusSavedStateError) -> Self {
        var r = WireReader(raw, type: label)
        do {
            let magic = try r.u32()
            guard magic == Self.magic else { throw VMBusSavedStateError.badMagic(magic) }
            let version = try r.u16()
            guard version == layoutVersion else { throw VMBusSavedStateError.unsupportedVersion(version) }
            try r.reserved16()
            let length = try r.u32()
            try r.reserved32()
            guard UInt64(length) == UInt64(r.remaining) else { throw WireError.lengthMismatch(declared: length, available: r.remaining) }
            let s = try decodeBody(&r)
            try r.finish()
            return s
        } catch let e as VMBusSavedStateError {
            throw e
        } catch let e as WireError {
            throw .format(e)
        } catch {
            throw .inconsistent("\(error)")
        }
    }

    private static func decodeBody(_ r: inout WireReader) throws -> Self {
        let rawKind = try r.u16(), rawPhase = try r.u16(), rawFailure = try r.u32()
        guard let kind = VMBusIntegrationService.Kind(rawValue: rawKind) else { throw invalid("kind", UInt64(rawKind)) }
        let phase: VMBusIntegrationService.Phase
        switch rawPhase {
        case 0: phase = .created
        case 1: phase = .negotiating
        case 2: phase = .ready
        case 3:
            guard let f = VMBusIntegrationService.Failure(rawValue: rawFailure) else { throw invalid("failure", UInt64(rawFailure)) }
            phase = .failed(f)
        default: throw invalid("phase", UInt64(rawPhase))
        }
        if rawPhase != 3, rawFailure != 0 { throw invalid("failure", UInt64(rawFailure)) }
        let fw = VMBusICVersion(try r.u16(), try r.u16()), msg = VMBusICVersion(try r.u16(), try r.u16())
        var frameworkVersion: VMBusICVersion?, messageVersion: VMBusICVersion?
        if phase == .ready {
            guard VMBusICVersion.frameworkVersions.contains(fw) else { throw invalid("framework version", UInt64(fw.major) << 16 | UInt64(fw.minor)) }
            guard kind.messageVersions.contains(msg) else { throw invalid("message version", UInt64(msg.major) << 16 | UInt64(msg.minor)) }
            frameworkVersion = fw
            messageVersion = msg
        } else if fw != VMBusICVersion(0, 0) || msg != VMBusICVersion(0, 0) {
            throw invalid("versions outside ready", UInt64(fw.major) << 16 | UInt64(fw.minor))
        }
        let nextTransactionID = try r.u64()
        guard nextTransactionID != 0 else { throw invalid("next transaction id", 0) }

        let present = try r.u16(), rawType = try r.u16()
        try r.reserved32()
        let txid = try r.u64(), sentAt = try r.u64(), detail = try r.u64()
        var outstanding: VMBusIntegrationService.Request?
        switch present {
        case 0:
            guard rawType == 0, txid == 0, sentAt == 0, detail == 0 else { throw invalid("outstanding fields without a request", 0) }
            guard phase != .negotiating else { throw invalid("negotiating without a request", 0) }
        case 1:
            // The request a service in this phase can be waiting for.
            let expected: UInt16
            switch phase {
            case .negotiating: expected = VMBusICMessageType.negotiate.rawValue
            case .ready: expected = kind.rawValue
            case .created, .failed: throw invalid("outstanding request in phase", UInt64(rawPhase))
            }
            guard rawType == expected else { throw invalid("outstanding type", UInt64(rawType)) }
            guard txid != 0 else { throw invalid("outstanding transaction id", 0) }
            switch (rawType, kind) {
            case (VMBusICMessageType.timesync.rawValue, _):
                guard detail == UInt64(VMBusICTimesyncMessage.Flags.sync) || detail == UInt64(VMBusICTimesyncMessage.Flags.sample) else {
                    throw invalid("timesync flags", detail)
                }
            case (VMBusICMessageType.shutdown.rawValue, _):
                guard detail <= UInt64(UInt32.max) else { throw invalid("shutdown flags", detail) }
            case (VMBusICMessageType.negotiate.rawValue, _):
                guard detail == 0 else { throw invalid("negotiate detail", detail) }
            default: break
            }
            outstanding = VMBusIntegrationService.Request(transactionID: txid, messageType: VMBusICMessageType(rawValue: rawType),
                                                          sentAt: sentAt, detail: detail)
        default:
            throw invalid("outstanding", UInt64(present))
        }

        var heartbeat = VMBusIntegrationService.HeartbeatStatus()
        heartbeat.requests = try r.u64(); heartbeat.replies = try r.u64(); heartbeat.unanswered = try r.u64()
        let lastSequence = try r.u64(), lastReplyAt = try r.u64(), hbFlags = try r.u32()
        try r.reserved32()
        guard hbFlags & ~3 == 0 else { throw invalid("heartbeat flags", UInt64(hbFlags)) }
        if hbFlags & 1 == 0, lastSequence != 0 { throw invalid("heartbeat last sequence", lastSequence) }
        if hbFlags & 2 == 0, lastReplyAt != 0 { throw invalid("heartbeat last reply", lastReplyAt) }
        heartbeat.lastSequence = hbFlags & 1 != 0 ? lastSequence : nil
        heartbeat.lastReplyAt = hbFlags & 2 != 0 ? lastReplyAt : nil

        var shutdown = VMBusIntegrationService.ShutdownStatus()
        let rawState = try r.u32()
        guard let state = VMBusIntegrationService.ShutdownState(rawValue: rawState) else { throw invalid("shutdown state", UInt64(rawState)) }
        shutdown.state = state
        shutdown.lastStatus = try r.u32()
        shutdown.requests = try r.u64()

        var timesync = VMBusIntegrationService.TimesyncStatus()
        timesync.syncsSent = try r.u64(); timesync.samplesSent = try r.u64(); timesync.replies = try r.u64()
        timesync.unanswered = try r.u64()

        // Each kind keeps only its own counters.
        if kind != .heartbeat, heartbeat != VMBusIntegrationService.HeartbeatStatus() { throw invalid("heartbeat fields for \(kind)", 0) }
        if kind != .shutdown, shutdown != VMBusIntegrationService.ShutdownStatus() { throw invalid("shutdown fields for \(kind)", 0) }
        if kind != .timesync, timesync != VMBusIntegrationService.TimesyncStatus() { throw invalid("timesync fields for \(kind)", 0) }
        if kind == .shutdown, (state == .requested) != (outstanding != nil && phase == .ready) {
            throw invalid("shutdown state without its request", UInt64(rawState))
        }
        return Self(kind: kind, phase: phase, frameworkVersion: frameworkVersion, messageVersion: messageVersion,
                    outstanding: outstanding, nextTransactionID: nextTransactionID, heartbeat: heartbeat, shutdown: shutdown,
                    timesync: timesync)
    }
}
