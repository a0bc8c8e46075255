/// The timesync bodies, at +28 of the payload. Two layouts, chosen by the negotiated message
/// version (Linux hv_util.c `timesync_onchannelcallback`: the 4.0 layout when the version is
/// above 3.0, else the old one, also when nothing was negotiated).
///
/// From 4.0 (Linux `struct ictimesync_ref_data`, packed, 22 bytes; OpenVMM
/// `TimesyncMessageV4`, 24 with 5 reserved bytes; the host sends 24, Linux needs 50 in all):
///
/// | payload offset | size | field |
/// |---|---|---|
/// | 28 | 8 | parenttime: host wall time, 100 ns units since 1601-01-01 UTC |
/// | 36 | 8 | vmreferencetime: the guest's reference counter (100 ns) when parenttime was read |
/// | 44 | 1 | flags (`Flags`) |
/// | 45 | 1 | leapflags |
/// | 46 | 1 | stratum |
/// | 47 | 5 | reserved |
///
/// Before 4.0 (Linux `struct ictimesync_data`, packed, 25 bytes; OpenVMM 28; Linux needs 53):
///
/// | payload offset | size | field |
/// |---|---|---|
/// | 28 | 8 | parenttime |
/// | 36 | 8 | childtime (unused) |
/// | 44 | 8 | roundtriptime |
/// | 52 | 1 | flags |
/// | 53 | 3 | reserved |
///
/// Linux sets the clock on SYNC (unless the sample is over 600 s old), keeps SAMPLEs for the
/// hv_ptp clock, and always replies (the reply's body is not read by the host).
public struct VMBusICTimesyncMessage: Equatable, Sendable {
    public static let parentTimeOffset = VMBusICMessageHeader.bodyOffset
    public static let referenceTimeOffset = parentTimeOffset + 8
    public static let flagsOffset = parentTimeOffset + 16
    public static let leapFlagsOffset = flagsOffset + 1
    public static let stratumOffset = flagsOffset + 2
    public static let bodySize = 24
    public static let payloadSize = VMBusICMessageHeader.bodyOffset + bodySize

    public static let legacyChildTimeOffset = parentTimeOffset + 8
    public static let legacyRoundTripTimeOffset = parentTimeOffset + 16
    public static let legacyFlagsOffset = parentTimeOffset + 24
    public static let legacyBodySize = 28
    public static let legacyPayloadSize = VMBusICMessageHeader.bodyOffset + legacyBodySize

    /// The first version with the reference-time layout (TS_VERSION_4).
    public static let referenceTimeVersion = VMBusICVersion(4, 0)

    /// 100 ns intervals from 1601-01-01 to 1970-01-01 (Linux WLTIMEDELTA).
    public static let epochDelta: UInt64 = 116_444_736_000_000_000

    /// `flags` (ICTIMESYNCFLAG_*).
    public enum Flags {
        public static let probe: UInt8 = 0
        /// Set the guest clock now.
        public static let sync: UInt8 = 1
        /// A sample for the guest's PTP clock.
        public static let sample: UInt8 = 2
    }

    /// parenttime: host wall time in 100 ns units since 1601.
    public var parentTime: UInt64
    /// vmreferencetime (4.0 layout only): the guest's reference time at that moment.
    public var referenceTime: UInt64
    public var flags: UInt8

    public init(parentTime: UInt64, referenceTime: UInt64, flags: UInt8) {
        self.parentTime = parentTime
        self.referenceTime = referenceTime
        self.flags = flags
    }

    /// UNIX time in nanoseconds to parenttime (100 ns since 1601); times before 1601 clamp to 0.
    public static func parentTime(unixNanoseconds: Int64) -> UInt64 {
        // Floor division, so that a time before 1970 rounds down like a positive one.
        let units = unixNanoseconds >= 0 ? unixNanoseconds / 100 : -((-(unixNanoseconds + 1)) / 100) - 1
        if units >= 0 { return epochDelta + UInt64(units) }
        let back = units.magnitude
        return back >= epochDelta ? 0 : epochDelta - back
    }

    /// The request in the layout of `message` (4.0 and above: reference time; below: the old one).
    public func request(framework: VMBusICVersion, message: VMBusICVersion) -> [UInt8] {
        let body: [UInt8]
        if message >= Self.referenceTimeVersion {
            var w = VMBusICPayloadWriter(size: Self.bodySize)
            w.u64(parentTime, at: 0)
            w.u64(referenceTime, at: 8)
            w.u8(flags, at: 16)
            body = w.bytes
        } else {
            var w = VMBusICPayloadWriter(size: Self.legacyBodySize)
            w.u64(parentTime, at: 0)
            w.u8(flags, at: 24)
            body = w.bytes
        }
        return VMBusICMessageHeader(frameworkVersion: framework, messageType: .timesync, messageVersion: message,
                                    messageSize: 0).message(body: body)
    }
}
