import IPC
import SynICRouting
import VMBus

/// The devices the VMBus worker hosts, in offer order (relid 1, 2, ...; the monitor publishes
/// their event connections for `MachineConfig.vmbusRelIDs`), and what the worker's shell asks of
/// them: a graceful shutdown, the status the monitor reads.
public final class VMBusDevices {
    public let all: [any VMBusChannelDevice]
    public let heartbeat: VMBusICDevice?
    public let shutdown: VMBusICDevice?
    var published = SynICRegion.VMBusStatus()
    var shutdownRequested = false

    public init(all: [any VMBusChannelDevice]) {
        self.all = all
        let ics = all.compactMap { $0 as? VMBusICDevice }
        heartbeat = ics.first { $0.kind == .heartbeat }
        shutdown = ics.first { $0.kind == .shutdown }
    }

    /// The standard set: the integration services, relids 1 heartbeat, 2 shutdown, 3 time sync.
    public static func standard(clock: @escaping (UInt64) -> VMBusIntegrationService.Clock,
                                log: @escaping (String) -> Void) -> VMBusDevices {
        VMBusDevices(all: VMBusIntegrationService.Kind.allCases.map { VMBusICDevice(kind: $0, clock: clock, log: log) })
    }

    /// The operator asked for a graceful shutdown: the shutdown IC's request, if the guest has
    /// negotiated it; the answer shows in `status` (the monitor stops the VM hard otherwise).
    @discardableResult
    public func requestShutdown(now: UInt64) -> Bool {
        let sent = shutdown?.requestShutdown(now: now) ?? false
        shutdownRequested = shutdownRequested || sent
        return sent
    }

    /// What the monitor reads: whether the shutdown IC is negotiated, what became of a request,
    /// the heartbeats the guest answered.
    public var status: SynICRegion.VMBusStatus {
        var s = SynICRegion.VMBusStatus()
        if let sd = shutdown {
            if sd.pump != nil, sd.service.phase == .ready { s.flags |= SynICRegion.VMBusStatus.shutdownNegotiated }
            // The IC's own count survives a restart (its saved state); the flag here does not.
            if shutdownRequested || sd.service.shutdown.requests > 0 { s.flags |= SynICRegion.VMBusStatus.shutdownSent }
            switch sd.service.shutdown.state {
            case .accepted: s.flags |= SynICRegion.VMBusStatus.shutdownAccepted
            case .refused: s.flags |= SynICRegion.VMBusStatus.shutdownRefused
            case .notRequested, .requested: break
            }
        }
        if let hb = heartbeat?.service.heartbeat {
            s.heartbeats = hb.replies
            s.heartbeatSequence = hb.lastSequence ?? 0
            s.heartbeatMonotonicNs = hb.lastReplyAt ?? 0
        }
        return s
    }

    /// Publishes `status` to the SynIC region when it changed.
    public func publishStatus(to synic: SynICRegion) {
        let s = status
        guard s != published else { return }
        synic.vmbusStatus = s
        published = s
    }
}
