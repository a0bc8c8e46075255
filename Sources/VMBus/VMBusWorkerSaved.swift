import IPC

/// Everything the VMBus worker keeps in its `WorkerStateRegion`, written in one `save` so a
/// successor sees the pieces agree: the server's state, how far the inbound ring's records are
/// done, where the outbound ring stood, and each open local device's state (the integration
/// services' negotiated versions, outstanding request, heartbeat sequence).
///
/// The two ring numbers are what makes a restart exactly-once (docs/vmbus.md, "Restart"):
/// - `inboundNext`: every inbound record numbered below it has had its effect on this state. The
///   worker takes a record (`RecordRing.Consumer.tryTake`), hands it to the server, saves with
///   `inboundNext = number + 1`, and only then frees the slot; a successor lent a record below
///   `inboundNext` frees it without acting.
/// - `outboundBase`: the outbound ring's producer index at this save. The server's saved outbound
///   messages are exactly those not yet pushed, and they go out in order from that index; so a
///   successor that finds the producer index at `outboundBase + k` knows the first `k` were pushed
///   by its predecessor after this save, and pushes only the rest.
///
/// Byte form, by the `WireRecord` rules (little-endian, reserved fields zero, no trailing bytes,
/// canonical); decoded as hostile bytes (the predecessor parsed guest bytes):
///
/// ```
///  0 u32 magic "VMWS"   4 u16 layout version (1)   6 u16 reserved
///  8 u64 inbound next   16 u64 outbound base
/// 24 u32 server state length (<= 16 MiB)   28 u32 device count (<= 64)
/// 32 server state (`VMBusServer.Saved.encoded()`), zero padding to 8
///    per device, relids ascending and unique: u32 relid (1...2047), u32 length (1...64 KiB),
///    bytes (the device's own form), zero padding to 8
/// ```
public struct VMBusWorkerSaved: Equatable, Sendable {
    public var inboundNext: UInt64
    public var outboundBase: UInt64
    public var server: VMBusServer.Saved
    /// By relid: what `VMBusChannelDevice.savedState()` returned while the channel was open.
    public var devices: [UInt32: [UInt8]]

    public init(inboundNext: UInt64, outboundBase: UInt64, server: VMBusServer.Saved, devices: [UInt32: [UInt8]] = [:]) {
        self.inboundNext = inboundNext
        self.outboundBase = outboundBase
        self.server = server
        self.devices = devices
    }

    /// "VMWS" in memory order.
    public static let magic: UInt32 = 0x5357_4D56
    public static let layoutVersion: UInt16 = 1
    public static let maxDevices = 64
    public static let maxDeviceState = 64 << 10
    public static let maxServerState = 16 << 20
    static let label: UInt16 = 2

    static func padding(_ n: Int) -> Int { (8 - n % 8) % 8 }

    public func encoded() -> [UInt8] {
        let server = self.server.encoded()
        var w = WireWriter()
        w.u32(Self.magic); w.u16(Self.layoutVersion); w.u16(0)
        w.u64(inboundNext); w.u64(outboundBase)
        w.u32(UInt32(server.count)); w.u32(UInt32(devices.count))
        w.raw(server); w.raw([UInt8](repeating: 0, count: Self.padding(server.count)))
        for relID in devices.keys.sorted() {
            let bytes = devices[relID]!
            w.u32(relID); w.u32(UInt32(bytes.count))
            w.raw(bytes); w.raw([UInt8](repeating: 0, count: Self.padding(bytes.count)))
        }
        return w.bytes
    }

    /// Decodes bytes written by `encoded()`, checking every rule; never traps.
    public init(decoding bytes: [UInt8]) throws(VMBusSavedStateError) {
        let result: Result<VMBusWorkerSaved, VMBusSavedStateError> = bytes.withUnsafeBytes { raw in
            do throws(VMBusSavedStateError) { return .success(try Self.decode(raw)) } catch { return .failure(error) }
        }
        self = try result.get()
    }

    private static func decode(_ raw: UnsafeRawBufferPointer) throws(VMBusSavedStateError) -> VMBusWorkerSaved {
        var r = WireReader(raw, type: label)
        let serverBytes: [UInt8]
        var devices: [UInt32: [UInt8]] = [:]
        let inboundNext: UInt64, outboundBase: UInt64
        do {
            let magic = try r.u32()
            guard magic == Self.magic else { throw VMBusSavedStateError.badMagic(magic) }
            let version = try r.u16()
            guard version == layoutVersion else { throw VMBusSavedStateError.unsupportedVersion(version) }
            try r.reserved16()
            inboundNext = try r.u64()
            outboundBase = try r.u64()
            let length = try r.u32()
            let count = try r.u32()
            guard length <= UInt32(maxServerState) else { throw invalid("server state length", UInt64(length)) }
            guard count <= UInt32(maxDevices) else { throw WireError.tooManyEntries(type: label, count: count, limit: maxDevices) }
            serverBytes = try r.rawBytes(Int(length))
            try zeroPadding(&r, Int(length))
            var last: UInt32 = 0
            for _ in 0..<count {
                let relID = try r.u32()
                guard relID > last, relID <= 2047 else { throw invalid("device relid", UInt64(relID)) }
                last = relID
                let n = try r.u32()
                guard n >= 1, n <= UInt32(maxDeviceState) else { throw invalid("device state length", UInt64(n)) }
                devices[relID] = try r.rawBytes(Int(n))
                try zeroPadding(&r, Int(n))
            }
            try r.finish()
        } catch let e as VMBusSavedStateError {
            throw e
        } catch let e as WireError {
            throw .format(e)
        } catch {
            throw .inconsistent("\(error)")
        }
        return VMBusWorkerSaved(inboundNext: inboundNext, outboundBase: outboundBase,
                                server: try VMBusServer.Saved(decoding: serverBytes), devices: devices)
    }

    private static func zeroPadding(_ r: inout WireReader, _ n: Int) throws(WireError) {
        for _ in 0..<padding(n) {
            let at = r.position
            if try r.rawBytes(1)[0] != 0 { throw .reservedNotZero(type: label, offset: at) }
        }
    }

    private static func invalid(_ field: String, _ value: UInt64) -> WireError {
        .invalidField(type: label, field: field, value: value)
    }
}
