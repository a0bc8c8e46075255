import HyperV
import IPC
import VMBus

/// The VMBus worker's logic between its rings (the shell in Workers/vmbus moves bytes and waits;
/// everything else is here, so tests run it in-process over plain memory):
///
/// - control messages the router forwards go to `VMBusService` (the server and its saved state);
/// - the server's actions are carried out: `.post` queues a message for the router, `.openChannel`
///   builds the channel substrate (`VMBusChannel`) and opens the device, whose answer goes back
///   to the server as `.openComplete` (so OPENCHANNEL_RESULT carries it), `.closeChannel` closes
///   the device and answers `.closeComplete`, `.modifyChannel` moves the channel's interrupt;
/// - queued messages are pushed to the router's ring in order; the server forgets them only once
///   pushed (`posted(through:)`), so a full ring delays a reply and never loses it;
/// - open channels are served when the guest signalled them or their device's deadline passed.
public final class VMBusWorkerCore {
    public let service: VMBusService
    /// The devices, by relid (offer order: relid 1 is `devices[0]`).
    public let devices: [UInt32: any VMBusChannelDevice]
    let map: VMBusGuestMemoryMap
    let signals: VMBusChannelSignals
    let log: (String) -> Void
    public private(set) var channels: [UInt32: VMBusChannel] = [:]
    /// Replies not yet pushed to the router, oldest first.
    public private(set) var outbound: [VMBusOutboundMessage] = []
    public private(set) var messagesPushed = 0

    /// The offers of `devices`, in relid order (no remote devices).
    public static func offers(_ devices: [any VMBusChannelDevice]) -> [VMBusOffer] { offers(devices, remote: []) }

    /// Devices served by other worker processes, by relid (after the local ones).
    public let remote: [UInt32: VMBusRemoteDevice]

    /// The offers of `devices` then `remote`, in relid order: what the worker gives `VMBusService`.
    public static func offers(_ devices: [any VMBusChannelDevice], remote: [VMBusRemoteDevice]) -> [VMBusOffer] {
        devices.map(\.offer) + remote.map(\.offer)
    }

    /// The relids reserved for the remote devices' sub-channels (`VMBusServer.Configuration`):
    /// after every primary offer, each device's `maxSubChannels` in turn. With the storage
    /// controller the only remote device, its sub-channels are relids primary + 1 ... + limit,
    /// the connections the monitor publishes for it (`MachineConfig.storageSubChannelRelIDs`).
    public static func subChannelRelIDs(localCount: Int, remote: [VMBusRemoteDevice]) -> [UInt32: [UInt32]] {
        var out: [UInt32: [UInt32]] = [:]
        var next = UInt32(localCount + remote.count) + VMBusRelID.first
        for (i, d) in remote.enumerated() where d.maxSubChannels > 0 {
            let primary = UInt32(localCount + i) + VMBusRelID.first
            out[primary] = (0..<UInt32(d.maxSubChannels)).map { next + $0 }
            next += UInt32(d.maxSubChannels)
        }
        return out
    }

    /// `service` must have been built with `offers(devices, remote:)`. What a restored service
    /// left to do (replies to post again, channels to hand back) is done at once.
    public init(service: VMBusService, devices: [any VMBusChannelDevice], remote: [VMBusRemoteDevice] = [],
                map: VMBusGuestMemoryMap, signals: VMBusChannelSignals, now: UInt64, log: @escaping (String) -> Void) {
        self.service = service
        var byRelID: [UInt32: any VMBusChannelDevice] = [:]
        for (i, d) in devices.enumerated() { byRelID[UInt32(i) + VMBusRelID.first] = d }
        self.devices = byRelID
        var remoteByRelID: [UInt32: VMBusRemoteDevice] = [:]
        let subChannels = Self.subChannelRelIDs(localCount: devices.count, remote: remote)
        for (i, d) in remote.enumerated() {
            let relID = UInt32(devices.count + i) + VMBusRelID.first
            d.relID = relID
            d.subChannelRelIDs = subChannels[relID] ?? []
            remoteByRelID[relID] = d
            for s in d.subChannelRelIDs { remoteByRelID[s] = d }
        }
        self.remote = remoteByRelID
        self.map = map
        self.signals = signals
        self.log = log
        carryOut(service.takePendingAfterRestore(), now: now)
        service.deviceStates = { [unowned self] in self.deviceStates() }
        savedDevices = deviceStates()
        service.save(log: log)
    }

    /// The open local devices' restart states, by relid.
    func deviceStates() -> [UInt32: [UInt8]] {
        var out: [UInt32: [UInt8]] = [:]
        for relID in channels.keys { if let s = devices[relID]?.savedState() { out[relID] = s } }
        return out
    }

    /// The device states last written to the state region.
    var savedDevices: [UInt32: [UInt8]] = [:]
    /// Inbound records a predecessor had already acted on, freed without acting.
    public private(set) var inboundSkipped = 0

    /// Saves when a device's state changed since the last save (after serving channels, after a
    /// shutdown request): a successor continues heartbeats and a pending request from there.
    public func saveIfDevicesChanged() {
        let now = deviceStates()
        guard now != savedDevices else { return }
        savedDevices = now
        service.save(log: log)
    }

    /// One forwarded control message (a `PostedMessageRecord`, decoded in place).
    public func handle(record: UnsafeRawBufferPointer, now: UInt64) {
        carryOut(service.handle(record: record, log: log), now: now)
    }

    /// One inbound ring record lent by `RecordRing.Consumer.tryTake` with its number: acted on and
    /// saved (with the number) unless a predecessor already did. Then the caller commits it.
    public func handle(record: UnsafeRawBufferPointer, index: UInt64, now: UInt64) {
        guard index >= service.inboundNext else {
            inboundSkipped += 1
            return
        }
        carryOut(service.handle(record: record, index: index, log: log), now: now)
    }

    func carryOut(_ actions: [VMBusServerAction], now: UInt64) {
        for action in actions {
            switch action {
            case .post(let m):
                outbound.append(m)
            case .openChannel(let o):
                if let device = remote[o.relID] {
                    // The device worker answers later (`deviceAnswered`), unless the hand-over is refused here.
                    if let refused = device.requestOpen(o), !o.restored {
                        carryOut(service.apply(.openComplete(relID: o.relID, status: refused), log: log), now: now)
                    }
                    continue
                }
                let status = openChannel(o, now: now)
                // A re-announced channel (after a restart) was answered by the predecessor.
                if !o.restored { carryOut(service.apply(.openComplete(relID: o.relID, status: status), log: log), now: now) }
            case .closeChannel(let relID):
                if let device = remote[relID] {
                    device.requestClose(relID: relID)
                    continue
                }
                if let device = devices[relID], channels.removeValue(forKey: relID) != nil { device.close() }
                carryOut(service.apply(.closeComplete(relID: relID), log: log), now: now)
            case .modifyChannel(let relID, let vp):
                remote[relID]?.requestModify(relID: relID, targetVP: vp)
                channels[relID]?.targetVP = vp
            case .log(let line):
                log(line)
            }
        }
    }

    func openChannel(_ o: VMBusChannelOpen, now: UInt64) -> VMBusStatus {
        guard let device = devices[o.relID] else {
            log("open of relid \(o.relID), which no device serves")
            return .unsuccessful
        }
        if channels.removeValue(forKey: o.relID) != nil { device.close() }
        let channel: VMBusChannel
        do { channel = try VMBusChannel(open: o, map: map, signals: signals) } catch {
            log("cannot open relid \(o.relID): \(error)")
            return .unsuccessful
        }
        channel.saveState = { [unowned self] in self.saveIfDevicesChanged() }
        // A channel the predecessor had open continues from its device's saved state.
        let status = o.restored ? device.open(channel, restoring: service.restoredDevices[o.relID], now: now)
                                : device.open(channel, now: now)
        if status.isSuccess {
            channels[o.relID] = channel
            // The predecessor may have taken the guest's signal (`takeSignal`) and died before
            // serving it: the packets wait in the ring and the guest, whose ring writes see a host
            // that has not caught up, will not signal again. So a restored channel is served once
            // without a signal (a device with nothing to do does nothing).
            if o.restored { unsignalledServes.insert(o.relID) }
        }
        return status
    }

    /// Restored channels to serve at the next `serveChannels` whether or not the guest signalled.
    var unsignalledServes: Set<UInt32> = []

    /// Pushes queued replies with `push` (false: the ring is full, try again later), in order.
    /// Returns how many were pushed.
    @discardableResult
    public func pushOutbound(_ push: (HostMessageRecord) -> Bool) -> Int {
        var pushed = 0
        var last: UInt64?
        for m in outbound {
            let record = HostMessageRecord(vp: m.vp, sint: UInt32(VMBusMessageConnection.sint),
                                           messageType: HvMessageType.vmbus.rawValue, payload: m.bytes)
            guard push(record) else { break }
            pushed += 1
            last = m.sequence
        }
        guard let last else { return 0 }
        outbound.removeFirst(pushed)
        messagesPushed += pushed
        _ = service.apply(.posted(throughSequence: last), log: log)
        return pushed
    }

    /// A device worker's answer (decoded from its ring: hostile bytes, checked here too): an
    /// answer for a relid that worker does not serve is reported and dropped; the server itself
    /// ignores an answer it is not waiting for.
    public func deviceAnswered(_ answer: ChannelAnswerRecord, from owner: WorkerKind, now: UInt64) {
        guard remote[answer.relID]?.owner == owner else {
            log("\(owner) answered for relid \(answer.relID), which it does not serve")
            return
        }
        switch answer.operation {
        case .opened:
            let status = VMBusStatus(rawValue: answer.status)
            if let device = remote[answer.relID], case .opening(let r) = service.server.channels[answer.relID]?.state,
               device.subChannelIndex(of: answer.relID) > 0 {
                log("relid \(answer.relID): sub-channel \(device.subChannelIndex(of: answer.relID)) of relid \(device.relID) "
                    + (status.isSuccess ? "opened, interrupts to VP \(r.targetVP)" : "not opened (status 0x\(String(answer.status, radix: 16)))"))
            }
            carryOut(service.apply(.openComplete(relID: answer.relID, status: status), log: log), now: now)
        case .closed:
            carryOut(service.apply(.closeComplete(relID: answer.relID), log: log), now: now)
        }
    }

    /// A device worker asks for sub-channels of its primary channel (after answering the guest's
    /// CREATE_SUB_CHANNELS): the server offers what is missing up to the limit, and only while
    /// the primary is open. A request from a worker for a relid that is not its primary is
    /// reported and dropped.
    public func deviceRequestedSubChannels(_ request: SubChannelRequestRecord, from owner: WorkerKind, now: UInt64) {
        guard let device = remote[request.relID], device.owner == owner, device.relID == request.relID else {
            log("\(owner) asked for sub-channels of relid \(request.relID), which is not its primary")
            return
        }
        carryOut(service.apply(.offerSubChannels(primaryRelID: request.relID, total: UInt16(clamping: request.total)), log: log),
                 now: now)
        log("relid \(request.relID): \(owner) asked for \(request.total) sub-channel(s); offered: \(offeredSubChannels(of: device))")
    }

    /// The device's sub-channels the server has now (offered or open), as "relid/index" words.
    func offeredSubChannels(of device: VMBusRemoteDevice) -> String {
        let words = device.subChannelRelIDs.enumerated().compactMap { i, relID -> String? in
            guard let ch = service.server.channels[relID], !ch.revoked else { return nil }
            return "\(relID)/\(i + 1)"
        }
        return words.isEmpty ? "none" : words.joined(separator: " ")
    }

    /// Serves every open channel whose guest signalled it or whose device's deadline passed.
    public func serveChannels(now: UInt64) {
        for relID in channels.keys.sorted() {
            guard let channel = channels[relID], let device = devices[relID] else { continue }
            let signalled = channel.takeSignal()
            let restored = unsignalledServes.remove(relID) != nil
            if signalled || restored || (device.deadline.map { $0 <= now } ?? false) { device.serve(now: now) }
        }
        saveIfDevicesChanged()
    }

    /// The earliest deadline of an open channel's device.
    public var nextDeadline: UInt64? {
        channels.keys.compactMap { devices[$0]?.deadline }.min()
    }
}
