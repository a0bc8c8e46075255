/// Guest-physical memory as loaders and devices see it: bounds-checked byte access by GPA.
/// The real implementation is `GuestMemory` (a memfd shared with KVM and the workers);
/// tests use an array-backed one. Nothing here ever traps on a hostile address.
public protocol GuestPhysicalMemory: AnyObject, Sendable {
    var layout: GuestMemoryLayout { get }
    /// Copies `bytes` to [gpa, gpa + count); throws unless the whole range is RAM.
    func write(_ bytes: UnsafeRawBufferPointer, at gpa: UInt64) throws(GuestMemoryError)
    /// Copies [gpa, gpa + count) out; throws unless the whole range is RAM.
    func read(into buffer: UnsafeMutableRawBufferPointer, at gpa: UInt64) throws(GuestMemoryError)
    /// Zeroes [gpa, gpa + count).
    func zero(at gpa: UInt64, count: UInt64) throws(GuestMemoryError)
}

public enum GuestMemoryError: Error, Equatable, CustomStringConvertible {
    /// [gpa, gpa + length) is not entirely inside guest RAM.
    case outOfRange(gpa: UInt64, length: UInt64)
    case hostFailure(String)

    public var description: String {
        switch self {
        case let .outOfRange(gpa, length):
            return "guest range 0x\(String(gpa, radix: 16))+0x\(String(length, radix: 16)) is outside guest RAM"
        case let .hostFailure(what):
            return what
        }
    }
}

extension GuestPhysicalMemory {
    // The closures below catch and re-throw because the standard library's withUnsafeBytes
    // family is `rethrows`, which loses the typed error.

    public func write(_ bytes: [UInt8], at gpa: UInt64) throws(GuestMemoryError) {
        var failure: GuestMemoryError?
        bytes.withUnsafeBytes { b in
            do throws(GuestMemoryError) { try write(b, at: gpa) } catch { failure = error }
        }
        if let f = failure { throw f }
    }

    /// Writes `bytes[range]` to `gpa`; the caller guarantees the range is inside `bytes`.
    public func write(_ bytes: [UInt8], range: Range<Int>, at gpa: UInt64) throws(GuestMemoryError) {
        var failure: GuestMemoryError?
        bytes.withUnsafeBytes { all in
            do throws(GuestMemoryError) { try write(UnsafeRawBufferPointer(rebasing: all[range]), at: gpa) } catch { failure = error }
        }
        if let f = failure { throw f }
    }

    public func read(count: Int, at gpa: UInt64) throws(GuestMemoryError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var failure: GuestMemoryError?
        out.withUnsafeMutableBytes { b in
            do throws(GuestMemoryError) { try read(into: b, at: gpa) } catch { failure = error }
        }
        if let f = failure { throw f }
        return out
    }

    public func writeLE<T: FixedWidthInteger>(_ value: T, at gpa: UInt64) throws(GuestMemoryError) {
        var failure: GuestMemoryError?
        withUnsafeBytes(of: value.littleEndian) { b in
            do throws(GuestMemoryError) { try write(b, at: gpa) } catch { failure = error }
        }
        if let f = failure { throw f }
    }

    public func readLE<T: FixedWidthInteger>(_ type: T.Type, at gpa: UInt64) throws(GuestMemoryError) -> T {
        var v = T.zero
        var failure: GuestMemoryError?
        withUnsafeMutableBytes(of: &v) { b in
            do throws(GuestMemoryError) { try read(into: b, at: gpa) } catch { failure = error }
        }
        if let f = failure { throw f }
        return T(littleEndian: v)
    }
}
