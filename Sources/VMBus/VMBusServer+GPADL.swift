/// GPADL_HEADER, GPADL_BODY, GPADL_TEARDOWN.
extension VMBusServer {
    /// Order: offers visible (else dropped); then, each refusal answered with GPADL_CREATED
    /// failure for (relid, gpadl), which Linux matches exactly: a relid with an offer (also a
    /// rescinded one: Hyper-V lets those succeed, OpenVMM #3959), a handle not in use, at least
    /// one range and a whole number of words (range_buflen a multiple of 8, at least one range
    /// header and one PFN), room under the GPADL limits. Words past range_buflen are ignored.
    mutating func gpadlHeader(_ h: VMBusGPADLHeader, _ out: inout [VMBusServerAction]) {
        guard offersVisible else { return drop(.outOfOrder, "GPADL_HEADER before offers", &out) }
        func refuse(_ why: String, _ out: inout [VMBusServerAction]) {
            drop(.refused, "GPADL_HEADER relid \(h.childRelID) gpadl \(h.gpadl): \(why)", &out)
            reply(.gpadlCreated(VMBusGPADLCreated(childRelID: h.childRelID, gpadl: h.gpadl, status: .unsuccessful)), &out)
        }
        guard channels[h.childRelID] != nil else { return refuse("unknown relid", &out) }
        guard gpadls[h.gpadl] == nil else { return refuse("handle in use", &out) }
        guard h.rangeCount >= 1, h.rangeBufferLength % 8 == 0, h.totalWords >= 2 else {
            return refuse("rangecount \(h.rangeCount), range_buflen \(h.rangeBufferLength)", &out)
        }
        guard gpadls.count < configuration.limits.maxGPADLs,
              gpadlWordCount + h.totalWords <= configuration.limits.maxGPADLWords else {
            return refuse("GPADL limit", &out)
        }
        gpadls[h.gpadl] = GPADL(id: h.gpadl, relID: h.childRelID, rangeCount: h.rangeCount, expectedWords: h.totalWords,
                                words: Array(h.words.prefix(h.totalWords)), state: .building)
        finishIfComplete(h.gpadl, &out)
    }

    /// A body continues a GPADL that is still being built (else dropped: bodies carry no relid,
    /// so there is nobody to answer). Words past what the GPADL still needs are ignored.
    mutating func gpadlBody(_ b: VMBusGPADLBody, _ out: inout [VMBusServerAction]) {
        guard offersVisible else { return drop(.outOfOrder, "GPADL_BODY before offers", &out) }
        guard var g = gpadls[b.gpadl], g.state == .building else {
            return drop(.unknownGPADL, "GPADL_BODY for gpadl \(b.gpadl)", &out)
        }
        g.words += b.words.prefix(g.expectedWords - g.words.count)
        gpadls[b.gpadl] = g
        finishIfComplete(b.gpadl, &out)
    }

    /// Once every word is in: split into ranges, check every PFN against guest RAM, answer.
    mutating func finishIfComplete(_ id: UInt32, _ out: inout [VMBusServerAction]) {
        guard let g = gpadls[id], g.state == .building, g.words.count == g.expectedWords else { return }
        switch VMBusGPARange.parse(words: g.words, rangeCount: Int(g.rangeCount), ram: configuration.ram) {
        case .success:
            gpadls[id]?.state = .created
            reply(.gpadlCreated(VMBusGPADLCreated(childRelID: g.relID, gpadl: id, status: .success)), &out)
        case .failure(let why):
            gpadls[id] = nil
            drop(.refused, "GPADL relid \(g.relID) gpadl \(id): \(why)", &out)
            reply(.gpadlCreated(VMBusGPADLCreated(childRelID: g.relID, gpadl: id, status: .unsuccessful)), &out)
        }
    }

    /// Order: offers visible; a GPADL with that handle belonging to that relid (else dropped:
    /// TORNDOWN for a handle that never existed would answer nobody's request); not already
    /// being torn down. A GPADL that is a ring of a channel its device still holds is answered
    /// when the device lets go (after CLOSECHANNEL); any other is freed and answered at once.
    mutating func gpadlTeardown(_ t: VMBusGPADLTeardown, _ out: inout [VMBusServerAction]) {
        guard offersVisible else { return drop(.outOfOrder, "GPADL_TEARDOWN before offers", &out) }
        guard let g = gpadls[t.gpadl], g.relID == t.childRelID else {
            return drop(.unknownGPADL, "GPADL_TEARDOWN relid \(t.childRelID) gpadl \(t.gpadl)", &out)
        }
        if g.state == .tearingDown {
            drop(.unknownGPADL, "GPADL_TEARDOWN again for gpadl \(t.gpadl)", &out)
        } else if isRing(t.gpadl) {
            gpadls[t.gpadl]?.state = .tearingDown
        } else {
            gpadls[t.gpadl] = nil
            reply(.gpadlTorndown(VMBusGPADLTorndown(gpadl: t.gpadl)), &out)
        }
    }

    /// True while a device holds a channel whose ring is this GPADL.
    func isRing(_ id: UInt32) -> Bool {
        guard let g = gpadls[id], let ch = channels[g.relID] else { return false }
        return ch.request?.ringGPADL == id
    }

    var gpadlWordCount: Int { gpadls.values.reduce(0) { $0 + $1.expectedWords } }
}
