import VMBus

/// An integration service (heartbeat, shutdown or time sync) as a device of the VMBus worker: the
/// pure `VMBusIntegrationService` and its ring pump (`VMBusICChannel`, Sources/VMBus) over the
/// channel substrate's rings, interrupting the guest when the pump says so.
///
/// A channel's IC state starts afresh at each open (the guest negotiates again: Linux's
/// hv_utils does after a close or a reconnect). Its counters outlive closes, for the status
/// the monitor reads.
public final class VMBusICDevice: VMBusChannelDevice {
    public let kind: VMBusIntegrationService.Kind
    public let offer: VMBusOffer
    let timing: VMBusIntegrationService.Timing
    /// The host's clocks at a monotonic instant (wall time for time sync; the guest's reference
    /// time for 4.0 samples): the shell reads them, so this stays free of system calls.
    let clock: (UInt64) -> VMBusIntegrationService.Clock
    let log: (String) -> Void
    var pump: VMBusICChannel<VMBusPagedRingMemory>?
    var channel: VMBusChannel?
    /// The last service state of this device (kept after a close).
    public private(set) var service: VMBusIntegrationService

    public init(kind: VMBusIntegrationService.Kind, timing: VMBusIntegrationService.Timing = .init(),
                clock: @escaping (UInt64) -> VMBusIntegrationService.Clock, log: @escaping (String) -> Void) {
        self.kind = kind
        offer = kind.offer()
        self.timing = timing
        self.clock = clock
        self.log = log
        service = VMBusIntegrationService(kind: kind, timing: timing)
    }

    public func open(_ channel: VMBusChannel, now: UInt64) -> VMBusStatus {
        let fresh = VMBusIntegrationService(kind: kind, timing: timing)
        do {
            pump = try VMBusICChannel(service: fresh, guestToHost: channel.inbound.memory,
                                      hostToGuest: channel.outbound.memory)
        } catch {
            log("\(kind): cannot attach to the rings of relid \(channel.relID): \(error)")
            return .unsuccessful
        }
        self.channel = channel
        service = fresh
        // NEGOTIATE goes out at once: Linux sets the channel's callback before it sends
        // OPENCHANNEL, so the interrupt finds it even if it beats OPENCHANNEL_RESULT.
        if let pump { apply(pump.start(clock(now))) }
        return .success
    }

    /// The open channel's IC state (`VMBusIntegrationService.Saved`): negotiated versions, the
    /// outstanding request, the transaction counter, the heartbeat sequence, a pending shutdown.
    public func savedState() -> [UInt8]? { pump?.save().encoded() }

    /// Continues the predecessor's negotiation: no NEGOTIATE is sent again; an outstanding request
    /// gets a whole period from now. State that does not decode (or is another kind's) is
    /// reported and the channel starts afresh, as on a first open.
    public func open(_ channel: VMBusChannel, restoring saved: [UInt8]?, now: UInt64) -> VMBusStatus {
        guard let saved else { return open(channel, now: now) }
        let restored: VMBusIntegrationService
        do {
            let s = try VMBusIntegrationService.Saved(decoding: saved)
            guard s.kind == kind else {
                log("\(kind): the saved state of relid \(channel.relID) is a \(s.kind)'s; starting afresh")
                return open(channel, now: now)
            }
            restored = VMBusIntegrationService(restoring: s, timing: timing, clock(now))
        } catch {
            log("\(kind): the saved state of relid \(channel.relID) does not decode (\(error)); starting afresh")
            return open(channel, now: now)
        }
        do {
            pump = try VMBusICChannel(service: restored, guestToHost: channel.inbound.memory,
                                      hostToGuest: channel.outbound.memory)
        } catch {
            log("\(kind): cannot attach to the rings of relid \(channel.relID): \(error)")
            return .unsuccessful
        }
        self.channel = channel
        service = restored
        return .success
    }

    public func serve(now: UInt64) {
        guard let pump else { return }
        var result = pump.pump(clock(now))
        // A pump stops after a bounded number of packets; keep going while the guest has more.
        var rounds = 0
        while result.moreToRead && rounds < 16 {
            apply(result)
            result = pump.pump(clock(now))
            rounds += 1
        }
        apply(result)
    }

    public var deadline: UInt64? { pump?.service.nextDeadline }

    public func close() {
        if let pump { service = pump.service }
        pump = nil
        channel = nil
    }

    /// Asks the guest to shut down (the shutdown IC only). False when it cannot be asked.
    public func requestShutdown(now: UInt64) -> Bool {
        guard let pump else { return false }
        let (answer, result) = pump.requestShutdown(clock(now))
        apply(result)
        if case .sent = answer { return true }
        return false
    }

    func apply(_ result: VMBusICChannel<VMBusPagedRingMemory>.Result) {
        for line in result.logs { log(line) }
        if let why = result.corruption { log("\(kind): ring of relid \(channel?.relID ?? 0) cut off: \(why)") }
        if result.interruptGuest { channel?.interruptGuest() }
        if let pump { service = pump.service }
    }
}
