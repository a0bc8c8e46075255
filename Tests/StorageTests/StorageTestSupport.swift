import FuzzSeeds
import Storage

/// A seeded generator (SplitMix64, shared from FuzzSeeds): the random tests are reproducible.
typealias SplitMix = SplitMix64

func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }

/// A guest's vstor packet: op, flags 1, status 0, then `union` (zero padded to `size`).
func vstorPacket(_ op: VStorOperation, union: [UInt8] = [], size: Int = 64) -> [UInt8] {
    var p = le32(op.rawValue) + le32(1) + le32(0) + union
    p += [UInt8](repeating: 0, count: max(0, size - p.count))
    return Array(p.prefix(size))
}

/// A guest's EXECUTE_SRB the way storvsc builds it (Win8 SRB, 64 bytes; `size` 48 for the
/// pre-Win8 one).
func srbPacket(lun: UInt8 = 0, target: UInt8 = 0, path: UInt8 = 0, cdb: [UInt8], dataIn: UInt8, length: UInt32,
               senseLength: UInt8 = 20, size: Int = 64) -> [UInt8] {
    var u = le16(0x34) + [0, 0, 7, path, target, lun, UInt8(cdb.count), senseLength, dataIn, 0] + le32(length)
    u += cdb + [UInt8](repeating: 0, count: 20 - cdb.count)
    u += [0, 0, 0xFF, 0x20] + le32(0x8 | (dataIn == 1 ? 0x40 : dataIn == 0 ? 0x80 : 0)) + le32(60) + le32(0)
    return vstorPacket(.executeSRB, union: u, size: size)
}

/// A protocol through Linux 6.1's handshake.
func readyProtocol(_ configuration: VStorProtocol.Configuration = .init()) -> VStorProtocol {
    var p = VStorProtocol(configuration: configuration)
    _ = p.handle(transactionID: 1, payload: vstorPacket(.beginInitialization))
    _ = p.handle(transactionID: 1, payload: vstorPacket(.queryProtocolVersion, union: le16(0x0602)))
    _ = p.handle(transactionID: 1, payload: vstorPacket(.queryProperties))
    _ = p.handle(transactionID: 1, payload: vstorPacket(.endInitialization))
    return p
}

func disk(_ blocks: UInt64 = 2048, readOnly: Bool = false, serial: String = "SYNTH-0001",
          cache: SCSIDisk.CacheMode = .writeback, unmap: Bool = true) -> SCSIDisk {
    SCSIDisk(.init(capacityBlocks: blocks, readOnly: readOnly, serial: serial, cacheMode: cache, unmapSupported: unmap))!
}

/// A data-in request with a buffer of `length` bytes (the allocation length usually).
func readRequest(_ cdb: [UInt8], length: UInt32 = 512) -> SCSIRequest {
    SCSIRequest(cdb: SCSICDB(cdb), dataTransferLength: length, direction: .fromDevice)
}

func writeRequest(_ cdb: [UInt8], length: UInt32) -> SCSIRequest {
    SCSIRequest(cdb: SCSICDB(cdb), dataTransferLength: length, direction: .toDevice)
}

func noDataRequest(_ cdb: [UInt8]) -> SCSIRequest {
    SCSIRequest(cdb: SCSICDB(cdb), dataTransferLength: 0, direction: .none)
}

extension SCSIDisk.Decision {
    var data: [UInt8]? { if case .dataIn(let d) = self { d } else { nil } }
    var completion: SCSICompletion? { if case .complete(let c) = self { c } else { nil } }
    var io: SCSIDisk.IO? { if case .io(let io) = self { io } else { nil } }
    /// The sense's (key, ASC) when the command failed with CHECK CONDITION.
    var senseCode: (UInt8, UInt8)? {
        guard let c = completion, c.scsiStatus == .checkCondition, let s = c.sense else { return nil }
        return (s.key.rawValue, s.additional.code)
    }
    func fails(_ key: SCSISenseKey, _ asc: SCSIAdditionalSense) -> Bool {
        guard let c = completion, let s = c.sense else { return false }
        return c.scsiStatus == .checkCondition && s.key == key && s.additional == asc && c.srbStatus != .success
    }
    var isGood: Bool { completion == .good() }
}

/// A guest buffer for the executor: `pages` 4 KiB pages, the transfer starting at `offset` in
/// the first (like a GPA-direct range), `count` bytes.
final class GuestBuffer {
    let memory: UnsafeMutableRawBufferPointer
    let offset: Int
    let count: Int
    init(count: Int, offset: Int = 0) {
        let pages = (offset + count + 4095) / 4096
        memory = .allocate(byteCount: max(pages, 1) * 4096, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: 0xEE)
        self.offset = offset
        self.count = count
    }
    deinit { memory.deallocate() }

    /// One span per page, like the worker maps them.
    var buffer: SCSIDataBuffer {
        var spans: [UnsafeMutableRawBufferPointer] = []
        var at = offset, left = count
        while left > 0 {
            let n = min(4096 - at % 4096, left)
            spans.append(UnsafeMutableRawBufferPointer(rebasing: memory[at..<at + n]))
            at += n; left -= n
        }
        return SCSIDataBuffer(segments: spans)
    }
    var bytes: [UInt8] { Array(memory[offset..<offset + count]) }
    func fill(_ bytes: [UInt8]) { for (i, b) in bytes.prefix(count).enumerated() { memory[offset + i] = b } }
}
