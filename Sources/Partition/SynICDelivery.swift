import HyperV

/// The registers of one VP's SynIC that decide where a message or event flag goes and whether
/// it interrupts: what the monitor publishes in the shared SynIC-state region and what any
/// process that delivers (the monitor for timer messages, the message router for everything
/// else) reads back.
public struct SynICRegisters: Equatable, Sendable {
    public var scontrol: UInt64
    public var simp: UInt64
    public var siefp: UInt64
    /// SINT0...SINT15.
    public var sints: [UInt64]

    public init(scontrol: UInt64 = 0, simp: UInt64 = 0, siefp: UInt64 = 0,
                sints: [UInt64] = [UInt64](repeating: HvMSR.Sint.resetValue, count: HvSynIC.sintCount)) {
        self.scontrol = scontrol
        self.simp = simp
        self.siefp = siefp
        self.sints = sints
    }

    public var isEnabled: Bool { scontrol & HvMSR.SControl.enable != 0 }
    /// Messages can be delivered: SCONTROL.Enable and SIMP.Enable.
    public var messagePageEnabled: Bool { isEnabled && simp & HvMSR.SynICPage.enable != 0 }
    /// Event flags can be set: SCONTROL.Enable and SIEFP.Enable.
    public var eventPageEnabled: Bool { isEnabled && siefp & HvMSR.SynICPage.enable != 0 }
    public var messagePage: UInt64 { simp & HvMSR.SynICPage.pageAddressMask }
    public var eventPage: UInt64 { siefp & HvMSR.SynICPage.pageAddressMask }

    /// SINTx (a value from the guest's register: out-of-range SINTs read as the reset value).
    public func sint(_ x: Int) -> UInt64 { sints.indices.contains(x) ? sints[x] : HvMSR.Sint.resetValue }

    /// Polling mode: bit 18, meaningful only when the partition advertises it.
    public func isPolling(_ x: Int, pollingAvailable: Bool) -> Bool {
        pollingAvailable && sint(x) & HvMSR.Sint.polling != 0
    }

    /// Masked for delivery: the Masked bit, unless polling mode (which unmasks) is on.
    public func isMasked(_ x: Int, pollingAvailable: Bool) -> Bool {
        sint(x) & HvMSR.Sint.masked != 0 && !isPolling(x, pollingAvailable: pollingAvailable)
    }

    /// The interrupt announcing something new in SINTx, if it generates one: unmasked and not
    /// polling. (A vector below 16 cannot be stored unmasked: the MSR write #GPs.)
    public func interrupt(for x: Int, pollingAvailable: Bool) -> SynICInterrupt? {
        let value = sint(x)
        guard value & HvMSR.Sint.masked == 0, !isPolling(x, pollingAvailable: pollingAvailable) else { return nil }
        return SynICInterrupt(sint: x, vector: HvMSR.Sint.vector(value), autoEOI: value & HvMSR.Sint.autoEOI != 0)
    }
}

/// An asserted SINT: the vector to raise and whether the guest expects AutoEOI.
public struct SynICInterrupt: Equatable, Sendable {
    public var sint: Int
    public var vector: UInt8
    public var autoEOI: Bool

    public init(sint: Int, vector: UInt8, autoEOI: Bool) {
        self.sint = sint
        self.vector = vector
        self.autoEOI = autoEOI
    }
}

/// What happened to a message offered to a SIMP slot.
public enum SynICSlotDelivery: Equatable, Sendable {
    /// In the slot; the SINT should be raised (if it interrupts).
    case delivered
    /// The slot is occupied: MessagePending is now set in the occupant, and the message must
    /// wait for the guest's EOM.
    case busy
    /// The slot is not guest RAM (or the page is disabled): nothing written.
    case unreachable
}

/// The TLFS rules for writing into a SynIC message slot and an event-flags page, shared by every
/// process that delivers (pure: guest memory through `PartitionMemory`).
public enum SynICDelivery {
    /// Offers `message` to SINTx's slot of the message page in `registers`.
    ///
    /// - The slot is free when its MessageType is None. If it is not, MessagePending is set in
    ///   the occupant (an atomic OR) and MessageType is read a second time: a guest that freed
    ///   the slot in between read the flags before they were set and will not write EOM, so
    ///   the message is delivered at once.
    /// - Header and payload are written first, MessageType last, so a guest polling the slot
    ///   never sees a type with a half-written payload. Only PayloadSize payload bytes matter;
    ///   the whole 256-byte slot is written.
    /// - `morePending` becomes the delivered message's MessagePending flag (more messages wait
    ///   behind it for the same slot, so the guest must write EOM after freeing it).
    public static func deliver(_ message: HvMessage, sint: Int, registers: SynICRegisters, morePending: Bool,
                               memory: any PartitionMemory) -> SynICSlotDelivery {
        guard registers.messagePageEnabled, (0..<HvSynIC.sintCount).contains(sint) else { return .unreachable }
        let slot = registers.messagePage + UInt64(HvMessagePage.slotOffset(sint: sint))
        guard let occupied = slotOccupied(slot, memory) else { return .unreachable }
        if occupied {
            _ = memory.fetchOr(gpa: slot + UInt64(HvMessage.flagsOffset), mask: HvMessageFlags.pending)
            guard slotOccupied(slot, memory) == false else { return .busy }
        }
        var m = message
        m.flags = morePending ? HvMessageFlags.pending : 0
        let bytes = m.encoded()
        guard memory.write(gpa: slot + 4, bytes: Array(bytes[4...])),
              memory.write(gpa: slot, bytes: Array(bytes[0..<4]))
        else { return .unreachable }
        return .delivered
    }

    /// True/false when the slot's MessageType is/is not None; nil if the slot is not RAM.
    static func slotOccupied(_ slot: UInt64, _ memory: any PartitionMemory) -> Bool? {
        guard let type = memory.read(gpa: slot + UInt64(HvMessage.typeOffset), count: 4) else { return nil }
        return type.contains { $0 != 0 }
    }

    /// Sets event flag `flag` of SINTx in the SIEF page of `registers` (atomic OR). Returns the
    /// status and the interrupt to raise: only on a 0->1 transition of the flag, and only for
    /// a SINT that interrupts. HV_STATUS_INVALID_SYNIC_STATE, nothing written, when SCONTROL or
    /// SIEFP is disabled or SINTx is masked and not polling ("If the SINTx is masked,
    /// HvSignalEvent returns HV_STATUS_INVALID_SYNIC_STATE", TLFS).
    public static func setEventFlag(sint: Int, flag: Int, registers: SynICRegisters, pollingAvailable: Bool,
                                    memory: any PartitionMemory) -> (HvStatus, SynICInterrupt?) {
        guard (0..<HvSynIC.sintCount).contains(sint), (0..<HvEventFlagsPage.flagsPerSint).contains(flag) else {
            return (.invalidParameter, nil)
        }
        guard registers.eventPageEnabled, !registers.isMasked(sint, pollingAvailable: pollingAvailable) else {
            return (.invalidSynicState, nil)
        }
        let (offset, mask) = HvEventFlagsPage.location(sint: sint, flag: flag)
        guard let before = memory.fetchOr(gpa: registers.eventPage + UInt64(offset), mask: mask) else {
            return (.invalidSynicState, nil)
        }
        guard before & mask == 0 else { return (.success, nil) }
        return (.success, registers.interrupt(for: sint, pollingAvailable: pollingAvailable))
    }
}
