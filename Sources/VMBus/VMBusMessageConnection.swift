/// The fixed SynIC connections and ports of the VMBus control plane (Linux
/// include/linux/hyperv.h and drivers/hv/hyperv_vmbus.h `VMBUS_MESSAGE_CONNECTION_ID`,
/// `VMBUS_MESSAGE_CONNECTION_ID_4`, `VMBUS_MESSAGE_PORT_ID`, `VMBUS_MESSAGE_SINT`).
public enum VMBusMessageConnection {
    /// VMBUS_MESSAGE_CONNECTION_ID = 1: INITIATE_CONTACT below 5.0, and every control message
    /// after a 5.x VERSION_RESPONSE that names it (this server names 1).
    public static let id: UInt32 = 1
    /// VMBUS_MESSAGE_CONNECTION_ID_4 = 4: INITIATE_CONTACT at 5.0 and later.
    public static let id4: UInt32 = 4
    /// The connections INITIATE_CONTACT is accepted on, for any version (as OpenVMM).
    public static let accepted: [UInt32] = [id, id4]
    /// VMBUS_MESSAGE_SINT = 2: host-to-guest control messages land in SIM slot 2, and channel
    /// interrupts are SIEF slot 2 bits.
    public static let sint = 2
    /// The connection id this server names in a 5.x VERSION_RESPONSE (`msg_conn_id`).
    public static let childConnectionID: UInt32 = id
}

/// Relids and channel connection ids (Linux `MAX_CHANNEL_RELIDS`, drivers/hv/vmbus_drv.c
/// `vmbus_chan_sched`; OpenVMM's connection id scheme).
public enum VMBusRelID {
    /// Relid 0 is never used: SIEF bit 0 is not a channel (Linux scans bits from 1).
    public static let first: UInt32 = 1
    /// `MAX_CHANNEL_RELIDS` - 1: Linux's `channels[]` has 2048 entries (and SIEF slot 2 has 2048
    /// flags); a larger relid is a WARN and a dropped offer.
    public static let last: UInt32 = 2047

    /// The guest-to-host event connection of a channel: relid | SINT 2 << 12, which is unique,
    /// never one of the message connections 1...4, and what OpenVMM uses for VTL0.
    public static func connectionID(relID: UInt32) -> UInt32 { relID | UInt32(VMBusMessageConnection.sint) << 12 }
}
