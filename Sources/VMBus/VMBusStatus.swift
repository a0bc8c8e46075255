/// The u32 status of GPADL_CREATED, OPENCHANNEL_RESULT and MODIFYCHANNEL_RESPONSE: an NTSTATUS
/// on Hyper-V. Linux only tests it against zero (`creation_status`, `open_result.status`,
/// `modify_response.status`).
public struct VMBusStatus: RawRepresentable, Equatable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// STATUS_SUCCESS.
    public static let success = VMBusStatus(rawValue: 0)
    /// STATUS_UNSUCCESSFUL (0xC0000001): what this server answers for every refused request.
    public static let unsuccessful = VMBusStatus(rawValue: 0xC000_0001)

    public var isSuccess: Bool { rawValue == 0 }

    public var description: String { "0x" + String(rawValue, radix: 16, uppercase: true) }
}

/// `connection_state` of VERSION_RESPONSE (OpenVMM `ConnectionState`). Linux ignores it and
/// reads only `version_supported`, so this server never pairs "supported" with a failure.
public struct VMBusConnectionState: RawRepresentable, Equatable, Hashable, Sendable {
    public var rawValue: UInt8

    public init(rawValue: UInt8) {
        self.rawValue = rawValue
    }

    public static let successful = VMBusConnectionState(rawValue: 0)
    public static let failedLowResources = VMBusConnectionState(rawValue: 1)
    public static let failedUnknownFailure = VMBusConnectionState(rawValue: 2)
}
