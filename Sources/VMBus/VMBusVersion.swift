/// A VMBus protocol version, `(major << 16) | minor` (Linux include/linux/hyperv.h
/// `VERSION_WS2008` ... `VERSION_WIN10_V5_3`, `VMBUS_MAKE_VERSION`).
///
/// Open: the guest asks for any 32-bit value in INITIATE_CONTACT.
public struct VMBusVersion: RawRepresentable, Equatable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    public init(major: UInt16, minor: UInt16) {
        rawValue = UInt32(major) << 16 | UInt32(minor)
    }

    public var major: UInt16 { UInt16(truncatingIfNeeded: rawValue >> 16) }
    public var minor: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    /// VERSION_WS2008, 0.13 (interrupt-page era; not served).
    public static let ws2008 = VMBusVersion(major: 0, minor: 13)
    /// VERSION_WIN7, 1.1 (not served).
    public static let win7 = VMBusVersion(major: 1, minor: 1)
    /// VERSION_WIN8, 2.4 (Windows 8, WS2012): the oldest version served.
    public static let win8 = VMBusVersion(major: 2, minor: 4)
    /// VERSION_WIN8_1, 3.0 (Windows 8.1, WS2012 R2): `target_vcpu` is honoured from here on,
    /// and Linux sends UNLOAD only from here on.
    public static let win8_1 = VMBusVersion(major: 3, minor: 0)
    /// VERSION_WIN10, 4.0.
    public static let win10 = VMBusVersion(major: 4, minor: 0)
    /// VERSION_WIN10_V4_1, 4.1 (RS3): MODIFYCHANNEL exists from here on.
    public static let win10_v4_1 = VMBusVersion(major: 4, minor: 1)
    /// VERSION_WIN10_V5, 5.0: INITIATE_CONTACT moves to message connection 4 and carries
    /// `msg_sint`; VERSION_RESPONSE carries the connection id for all later messages.
    public static let win10_v5 = VMBusVersion(major: 5, minor: 0)
    /// VERSION_WIN10_V5_1, 5.1 (RS4).
    public static let win10_v5_1 = VMBusVersion(major: 5, minor: 1)
    /// VERSION_WIN10_V5_2, 5.2 (WS2019, RS5).
    public static let win10_v5_2 = VMBusVersion(major: 5, minor: 2)
    /// VERSION_WIN10_V5_3, 5.3 (WS2022): MODIFYCHANNEL is answered (MODIFYCHANNEL_RESPONSE).
    public static let win10_v5_3 = VMBusVersion(major: 5, minor: 3)
    /// VERSION_WIN10_V6_0 / "Copper", 6.0: other message layouts; refused.
    public static let win10_v6_0 = VMBusVersion(major: 6, minor: 0)

    /// What this server accepts, newest first: every version Linux (`vmbus_versions[]`) and
    /// Windows offer from 2.4 to 5.3. Anything else gets `version_supported = 0`, as on Hyper-V,
    /// and the guest tries its next one.
    public static let supported: [VMBusVersion] = [
        .win10_v5_3, .win10_v5_2, .win10_v5_1, .win10_v5, .win10_v4_1, .win10, .win8_1, .win8,
    ]

    public var isSupported: Bool { Self.supported.contains(self) }

    public static func < (a: VMBusVersion, b: VMBusVersion) -> Bool { a.rawValue < b.rawValue }

    public var description: String { "\(major).\(minor)" }
}
