import Partition

/// Guest RAM for the partition and router harnesses: [0, size) over a byte array, bounds-checked
/// like the monitor's (a hostile GPA gives nil/false). Not the code under test: the fake the
/// unit tests use too (Tests/PartitionTests/FakePartitionEnvironment.swift), kept minimal.
public final class FuzzMemory: PartitionMemory, @unchecked Sendable {
    public private(set) var bytes: [UInt8]
    /// The bytes written since the last `clear()`: zeroing only them keeps a harness over 1 MiB
    /// of RAM fast.
    private var dirty: Range<Int> = 0..<0

    public init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }

    public func contains(gpa: UInt64, length: UInt64) -> Bool {
        gpa <= UInt64(bytes.count) && length <= UInt64(bytes.count) - gpa
    }

    public func read(gpa: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0, contains(gpa: gpa, length: UInt64(count)) else { return nil }
        return Array(bytes[Int(gpa)..<Int(gpa) + count])
    }

    @discardableResult
    public func write(gpa: UInt64, bytes b: [UInt8]) -> Bool {
        guard contains(gpa: gpa, length: UInt64(b.count)) else { return false }
        store(b[...], at: Int(gpa))
        return true
    }

    /// All zero again, for the next input.
    public func clear() {
        bytes.withUnsafeMutableBufferPointer { UnsafeMutableBufferPointer(rebasing: $0[dirty]).update(repeating: 0) }
        dirty = 0..<0
    }

    private func store(_ b: ArraySlice<UInt8>, at offset: Int) {
        guard !b.isEmpty else { return }
        bytes.replaceSubrange(offset..<offset + b.count, with: b)
        dirty = dirty.isEmpty ? offset..<offset + b.count
            : min(dirty.lowerBound, offset)..<max(dirty.upperBound, offset + b.count)
    }

    /// The guest writing `data` at `gpa` (clipped to RAM): how a harness scribbles on pages the
    /// partition or the router also write (SIMP slots, SIEF flags, hypercall input blocks).
    public func scribble(_ data: [UInt8], at gpa: Int) {
        guard gpa >= 0, gpa < bytes.count else { return }
        store(data[0..<min(data.count, bytes.count - gpa)], at: gpa)
    }
}
