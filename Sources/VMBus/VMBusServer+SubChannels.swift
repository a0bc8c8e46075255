/// Sub-channels (storvsc's multi-channel I/O; reference section 4.8): more channels of one
/// device, offered at run time when the device asks (`.offerSubChannels`, after it answered the
/// guest's CREATE_SUB_CHANNELS). Each is an ordinary channel to the rest of the server (GPADL,
/// OPENCHANNEL with the guest's own target VP, CLOSECHANNEL, rescind) whose offer repeats the
/// primary's interface type and instance with `sub_channel_index` 1...n; Linux
/// (channel_mgmt.c `vmbus_process_offer`) files it under the primary with that type and
/// instance. Relids come from `Configuration.subChannelRelIDs`, fixed for the VM's life, so
/// the event connections exist before the guest runs (reference 7.2 item 10).
///
/// Lifetime: a sub-channel lives while its primary is open. CLOSECHANNEL of the primary and a
/// host rescind of the primary rescind its sub-channels first (OpenVMM #3507: sub-channels
/// before the primary); a reset (UNLOAD, a reconnect) closes the sub-channels before the
/// primaries and forgets them, so REQUESTOFFERS of the next connection offers only primaries,
/// and the guest's next CREATE_SUB_CHANNELS gets fresh offers.
extension VMBusServer {
    /// The sub-channels of `primary` present now (rescinded ones included), by index.
    func subChannels(of primary: UInt32) -> [Channel] {
        guard let relIDs = configuration.subChannelRelIDs[primary] else { return [] }
        return relIDs.enumerated().compactMap { i, relID in
            guard let ch = channels[relID], ch.offer.subChannelIndex == UInt16(i + 1) else { return nil }
            return ch
        }
    }

    /// Order: a primary offer; open, not rescinded, with the offers visible (a device asking
    /// for a closed channel's sub-channels is late, or lying: dropped). Then every missing index
    /// up to min(total, limit) is offered; existing ones stay (growth is idempotent, asking for
    /// fewer withdraws nothing); an index whose relid a rescinded sub-channel still holds (the
    /// guest has not released it) is skipped.
    mutating func offerSubChannels(primary: UInt32, total: UInt16, _ out: inout [VMBusServerAction]) {
        guard let p = channels[primary], p.offer.subChannelIndex == 0 else {
            return drop(.hostProtocol, "sub-channels of relid \(primary), which is not a primary", &out)
        }
        guard offersVisible, !p.revoked, case .open = p.state else {
            return drop(.channelState, "sub-channels of relid \(primary), which is not open", &out)
        }
        let relIDs = configuration.subChannelRelIDs[primary] ?? []
        if Int(total) > relIDs.count {
            drop(.refused, "\(total) sub-channels of relid \(primary) asked for, \(relIDs.count) at most", &out)
        }
        let n = min(Int(total), relIDs.count)
        guard n > 0 else { return }
        for index in 1...n {
            let relID = relIDs[index - 1]
            if let existing = channels[relID] {
                if existing.revoked {
                    drop(.channelState, "sub-channel \(index) of relid \(primary): relid \(relID) not yet released", &out)
                }
                continue
            }
            var offer = p.offer
            offer.subChannelIndex = UInt16(index)
            let ch = Channel(relID: relID, offer: offer)
            channels[relID] = ch
            reply(.offerChannel(VMBusOfferChannel(offer: offer, childRelID: relID, connectionID: ch.connectionID)), &out)
        }
    }

    /// Rescinds every sub-channel of `primary` the guest still has.
    mutating func rescindSubChannels(of primary: UInt32, _ out: inout [VMBusServerAction]) {
        for ch in subChannels(of: primary) where !ch.revoked { rescind(relID: ch.relID, &out) }
    }
}
