/// HV_CONNECTION_ID (and HV_PORT_ID): a 24-bit id with 8 RsvdZ bits on top (TLFS
/// "HV_CONNECTION_ID"; KVM `KVM_HYPERV_CONN_ID_MASK` = 0x00FFFFFF). A guest names the far end
/// of HvCallPostMessage and HvCallSignalEvent by it; with no parent partition, the ids are
/// simply a table in the VMM (VMBus message connection 1, one event connection per channel).
public enum HvConnectionID {
    /// The Id bits; the top byte is RsvdZ.
    public static let idMask: UInt32 = 0x00FF_FFFF
}
