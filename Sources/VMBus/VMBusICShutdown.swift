/// The shutdown body (Linux `struct shutdown_msg_data`), at +28 of the payload:
///
/// | payload offset | size | field |
/// |---|---|---|
/// | 28 | 4 | reason_code |
/// | 32 | 4 | timeout_seconds |
/// | 36 | 4 | flags (`Flags`) |
/// | 40 | 2048 | display_message |
///
/// Linux drops a shutdown message whose payload is under 2088 bytes (28 + 2060), so the host
/// always sends the whole body. Linux answers flags 0 and 1 with S_OK, sends the reply, then
/// powers off (`orderly_poweroff(true)`); 2 and 3 reboot; 4 and 5 hibernate if ACPI S4 is
/// supported, else E_FAIL; anything else E_FAIL.
public struct VMBusICShutdownMessage: Equatable, Sendable {
    public static let reasonCodeOffset = VMBusICMessageHeader.bodyOffset
    public static let timeoutOffset = reasonCodeOffset + 4
    public static let flagsOffset = reasonCodeOffset + 8
    public static let displayMessageOffset = reasonCodeOffset + 12
    public static let displayMessageSize = 2048
    public static let bodySize = 12 + displayMessageSize
    public static let payloadSize = VMBusICMessageHeader.bodyOffset + bodySize

    /// SHTDN_REASON_FLAG_PLANNED: what OpenVMM sends.
    public static let reasonPlanned: UInt32 = 0x8000_0000

    /// `flags` values as Linux hv_util.c reads them.
    public struct Flags: RawRepresentable, Equatable, Hashable, Sendable {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let shutdown = Flags(rawValue: 0)
        public static let shutdownForced = Flags(rawValue: 1)
        public static let restart = Flags(rawValue: 2)
        public static let restartForced = Flags(rawValue: 3)
        public static let hibernate = Flags(rawValue: 4)
        public static let hibernateForced = Flags(rawValue: 5)
    }

    public var reasonCode: UInt32
    public var timeoutSeconds: UInt32
    public var flags: Flags

    public init(reasonCode: UInt32 = reasonPlanned, timeoutSeconds: UInt32 = 0, flags: Flags = .shutdown) {
        self.reasonCode = reasonCode
        self.timeoutSeconds = timeoutSeconds
        self.flags = flags
    }

    /// The whole 2088-byte request; the display message is left zero (Linux ignores it).
    public func request(framework: VMBusICVersion, message: VMBusICVersion) -> [UInt8] {
        var body = VMBusICPayloadWriter(size: Self.bodySize)
        body.u32(reasonCode, at: 0)
        body.u32(timeoutSeconds, at: 4)
        body.u32(flags.rawValue, at: 8)
        return VMBusICMessageHeader(frameworkVersion: framework, messageType: .shutdown, messageVersion: message,
                                    messageSize: 0).message(body: body.bytes)
    }
}
