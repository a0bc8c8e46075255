/// A small encoder for ACPI Machine Language (ACPI 6.5, chapter 20 "ACPI Machine Language
/// Specification"): just the terms the DSDT needs — names, integers, strings, packages, buffers,
/// scopes, devices — and the small resource descriptors of `_CRS` (6.4.2).
///
/// Every function returns the encoded bytes of one term, so terms nest by concatenation:
/// `AML.device("COM1", AML.name("_UID", AML.integer(1)))`.
public enum AML {
    // Opcodes (20.2 "AML Grammar Definition").
    static let zeroOp: UInt8 = 0x00
    static let oneOp: UInt8 = 0x01
    static let nameOp: UInt8 = 0x08
    static let bytePrefix: UInt8 = 0x0A
    static let wordPrefix: UInt8 = 0x0B
    static let dwordPrefix: UInt8 = 0x0C
    static let stringPrefix: UInt8 = 0x0D
    static let qwordPrefix: UInt8 = 0x0E
    static let scopeOp: UInt8 = 0x10
    static let bufferOp: UInt8 = 0x11
    static let packageOp: UInt8 = 0x12
    static let extOpPrefix: UInt8 = 0x5B
    static let deviceOp: UInt8 = 0x82  // after extOpPrefix
    static let onesOp: UInt8 = 0xFF
    static let rootChar: UInt8 = 0x5C  // '\'
    static let parentPrefixChar: UInt8 = 0x5E  // '^'
    static let dualNamePrefix: UInt8 = 0x2E
    static let multiNamePrefix: UInt8 = 0x2F

    /// The largest value a PkgLength can encode (4 bytes: 4 + 8 + 8 + 8 bits).
    public static let maxPackageLength = 0x0FFF_FFFF

    /// Encodes `value` as a PkgLength (20.2.4): 1 byte for values up to 63; otherwise the low
    /// nibble in the lead byte, whose bits 6-7 count the 1-3 bytes that follow with the rest.
    /// `value` already includes the PkgLength's own bytes; see ``packageLength(contentLength:)``.
    public static func encodePackageLength(_ value: Int) -> [UInt8] {
        precondition((0...maxPackageLength).contains(value), "PkgLength \(value) out of range")
        if value <= 0x3F { return [UInt8(value)] }
        let following = value <= 0xFFF ? 1 : value <= 0xF_FFFF ? 2 : 3
        var out = [UInt8(following << 6) | UInt8(value & 0xF)]
        for i in 0..<following { out.append(UInt8(truncatingIfNeeded: value >> (4 + 8 * i))) }
        return out
    }

    /// The PkgLength for `contentLength` bytes of content: it counts itself, so its size
    /// depends on the total.
    public static func packageLength(contentLength: Int) -> [UInt8] {
        for size in 1...4 {
            let total = contentLength + size
            let limit = size == 1 ? 0x3F : size == 2 ? 0xFFF : size == 3 ? 0xF_FFFF : maxPackageLength
            if total <= limit { return encodePackageLength(total) }
        }
        preconditionFailure("AML: \(contentLength) bytes do not fit a PkgLength")
    }

    /// A NameSeg: 4 characters from [A-Z0-9_] (leading not a digit), padded with '_'.
    public static func nameSegment(_ name: String) -> [UInt8] {
        var bytes = Array(name.utf8)
        precondition(!bytes.isEmpty && bytes.count <= 4, "AML NameSeg \"\(name)\" must be 1-4 characters")
        precondition(bytes.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F },
                     "AML NameSeg \"\(name)\" has characters outside [A-Z0-9_]")
        precondition(!(bytes[0] >= 0x30 && bytes[0] <= 0x39), "AML NameSeg \"\(name)\" starts with a digit")
        bytes += [UInt8](repeating: 0x5F, count: 4 - bytes.count)
        return bytes
    }

    /// A NameString: an optional root ('\') or parent ('^') prefix and '.'-separated segments,
    /// e.g. `"\\_SB.COM1"` or `"_S5"`.
    public static func nameString(_ path: String) -> [UInt8] {
        var rest = Substring(path)
        var out: [UInt8] = []
        if rest.first == "\\" {
            out.append(rootChar)
            rest = rest.dropFirst()
        } else {
            while rest.first == "^" {
                out.append(parentPrefixChar)
                rest = rest.dropFirst()
            }
        }
        let segments = rest.isEmpty ? [] : rest.split(separator: ".", omittingEmptySubsequences: false)
        switch segments.count {
        case 0: out.append(0)  // NullName
        case 1: break
        case 2: out.append(dualNamePrefix)
        default:
            precondition(segments.count <= 255, "AML NameString has too many segments")
            out += [multiNamePrefix, UInt8(segments.count)]
        }
        for segment in segments { out += nameSegment(String(segment)) }
        return out
    }

    /// The shortest encoding of an integer constant: ZeroOp, OneOp, OnesOp, or a Byte/Word/DWord/
    /// QWord prefix.
    public static func integer(_ value: UInt64) -> [UInt8] {
        switch value {
        case 0: return [zeroOp]
        case 1: return [oneOp]
        case UInt64.max: return [onesOp]
        case ...0xFF: return [bytePrefix, UInt8(value)]
        case ...0xFFFF: return [wordPrefix] + le(value, 2)
        case ...0xFFFF_FFFF: return [dwordPrefix] + le(value, 4)
        default: return [qwordPrefix] + le(value, 8)
        }
    }

    /// A ByteConst (BytePrefix + byte), even for 0 and 1.
    public static func byte(_ value: UInt8) -> [UInt8] { [bytePrefix, value] }

    /// A String: ASCII characters, NUL-terminated.
    public static func string(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8)
        precondition(bytes.allSatisfy { $0 >= 0x01 && $0 <= 0x7F }, "AML strings are ASCII without NUL")
        return [stringPrefix] + bytes + [0]
    }

    /// `EISAID("PNP0501")` as its 32-bit value: three letters compressed into 5 bits each
    /// (big-endian 16-bit), then the four hex digits, stored so that the little-endian DWord
    /// reads back as those bytes in order. EISAID("PNP0501") == 0x0105D041.
    public static func eisaID(_ id: String) -> UInt32 {
        let c = Array(id.utf8)
        precondition(c.count == 7 && c[0..<3].allSatisfy { $0 >= 0x41 && $0 <= 0x5A },
                     "EISAID \"\(id)\" must be three capital letters and four hex digits")
        func hex(_ ch: UInt8) -> UInt32 {
            switch ch {
            case 0x30...0x39: return UInt32(ch - 0x30)
            case 0x41...0x46: return UInt32(ch - 0x41 + 10)
            default: preconditionFailure("EISAID \"\(id)\" must end with four hex digits")
            }
        }
        let vendor = UInt32(c[0] - 0x40) << 10 | UInt32(c[1] - 0x40) << 5 | UInt32(c[2] - 0x40)
        let product = hex(c[3]) << 12 | hex(c[4]) << 8 | hex(c[5]) << 4 | hex(c[6])
        let bytes = [vendor >> 8, vendor & 0xFF, product >> 8, product & 0xFF]
        return bytes[0] | bytes[1] << 8 | bytes[2] << 16 | bytes[3] << 24
    }

    /// `Name(name, object)`.
    public static func name(_ name: String, _ object: [UInt8]) -> [UInt8] {
        [nameOp] + nameString(name) + object
    }

    /// `Package(){elements}`: each element a data object (integer, string, package, buffer).
    public static func package(_ elements: [[UInt8]]) -> [UInt8] {
        precondition(elements.count <= 255, "AML Package has more than 255 elements")
        let content = [UInt8(elements.count)] + elements.flatMap { $0 }
        return [packageOp] + packageLength(contentLength: content.count) + content
    }

    /// `Buffer(){bytes}`.
    public static func buffer(_ bytes: [UInt8]) -> [UInt8] {
        let content = integer(UInt64(bytes.count)) + bytes
        return [bufferOp] + packageLength(contentLength: content.count) + content
    }

    /// `Scope(name){terms}`.
    public static func scope(_ name: String, _ terms: [UInt8]...) -> [UInt8] {
        let content = nameString(name) + terms.flatMap { $0 }
        return [scopeOp] + packageLength(contentLength: content.count) + content
    }

    /// `Device(name){terms}`.
    public static func device(_ name: String, _ terms: [UInt8]...) -> [UInt8] {
        let content = nameString(name) + terms.flatMap { $0 }
        return [extOpPrefix, deviceOp] + packageLength(contentLength: content.count) + content
    }

    // MARK: Resource descriptors (6.4.2, small items)

    /// `ResourceTemplate(){descriptors}`: a Buffer of the descriptors and the End Tag, whose
    /// checksum byte 0 means "the buffer has no checksum".
    public static func resourceTemplate(_ descriptors: [UInt8]...) -> [UInt8] {
        buffer(descriptors.flatMap { $0 } + [0x79, 0x00])
    }

    /// `IO(Decode16, base, base, alignment, length)`: a fixed range of I/O ports (descriptor 0x47).
    public static func io(base: UInt16, length: UInt8, alignment: UInt8 = 1) -> [UInt8] {
        [0x47, 0x01] + le(UInt64(base), 2) + le(UInt64(base), 2) + [alignment, length]
    }

    /// `IRQNoFlags(){irqs}`: ISA IRQs, edge-triggered, active high, exclusive (descriptor 0x22).
    public static func irq(_ irqs: [UInt8]) -> [UInt8] {
        let mask = irqs.reduce(UInt16(0)) { mask, irq in
            precondition(irq < 16, "ISA IRQ \(irq) out of 0...15")
            return mask | 1 << irq
        }
        return [0x22] + le(UInt64(mask), 2)
    }

    static func le(_ value: UInt64, _ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }
}
