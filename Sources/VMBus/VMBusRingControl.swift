import Atomics

/// The control page of a ring (`struct hv_ring_buffer`):
///
/// | offset | size | field | written by |
/// |---|---|---|---|
/// | 0 | 4 | write_index: byte offset in the data area where the next packet goes | the writer |
/// | 4 | 4 | read_index: byte offset of the next unread packet | the reader |
/// | 8 | 4 | interrupt_mask: non-zero means "do not signal me" | the reader |
/// | 12 | 4 | pending_send_sz: non-zero means "signal me once more than this is free" | the writer |
/// | 64 | 4 | feature_bits: bit 0, the reader honours pending_send_sz | whoever initialises the ring (Linux, both rings) |
///
/// The ring is empty when write_index == read_index; a writer never fills it completely.
struct VMBusRingControl {
    static let writeIndexOffset = 0
    static let readIndexOffset = 4
    static let interruptMaskOffset = 8
    static let pendingSendSizeOffset = 12
    static let featureBitsOffset = 64
    /// feat_pending_send_sz.
    static let featurePendingSendSize: UInt32 = 1

    let writeIndex: UnsafeAtomic<UInt32>
    let readIndex: UnsafeAtomic<UInt32>
    let interruptMask: UnsafeAtomic<UInt32>
    let pendingSendSize: UnsafeAtomic<UInt32>
    let featureBits: UnsafeAtomic<UInt32>

    init(_ page: UnsafeMutableRawPointer) {
        func at(_ o: Int) -> UnsafeAtomic<UInt32> {
            UnsafeAtomic(at: (page + o).assumingMemoryBound(to: UInt32.AtomicRepresentation.self))
        }
        writeIndex = at(Self.writeIndexOffset)
        readIndex = at(Self.readIndexOffset)
        interruptMask = at(Self.interruptMaskOffset)
        pendingSendSize = at(Self.pendingSendSizeOffset)
        featureBits = at(Self.featureBitsOffset)
    }
}

/// Ring arithmetic on byte offsets in a data area of `size` bytes.
enum VMBusRingMath {
    /// Bytes from `from` forward to `to`, wrapping: 0..<size.
    @inline(__always)
    static func distance(_ from: UInt32, _ to: UInt32, size: Int) -> Int {
        let d = Int(to) - Int(from)
        return d >= 0 ? d : d + size
    }

    /// Free bytes for the writer (Linux `hv_get_bytes_to_write`).
    @inline(__always)
    static func free(write: UInt32, read: UInt32, size: Int) -> Int {
        size - distance(read, write, size: size)
    }

    @inline(__always)
    static func advance(_ offset: UInt32, by n: Int, size: Int) -> UInt32 {
        UInt32((Int(offset) + n) % size)
    }

    /// An index the peer wrote must be an 8-aligned offset inside the data area.
    @inline(__always)
    static func valid(_ index: UInt32, size: Int) -> Bool {
        Int(index) < size && index % 8 == 0
    }
}

/// What both sides find when they attach to a ring: its data size and control page, and the two
/// indices as the ring holds them (a fresh ring has both at 0; a restarted worker continues from
/// whatever its predecessor left). Each index must be an 8-aligned offset inside the data area.
struct VMBusRingAttachment {
    let size: Int
    let control: VMBusRingControl
    let writeIndex: UInt32
    let readIndex: UInt32

    init<Memory: VMBusRingMemory>(_ memory: Memory) throws(VMBusRingSetupError) {
        size = memory.dataCount
        guard size > 0, size % 8 == 0, size < 1 << 31 else { throw .badGeometry("data area of \(size) bytes") }
        control = VMBusRingControl(memory.control)
        let w = control.writeIndex.load(ordering: .acquiring), r = control.readIndex.load(ordering: .acquiring)
        guard VMBusRingMath.valid(w, size: size) else { throw .corrupted(.indexOutOfRange(field: "write_index", value: w, dataCount: size)) }
        guard VMBusRingMath.valid(r, size: size) else { throw .corrupted(.indexOutOfRange(field: "read_index", value: r, dataCount: size)) }
        writeIndex = w
        readIndex = r
    }
}
