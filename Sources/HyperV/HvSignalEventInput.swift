/// The HvCallSignalEvent input (TLFS HvCallSignalEvent; Linux `union hv_input_signal_event`),
/// one quadword: at the input GPA, or in RDX for the fast form Linux uses
/// (`hv_do_fast_hypercall8(HVCALL_SIGNAL_EVENT, conn_id | flag << 32)`):
///
/// | bits | field |
/// |---|---|
/// | 23:0 | ConnectionId |
/// | 31:24 | RsvdZ (top byte of HV_CONNECTION_ID) |
/// | 47:32 | FlagNumber, relative to the port's base flag |
/// | 63:48 | RsvdZ |
public struct HvSignalEventInput: Equatable, Sendable {
    public static let size = 8
    /// One SINT's event-flag area in the SIEF page is 256 bytes: 2048 flags. A port's base
    /// flag plus its flag count never exceeds this, so no valid FlagNumber reaches it.
    public static let flagsPerSint = 2048
    /// Bits that must be zero: 31:24 and 63:48 (KVM: `param & ~KVM_HYPERV_CONN_ID_MASK` once
    /// the flag number is taken out).
    public static let reservedMask: UInt64 = 0xFFFF_0000_FF00_0000

    public var connectionID: UInt32
    public var flagNumber: UInt16

    public init(connectionID: UInt32, flagNumber: UInt16) {
        self.connectionID = connectionID
        self.flagNumber = flagNumber
    }

    /// Decodes the quadword; a RsvdZ bit set is HV_STATUS_INVALID_HYPERCALL_INPUT, as KVM
    /// answers. (KVM also answers INVALID_PORT_ID for any non-zero flag number because it only
    /// supports flag 0; we leave the flag to the connection, which knows the port's flag count.)
    public static func parse(_ value: UInt64) -> Result<HvSignalEventInput, HvStatus> {
        guard value & reservedMask == 0 else { return .failure(.invalidHypercallInput) }
        return .success(HvSignalEventInput(
            connectionID: UInt32(truncatingIfNeeded: value) & HvConnectionID.idMask,
            flagNumber: UInt16(truncatingIfNeeded: value >> 32)))
    }

    /// The quadword as a guest writes it.
    public var rawValue: UInt64 {
        UInt64(connectionID) | UInt64(flagNumber) << 32
    }
}
