/// What must hold between any two inputs. Tests call `checkInvariants()` after every step;
/// `restore` refuses a saved state that breaks any of it.
extension VMBusServer {
    /// Every broken invariant, described; empty when the state is consistent.
    public func checkInvariants() -> [String] {
        var problems: [String] = []
        func fail(_ s: String) { problems.append(s) }
        let vpCount = configuration.vpCount

        switch connection {
        case .disconnected:
            if !gpadls.isEmpty { fail("disconnected with \(gpadls.count) GPADLs") }
        case .connected(let c):
            if !c.version.isSupported { fail("connected at unsupported version \(c.version)") }
            if Int(c.targetVP) >= vpCount { fail("target VP \(c.targetVP) does not exist") }
            if !c.offersSent && !gpadls.isEmpty { fail("GPADLs before the offers were sent") }
        case .resetting(let p):
            switch p {
            case .unload(let vp): if Int(vp) >= vpCount { fail("UNLOAD reply VP \(vp) does not exist") }
            case .contact(_, let conn, let vp):
                if Int(vp) >= vpCount { fail("INITIATE_CONTACT sender VP \(vp) does not exist") }
                if !VMBusMessageConnection.accepted.contains(conn) { fail("INITIATE_CONTACT on connection \(conn)") }
            }
        }

        for (relID, ch) in channels {
            if ch.relID != relID { fail("channel \(ch.relID) filed under relid \(relID)") }
            if relID < VMBusRelID.first || relID > VMBusRelID.last { fail("relid \(relID) out of range") }
            if ch.offer.userDefined.count != VMBusOfferChannel.userDefinedSize { fail("relid \(relID): user_def size") }
            if ch.released && !ch.revoked { fail("relid \(relID) released without a rescind") }
            switch ch.state {
            case .closed:
                if ch.revoked && ch.released { fail("relid \(relID) released and closed but still present") }
            case .opening, .open:
                if !offersVisible { fail("relid \(relID) open while the offers are not visible") }
            case .closing:
                if !offersVisible && !isResetting { fail("relid \(relID) closing outside a connection") }
            }
            if case .disconnected = connection, ch.revoked { fail("relid \(relID) rescinded while disconnected") }
            if ch.offer.subChannelIndex != 0 {
                if case .disconnected = connection { fail("sub-channel relid \(relID) while disconnected") }
                if let p = configuration.primary(ofSubChannel: relID, index: ch.offer.subChannelIndex) {
                    if let primary = channels[p], primary.offer.interfaceType != ch.offer.interfaceType
                        || primary.offer.interfaceInstance != ch.offer.interfaceInstance {
                        fail("sub-channel relid \(relID) differs from its primary \(p)")
                    }
                    if channels[p] == nil && !ch.revoked { fail("sub-channel relid \(relID) outlives its primary \(p) unrescinded") }
                } else {
                    fail("relid \(relID): sub-channel index \(ch.offer.subChannelIndex) not reserved there")
                }
            } else if configuration.subChannelRelIDs.values.contains(where: { $0.contains(relID) }) {
                fail("relid \(relID), reserved for a sub-channel, holds a primary offer")
            }
            if let r = ch.request {
                if Int(r.targetVP) >= vpCount { fail("relid \(relID): target VP \(r.targetVP)") }
                if r.userData.count != VMBusOpenChannel.userDataSize { fail("relid \(relID): user data size") }
                if let g = gpadls[r.ringGPADL] {
                    if g.relID != relID { fail("relid \(relID): ring gpadl \(g.id) belongs to relid \(g.relID)") }
                    if g.state == .building { fail("relid \(relID): ring gpadl \(g.id) still building") }
                    if let pages = Self.ringPages(g) {
                        if r.downstreamPageOffset < 2 || UInt64(r.downstreamPageOffset) + 2 > UInt64(pages.count) {
                            fail("relid \(relID): downstream offset \(r.downstreamPageOffset)")
                        }
                    } else {
                        fail("relid \(relID): ring gpadl \(g.id) is not a ring")
                    }
                } else if !isResetting {
                    fail("relid \(relID): ring gpadl \(r.ringGPADL) missing")
                }
            }
        }

        for (id, g) in gpadls {
            if g.id != id { fail("gpadl \(g.id) filed under \(id)") }
            if channels[g.relID] == nil { fail("gpadl \(id) of missing relid \(g.relID)") }
            if g.rangeCount == 0 { fail("gpadl \(id) without ranges") }
            if g.expectedWords < 2 || g.expectedWords > Int(UInt16.max) / 8 { fail("gpadl \(id): \(g.expectedWords) words expected") }
            switch g.state {
            case .building:
                if g.words.count >= g.expectedWords { fail("gpadl \(id) complete but still building") }
            case .created, .tearingDown:
                if g.words.count != g.expectedWords { fail("gpadl \(id): \(g.words.count) of \(g.expectedWords) words") }
                if case .failure(let why) = VMBusGPARange.parse(words: g.words, rangeCount: Int(g.rangeCount), ram: configuration.ram) {
                    fail("gpadl \(id) created but invalid: \(why)")
                }
                if g.state == .tearingDown && !isRing(id) { fail("gpadl \(id) tearing down but not in use") }
            }
        }
        if gpadls.count > configuration.limits.maxGPADLs { fail("\(gpadls.count) GPADLs") }
        if gpadlWordCount > configuration.limits.maxGPADLWords { fail("\(gpadlWordCount) GPADL words") }

        var last: UInt64? = nil
        for m in outbound {
            if let l = last, m.sequence <= l { fail("outbound sequence \(m.sequence) after \(l)") }
            if m.sequence >= nextSequence { fail("outbound sequence \(m.sequence) not below \(nextSequence)") }
            if Int(m.vp) >= vpCount { fail("outbound message to VP \(m.vp)") }
            if (try? VMBusHostMessage.decode(m.bytes)) == nil { fail("outbound message \(m.sequence) does not decode") }
            last = m.sequence
        }
        return problems
    }
}
