import Atomics

/// A single-producer/single-consumer ring of fixed-size records in a `SharedRegion`.
///
/// Two processes that do not trust each other pass records through it: the producer fills a
/// slot and publishes it by advancing its index (a release store); the consumer sees the
/// index with an acquire load, so the slot's bytes are visible before it reads them. No
/// locks, no syscalls on the data path; an eventfd `Doorbell` wakes a sleeping consumer, and
/// `tryPush` says when to ring it (only when the ring went from empty to non-empty).
///
/// Memory layout at `offset` in the region (host byte order, which is little-endian on every
/// host we run on):
///
/// ```
///   0  u32 magic "SVRG"    4  u16 layout version   6  u16 reserved
///   8  u32 record size    12  u32 capacity (power of two)
/// 128  u64 producer index  (only the producer writes this line)
/// 256  u64 consumer index  (only the consumer writes this line)
/// 384  capacity slots of record size bytes; slot i holds record number i mod capacity:
///        0 u32 payload length   4 u32 reserved   8 payload (record size - 8 bytes)
/// ```
///
/// The indices are 128 bytes apart, not 64, because Intel's adjacent-line prefetcher pulls
/// cache lines in pairs: at 64 bytes the two sides would still bounce a line between them.
/// Indices are free-running UInt64 record counts (never wrap in practice: 2^64 records);
/// `producer - consumer` is the number of records in flight.
///
/// Everything in that memory is the peer's to scribble on. Each side checks, on every call,
/// what the peer can change: the header (magic, version, record size and capacity must equal
/// what this side was told out of band), the peer's index (must not go backwards, and
/// `producer - consumer` must stay within 0...capacity), its own index (the peer must not
/// write it), and on the consumer side every record's length. This side's own position and
/// the layout always come from its private copies, so a scribbled header can never steer an
/// access out of bounds. The first violation is returned once as `.corrupted(reason)`; from
/// then on the ring is cut off and every call returns `.cutOff` without touching memory. No
/// peer-controlled value reaches a precondition.
public enum RecordRing {
    /// "SVRG" in memory order.
    public static let magic: UInt32 = 0x4752_5653
    public static let layoutVersion: UInt16 = 1

    static let producerIndexOffset = 128
    static let consumerIndexOffset = 256
    static let slotHeaderSize = 8

    /// The geometry both sides agree on out of band (from the supervisor's region layout),
    /// and check the shared header against.
    public struct Layout: Equatable, Sendable {
        /// Bytes from the ring's start to its first slot.
        public static let headerSize = 384
        /// Largest record size accepted (so a layout from the wire cannot ask for a huge ring).
        public static let maxRecordSize = 1 << 20
        public static let maxCapacity = 1 << 24

        /// Bytes per slot, its 8-byte slot header included.
        public let recordSize: Int
        /// Number of slots: a power of two, so index -> slot is a mask.
        public let capacity: Int

        /// Throws `.invalidArgument` unless `recordSize` is a multiple of 8 in
        /// 16...`maxRecordSize` and `capacity` a power of two in 1...`maxCapacity`.
        public init(recordSize: Int, capacity: Int) throws(IPCError) {
            guard recordSize >= 16, recordSize <= Self.maxRecordSize, recordSize % 8 == 0 else {
                throw .invalidArgument("ring record size \(recordSize) must be a multiple of 8 in 16...\(Self.maxRecordSize)")
            }
            guard capacity >= 1, capacity <= Self.maxCapacity, capacity & (capacity - 1) == 0 else {
                throw .invalidArgument("ring capacity \(capacity) must be a power of two in 1...\(Self.maxCapacity)")
            }
            self.recordSize = recordSize
            self.capacity = capacity
        }

        /// The largest payload one record carries.
        public var maxRecordLength: Int { recordSize - RecordRing.slotHeaderSize }
        /// Bytes the ring occupies in its region.
        public var byteCount: Int { Self.headerSize + recordSize * capacity }
    }

    /// What a side found wrong with the peer's writes.
    public enum Corruption: Error, Equatable, Sendable, CustomStringConvertible {
        case badMagic(UInt32)
        case unsupportedVersion(UInt16)
        case recordSizeMismatch(found: UInt32, expected: UInt32)
        case capacityMismatch(found: UInt32, expected: UInt32)
        /// `producer - consumer` outside 0...capacity.
        case indicesInconsistent(producer: UInt64, consumer: UInt64)
        /// The peer's index moved backwards.
        case peerIndexWentBackwards(from: UInt64, to: UInt64)
        /// The peer wrote this side's index.
        case ownIndexOverwritten(expected: UInt64, found: UInt64)
        /// A record claims more payload than a slot holds.
        case recordTooLong(length: UInt32, limit: Int)

        public var description: String {
            switch self {
            case .badMagic(let m): return "bad magic 0x\(String(m, radix: 16))"
            case .unsupportedVersion(let v): return "unsupported layout version \(v)"
            case .recordSizeMismatch(let f, let e): return "record size \(f), expected \(e)"
            case .capacityMismatch(let f, let e): return "capacity \(f), expected \(e)"
            case .indicesInconsistent(let p, let c): return "producer index \(p) and consumer index \(c) are inconsistent"
            case .peerIndexWentBackwards(let from, let to): return "peer index went backwards from \(from) to \(to)"
            case .ownIndexOverwritten(let e, let f): return "own index overwritten: \(f), expected \(e)"
            case .recordTooLong(let l, let limit): return "record length \(l) exceeds \(limit)"
            }
        }
    }

    public enum PushResult: Equatable, Sendable {
        /// Published. `wasEmpty`: the consumer had taken everything before this record, so it
        /// may be asleep: ring its doorbell. Otherwise it will find this record on its own.
        case pushed(wasEmpty: Bool)
        /// No free slot; nothing written.
        case full
        /// The peer broke the ring; reported once, after which the ring is cut off.
        case corrupted(Corruption)
        /// The ring was cut off earlier (already reported).
        case cutOff
    }

    public enum PopResult: Equatable, Sendable {
        /// A record of `length` bytes was copied into the caller's buffer.
        case record(length: Int)
        /// Nothing to take. Safe to sleep on the doorbell: a producer that publishes after
        /// this answer sees the ring empty and rings it.
        case empty
        case corrupted(Corruption)
        case cutOff
    }

    /// Writes a fresh header (zero indices) for `layout` at `offset` in `region`. Done once,
    /// by whoever owns the region (the supervisor), before handing it to either side.
    public static func format(_ region: SharedRegion, at offset: Int, layout: Layout) throws(IPCError) {
        try View.check(region, offset: offset, layout: layout)
        try region.store(magic, at: offset)
        try region.store(layoutVersion, at: offset + 4)
        try region.store(UInt16(0), at: offset + 6)
        try region.store(UInt32(layout.recordSize), at: offset + 8)
        try region.store(UInt32(layout.capacity), at: offset + 12)
        try region.atomic(UInt64.self, at: offset + producerIndexOffset).store(0, ordering: .releasing)
        try region.atomic(UInt64.self, at: offset + consumerIndexOffset).store(0, ordering: .releasing)
    }

    /// The pieces both sides share: validated pointers into the region and the header check.
    struct View {
        let region: SharedRegion
        let header: UnsafeRawPointer
        let slots: UnsafeMutableRawPointer
        let producer: UnsafeAtomic<UInt64>
        let consumer: UnsafeAtomic<UInt64>
        let layout: Layout
        let mask: UInt64

        static func check(_ region: SharedRegion, offset: Int, layout: Layout) throws(IPCError) {
            guard offset >= 0, offset % 64 == 0 else {
                throw .invalidArgument("ring offset \(offset) is not 64-byte aligned")
            }
            try region.checkWritable()
            try region.checkRange(offset, layout.byteCount)
        }

        init(region: SharedRegion, offset: Int, layout: Layout) throws(IPCError) {
            try Self.check(region, offset: offset, layout: layout)
            self.region = region
            header = UnsafeRawPointer(region.base + offset)
            slots = region.base + offset + Layout.headerSize
            producer = try region.atomic(UInt64.self, at: offset + RecordRing.producerIndexOffset)
            consumer = try region.atomic(UInt64.self, at: offset + RecordRing.consumerIndexOffset)
            self.layout = layout
            mask = UInt64(layout.capacity - 1)
        }

        /// The header as the peer left it, against what we were told.
        @inline(__always)
        func headerProblem() -> Corruption? {
            let m = header.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
            if m != RecordRing.magic { return .badMagic(m) }
            let v = header.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
            if v != RecordRing.layoutVersion { return .unsupportedVersion(v) }
            let rs = header.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
            if rs != UInt32(layout.recordSize) { return .recordSizeMismatch(found: rs, expected: UInt32(layout.recordSize)) }
            let cap = header.loadUnaligned(fromByteOffset: 12, as: UInt32.self)
            if cap != UInt32(layout.capacity) { return .capacityMismatch(found: cap, expected: UInt32(layout.capacity)) }
            return nil
        }

        /// `producer - consumer` must be within 0...capacity.
        @inline(__always)
        func indicesProblem(producer p: UInt64, consumer c: UInt64) -> Corruption? {
            p >= c && p - c <= UInt64(layout.capacity) ? nil : .indicesInconsistent(producer: p, consumer: c)
        }

        /// Attaching: header and both indices must make sense; returns (producer, consumer).
        func attach() throws(IPCError) -> (UInt64, UInt64) {
            if let why = headerProblem() { throw .ringCorrupted(why) }
            let p = producer.load(ordering: .acquiring)
            let c = consumer.load(ordering: .acquiring)
            if let why = indicesProblem(producer: p, consumer: c) { throw .ringCorrupted(why) }
            return (p, c)
        }

        @inline(__always)
        func slot(_ index: UInt64) -> UnsafeMutableRawPointer {
            slots + Int(index & mask) &* layout.recordSize
        }
    }

    /// The writing side. Use from one thread at a time; exactly one producer per ring.
    public final class Producer: @unchecked Sendable {
        let view: View
        /// Our index (the shared copy is only ever written from this).
        private var head: UInt64
        /// The consumer's index as last seen, so a non-full ring costs no read of its line.
        private var seenTail: UInt64
        private var cutOff = false

        /// Attaches to a formatted ring, resuming from the indices it holds (a restarted
        /// producer continues where its predecessor stopped). Throws `.ringCorrupted` when the
        /// header or indices are already wrong, and bounds/alignment errors for a bad offset.
        public init(region: SharedRegion, offset: Int, layout: Layout) throws(IPCError) {
            view = try View(region: region, offset: offset, layout: layout)
            (head, seenTail) = try view.attach()
        }

        public var layout: Layout { view.layout }
        /// The first problem found, if the ring is cut off.
        public private(set) var corruption: Corruption?

        /// Records published so far (the producer index): the number the next push gets. A
        /// producer that must not push a record twice across a restart saves it with the state
        /// that says what it still has to push (the VMBus worker: docs/vmbus.md, "Restart").
        public var nextIndex: UInt64 { head }

        /// Copies `bytes` (at most `layout.maxRecordLength`, a precondition on our own
        /// argument) into the next slot and publishes it.
        public func tryPush(_ bytes: UnsafeRawBufferPointer) -> PushResult {
            tryPush(length: bytes.count) { slot in
                if let src = bytes.baseAddress { slot.baseAddress!.copyMemory(from: src, byteCount: bytes.count) }
            }
        }

        public func tryPush(_ bytes: [UInt8]) -> PushResult {
            bytes.withUnsafeBytes { tryPush($0) }
        }

        /// Lets `fill` write a record of `length` bytes straight into the slot (no staging
        /// copy), then publishes it. `fill` is not called when the ring is full or broken.
        public func tryPush(length: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Void) -> PushResult {
            precondition(length >= 0 && length <= view.layout.maxRecordLength,
                         "record of \(length) bytes exceeds the ring's \(view.layout.maxRecordLength)")
            if cutOff { return .cutOff }
            if let why = check() { return fail(why) }
            if head &- seenTail == UInt64(view.layout.capacity) {
                if let why = observeTail() { return fail(why) }
                if head &- seenTail == UInt64(view.layout.capacity) { return .full }
            }
            let slot = view.slot(head)
            slot.storeBytes(of: UInt32(length), toByteOffset: 0, as: UInt32.self)
            slot.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
            fill(UnsafeMutableRawBufferPointer(start: slot + RecordRing.slotHeaderSize, count: length))
            let before = head
            head = before &+ 1
            view.producer.store(head, ordering: .releasing)
            // Pairs with the consumer's fence before it reports `.empty`: either we see its
            // index caught up with ours (it may be asleep: ring), or it sees our record.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            if let why = observeTail() { return fail(why) }
            return .pushed(wasEmpty: seenTail == before)
        }

        /// Header and our own index untouched?
        @inline(__always)
        private func check() -> Corruption? {
            if let why = view.headerProblem() { return why }
            let mine = view.producer.load(ordering: .relaxed)
            return mine == head ? nil : .ownIndexOverwritten(expected: head, found: mine)
        }

        /// Reads and validates the consumer's index.
        @inline(__always)
        private func observeTail() -> Corruption? {
            let tail = view.consumer.load(ordering: .acquiring)
            if tail < seenTail { return .peerIndexWentBackwards(from: seenTail, to: tail) }
            if let why = view.indicesProblem(producer: head, consumer: tail) { return why }
            seenTail = tail
            return nil
        }

        private func fail(_ why: Corruption) -> PushResult {
            cutOff = true
            corruption = why
            return .corrupted(why)
        }
    }

    /// The reading side. Use from one thread at a time; exactly one consumer per ring.
    public final class Consumer: @unchecked Sendable {
        let view: View
        private var tail: UInt64
        /// The producer's index as last seen, so a non-empty ring costs no read of its line.
        private var seenHead: UInt64
        private var cutOff = false
        /// The first problem found, if the ring is cut off.
        public private(set) var corruption: Corruption?

        /// Where `tryPop(_:)` copies a record: `layout.maxRecordLength` bytes, ours alone.
        private let scratch: UnsafeMutableRawBufferPointer

        /// Attaches to a formatted ring, resuming from the indices it holds (a restarted
        /// consumer takes what its predecessor left). Throws like `Producer.init`.
        public init(region: SharedRegion, offset: Int, layout: Layout) throws(IPCError) {
            view = try View(region: region, offset: offset, layout: layout)
            (seenHead, tail) = try view.attach()
            scratch = .allocate(byteCount: layout.maxRecordLength, alignment: 8)
        }

        deinit { scratch.deallocate() }

        public var layout: Layout { view.layout }

        /// Copies the next record into `buffer` (which must hold `layout.maxRecordLength`
        /// bytes, a precondition on our own argument) and frees its slot. The length is read
        /// once and checked before any copy; the payload is copied out so the producer cannot
        /// change it after validation: parse the copy, never the slot.
        public func tryPop(into buffer: UnsafeMutableRawBufferPointer) -> PopResult {
            precondition(buffer.count >= view.layout.maxRecordLength,
                         "pop buffer of \(buffer.count) bytes is smaller than a record (\(view.layout.maxRecordLength))")
            let r = copyNext(into: buffer)
            if case .record = r { commitNext() }
            return r
        }

        /// The next record's number (the consumer index: records before it are taken). A worker
        /// saves it with the effect of a record (`tryTake`) to know, after a restart, which records
        /// its predecessor had already acted on.
        public var nextIndex: UInt64 { tail }

        /// What `tryTake`'s body decides about the record it was lent.
        public enum TakeDecision: Equatable, Sendable {
            /// Its effect is durable (or it is to be dropped): free the slot.
            case commit
            /// Not now (no room for its effect yet): the slot stays taken and the next call lends
            /// the same record again.
            case keep
        }

        /// Lends `body` the next record (copied out of the slot, as `tryPop(_:)`) with its number,
        /// and frees the slot only when `body` answers `.commit`, after `body` has returned. So a
        /// consumer that dies inside `body` — before or after making the record's effect durable —
        /// leaves the record in the ring: its successor is lent it again, with the same number,
        /// and tells "already done" from "not done" by the number it saved with the effect.
        /// Between the copy and the commit the producer cannot reuse the slot (the index still
        /// covers it), but the copy is what `body` gets: parse the copy, never the slot.
        public func tryTake(_ body: (UnsafeRawBufferPointer, _ index: UInt64) -> TakeDecision) -> PopResult {
            let r = copyNext(into: scratch)
            guard case .record(let n) = r else { return r }
            if body(UnsafeRawBufferPointer(rebasing: scratch[0..<n]), tail) == .commit {
                // `body` ran no ring call of ours (one thread, one consumer): `tail` is unchanged.
                commitNext()
            }
            return r
        }

        /// Frees the record `copyNext` copied.
        @inline(__always)
        private func commitNext() {
            tail &+= 1
            view.consumer.store(tail, ordering: .releasing)
        }

        /// Copies the next record into `buffer` after every check, without freeing its slot.
        private func copyNext(into buffer: UnsafeMutableRawBufferPointer) -> PopResult {
            if cutOff { return .cutOff }
            if let why = check() { return fail(why) }
            if seenHead == tail {
                if let why = observeHead() { return fail(why) }
                if seenHead == tail {
                    // Our last index store must be ordered before this re-read (pairs with the
                    // producer's fence): then an `.empty` answer is safe to sleep on.
                    atomicMemoryFence(ordering: .sequentiallyConsistent)
                    if let why = observeHead() { return fail(why) }
                    if seenHead == tail { return .empty }
                }
            }
            let slot = view.slot(tail)
            let length = slot.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
            guard Int(length) <= view.layout.maxRecordLength else {
                return fail(.recordTooLong(length: length, limit: view.layout.maxRecordLength))
            }
            if length > 0 {
                buffer.baseAddress!.copyMemory(from: slot + RecordRing.slotHeaderSize, byteCount: Int(length))
            }
            return .record(length: Int(length))
        }

        /// Takes the next record and lends `body` exactly its bytes, copied out of the slot into a
        /// buffer this consumer owns (allocated once, at attach): parse the copy, never the slot.
        /// `body` runs only for `.record`, and the view is valid only during the call.
        ///
        /// This is how a consumer decodes in place. There is deliberately no `[UInt8]` variant:
        /// the router once popped into a reused array and decoded `Array(buffer[0..<length])`,
        /// whose storage the slice shares with the array. In its `while true` serve loop (left
        /// only by exit()) Swift 6.3.1's `-O` dropped the release of that shared storage, so
        /// every record leaked the reused 4 KiB buffer and the next pop copied it (issue 11;
        /// docs/toolchain.md has the cause and a 35-line reproduction). Borrowing raw bytes
        /// leaves no array to alias and nothing to allocate per record.
        public func tryPop(_ body: (UnsafeRawBufferPointer) -> Void) -> PopResult {
            let r = tryPop(into: scratch)
            if case .record(let n) = r { body(UnsafeRawBufferPointer(rebasing: scratch[0..<n])) }
            return r
        }

        @inline(__always)
        private func check() -> Corruption? {
            if let why = view.headerProblem() { return why }
            let mine = view.consumer.load(ordering: .relaxed)
            return mine == tail ? nil : .ownIndexOverwritten(expected: tail, found: mine)
        }

        /// Reads and validates the producer's index.
        @inline(__always)
        private func observeHead() -> Corruption? {
            let head = view.producer.load(ordering: .acquiring)
            if head < seenHead { return .peerIndexWentBackwards(from: seenHead, to: head) }
            if let why = view.indicesProblem(producer: head, consumer: tail) { return why }
            seenHead = head
            return nil
        }

        private func fail(_ why: Corruption) -> PopResult {
            cutOff = true
            corruption = why
            return .corrupted(why)
        }
    }
}
