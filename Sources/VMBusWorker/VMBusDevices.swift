import IPC
import SynICRouting
import VMBus

/// The devices the VMBus worker hosts, in offer order (relid 1, 2, ...; the monitor publishes
/// their event connections for `MachineConfig.vmbusRelIDs`), and what the worker's shell asks of
/// them: a graceful shutdown, the status the monitor reads.
public final class VMBusDevices {
    public let all: [any VMBusChannelDevice]

    public init(all: [any VMBusChannelDevice]) { self.all = all }

    /// The standard set: the integration services.
    public static func standard(setup: VMBusWorkerSetup, synic: SynICRegion) -> VMBusDevices {
        VMBusDevices(all: [])
    }

    /// The operator asked for a graceful shutdown.
    public func requestShutdown(now: UInt64) {}

    /// Publishes what the monitor reads (`SynICRegion.vmbusStatus`) when it changed.
    public func publishStatus(to synic: SynICRegion) {}
}
