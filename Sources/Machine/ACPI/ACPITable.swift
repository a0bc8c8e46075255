/// A System Description Table: the 36-byte header every ACPI table except the RSDP and the FACS
/// begins with (ACPI 6.5, 5.2.6 "System Description Table Header"), and the table's body.
///
/// `bytes()` fills in the two fields that depend on the whole table: `Length` (header + body)
/// and `Checksum`, chosen so that all bytes of the table sum to zero modulo 256, which is what
/// the guest's ACPI code verifies before it trusts a table.
public struct ACPITable: Sendable, Equatable {
    /// The OEM ID of every table SynthVM generates (6 bytes).
    public static let oemID = "SYNTHV"
    /// The OEM table ID of every table SynthVM generates (8 bytes).
    public static let oemTableID = "SYNTHVM"
    /// The creator of the tables: the monitor itself, not an ASL compiler.
    public static let creatorID = "SYVM"
    public static let creatorRevision: UInt32 = 1
    public static let headerSize = 36

    /// Four ASCII characters, e.g. "APIC" for the MADT.
    public let signature: String
    public let revision: UInt8
    public let oemRevision: UInt32
    /// Everything after the header.
    public let body: [UInt8]

    public init(signature: String, revision: UInt8, oemRevision: UInt32 = 1, body: [UInt8]) {
        precondition(signature.utf8.count == 4, "ACPI signatures are 4 ASCII characters")
        self.signature = signature
        self.revision = revision
        self.oemRevision = oemRevision
        self.body = body
    }

    /// The table's total length: header plus body.
    public var length: Int { ACPITable.headerSize + body.count }

    /// The complete table, with `Length` and `Checksum` filled in.
    public func bytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(length)
        out.appendASCII(signature, width: 4)
        out.appendLittleEndian(UInt32(length))
        out.append(revision)
        out.append(0)  // checksum, patched below
        out.appendASCII(ACPITable.oemID, width: 6)
        out.appendASCII(ACPITable.oemTableID, width: 8)
        out.appendLittleEndian(oemRevision)
        out.appendASCII(ACPITable.creatorID, width: 4)
        out.appendLittleEndian(ACPITable.creatorRevision)
        out += body
        out[9] = ACPITable.checksum(out)
        return out
    }

    /// The byte that makes `bytes` (with this byte's slot holding 0) sum to zero modulo 256.
    public static func checksum<C: Collection>(_ bytes: C) -> UInt8 where C.Element == UInt8 {
        0 &- bytes.reduce(0, &+)
    }
}

/// An ACPI Generic Address Structure (ACPI 6.5, 5.2.3.2): 12 bytes naming a register.
public struct GenericAddress: Sendable, Equatable {
    public static let systemMemory: UInt8 = 0
    public static let systemIO: UInt8 = 1

    public var addressSpace: UInt8
    public var bitWidth: UInt8
    public var bitOffset: UInt8
    /// 0 undefined (legacy), 1 byte, 2 word, 3 dword, 4 qword.
    public var accessSize: UInt8
    public var address: UInt64

    public init(addressSpace: UInt8, bitWidth: UInt8, bitOffset: UInt8 = 0, accessSize: UInt8, address: UInt64) {
        self.addressSpace = addressSpace
        self.bitWidth = bitWidth
        self.bitOffset = bitOffset
        self.accessSize = accessSize
        self.address = address
    }

    /// An I/O-port register block of `length` bytes.
    public static func ioPort(_ port: UInt16, length: UInt8, accessSize: UInt8 = 0) -> GenericAddress {
        GenericAddress(addressSpace: systemIO, bitWidth: length * 8, accessSize: accessSize, address: UInt64(port))
    }

    /// "No register": all zero.
    public static let none = GenericAddress(addressSpace: 0, bitWidth: 0, accessSize: 0, address: 0)

    public func bytes() -> [UInt8] {
        var out: [UInt8] = [addressSpace, bitWidth, bitOffset, accessSize]
        out.appendLittleEndian(address)
        return out
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` in little-endian byte order, as every multi-byte ACPI field is stored.
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { self.append(contentsOf: $0) }
    }

    /// Appends `text` as ASCII, space-padded (or truncated) to `width` bytes, as ACPI ID fields are.
    mutating func appendASCII(_ text: String, width: Int) {
        var field = Array(text.utf8.prefix(width))
        field += [UInt8](repeating: 0x20, count: width - field.count)
        self += field
    }

    /// Overwrites `count` bytes at `offset` with `value` in little-endian byte order.
    mutating func storeLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { raw in
            for (i, byte) in raw.enumerated() { self[offset + i] = byte }
        }
    }
}
