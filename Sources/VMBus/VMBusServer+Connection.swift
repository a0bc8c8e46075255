/// INITIATE_CONTACT, REQUESTOFFERS, UNLOAD and the reset both of them can start.
extension VMBusServer {
    /// INITIATE_CONTACT. While connected (kexec, kdump, a reboot without a VM reset) the server
    /// first closes everything as for UNLOAD, then answers as if disconnected; a second one
    /// during that reset replaces the first (the latest guest is the one waiting).
    mutating func initiateContact(_ c: VMBusInitiateContact, connectionID: UInt32, fromVP: UInt32,
                                  _ out: inout [VMBusServerAction]) {
        switch connection {
        case .disconnected: answerContact(c, fromVP: fromVP, &out)
        case .connected, .resetting: beginReset(.contact(c, connectionID: connectionID, fromVP: fromVP), &out)
        }
    }

    /// Order of decisions (Linux connection.c `vmbus_negotiate_version`, OpenVMM
    /// `handle_initiate_contact`): a version this server speaks (else `version_supported` 0, the
    /// guest tries its next one at once); a target VP that exists (from 3.0 on; older versions
    /// use VP 0); `msg_sint` 2 from 5.0 on; both monitor pages or neither. Each refusal is
    /// VERSION_RESPONSE with `version_supported` 0, to the target VP when it exists, else to
    /// the sender.
    mutating func answerContact(_ c: VMBusInitiateContact, fromVP: UInt32, _ out: inout [VMBusServerAction]) {
        let version = c.versionRequested
        let target = version >= .win8_1 ? c.targetVCPU : 0
        let targetExists = Int(target) < configuration.vpCount
        func refuse(_ state: VMBusConnectionState, _ why: String, _ out: inout [VMBusServerAction]) {
            drop(.refused, "INITIATE_CONTACT \(version): \(why)", &out)
            post(.versionResponse(VMBusVersionResponse(versionSupported: false, connectionState: state)),
                 to: targetExists ? target : fromVP, &out)
        }
        guard version.isSupported else { return refuse(.successful, "version not supported", &out) }
        guard targetExists else { return refuse(.failedUnknownFailure, "target VP \(target) does not exist", &out) }
        if version >= .win10_v5, Int(c.messageSINT) != VMBusMessageConnection.sint {
            return refuse(.failedUnknownFailure, "msg_sint \(c.messageSINT) is not 2", &out)
        }
        guard (c.monitorPage1 == 0) == (c.monitorPage2 == 0) else {
            return refuse(.failedUnknownFailure, "only one monitor page", &out)
        }
        connection = .connected(Connected(version: version, targetVP: target, monitorPage1: c.monitorPage1,
                                          monitorPage2: c.monitorPage2))
        let connID = version >= .win10_v5 ? VMBusMessageConnection.childConnectionID : 0
        post(.versionResponse(VMBusVersionResponse(versionSupported: true, connectionState: .successful,
                                                   messageConnectionID: connID)), to: target, &out)
    }

    /// REQUESTOFFERS: once per connection, every offer in relid order, then ALLOFFERS_DELIVERED
    /// (OpenVMM does the same; Linux sends it once after connecting).
    mutating func requestOffers(_ out: inout [VMBusServerAction]) {
        guard var c = connected else { return drop(.outOfOrder, "REQUESTOFFERS while not connected", &out) }
        guard !c.offersSent else { return drop(.outOfOrder, "REQUESTOFFERS again", &out) }
        c.offersSent = true
        connection = .connected(c)
        for relID in channels.keys.sorted() {
            guard let ch = channels[relID], !ch.revoked else { continue }
            reply(.offerChannel(VMBusOfferChannel(offer: ch.offer, childRelID: relID, connectionID: ch.connectionID)), &out)
        }
        reply(.allOffersDelivered, &out)
    }

    /// UNLOAD is always answered (Linux waits forever on kexec, 100 s on a crash): at once when
    /// nothing is connected, else after the reset.
    mutating func unload(fromVP: UInt32, _ out: inout [VMBusServerAction]) {
        switch connection {
        case .disconnected: post(.unloadResponse, to: fromVP, &out)
        case .connected(let c): beginReset(.unload(replyVP: c.targetVP), &out)
        case .resetting: beginReset(.unload(replyVP: fromVP), &out)
        }
    }

    /// Closes every channel a device holds (the device answers `.closeComplete`); the reset
    /// ends, and `pending` is answered, when none is left.
    mutating func beginReset(_ pending: PendingReset, _ out: inout [VMBusServerAction]) {
        connection = .resetting(pending)
        // Sub-channels before the primaries (reference 2.7: Linux closes them first too).
        let order = channels.keys.sorted { a, b in
            let sa = channels[a]?.offer.subChannelIndex != 0, sb = channels[b]?.offer.subChannelIndex != 0
            return sa != sb ? sa : a < b
        }
        for relID in order {
            guard let ch = channels[relID] else { continue }
            switch ch.state {
            case .opening(let r), .open(let r):
                channels[relID]?.state = .closing(r)
                out.append(.closeChannel(relID: relID))
            case .closed, .closing:
                break
            }
        }
        finishResetIfIdle(&out)
    }

    /// Every GPADL is freed and every withdrawn offer and every sub-channel forgotten; the rest
    /// are offered again on the next REQUESTOFFERS.
    mutating func finishResetIfIdle(_ out: inout [VMBusServerAction]) {
        guard case .resetting(let pending) = connection,
              channels.values.allSatisfy({ $0.state == .closed }) else { return }
        gpadls.removeAll()
        channels = channels.filter { !$0.value.revoked && $0.value.offer.subChannelIndex == 0 }
        for relID in channels.keys { channels[relID]?.released = false }
        connection = .disconnected
        switch pending {
        case .unload(let vp): post(.unloadResponse, to: vp, &out)
        case .contact(let c, _, let vp): answerContact(c, fromVP: vp, &out)
        }
    }
}
