import IPC

extension VStorProtocol {
    /// Everything the guest has been told about the handshake: the init state, the agreed
    /// version and the sub-channel count. The configuration is not in it: it comes from the
    /// command line again (the constructor argument), and `restore` checks the state fits it.
    public struct Saved: Hashable, Sendable {
        public var state: InitState
        public init(state: InitState) { self.state = state }
    }

    /// Saving only reads.
    public var saved: Saved { Saved(state: state) }

    /// A machine in the saved state. Throws when the state does not fit `configuration` (a
    /// version above its highest, more sub-channels than its limit): the guest was told
    /// something this host would not say now.
    public static func restore(_ saved: Saved, configuration: Configuration) throws(VStorSavedStateError) -> VStorProtocol {
        var p = VStorProtocol(configuration: configuration)
        if let v = saved.state.version, v > configuration.highestVersion { throw .doesNotFit("version \(v)") }
        switch saved.state {
        case .endInitialization(_, let n?), .ready(_, let n):
            guard n <= configuration.maxSubChannels else { throw .doesNotFit("\(n) sub-channels") }
        default:
            break
        }
        p.state = saved.state
        return p
    }
}

public enum VStorSavedStateError: Error, Equatable, Sendable, CustomStringConvertible {
    case format(WireError)
    case badMagic(UInt32)
    case unsupportedVersion(UInt16)
    case doesNotFit(String)

    public var description: String {
        switch self {
        case .format(let e): "vstor saved state: \(e)"
        case .badMagic(let m): "vstor saved state: magic 0x\(String(m, radix: 16))"
        case .unsupportedVersion(let v): "vstor saved state: layout version \(v)"
        case .doesNotFit(let what): "vstor saved state: \(what) does not fit the configuration"
        }
    }
}

/// The byte form of `VStorProtocol.Saved`, by the `WireRecord` rules: little-endian fields at
/// fixed offsets, reserved fields zero, no trailing bytes. Decoding treats the bytes as hostile
/// (a predecessor that parsed guest bytes wrote them) and accepts exactly what `encoded()`
/// produces: `decode` then `encoded()` gives the same bytes back.
///
/// ```
/// header (16 bytes)
///    0 u32 magic "VSTR"   4 u16 layout version (1)   6 u16 reserved   8 u32 body length (16)   12 u32 reserved
/// body (16 bytes)
///    0 u32 state: 0 begin initialization, 1 query version, 2 query properties, 3 end initialization, 4 ready
///    4 u16 version (an accepted one in states 2-4, else 0)
///    6 u16 sub-channel count (states 3 with flag bit 0, and 4; else 0; 0 below version 0x0501)
///    8 u32 flags: bit 0 the sub-channel count is set (state 3 only)
///   12 u32 reserved
/// ```
extension VStorProtocol.Saved {
    /// "VSTR" in memory order.
    public static let magic: UInt32 = 0x5254_5356
    public static let layoutVersion: UInt16 = 1
    public static let encodedSize = 32
    /// Labels `WireError`s from this codec.
    static let label: UInt16 = 0

    public func encoded() -> [UInt8] {
        var kind: UInt32 = 0, version: UInt16 = 0, count: UInt16 = 0, flags: UInt32 = 0
        switch state {
        case .beginInitialization: kind = 0
        case .queryVersion: kind = 1
        case .queryProperties(let v): kind = 2; version = v.rawValue
        case .endInitialization(let v, let n):
            kind = 3; version = v.rawValue
            if let n { count = n; flags = 1 }
        case .ready(let v, let n): kind = 4; version = v.rawValue; count = n
        }
        var w = WireWriter()
        w.u32(Self.magic); w.u16(Self.layoutVersion); w.u16(0); w.u32(16); w.u32(0)
        w.u32(kind); w.u16(version); w.u16(count); w.u32(flags); w.u32(0)
        return w.bytes
    }

    /// Decodes bytes written by `encoded()`, checking every rule; never traps.
    public init(decoding bytes: [UInt8]) throws(VStorSavedStateError) {
        let result: Result<Self, VStorSavedStateError> = bytes.withUnsafeBytes { raw in
            do throws(VStorSavedStateError) {
                return .success(try Self.decode(raw))
            } catch {
                return .failure(error)
            }
        }
        self = try result.get()
    }

    private static func decode(_ raw: UnsafeRawBufferPointer) throws(VStorSavedStateError) -> Self {
        var r = WireReader(raw, type: label)
        let magic: UInt32, version: UInt16
        do throws(WireError) {
            magic = try r.u32()
            version = try r.u16()
        } catch {
            throw .format(error)
        }
        guard magic == Self.magic else { throw .badMagic(magic) }
        guard version == layoutVersion else { throw .unsupportedVersion(version) }
        do throws(WireError) {
            try r.reserved16()
            let length = try r.u32()
            try r.reserved32()
            guard UInt64(length) == UInt64(r.remaining) else { throw WireError.lengthMismatch(declared: length, available: r.remaining) }
            let kind = try r.u32()
            let v = VStorProtocolVersion(rawValue: try r.u16())
            let count = try r.u16()
            let flags = try r.u32()
            try r.reserved32()
            try r.finish()
            func invalid(_ field: String, _ value: UInt64) -> WireError { .invalidField(type: label, field: field, value: value) }
            guard kind <= 4 else { throw invalid("state", UInt64(kind)) }
            if kind >= 2 {
                guard v.isAccepted else { throw invalid("version", UInt64(v.rawValue)) }
            } else if v.rawValue != 0 {
                throw invalid("version", UInt64(v.rawValue))
            }
            guard flags == 0 || (kind == 3 && flags == 1) else { throw invalid("flags", UInt64(flags)) }
            let counted = kind == 4 || (kind == 3 && flags == 1)
            guard counted || count == 0 else { throw invalid("sub-channel count", UInt64(count)) }
            // Sub-channels exist only from Win8 on.
            guard count == 0 || v.supportsMultiChannel else { throw invalid("sub-channel count", UInt64(count)) }
            let state: VStorProtocol.InitState = switch kind {
            case 0: .beginInitialization
            case 1: .queryVersion
            case 2: .queryProperties(v)
            case 3: .endInitialization(v, subChannels: flags == 1 ? count : nil)
            default: .ready(v, subChannels: count)
            }
            return Self(state: state)
        } catch {
            throw .format(error)
        }
    }
}
