/// The host side of one integration-service channel (heartbeat, shutdown or timesync) once the
/// guest has opened it: a pure state machine, no clocks, no I/O. The caller (the ring pump,
/// `VMBusICChannel`) feeds it guest packets and the time, and writes the packets it returns.
///
/// The conversation (Linux drivers/hv/hv_util.c, OpenVMM hyperv_ic):
/// 1. `start`: the host sends NEGOTIATE first, offering framework versions [1.0, 3.0] and the
///    message versions of `Kind.messageVersions`. The guest picks the first entry of its own
///    list that the host offered and answers in place with counts 1/1, or 0/0 when nothing
///    matches; then the channel is unusable (`Phase.failed`) and stays quiet.
/// 2. Once negotiated: heartbeat sends a request at once and then every
///    `Timing.heartbeatInterval`; timesync sends one SYNC at once, then a SAMPLE every
///    `Timing.timesyncInterval` after each reply (OpenVMM's rhythm; SYNC again until the guest
///    has answered one); shutdown sends only what `requestShutdown` asks for.
/// 3. One request is outstanding at a time, matched by the packet transaction id the host
///    chose. A periodic request still unanswered when the next one is due is counted as
///    unanswered and replaced; an unanswered NEGOTIATE is sent again every
///    `Timing.negotiateRetry` (Linux answers a NEGOTIATE at any time).
///
/// Everything the guest sends is checked before it changes anything; what does not fit is
/// counted in `drops` and dropped.
public struct VMBusIntegrationService: Equatable, Sendable {
    /// Which IC the channel is; the raw value is its `icmsgtype`.
    public enum Kind: UInt16, CaseIterable, Sendable, CustomStringConvertible {
        case heartbeat = 1
        case shutdown = 3
        case timesync = 4

        public var messageType: VMBusICMessageType { VMBusICMessageType(rawValue: rawValue) }

        public var description: String {
            switch self {
            case .heartbeat: return "heartbeat"
            case .shutdown: return "shutdown"
            case .timesync: return "timesync"
            }
        }

        /// Message versions the host offers (Linux prefers, in order: heartbeat 3.0, 1.0;
        /// shutdown 3.2, 3.1, 3.0, 1.0; timesync 4.0, 3.0, 1.0). The message layouts do not
        /// change between these versions except timesync's at 4.0, which the host sends in
        /// either form; so every version Linux knows is offered, and Linux 6.1 ends up with
        /// heartbeat 3.0, shutdown 3.2 and timesync 4.0.
        public var messageVersions: [VMBusICVersion] {
            switch self {
            case .heartbeat: return [VMBusICVersion(1, 0), VMBusICVersion(3, 0)]
            case .shutdown: return [VMBusICVersion(1, 0), VMBusICVersion(3, 0), VMBusICVersion(3, 1), VMBusICVersion(3, 2)]
            case .timesync: return [VMBusICVersion(1, 0), VMBusICVersion(3, 0), VMBusICVersion(4, 0)]
            }
        }

        /// The class GUID (`if_type`: which guest driver binds).
        public var interfaceType: VMBusGUID {
            switch self {
            case .heartbeat: return VMBusGUID("57164f39-9115-4e78-ab55-382f3bd5422d") ?? .zero
            case .shutdown: return VMBusGUID("0e0b6031-5213-4934-818b-38d90ced39db") ?? .zero
            case .timesync: return VMBusGUID("9527e630-d0ae-497b-adce-e80ab0175caf") ?? .zero
            }
        }

        /// The instance GUID Hyper-V uses (shutdown and timesync: also OpenVMM's).
        public var interfaceInstance: VMBusGUID {
            switch self {
            case .heartbeat: return VMBusGUID("fd149e91-82e0-4a7d-afa6-2a4166cbd7c0") ?? .zero
            case .shutdown: return VMBusGUID("b6650ff7-33bc-4840-8048-e0676786f393") ?? .zero
            case .timesync: return VMBusGUID("2dd1ce17-079e-403c-b352-a1921ee207ee") ?? .zero
            }
        }

        /// The offer for the server: a message-mode pipe (chn_flags 0x11, pipe_mode 4), as
        /// OpenVMM offers its ICs; hv_utils binds on the class GUID alone. The rings' size is
        /// the guest's choice (Linux: 16 KiB each way).
        public func offer() -> VMBusOffer {
            VMBusOffer.pipe(interfaceType: interfaceType, interfaceInstance: interfaceInstance)
        }

        /// The IC whose class GUID this is.
        public init?(interfaceType: VMBusGUID) {
            guard let k = Kind.allCases.first(where: { $0.interfaceType == interfaceType }) else { return nil }
            self = k
        }
    }

    /// The three offers, in `icmsgtype` order (heartbeat 1, shutdown 3, timesync 4). The order
    /// only decides their relids; Linux binds each by its class GUID.
    public static var standardOffers: [VMBusOffer] { Kind.allCases.map { $0.offer() } }

    /// Periods, in monotonic nanoseconds.
    public struct Timing: Equatable, Sendable {
        public var heartbeatInterval: UInt64
        public var timesyncInterval: UInt64
        public var negotiateRetry: UInt64

        public init(heartbeatInterval: UInt64 = 5_000_000_000, timesyncInterval: UInt64 = 5_000_000_000,
                    negotiateRetry: UInt64 = 10_000_000_000) {
            self.heartbeatInterval = heartbeatInterval
            self.timesyncInterval = timesyncInterval
            self.negotiateRetry = negotiateRetry
        }
    }

    public enum Phase: Equatable, Sendable {
        /// Opened; `start` not called yet.
        case created
        case negotiating
        case ready
        /// Unusable until the guest reopens the channel.
        case failed(Failure)
    }

    public enum Failure: UInt32, Equatable, Sendable, CustomStringConvertible {
        /// The guest answered 0/0.
        case noCommonVersion = 1
        /// The guest chose a version the host did not offer.
        case unofferedVersion = 2
        /// Version counts other than 1/1 or 0/0 (OpenVMM treats those as failure too).
        case badVersionCounts = 3

        public var description: String {
            switch self {
            case .noCommonVersion: return "no common version"
            case .unofferedVersion: return "guest chose a version the host did not offer"
            case .badVersionCounts: return "bad version counts"
            }
        }
    }

    /// The request waiting for its reply.
    public struct Request: Equatable, Sendable {
        public var transactionID: UInt64
        public var messageType: VMBusICMessageType
        /// Monotonic ns when it was made.
        public var sentAt: UInt64
        /// Heartbeat: the sequence number sent. Timesync: the flags sent. Otherwise 0.
        public var detail: UInt64
    }

    public struct HeartbeatStatus: Equatable, Sendable {
        public var requests: UInt64 = 0
        public var replies: UInt64 = 0
        public var unanswered: UInt64 = 0
        /// The sequence number the guest last returned.
        public var lastSequence: UInt64?
        /// Monotonic ns of the last good reply.
        public var lastReplyAt: UInt64?
        public init() {}
    }

    public enum ShutdownState: UInt32, Equatable, Sendable {
        case notRequested = 0
        case requested = 1
        /// The guest answered S_OK: it is shutting down.
        case accepted = 2
        /// The guest answered another status (E_FAIL).
        case refused = 3
    }

    public struct ShutdownStatus: Equatable, Sendable {
        public var state: ShutdownState = .notRequested
        public var requests: UInt64 = 0
        /// The status of the guest's last answer.
        public var lastStatus: UInt32 = 0
        public init() {}
    }

    public struct TimesyncStatus: Equatable, Sendable {
        public var syncsSent: UInt64 = 0
        public var samplesSent: UInt64 = 0
        public var replies: UInt64 = 0
        public var unanswered: UInt64 = 0
        public init() {}
    }

    public let kind: Kind
    public let timing: Timing
    public internal(set) var phase: Phase = .created
    public internal(set) var frameworkVersion: VMBusICVersion?
    public internal(set) var messageVersion: VMBusICVersion?
    public internal(set) var outstanding: Request?
    var nextTransactionID: UInt64 = 1
    /// Monotonic ns when the next periodic request is due (heartbeat, timesync, when ready).
    var dueAt: UInt64?
    public internal(set) var heartbeat = HeartbeatStatus()
    public internal(set) var shutdown = ShutdownStatus()
    public internal(set) var timesync = TimesyncStatus()
    public internal(set) var drops = VMBusICDropLog()

    public init(kind: Kind, timing: Timing = Timing()) {
        self.kind = kind
        self.timing = timing
    }

    /// Largest payload the host accepts: what Linux accepts from the host (4096-byte packet
    /// buffer less the descriptor). Replies are as long as the request, at most 2088 bytes.
    public static let maxPayloadSize = 4080

    /// The time as the caller read it. Every entry point takes one; only timesync uses the
    /// wall time and the reference time, and only when it sends.
    public struct Clock: Equatable, Sendable {
        /// Monotonic nanoseconds (CLOCK_MONOTONIC or anything that does not jump).
        public var monotonic: UInt64
        /// Host wall time: nanoseconds since 1970-01-01 UTC.
        public var unixNanoseconds: Int64
        /// The guest's partition reference time (100 ns units, HV_X64_MSR_TIME_REF_COUNT /
        /// the TSC page) at the moment `unixNanoseconds` was read.
        public var referenceTime: UInt64

        public init(monotonic: UInt64, unixNanoseconds: Int64 = 0, referenceTime: UInt64 = 0) {
            self.monotonic = monotonic
            self.unixNanoseconds = unixNanoseconds
            self.referenceTime = referenceTime
        }
    }

    /// One packet to write: INBAND, this transaction id, this payload.
    public struct Packet: Equatable, Sendable {
        public var transactionID: UInt64
        public var payload: [UInt8]
    }

    public enum Event: Equatable, Sendable {
        case negotiated(framework: VMBusICVersion, message: VMBusICVersion)
        case negotiationFailed(Failure)
        case heartbeat(sequence: UInt64)
        /// A periodic request got no reply before the next was due.
        case unanswered(VMBusICMessageType)
        case shutdownAnswered(status: UInt32)
        case timesyncAnswered(flags: UInt8)
    }

    /// What one call produced, in order.
    public struct Output: Equatable, Sendable {
        public var packets: [Packet] = []
        public var events: [Event] = []
        public var logs: [String] = []
        public init() {}
    }

    /// The host's first packet: NEGOTIATE. Only once, from `.created`.
    public mutating func start(_ clock: Clock) -> Output {
        var out = Output()
        guard phase == .created else { return out }
        phase = .negotiating
        sendNegotiate(clock, &out)
        return out
    }

    /// When `poll` must next be called (monotonic ns), or nil when nothing is scheduled.
    public var nextDeadline: UInt64? {
        switch phase {
        case .negotiating: return outstanding.map { Self.after($0.sentAt, timing.negotiateRetry) }
        case .ready: return dueAt
        case .created, .failed: return nil
        }
    }

    /// Periodic work: the heartbeat and timesync requests that are due, a NEGOTIATE retry.
    public mutating func poll(_ clock: Clock) -> Output {
        var out = Output()
        let now = clock.monotonic
        switch phase {
        case .negotiating:
            if let r = outstanding, now >= Self.after(r.sentAt, timing.negotiateRetry) { sendNegotiate(clock, &out) }
            if outstanding == nil { sendNegotiate(clock, &out) }
        case .ready:
            guard let due = dueAt, now >= due else { break }
            if let r = outstanding {
                out.events.append(.unanswered(r.messageType))
                if kind == .heartbeat { heartbeat.unanswered &+= 1 } else { timesync.unanswered &+= 1 }
                outstanding = nil
            }
            sendPeriodic(clock, &out)
        case .created, .failed:
            break
        }
        return out
    }

    public enum ShutdownRequestResult: Equatable, Sendable {
        /// The request to write (the caller's pump writes it).
        case sent(Output)
        /// The guest has not negotiated the shutdown IC (yet, or ever): stop the VM another way.
        case notNegotiated
        /// An earlier request is still unanswered.
        case alreadyPending
        /// This channel is not the shutdown IC.
        case notShutdownChannel
    }

    /// Asks the guest to shut down (or reboot/hibernate, per `message.flags`).
    public mutating func requestShutdown(_ clock: Clock, message: VMBusICShutdownMessage = VMBusICShutdownMessage())
        -> ShutdownRequestResult {
        guard kind == .shutdown else { return .notShutdownChannel }
        guard phase == .ready, let fw = frameworkVersion, let msg = messageVersion else { return .notNegotiated }
        guard outstanding == nil else { return .alreadyPending }
        var out = Output()
        let id = takeTransactionID()
        outstanding = Request(transactionID: id, messageType: .shutdown, sentAt: clock.monotonic, detail: UInt64(message.flags.rawValue))
        shutdown.state = .requested
        shutdown.requests &+= 1
        out.packets.append(Packet(transactionID: id, payload: message.request(framework: fw, message: msg)))
        return .sent(out)
    }

    /// One packet from the guest: its INBAND payload and transaction id.
    public mutating func receive(payload: UnsafeRawBufferPointer, transactionID: UInt64, _ clock: Clock) -> Output {
        var out = Output()
        guard payload.count <= Self.maxPayloadSize else {
            drop(.oversized, "\(payload.count) bytes", &out)
            return out
        }
        let header: VMBusICMessageHeader
        do {
            header = try VMBusICMessageHeader(decoding: payload)
        } catch {
            drop(.truncated, "\(error)", &out)
            return out
        }
        guard header.flags & VMBusICFlags.response != 0 else {
            drop(.notAResponse, "icflags 0x\(String(header.flags, radix: 16)), \(header.messageType)", &out)
            return out
        }
        guard let request = outstanding, request.transactionID == transactionID else {
            drop(.unexpectedTransaction, "transaction \(transactionID), outstanding \(outstanding.map { "\($0.transactionID)" } ?? "none")", &out)
            return out
        }
        guard header.messageType == request.messageType, header.transactionID == 0 else {
            drop(.wrongMessageType, "\(header.messageType) (IC transaction \(header.transactionID)) for \(request.messageType)", &out)
            return out
        }
        switch request.messageType {
        case .negotiate: receiveNegotiate(payload, clock, &out)
        case .heartbeat: receiveHeartbeat(payload, request, clock, &out)
        case .shutdown:
            outstanding = nil
            shutdown.lastStatus = header.status
            shutdown.state = header.status == VMBusICStatus.ok ? .accepted : .refused
            out.events.append(.shutdownAnswered(status: header.status))
        default:
            // Timesync: the reply's body is not the host's business (Linux does not change it).
            outstanding = nil
            timesync.replies &+= 1
            dueAt = Self.after(clock.monotonic, timing.timesyncInterval)
            out.events.append(.timesyncAnswered(flags: UInt8(truncatingIfNeeded: request.detail)))
        }
        return out
    }

    /// Counts a drop the pump found (packet type, size) before the payload reached `receive`.
    mutating func dropPacket(_ reason: VMBusICDropLog.Reason, _ detail: String, _ out: inout Output) {
        drop(reason, detail, &out)
    }

    // MARK: - Replies

    private mutating func receiveNegotiate(_ payload: UnsafeRawBufferPointer, _ clock: Clock, _ out: inout Output) {
        let reply: VMBusICNegotiate.Reply
        do {
            reply = try VMBusICNegotiate.reply(decoding: payload)
        } catch .truncated(let needed, let available) {
            drop(.truncated, "negotiate reply of \(available) bytes, needs \(needed)", &out)
            return
        } catch {
            fail(.badVersionCounts, "\(error)", &out)
            return
        }
        switch reply {
        case .noCommonVersion:
            fail(.noCommonVersion, "the guest answered 0/0", &out)
        case .chosen(let fw, let msg):
            guard VMBusICVersion.frameworkVersions.contains(fw), kind.messageVersions.contains(msg) else {
                fail(.unofferedVersion, "framework \(fw), message \(msg)", &out)
                return
            }
            outstanding = nil
            phase = .ready
            frameworkVersion = fw
            messageVersion = msg
            out.events.append(.negotiated(framework: fw, message: msg))
            out.logs.append("vmbus ic \(kind): negotiated framework \(fw), message \(msg)")
            switch kind {
            case .heartbeat, .timesync: sendPeriodic(clock, &out)
            case .shutdown: break
            }
        }
    }

    private mutating func receiveHeartbeat(_ payload: UnsafeRawBufferPointer, _ request: Request, _ clock: Clock, _ out: inout Output) {
        let reply: VMBusICHeartbeatMessage
        do {
            reply = try VMBusICHeartbeatMessage(decoding: payload)
        } catch {
            drop(.truncated, "heartbeat: \(error)", &out)
            return
        }
        guard reply.sequenceNumber == request.detail &+ 1 else {
            drop(.malformed, "heartbeat sequence \(reply.sequenceNumber) for \(request.detail)", &out)
            return
        }
        outstanding = nil
        heartbeat.replies &+= 1
        heartbeat.lastSequence = reply.sequenceNumber
        heartbeat.lastReplyAt = clock.monotonic
        out.events.append(.heartbeat(sequence: reply.sequenceNumber))
    }

    private mutating func fail(_ why: Failure, _ detail: String, _ out: inout Output) {
        outstanding = nil
        phase = .failed(why)
        dueAt = nil
        out.events.append(.negotiationFailed(why))
        out.logs.append("vmbus ic \(kind): negotiation failed: \(why): \(detail); the channel stays unused")
    }

    // MARK: - Requests

    private mutating func sendNegotiate(_ clock: Clock, _ out: inout Output) {
        let id = takeTransactionID()
        outstanding = Request(transactionID: id, messageType: .negotiate, sentAt: clock.monotonic, detail: 0)
        let payload = VMBusICNegotiate(frameworkVersions: VMBusICVersion.frameworkVersions, messageVersions: kind.messageVersions).request()
        out.packets.append(Packet(transactionID: id, payload: payload))
    }

    /// The next heartbeat or timesync request; nothing for shutdown.
    private mutating func sendPeriodic(_ clock: Clock, _ out: inout Output) {
        guard let fw = frameworkVersion, let msg = messageVersion else { return }
        let id = takeTransactionID()
        let now = clock.monotonic
        switch kind {
        case .heartbeat:
            // Continue from what the guest returned, as a sequence the guest advances.
            let sequence = heartbeat.lastSequence ?? 0
            outstanding = Request(transactionID: id, messageType: .heartbeat, sentAt: now, detail: sequence)
            heartbeat.requests &+= 1
            dueAt = Self.after(now, timing.heartbeatInterval)
            out.packets.append(Packet(transactionID: id,
                                      payload: VMBusICHeartbeatMessage(sequenceNumber: sequence).request(framework: fw, message: msg)))
        case .timesync:
            // SYNC (set the clock) until the guest has answered one, then SAMPLEs.
            let flags = timesync.replies == 0 ? VMBusICTimesyncMessage.Flags.sync : VMBusICTimesyncMessage.Flags.sample
            if flags == VMBusICTimesyncMessage.Flags.sync { timesync.syncsSent &+= 1 } else { timesync.samplesSent &+= 1 }
            outstanding = Request(transactionID: id, messageType: .timesync, sentAt: now, detail: UInt64(flags))
            dueAt = Self.after(now, timing.timesyncInterval)
            let m = VMBusICTimesyncMessage(parentTime: VMBusICTimesyncMessage.parentTime(unixNanoseconds: clock.unixNanoseconds),
                                           referenceTime: clock.referenceTime, flags: flags)
            out.packets.append(Packet(transactionID: id, payload: m.request(framework: fw, message: msg)))
        case .shutdown:
            break
        }
    }

    /// Transaction ids 1, 2, ...; 0 is skipped so that a zeroed packet never matches.
    private mutating func takeTransactionID() -> UInt64 {
        let id = nextTransactionID
        nextTransactionID = id == UInt64.max ? 1 : id + 1
        return id
    }

    private mutating func drop(_ r: VMBusICDropLog.Reason, _ detail: String, _ out: inout Output) {
        if let line = drops.record(r, kind.description, detail) { out.logs.append(line) }
    }

    /// t + d, saturating.
    static func after(_ t: UInt64, _ d: UInt64) -> UInt64 { t > UInt64.max - d ? UInt64.max : t + d }
}
