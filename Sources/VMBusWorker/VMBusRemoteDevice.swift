import IPC
import VMBus

/// A device served by another worker process (the storage worker): the VMBus worker keeps the
/// control plane and hands the channel over with a `ChannelControlRecord`; the device worker
/// builds its own `VMBusChannel` from it (rings over its own mapping of guest RAM, its own
/// doorbell for the guest's signals, SIEF bit + SINT2 eventfd for interrupts) and answers with a
/// `ChannelAnswerRecord`, which `VMBusWorkerCore.deviceAnswered` turns into OPENCHANNEL_RESULT or
/// the release of the ring GPADL. The guest's HvSignalEvent on the channel goes from the monitor
/// straight to the device worker (the connection's owner in the router's table), not through here.
///
/// Records the ring refuses (full) wait here, in order, until `flush` gets them through: an open
/// or a close is never lost (Linux waits for OPENCHANNEL_RESULT with no timeout).
public final class VMBusRemoteDevice {
    public let offer: VMBusOffer
    /// The worker kind that serves it (`WorkerKind.storage`): the owner of its event connection.
    public let owner: WorkerKind
    /// How many sub-channels the device may have (`VMBusRemoteDeviceSetup.maxSubChannels`).
    public let maxSubChannels: Int
    /// Its primary channel's relid and its sub-channels' (index 1 is `[0]`), set by the core.
    public internal(set) var relID: UInt32 = 0
    public internal(set) var subChannelRelIDs: [UInt32] = []
    public private(set) var pending: [ChannelControlRecord] = []

    public init(offer: VMBusOffer, owner: WorkerKind, maxSubChannels: Int = 0) {
        precondition(maxSubChannels >= 0 && maxSubChannels <= Int(ChannelControlRecord.maxSubChannels))
        self.offer = offer
        self.owner = owner
        self.maxSubChannels = maxSubChannels
    }

    /// 0 for the primary, n for sub-channel n.
    func subChannelIndex(of relID: UInt32) -> UInt32 {
        subChannelRelIDs.firstIndex(of: relID).map { UInt32($0 + 1) } ?? 0
    }

    func requestOpen(_ o: VMBusChannelOpen) -> VMBusStatus? {
        guard o.ringPFNs.count <= ChannelControlRecord.maxPFNs else { return .unsuccessful }
        pending.append(ChannelControlRecord(operation: .open, relID: o.relID, connectionID: o.connectionID,
                                            targetVP: o.targetVP, downstreamPageOffset: o.downstreamPageOffset,
                                            restored: o.restored, subChannelIndex: subChannelIndex(of: o.relID), pfns: o.ringPFNs))
        return nil
    }

    func requestClose(relID: UInt32) {
        pending.append(ChannelControlRecord(operation: .close, relID: relID))
    }

    func requestModify(relID: UInt32, targetVP: UInt32) {
        pending.append(ChannelControlRecord(operation: .modify, relID: relID, targetVP: targetVP))
    }

    /// Pushes what waits with `push` (false: full, later), in order. Returns how many went.
    @discardableResult
    public func flush(_ push: (ChannelControlRecord) -> Bool) -> Int {
        var n = 0
        for r in pending {
            guard push(r) else { break }
            n += 1
        }
        pending.removeFirst(n)
        return n
    }
}
