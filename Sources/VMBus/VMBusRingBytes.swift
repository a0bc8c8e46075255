/// A borrowed view of bytes inside a ring's data area (a packet, its payload, a part of it):
/// no copy is made to create one. Every access is bounds-checked against the view and wraps at
/// the end of the data area. The bytes stay the guest's: they can change under the view, so a
/// consumer reads each field once and checks the value it read. A view is valid until its
/// consumer commits the read.
public struct VMBusRingBytes<Memory: VMBusRingMemory> {
    let memory: Memory
    /// Ring offset of the first byte.
    let start: Int
    public let count: Int

    init(memory: Memory, start: Int, count: Int) {
        self.memory = memory
        self.start = start
        self.count = count
    }

    /// A little-endian integer at `offset` in the view; nil when it does not fit.
    public func load<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        let n = MemoryLayout<T>.size
        guard offset >= 0, offset <= count, n <= count - offset else { return nil }
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { memory.copyOut(from: ringOffset(offset), count: n, into: $0.baseAddress!) }
        return T(littleEndian: value)
    }

    /// Copies `destination.count` bytes from `offset` in the view; false (nothing copied) when
    /// they are not all inside it.
    @discardableResult
    public func copyBytes(to destination: UnsafeMutableRawBufferPointer, from offset: Int = 0) -> Bool {
        guard offset >= 0, offset <= count, destination.count <= count - offset else { return false }
        if let base = destination.baseAddress, destination.count > 0 {
            memory.copyOut(from: ringOffset(offset), count: destination.count, into: base)
        }
        return true
    }

    /// The view from `offset`, `length` bytes long; nil when that is not inside this view.
    public func slice(from offset: Int, count length: Int) -> VMBusRingBytes? {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else { return nil }
        return VMBusRingBytes(memory: memory, start: ringOffset(offset), count: length)
    }

    /// Calls `body` with the bytes in place when they are one contiguous run (no wrap, no page
    /// discontinuity); nil otherwise, and then the caller copies.
    public func withContiguousBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        if count == 0 { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let run = memory.dataRun(at: start)
        guard run.count >= count else { return nil }
        return try body(UnsafeRawBufferPointer(start: run.baseAddress, count: count))
    }

    @inline(__always)
    func ringOffset(_ offset: Int) -> Int { (start + offset) % memory.dataCount }
}

/// One packet the consumer validated.
public struct VMBusRingPacket<Memory: VMBusRingMemory> {
    /// The descriptor as read once from the ring.
    public let descriptor: VMBusPacketDescriptor
    /// The whole packet, descriptor included (`len8 * 8` bytes).
    public let bytes: VMBusRingBytes<Memory>

    /// From `offset8 * 8` to the end of the packet (zero padding included: VMBus carries no
    /// exact payload length).
    public var payload: VMBusRingBytes<Memory> {
        // The consumer checked 2 <= offset8 <= len8 on its own copy of the descriptor, so the
        // slice exists; the empty fallback only keeps a trap out of reach.
        bytes.slice(from: descriptor.payloadOffset, count: descriptor.packetLength - descriptor.payloadOffset)
            ?? VMBusRingBytes(memory: bytes.memory, start: bytes.start, count: 0)
    }

    /// Between the descriptor and the payload (a GPA-direct packet's range list).
    public var headerExtension: VMBusRingBytes<Memory> {
        bytes.slice(from: VMBusPacketDescriptor.size, count: descriptor.payloadOffset - VMBusPacketDescriptor.size)
            ?? VMBusRingBytes(memory: bytes.memory, start: bytes.start, count: 0)
    }
}
