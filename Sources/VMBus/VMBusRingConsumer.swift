import Atomics

/// The reading side of one VMBus ring: the host on the guest-to-host ring (and the guest in
/// tests). `next` walks packets at a private cursor, each validated and returned as a borrowed
/// view; `commit` stores read_index and says whether the writer must be signalled.
///
/// The rules (Linux drivers/hv/ring_buffer.c `hv_pkt_iter_first`, `hv_pkt_iter_close`,
/// `hv_end_read`; OpenVMM vmbus_ring `IncomingRing`, vmbus_async `ReadState`):
/// - before sleeping: interrupt_mask = 0, **full fence**, re-read write_index; sleep only if the
///   ring is still empty (`enableInterrupts`). While draining, `disableInterrupts` may set the
///   mask to 1 so the writer does not signal for every packet;
/// - commit: store read_index (release); if the ring's feature bit 0 is set, **full fence**, read
///   pending_send_sz, and signal only on the transition from "not more than pending_send_sz
///   free" before this commit to "more than it" after.
///
/// Every packet is checked before it is returned, on a copy of its descriptor: write_index an
/// 8-aligned offset in the ring that only moves forward and never runs over unread data;
/// read_index still what this side wrote; offset8 >= 2 and <= len8; the packet and its
/// trailer inside the published bytes; the trailer equal to `start << 32`. The first violation
/// is returned once as `.corrupted`; then the ring is cut off.
///
/// Use from one thread at a time; exactly one consumer per ring.
public final class VMBusRingConsumer<Memory: VMBusRingMemory>: @unchecked Sendable {
    public let memory: Memory
    let control: VMBusRingControl
    let size: Int
    /// read_index as this side last stored it.
    private var published: UInt32
    /// The next packet; ahead of `published` by what was read but not committed.
    private var cursor: UInt32
    /// write_index as last validated.
    private var seenWrite: UInt32
    private var cutOff = false
    public private(set) var corruption: VMBusRingCorruption?

    /// Attaches to a ring, resuming from the indices in it.
    public init(memory: Memory) throws(VMBusRingSetupError) {
        self.memory = memory
        let ring = try VMBusRingAttachment(memory)
        size = ring.size
        control = ring.control
        published = ring.readIndex
        cursor = ring.readIndex
        seenWrite = ring.writeIndex
    }

    public enum ReadResult {
        case packet(VMBusRingPacket<Memory>)
        /// Nothing published past the cursor. Before sleeping, call `enableInterrupts`.
        case empty
        case corrupted(VMBusRingCorruption)
        case cutOff
    }

    public enum WaitResult: Equatable, Sendable {
        /// Interrupts are on and the ring is empty: safe to sleep until the writer signals.
        case sleep
        /// Data arrived meanwhile: read again.
        case readAgain
        case corrupted(VMBusRingCorruption)
        case cutOff
    }

    public enum CommitResult: Equatable, Sendable {
        /// The writer asked for room and now has it: signal it.
        case signal
        case noSignal
        case corrupted(VMBusRingCorruption)
        case cutOff
    }

    /// The next packet, validated, as a view into the ring (valid until `commit`).
    public func next() -> ReadResult {
        if cutOff { return .cutOff }
        if let why = checkOwnIndex() { return .corrupted(fail(why)) }
        var available = VMBusRingMath.distance(cursor, seenWrite, size: size)
        if available == 0 {
            if let why = observeWrite() { return .corrupted(fail(why)) }
            available = VMBusRingMath.distance(cursor, seenWrite, size: size)
            if available == 0 { return .empty }
        }
        let minimum = VMBusPacketDescriptor.size + VMBusPacketDescriptor.trailerSize
        guard available >= minimum else { return .corrupted(fail(.truncatedPacket(available: available))) }
        // One copy of the descriptor; everything below decides on it, never on the ring.
        var raw = (UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &raw) { memory.copyOut(from: Int(cursor), count: 16, into: $0.baseAddress!) }
        let d = VMBusPacketDescriptor(
            type: VMBusPacketType(rawValue: UInt16(truncatingIfNeeded: UInt64(littleEndian: raw.0))),
            offset8: UInt16(truncatingIfNeeded: UInt64(littleEndian: raw.0) >> 16),
            len8: UInt16(truncatingIfNeeded: UInt64(littleEndian: raw.0) >> 32),
            flags: UInt16(truncatingIfNeeded: UInt64(littleEndian: raw.0) >> 48),
            transactionID: UInt64(littleEndian: raw.1))
        guard d.offset8 >= 2, d.offset8 <= d.len8 else { return .corrupted(fail(.badPayloadOffset(offset8: d.offset8, len8: d.len8))) }
        let length = d.packetLength
        guard length + VMBusPacketDescriptor.trailerSize <= available else {
            return .corrupted(fail(.packetPastWriteIndex(length: length, available: available)))
        }
        var trailer: UInt64 = 0
        withUnsafeMutableBytes(of: &trailer) { memory.copyOut(from: (Int(cursor) + length) % size, count: 8, into: $0.baseAddress!) }
        trailer = UInt64(littleEndian: trailer)
        let expected = UInt64(cursor) << 32
        guard trailer == expected else { return .corrupted(fail(.badTrailer(found: trailer, expected: expected))) }
        let packet = VMBusRingPacket(descriptor: d, bytes: VMBusRingBytes(memory: memory, start: Int(cursor), count: length))
        cursor = VMBusRingMath.advance(cursor, by: length + VMBusPacketDescriptor.trailerSize, size: size)
        return .packet(packet)
    }

    /// Frees what was read and says whether the writer is waiting for that room.
    public func commit() -> CommitResult {
        if cutOff { return .cutOff }
        if let why = checkOwnIndex() { return .corrupted(fail(why)) }
        guard cursor != published else { return .noSignal }
        let start = published
        control.readIndex.store(cursor, ordering: .releasing)
        published = cursor
        guard control.featureBits.load(ordering: .relaxed) & VMBusRingControl.featurePendingSendSize != 0 else { return .noSignal }
        // Pairs with the writer's fence after storing pending_send_sz.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let pending = Int(control.pendingSendSize.load(ordering: .relaxed))
        guard pending != 0 else { return .noSignal }
        if let why = observeWrite() { return .corrupted(fail(why)) }
        let freeNow = VMBusRingMath.free(write: seenWrite, read: cursor, size: size)
        let freed = VMBusRingMath.distance(start, cursor, size: size)
        // Signal only on the transition, as Linux does: a second commit that frees more room
        // before the writer has written is not a new reason to interrupt it.
        return freeNow - freed <= pending && freeNow > pending ? .signal : .noSignal
    }

    /// read_index as this side last published it (a restarted reader compares it with what it
    /// recorded before a batch: the storage worker's in-flight table).
    public var publishedIndex: UInt32 { published }

    /// Where the next `next()` reads: read_index once `commit` has run (a device that journals
    /// before committing records it: the echo device).
    public var cursorIndex: UInt32 { cursor }

    /// Asks the writer for signals again, then re-checks the ring (after a full fence), so an
    /// answer of `.sleep` cannot race a packet published meanwhile.
    public func enableInterrupts() -> WaitResult {
        if cutOff { return .cutOff }
        control.interruptMask.store(0, ordering: .relaxed)
        // Pairs with the writer's fence between storing write_index and reading interrupt_mask.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if let why = observeWrite() { return .corrupted(fail(why)) }
        return cursor == seenWrite ? .sleep : .readAgain
    }

    /// Tells the writer not to signal (while this side drains the ring anyway).
    public func disableInterrupts() {
        if !cutOff { control.interruptMask.store(1, ordering: .relaxed) }
    }

    @inline(__always)
    private func checkOwnIndex() -> VMBusRingCorruption? {
        let r = control.readIndex.load(ordering: .relaxed)
        return r == published ? nil : .ownIndexOverwritten(field: "read_index", expected: published, found: r)
    }

    /// write_index may only move forward, and never past what this side has committed (that
    /// would overwrite unread data).
    @inline(__always)
    private func observeWrite() -> VMBusRingCorruption? {
        let w = control.writeIndex.load(ordering: .acquiring)
        guard VMBusRingMath.valid(w, size: size) else { return .indexOutOfRange(field: "write_index", value: w, dataCount: size) }
        guard VMBusRingMath.distance(published, w, size: size) >= VMBusRingMath.distance(published, seenWrite, size: size) else {
            return .peerIndexMovedBack(field: "write_index", from: seenWrite, to: w)
        }
        seenWrite = w
        return nil
    }

    private func fail(_ why: VMBusRingCorruption) -> VMBusRingCorruption {
        cutOff = true
        corruption = why
        return why
    }
}
