/// OPENCHANNEL, CLOSECHANNEL, RELID_RELEASED, MODIFYCHANNEL, and the device's answers.
extension VMBusServer {
    /// Order: offers visible, a relid with an offer, not rescinded (Linux unblocks its opener
    /// through the rescind), closed — each of those dropped, since an answer would race the
    /// channel's real state. Then, refused with OPENCHANNEL_RESULT failure: a target VP that
    /// exists; a ring GPADL of this channel, created, of one range starting at offset 0 and
    /// covering whole pages; a downstream offset leaving each ring a header page and at least one
    /// data page. Accepted: the device gets the channel and the result waits for its answer.
    mutating func openChannel(_ o: VMBusOpenChannel, _ out: inout [VMBusServerAction]) {
        guard offersVisible else { return drop(.outOfOrder, "OPENCHANNEL before offers", &out) }
        guard let ch = channels[o.childRelID] else { return drop(.unknownChannel, "OPENCHANNEL relid \(o.childRelID)", &out) }
        guard !ch.revoked else { return drop(.channelState, "OPENCHANNEL relid \(o.childRelID) after rescind", &out) }
        guard ch.state == .closed else { return drop(.channelState, "OPENCHANNEL relid \(o.childRelID) not closed", &out) }
        func refuse(_ why: String, _ out: inout [VMBusServerAction]) {
            drop(.refused, "OPENCHANNEL relid \(o.childRelID): \(why)", &out)
            reply(.openChannelResult(VMBusOpenChannelResult(childRelID: o.childRelID, openID: o.openID, status: .unsuccessful)), &out)
        }
        guard Int(o.targetVP) < configuration.vpCount else { return refuse("target VP \(o.targetVP)", &out) }
        guard let g = gpadls[o.ringBufferGPADLHandle], g.relID == o.childRelID, g.state == .created else {
            return refuse("gpadl \(o.ringBufferGPADLHandle) is not a created GPADL of this channel", &out)
        }
        guard let pfns = Self.ringPages(g) else { return refuse("ring GPADL is not one page-aligned range", &out) }
        let offset = o.downstreamRingBufferPageOffset
        guard offset >= 2, UInt64(offset) + 2 <= UInt64(pfns.count) else {
            return refuse("downstream offset \(offset) of \(pfns.count) pages", &out)
        }
        let request = OpenRequest(openID: o.openID, ringGPADL: g.id, targetVP: o.targetVP, downstreamPageOffset: offset,
                                  userData: o.userData)
        channels[o.childRelID]?.state = .opening(request)
        out.append(.openChannel(channelOpen(ch, request, pfns: pfns, restored: false)))
    }

    /// The pages of a ring GPADL: exactly one range, offset 0, a whole number of pages.
    static func ringPages(_ g: GPADL) -> [UInt64]? {
        guard g.rangeCount == 1, let head = g.words.first else { return nil }
        let byteCount = head & 0xFFFF_FFFF, byteOffset = head >> 32
        let pfns = Array(g.words.dropFirst())
        guard byteOffset == 0, byteCount == UInt64(pfns.count) * VMBusGPARange.pageSize else { return nil }
        return pfns
    }

    func channelOpen(_ ch: Channel, _ r: OpenRequest, pfns: [UInt64], restored: Bool) -> VMBusChannelOpen {
        VMBusChannelOpen(relID: ch.relID, connectionID: ch.connectionID, targetVP: r.targetVP, ringGPADL: r.ringGPADL,
                         ringPFNs: pfns, downstreamPageOffset: r.downstreamPageOffset, userData: r.userData, restored: restored)
    }

    /// CLOSECHANNEL has no reply: the device is told to stop, and the ring GPADL stays in use
    /// until it has.
    mutating func closeChannel(relID: UInt32, _ out: inout [VMBusServerAction]) {
        guard offersVisible else { return drop(.outOfOrder, "CLOSECHANNEL before offers", &out) }
        guard let ch = channels[relID] else { return drop(.unknownChannel, "CLOSECHANNEL relid \(relID)", &out) }
        guard startClosing(ch, &out) else { return drop(.channelState, "CLOSECHANNEL relid \(relID) not open", &out) }
        // Linux closes the sub-channels first; they go with their primary (a reopened primary
        // asks for new ones).
        rescindSubChannels(of: relID, &out)
    }

    /// Moves an opening or open channel to closing and tells its device; false otherwise.
    mutating func startClosing(_ ch: Channel, _ out: inout [VMBusServerAction]) -> Bool {
        switch ch.state {
        case .opening(let r), .open(let r):
            channels[ch.relID]?.state = .closing(r)
            out.append(.closeChannel(relID: ch.relID))
            return true
        case .closed, .closing:
            return false
        }
    }

    /// RELID_RELEASED ends a rescinded channel: Linux sends CLOSECHANNEL and RELID_RELEASED but
    /// no GPADL_TEARDOWN after a rescind, so the channel's GPADLs are freed here (once its device
    /// has let go). For a channel that was not rescinded it means nothing to this server.
    mutating func relIDReleased(relID: UInt32, _ out: inout [VMBusServerAction]) {
        guard offersVisible else { return drop(.outOfOrder, "RELID_RELEASED before offers", &out) }
        guard let ch = channels[relID] else { return drop(.unknownChannel, "RELID_RELEASED relid \(relID)", &out) }
        guard ch.revoked, !ch.released else { return drop(.channelState, "RELID_RELEASED relid \(relID) not rescinded", &out) }
        channels[relID]?.released = true
        _ = startClosing(ch, &out)
        removeIfReleased(relID, &out)
    }

    /// A rescinded, released and closed channel goes, with its GPADLs. A teardown the guest is
    /// still waiting for is answered.
    mutating func removeIfReleased(_ relID: UInt32, _ out: inout [VMBusServerAction]) {
        guard let ch = channels[relID], ch.revoked, ch.released, ch.state == .closed else { return }
        for id in gpadls.keys.sorted() where gpadls[id]?.relID == relID {
            if gpadls[id]?.state == .tearingDown { reply(.gpadlTorndown(VMBusGPADLTorndown(gpadl: id)), &out) }
            gpadls[id] = nil
        }
        channels[relID] = nil
    }

    /// MODIFYCHANNEL (4.1 and later): an open channel's interrupt moves to another VP. From 5.3
    /// on it is answered (Linux then waits), with a failure for a channel that is not open or a
    /// VP that does not exist; before 5.3 such requests are dropped.
    mutating func modifyChannel(_ m: VMBusModifyChannel, _ out: inout [VMBusServerAction]) {
        guard offersVisible, let c = connected else { return drop(.outOfOrder, "MODIFYCHANNEL before offers", &out) }
        guard c.version >= .win10_v4_1 else { return drop(.outOfOrder, "MODIFYCHANNEL at version \(c.version)", &out) }
        guard let ch = channels[m.childRelID] else { return drop(.unknownChannel, "MODIFYCHANNEL relid \(m.childRelID)", &out) }
        let answers = c.version >= .win10_v5_3
        guard case .open(var r) = ch.state, Int(m.targetVP) < configuration.vpCount else {
            if answers {
                drop(.refused, "MODIFYCHANNEL relid \(m.childRelID) to VP \(m.targetVP)", &out)
                reply(.modifyChannelResponse(VMBusModifyChannelResponse(childRelID: m.childRelID, status: .unsuccessful)), &out)
            } else {
                drop(.channelState, "MODIFYCHANNEL relid \(m.childRelID) to VP \(m.targetVP)", &out)
            }
            return
        }
        r.targetVP = m.targetVP
        channels[m.childRelID]?.state = .open(r)
        out.append(.modifyChannel(relID: m.childRelID, targetVP: m.targetVP))
        if answers { reply(.modifyChannelResponse(VMBusModifyChannelResponse(childRelID: m.childRelID, status: .success)), &out) }
    }

    // MARK: Device answers

    /// The device took the channel (OPENCHANNEL_RESULT success) or refused it (its status).
    /// An answer for a channel that was closed meanwhile is expected and ignored.
    mutating func openComplete(relID: UInt32, status: VMBusStatus, _ out: inout [VMBusServerAction]) {
        guard let ch = channels[relID] else { return drop(.hostProtocol, "openComplete for relid \(relID)", &out) }
        switch ch.state {
        case .opening(let r):
            channels[relID]?.state = status.isSuccess ? .open(r) : .closed
            reply(.openChannelResult(VMBusOpenChannelResult(childRelID: relID, openID: r.openID, status: status)), &out)
            if !status.isSuccess { releaseRing(r, &out) }
        case .closing:
            break
        case .closed, .open:
            drop(.hostProtocol, "openComplete for relid \(relID) in state \(ch.state)", &out)
        }
    }

    /// The device let go: a pending teardown of the ring GPADL is answered (not during a
    /// reset, which frees every GPADL), a released channel goes, a reset may end.
    mutating func closeComplete(relID: UInt32, _ out: inout [VMBusServerAction]) {
        guard let ch = channels[relID], case .closing(let r) = ch.state else {
            return drop(.hostProtocol, "closeComplete for relid \(relID)", &out)
        }
        channels[relID]?.state = .closed
        releaseRing(r, &out)
        removeIfReleased(relID, &out)
        finishResetIfIdle(&out)
    }

    /// No device holds the ring any more: a teardown the guest asked for meanwhile is done now,
    /// and answered unless a reset is under way (a reset frees every GPADL without answers). It
    /// is freed during a reset too: left behind, it would be a GPADL tearing down that no channel
    /// holds while other channels are still closing, which `checkInvariants()`, and so `restore`
    /// of a worker restarted then, refuses (found by fuzz-vmbus-server).
    mutating func releaseRing(_ r: OpenRequest, _ out: inout [VMBusServerAction]) {
        guard gpadls[r.ringGPADL]?.state == .tearingDown else { return }
        gpadls[r.ringGPADL] = nil
        if connected != nil { reply(.gpadlTorndown(VMBusGPADLTorndown(gpadl: r.ringGPADL)), &out) }
    }

    /// The host withdraws an offer. The guest hears of it only if it has seen the offer; a
    /// channel it never saw is forgotten at once when idle, else when the reset ends.
    mutating func rescind(relID: UInt32, _ out: inout [VMBusServerAction]) {
        guard let ch = channels[relID], !ch.revoked else { return drop(.hostProtocol, "rescind of relid \(relID)", &out) }
        // Sub-channels before their primary (OpenVMM #3507).
        rescindSubChannels(of: relID, &out)
        channels[relID]?.revoked = true
        if offersVisible {
            reply(.rescindChannelOffer(VMBusRescindChannelOffer(childRelID: relID)), &out)
        } else if !isResetting && ch.state == .closed {
            channels[relID] = nil
        }
    }

    var isResetting: Bool {
        if case .resetting = connection { return true }
        return false
    }
}
