import HyperV
import IPC
import Partition
import SynICRouting
import VMBus

/// One open VMBus channel as a device serves it: the channel substrate (docs/vmbus.md, "The
/// channel substrate"). Built by the VMBus worker from the server's `.openChannel` action; the
/// same pieces serve a device in another process once it is handed the open record, the guest-RAM
/// and SynIC regions, its doorbell and the target VP's SINT2 eventfd.
///
/// - Guest to host: the guest writes packets into `inbound` and calls HvSignalEvent on the
///   channel's event connection; the monitor sets the connection's pending word in the shared
///   table and rings the owner's doorbell (no router hop). `takeSignal()` takes that word.
/// - Host to guest: the device writes packets into `outbound`; when the ring rules say the guest
///   must be told, `interruptGuest()` sets bit `relID` of SIEF slot 2 on the target VP (an atomic
///   OR in guest RAM) and, on 0 -> 1, writes that VP's SINT2 eventfd (a KVM irqfd). The monitor
///   is not on this path.
///
/// The rings work in place on the guest's pages (`VMBusPagedRingMemory`): every page was checked
/// against guest RAM by the server, and every index and descriptor the guest writes is checked by
/// the ring library before use.
public final class VMBusChannel {
    public let open: VMBusChannelOpen
    /// Guest-to-host ring (Linux's "outbound" ring of the channel): the device reads it.
    public let inbound: VMBusRingConsumer<VMBusPagedRingMemory>
    /// Host-to-guest ring: the device writes it.
    public let outbound: VMBusRingProducer<VMBusPagedRingMemory>
    /// The VP to interrupt (MODIFYCHANNEL may move it).
    public var targetVP: UInt32
    let signals: VMBusChannelSignals
    /// Index of the channel's event connection in the shared table, when the router published it.
    let eventEntry: Int?
    /// Writes the worker's restart state now, the devices' `savedState()` included (set by the
    /// worker that opened the channel): a device whose next ring effect must not be done twice or
    /// lost records what it is about to do, calls this, then commits (the echo device).
    public var saveState: () -> Void = {}

    public enum SetupError: Error, CustomStringConvertible {
        case rings(String)
        public var description: String {
            switch self {
            case .rings(let why): return why
            }
        }
    }

    public init(open: VMBusChannelOpen, map: VMBusGuestMemoryMap, signals: VMBusChannelSignals) throws(SetupError) {
        guard let (g2h, h2g) = VMBusChannelRings.split(pfns: open.ringPFNs, downstreamPageOffset: open.downstreamPageOffset)
        else { throw .rings("relid \(open.relID): ring GPADL of \(open.ringPFNs.count) pages split at \(open.downstreamPageOffset)") }
        do {
            inbound = try VMBusRingConsumer(memory: try VMBusPagedRingMemory(map: map, pfns: g2h))
            outbound = try VMBusRingProducer(memory: try VMBusPagedRingMemory(map: map, pfns: h2g))
        } catch {
            throw .rings("relid \(open.relID): \(error)")
        }
        self.open = open
        targetVP = open.targetVP
        self.signals = signals
        eventEntry = signals.synic.connections.find(open.connectionID)?.index
    }

    public var relID: UInt32 { open.relID }

    /// Takes the guest's pending signal for this channel (true if it had signalled since).
    public func takeSignal() -> Bool {
        guard let index = eventEntry else { return false }
        return signals.synic.connections.takeEventPending(index: index)
    }

    /// Tells the guest this channel has something for it (SIEF bit, then SINT2 on 0 -> 1).
    /// False when the guest's SynIC cannot take it (SIEFP off, SINT2 masked): Linux then polls
    /// or has not set up yet, and nothing is lost since the ring holds the packets.
    @discardableResult
    public func interruptGuest() -> Bool { signals.interrupt(relID: relID, vp: targetVP) }
}

/// What every channel of a worker shares to signal the guest and be signalled: the SynIC region
/// (registers as the monitor publishes them, the connection table) and guest RAM (the SIEF
/// pages), and the SINT2 raise (an eventfd write in the worker's shell).
public final class VMBusChannelSignals {
    public let synic: SynICRegion
    public let memory: any PartitionMemory
    public let pollingAvailable: Bool
    let raiseSINT2: (UInt32) -> Void
    public private(set) var interrupts = 0

    public init(synic: SynICRegion, memory: any PartitionMemory, pollingAvailable: Bool, raiseSINT2: @escaping (UInt32) -> Void) {
        self.synic = synic
        self.memory = memory
        self.pollingAvailable = pollingAvailable
        self.raiseSINT2 = raiseSINT2
    }

    func interrupt(relID: UInt32, vp: UInt32) -> Bool {
        guard let registers = synic.registers(vp: vp) else { return false }
        let (status, raise) = SynICDelivery.setEventFlag(sint: VMBusMessageConnection.sint, flag: Int(relID),
                                                         registers: registers, pollingAvailable: pollingAvailable,
                                                         memory: memory)
        guard status == .success else { return false }
        if raise != nil {
            interrupts += 1
            raiseSINT2(vp)
        }
        return true
    }
}
