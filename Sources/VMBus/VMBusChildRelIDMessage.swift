/// A control message that is its 8-byte header and one u32 child_relid at +8, 12 bytes:
/// CHANNELMSG_RESCIND_CHANNELOFFER (2), CHANNELMSG_CLOSECHANNEL (7),
/// CHANNELMSG_RELID_RELEASED (13). One codec for the three (`hyperv.h` gives each its own
/// struct of the same layout).
public protocol VMBusChildRelIDMessage: Equatable, Sendable {
    static var type: VMBusMessageType { get }
    var childRelID: UInt32 { get }
    init(childRelID: UInt32)
}

extension VMBusChildRelIDMessage {
    public static var size: Int { 12 }

    public init(decoding bytes: [UInt8]) throws(VMBusMessageError) {
        self.init(childRelID: try MessageReader(bytes, type: Self.type, minimumSize: Self.size).u32(at: 8))
    }

    public func encoded() -> [UInt8] {
        var w = MessageWriter(type: Self.type, size: Self.size)
        w.u32(childRelID, at: 8)
        return w.bytes
    }
}
