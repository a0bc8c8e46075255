/// The ring pump of one open IC channel: reads the guest-to-host ring, feeds
/// `VMBusIntegrationService`, and writes its packets to the host-to-guest ring as INBAND
/// packets (flags 0, the service's transaction id), following the ring library's signalling
/// rules. The caller raises the channel interrupt when a result says so, and calls `pump`
/// again when the guest signals, when `service.nextDeadline` passes, or at once when
/// `moreToRead` is set.
///
/// Reading copies each payload (at most `VMBusIntegrationService.maxPayloadSize` bytes) into
/// one buffer allocated with the channel, so the service parses bytes the guest can no longer
/// change. A packet that is not INBAND or is too large is dropped without being copied.
///
/// Host packets that do not fit wait in a small queue (`maxQueued`, oldest dropped first): the
/// producer is armed with pending_send_sz and the guest signals once it has read enough.
///
/// When either ring is corrupt the channel is cut off for good (`cutOff`): nothing more is read
/// or written; the caller closes it or ignores it. The service's state stays readable.
///
/// Use from one thread at a time.
public final class VMBusICChannel<Memory: VMBusRingMemory>: @unchecked Sendable {
    public internal(set) var service: VMBusIntegrationService
    let consumer: VMBusRingConsumer<Memory>
    let producer: VMBusRingProducer<Memory>
    private let buffer: UnsafeMutableRawBufferPointer
    private var queued: [VMBusIntegrationService.Packet] = []
    public private(set) var corruption: VMBusRingCorruption?

    /// Host packets kept while the guest's ring is full.
    public static var maxQueued: Int { 4 }
    /// Guest packets handled per `pump` call before it returns with `moreToRead`, so a guest
    /// that writes as fast as the host reads cannot hold the worker.
    public static var maxPacketsPerPump: Int { 64 }

    /// Attaches to the two rings (resuming from their indices) with a fresh or restored service.
    public init(service: VMBusIntegrationService, guestToHost: Memory, hostToGuest: Memory) throws(VMBusRingSetupError) {
        self.service = service
        consumer = try VMBusRingConsumer(memory: guestToHost)
        producer = try VMBusRingProducer(memory: hostToGuest)
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: VMBusIntegrationService.maxPayloadSize, alignment: 8)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit { buffer.deallocate() }

    public struct Result: Equatable, Sendable {
        /// The service's events and log lines, in order.
        public var events: [VMBusIntegrationService.Event] = []
        public var logs: [String] = []
        /// The producer's commit published packets to a guest that may be asleep.
        public var signalForData = false
        /// The consumer's commit freed the room the guest asked for with pending_send_sz.
        public var signalForSpace = false
        /// Host packets wait for room; the guest signals when it has read.
        public var waitingForSpace = false
        /// The per-call packet limit was reached with packets left: call `pump` again.
        public var moreToRead = false
        /// Found during this call (reported once).
        public var corruption: VMBusRingCorruption?
        /// The channel is cut off (now or earlier).
        public var cutOff = false

        /// Raise the channel interrupt (SIEF bit, SINT2) for either reason.
        public var interruptGuest: Bool { signalForData || signalForSpace }

        public init() {}
    }

    /// Sends NEGOTIATE (once).
    public func start(_ clock: VMBusIntegrationService.Clock) -> Result {
        var result = Result()
        guard !isCutOff(&result) else { return result }
        take(service.start(clock), &result)
        flush(&result)
        return result
    }

    /// Reads what the guest wrote, does the periodic work that is due, writes the host's packets.
    public func pump(_ clock: VMBusIntegrationService.Clock) -> Result {
        var result = Result()
        guard !isCutOff(&result) else { return result }
        drain(clock, &result)
        if corruption == nil { take(service.poll(clock), &result) }
        flush(&result)
        return result
    }

    /// Asks the guest to shut down; the request is written when the answer is `.sent`. A cut-off
    /// channel answers `.notNegotiated`: the caller stops the VM another way.
    public func requestShutdown(_ clock: VMBusIntegrationService.Clock, message: VMBusICShutdownMessage = VMBusICShutdownMessage())
        -> (VMBusIntegrationService.ShutdownRequestResult, Result) {
        var result = Result()
        guard !isCutOff(&result) else { return (.notNegotiated, result) }
        let answer = service.requestShutdown(clock, message: message)
        if case .sent(let out) = answer { take(out, &result) }
        flush(&result)
        return (answer, result)
    }

    /// The service's state, for a restarted worker (`VMBusIntegrationService(restoring:)`).
    /// Host packets still queued are not in it: their requests time out and are sent again.
    public func save() -> VMBusIntegrationService.Saved { service.save() }

    // MARK: - Reading

    private func drain(_ clock: VMBusIntegrationService.Clock, _ result: inout Result) {
        var handled = 0
        reading: while true {
            // Checked before `next`, which moves the cursor past the packet it returns.
            if handled == Self.maxPacketsPerPump {
                result.moreToRead = true
                break reading
            }
            switch consumer.next() {
            case .packet(let packet):
                handled += 1
                handle(packet, clock, &result)
            case .empty:
                // Interrupts on, fence, re-check: only a ring still empty lets the worker sleep.
                commitRead(&result)
                switch consumer.enableInterrupts() {
                case .sleep: return
                case .readAgain: continue reading
                case .corrupted(let why): fail(why, &result); return
                case .cutOff: return
                }
            case .corrupted(let why):
                fail(why, &result)
                return
            case .cutOff:
                return
            }
        }
        commitRead(&result)
    }

    private func handle(_ packet: VMBusRingPacket<Memory>, _ clock: VMBusIntegrationService.Clock, _ result: inout Result) {
        var out = VMBusIntegrationService.Output()
        let d = packet.descriptor
        let payload = packet.payload
        if d.type != .dataInBand {
            service.dropPacket(.wrongPacketType, "packet type \(d.type.rawValue)", &out)
        } else if payload.count > buffer.count {
            service.dropPacket(.oversized, "payload of \(payload.count) bytes", &out)
        } else {
            let copy = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<payload.count])
            if payload.copyBytes(to: copy) {
                out = service.receive(payload: UnsafeRawBufferPointer(copy), transactionID: d.transactionID, clock)
            }
        }
        take(out, &result)
    }

    private func commitRead(_ result: inout Result) {
        switch consumer.commit() {
        case .signal: result.signalForSpace = true
        case .noSignal, .cutOff: break
        case .corrupted(let why): fail(why, &result)
        }
    }

    // MARK: - Writing

    private func take(_ out: VMBusIntegrationService.Output, _ result: inout Result) {
        result.events += out.events
        result.logs += out.logs
        for p in out.packets {
            if queued.count >= Self.maxQueued {
                let old = queued.removeFirst()
                var o = VMBusIntegrationService.Output()
                service.dropPacket(.hostRingFull, "transaction \(old.transactionID) not sent", &o)
                result.logs += o.logs
            }
            queued.append(p)
        }
    }

    private func flush(_ result: inout Result) {
        guard corruption == nil else { return }
        var sent = 0, retried = false
        writing: while sent < queued.count {
            let p = queued[sent]
            switch producer.tryWrite(type: .dataInBand, transactionID: p.transactionID, payload: p.payload) {
            case .written:
                sent += 1
                retried = false
            case .full:
                let need = VMBusRingProducer<Memory>.footprint(headerExtension: 0, payload: p.payload.count)
                // Room appeared between the write and arming: write again, once per packet.
                if producer.armForSpace(need), !retried {
                    if producer.corruption != nil { break writing }
                    retried = true
                    continue writing
                }
                result.waitingForSpace = true
                break writing
            case .tooLarge:
                // Never for IC messages in a ring Linux sets up; a ring too small for one.
                sent += 1
                var o = VMBusIntegrationService.Output()
                service.dropPacket(.hostRingFull, "transaction \(p.transactionID): larger than the ring", &o)
                result.logs += o.logs
            case .corrupted(let why):
                fail(why, &result)
                break writing
            case .cutOff:
                break writing
            }
        }
        queued.removeFirst(sent)
        if let why = producer.corruption, corruption == nil { fail(why, &result) }
        guard corruption == nil else { return }
        switch producer.commit() {
        case .signal: result.signalForData = true
        case .noSignal, .cutOff: break
        case .corrupted(let why): fail(why, &result)
        }
    }

    private func fail(_ why: VMBusRingCorruption, _ result: inout Result) {
        guard corruption == nil else { return }
        corruption = why
        result.corruption = why
        result.cutOff = true
        result.logs.append("vmbus ic \(service.kind): ring corrupted: \(why); channel cut off")
    }

    private func isCutOff(_ result: inout Result) -> Bool {
        result.cutOff = corruption != nil
        return result.cutOff
    }
}
