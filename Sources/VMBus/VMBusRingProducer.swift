import Atomics

/// The writing side of one VMBus ring: the host on the host-to-guest ring (and the guest in
/// tests). Packets are written at a private cursor and published together by `commit`, which
/// says whether the reader must be signalled: one signal per batch.
///
/// The rules (Linux drivers/hv/ring_buffer.c `hv_ringbuffer_write`, `hv_signal_on_write`;
/// OpenVMM vmbus_ring `OutgoingRing::commit_write`):
/// - a packet fits only if the free space is *greater* than packet + trailer, so a full ring is
///   never mistaken for an empty one;
/// - commit: store write_index (release), **full fence**, then signal iff interrupt_mask == 0
///   and read_index == the write_index before the batch (the reader had caught up and may sleep);
/// - full ring: `armForSpace` stores pending_send_sz, **full fence**, re-checks the space; the
///   reader signals once its reads free more than that; the next write clears it.
/// Without the fences both sides can read stale indices: the writer skips its signal and the
/// reader sleeps with data in the ring (the lost wake-up the two-thread test hunts).
///
/// Trust: the reader (the guest) owns read_index and interrupt_mask; everything else in the
/// control page the producer checks before relying on it: read_index must be an 8-aligned
/// offset in the ring that moves forward and never passes what was published, and write_index
/// must still be what this side wrote. The first violation is returned once as `.corrupted`;
/// then the ring is cut off.
///
/// Use from one thread at a time; exactly one producer per ring.
public final class VMBusRingProducer<Memory: VMBusRingMemory>: @unchecked Sendable {
    public let memory: Memory
    let control: VMBusRingControl
    let size: Int
    /// write_index as this side last stored it.
    private var published: UInt32
    /// Where the next packet goes; ahead of `published` by the uncommitted batch.
    private var cursor: UInt32
    /// read_index as last validated.
    private var seenRead: UInt32
    private var armed = false
    private var cutOff = false
    public private(set) var corruption: VMBusRingCorruption?

    /// Attaches to a ring, resuming from the indices in it (a fresh ring has both at 0; a
    /// restarted worker continues where its predecessor stopped).
    public init(memory: Memory) throws(VMBusRingSetupError) {
        self.memory = memory
        let ring = try VMBusRingAttachment(memory)
        size = ring.size
        control = ring.control
        published = ring.writeIndex
        cursor = ring.writeIndex
        seenRead = ring.readIndex
    }

    public enum WriteResult: Equatable, Sendable {
        case written
        /// Not enough room: commit what is written, then `armForSpace` and wait for a signal.
        case full
        /// The packet can never fit (a caller error: len8 is a u16, and it must be smaller than the ring).
        case tooLarge
        case corrupted(VMBusRingCorruption)
        case cutOff
    }

    public enum CommitResult: Equatable, Sendable {
        /// Published; interrupt the reader.
        case signal
        /// Published (or nothing to publish); the reader will find it without a signal.
        case noSignal
        case corrupted(VMBusRingCorruption)
        case cutOff
    }

    /// Bytes a packet with this header extension and payload takes in the ring, trailer included.
    public static func footprint(headerExtension: Int, payload: Int) -> Int {
        VMBusPacketDescriptor.size + headerExtension + (payload + 7) / 8 * 8 + VMBusPacketDescriptor.trailerSize
    }

    /// Writes one packet at the cursor (not yet visible to the reader). `headerExtension` (a
    /// multiple of 8 bytes) goes between the descriptor and the payload; the payload is padded
    /// with zeros to 8 bytes.
    public func tryWrite(type: VMBusPacketType, flags: UInt16 = 0, transactionID: UInt64,
                         headerExtension: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                         payload: UnsafeRawBufferPointer) -> WriteResult {
        if cutOff { return .cutOff }
        if let why = checkOwnIndex() { return fail(why) }
        guard headerExtension.count % 8 == 0 else { return .tooLarge }
        let offset8 = (VMBusPacketDescriptor.size + headerExtension.count) / 8
        let need = Self.footprint(headerExtension: headerExtension.count, payload: payload.count)
        let len8 = (need - VMBusPacketDescriptor.trailerSize) / 8
        guard len8 <= Int(UInt16.max), need < size else { return .tooLarge }
        if VMBusRingMath.free(write: cursor, read: seenRead, size: size) <= need {
            if let why = observeRead() { return fail(why) }
            if VMBusRingMath.free(write: cursor, read: seenRead, size: size) <= need { return .full }
        }
        if armed {
            control.pendingSendSize.store(0, ordering: .relaxed)
            armed = false
        }
        let start = cursor
        var at = Int(start)
        func put<T: FixedWidthInteger>(_ v: T) {
            withUnsafeBytes(of: v.littleEndian) { memory.copyIn(to: at, from: $0.baseAddress, count: $0.count) }
            at = (at + MemoryLayout<T>.size) % size
        }
        func put(_ b: UnsafeRawBufferPointer) {
            guard b.count > 0 else { return }
            memory.copyIn(to: at, from: b.baseAddress, count: b.count)
            at = (at + b.count) % size
        }
        put(type.rawValue)
        put(UInt16(offset8))
        put(UInt16(len8))
        put(flags)
        put(transactionID)
        put(headerExtension)
        put(payload)
        let pad = (8 - payload.count % 8) % 8
        if pad > 0 {
            memory.copyIn(to: at, from: nil, count: pad)
            at = (at + pad) % size
        }
        put(UInt64(start) << 32)
        cursor = UInt32(at)
        return .written
    }

    public func tryWrite(type: VMBusPacketType, flags: UInt16 = 0, transactionID: UInt64, payload: [UInt8]) -> WriteResult {
        payload.withUnsafeBytes { tryWrite(type: type, flags: flags, transactionID: transactionID, payload: $0) }
    }

    /// Publishes everything written since the last commit and says whether to signal.
    public func commit() -> CommitResult {
        if cutOff { return .cutOff }
        if let why = checkOwnIndex() { return commitFail(why) }
        guard cursor != published else { return .noSignal }
        let before = published
        control.writeIndex.store(cursor, ordering: .releasing)
        published = cursor
        // Pairs with the reader's fence between storing interrupt_mask = 0 (or read_index) and
        // re-reading write_index: one of the two sides sees the other's store.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let mask = control.interruptMask.load(ordering: .relaxed)
        if let why = observeRead() { return commitFail(why) }
        return mask == 0 && seenRead == before ? .signal : .noSignal
    }

    /// The ring is full for a packet of `packetBytes` (its `footprint`): ask the reader to
    /// signal once more than that is free. True when the space is there already (write again
    /// now), false when the caller should wait for the reader's signal.
    public func armForSpace(_ packetBytes: Int) -> Bool {
        if cutOff { return true }
        let threshold = UInt32(clamping: (packetBytes + 7) / 8 * 8)
        control.pendingSendSize.store(threshold, ordering: .relaxed)
        armed = true
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if let why = observeRead() {
            _ = fail(why)
            return true   // the next write reports `.cutOff`
        }
        return VMBusRingMath.free(write: cursor, read: seenRead, size: size) > packetBytes
    }

    /// write_index as this side last published it (a restarted writer compares it with what it
    /// recorded before a batch: the storage worker's in-flight table).
    public var publishedIndex: UInt32 { published }

    /// Where the next packet goes: write_index once `commit` has run.
    public var cursorIndex: UInt32 { cursor }

    /// Bytes free for writing now (read_index re-read). A packet of footprint f fits while this
    /// is greater than f; the reader only ever frees more.
    public func freeSpace() -> Int {
        if cutOff { return 0 }
        if let why = observeRead() { _ = fail(why); return 0 }
        return VMBusRingMath.free(write: cursor, read: seenRead, size: size)
    }

    /// Bytes the uncommitted batch holds.
    public var uncommitted: Int { VMBusRingMath.distance(published, cursor, size: size) }

    @inline(__always)
    private func checkOwnIndex() -> VMBusRingCorruption? {
        let w = control.writeIndex.load(ordering: .relaxed)
        return w == published ? nil : .ownIndexOverwritten(field: "write_index", expected: published, found: w)
    }

    /// read_index may only move forward from where it was, up to what was published.
    @inline(__always)
    private func observeRead() -> VMBusRingCorruption? {
        let r = control.readIndex.load(ordering: .acquiring)
        guard VMBusRingMath.valid(r, size: size) else { return .indexOutOfRange(field: "read_index", value: r, dataCount: size) }
        guard VMBusRingMath.distance(seenRead, r, size: size) <= VMBusRingMath.distance(seenRead, published, size: size) else {
            return .peerIndexMovedBack(field: "read_index", from: seenRead, to: r)
        }
        seenRead = r
        return nil
    }

    private func fail(_ why: VMBusRingCorruption) -> WriteResult {
        cutOff = true
        corruption = why
        return .corrupted(why)
    }

    private func commitFail(_ why: VMBusRingCorruption) -> CommitResult {
        cutOff = true
        corruption = why
        return .corrupted(why)
    }
}
