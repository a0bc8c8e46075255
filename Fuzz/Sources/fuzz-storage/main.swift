// The storage pure layer (Sources/Storage) as the storage worker will drive it: vstor packets
// into `VStorProtocol`, the SRBs it hands out through `VStorDataBufferCheck` (range lists
// against guest RAM), `SCSIController` and `SCSIDiskExecutor` on in-memory disks, and the
// saved state. A header, then operations:
//
//   header: u8 highest version (index % 5 into the accepted list), u8 sub-channel limit (% 5),
//           u8 disk flags (bit 0 LUN 0 read-only, bit 1 a second LUN, bits 2-3 cache mode,
//           bit 4 no UNMAP)
//    0  raw packet:   u8 length (% 80), bytes; u8 flags (bit 0 completion, bit 1 sub-channel)
//    1  handshake step: u8 step (% 5: BEGIN, QUERY_PROTOCOL_VERSION with u16 version,
//                       QUERY_PROPERTIES, CREATE_SUB_CHANNELS with u16 count, END)
//    2  SRB: u8 LUN, u8 path/target (bits 0-2 path, bit 3 target), u8 cdb length, 16 CDB bytes,
//            u8 data_in, u32 transfer length (% 128 KiB), u8 buffer offset (<< 4), u8 range
//            shape (bit 0 in-band, bit 1 two ranges, bit 2 a PFN outside RAM, bit 3 short),
//            u8 backend failure bits (0 reads, 1 writes, 2 flushes), then bytes for the buffer
//    3  save -> encode -> decode -> restore, continue on the copy
//    4  decode arbitrary bytes as a saved state: u8 length (% 40), bytes; restore what decodes
//    5  reset (the channel closed)
//
// Checked after every step: every reply is exactly 12 + an SRB size (48...64 before a version
// is agreed, exactly the version's after), op COMPLETE_IO, the request's transaction id; an SRB
// comes out only when ready, with a CDB of 1...16 bytes; the executor's result moves at most
// the buffer's bytes and succeeds exactly when its SCSI status is GOOD; a read-only disk's
// backend is never written; saved states round-trip to the same bytes and the same machine.
import FuzzSupport
import Storage
import VMBus

let ram: [Range<UInt64>] = [0..<0x4000_0000]

func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }

func packet(_ op: VStorOperation, _ union: [UInt8] = []) -> [UInt8] {
    let p = le32(op.rawValue) + le32(1) + le32(0) + union
    return p + [UInt8](repeating: 0, count: max(0, 64 - p.count))
}

func checkReply(_ r: VStorReply, _ t: UInt64, sizes: ClosedRange<Int>) {
    precondition(r.transactionID == t, "reply to the wrong transaction")
    precondition(sizes.contains(r.packet.count), "reply of \(r.packet.count) bytes, expected \(sizes)")
    precondition(r.packet.operation == .completeIO, "reply op \(r.packet.operation)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStorage(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let configuration = VStorProtocol.Configuration(highestVersion: VStorProtocolVersion.accepted[input.below(5)],
                                                    maxSubChannels: UInt16(input.below(5)), maxTransferBytes: 0x20000)
    let flags = input.u8()
    let cache = SCSIDisk.CacheMode.allCases[Int(flags >> 2 & 3) % 3]
    var disks = [SCSIDisk(.init(capacityBlocks: 256, readOnly: flags & 1 != 0, serial: "FUZZ", cacheMode: cache,
                                maxTransferBytes: 0x20000, unmapSupported: flags & 0x10 == 0))!]
    if flags & 2 != 0 { disks.append(SCSIDisk(.init(capacityBlocks: 8, cacheMode: cache, maxTransferBytes: 0x20000))!) }
    let controller = SCSIController(disks: disks)!
    let backends = disks.map { MemoryDiskBackend(byteCount: Int($0.capacityBlocks) * 512) }
    var machine = VStorProtocol(configuration: configuration)
    var transactionID: UInt64 = 0
    var ops = 0

    func handle(_ bytes: [UInt8], completion: Bool = false, sub: Bool = false) {
        transactionID &+= 1
        let sizes = machine.state.version.map { (12 + $0.srbSize)...(12 + $0.srbSize) } ?? 48...64
        let wasReady = machine.isReady
        switch machine.handle(transactionID: transactionID, payload: bytes, isCompletion: completion, onSubChannel: sub) {
        case .reply(let r):
            checkReply(r, transactionID, sizes: sizes)
        case .createSubChannels(let r, let total):
            checkReply(r, transactionID, sizes: sizes)
            precondition(total <= configuration.maxSubChannels, "too many sub-channels")
        case .execute(let srb):
            precondition(wasReady && machine.isReady, "an SRB before ready")
            precondition(srb.cdb.count >= 1 && srb.cdb.count <= 16, "CDB length")
            execute(srb)
        case .ignore:
            precondition(completion, "a data packet ignored")
        }
    }

    func execute(_ srb: VStorSRB) {
        let shape = input.u8()
        let failures = input.u8()
        let offset = Int(input.u8()) << 4
        let length = Int(srb.dataTransferLength)
        // The range as the guest described it.
        var ranges: [VStorDataBufferCheck.PageRange]? = nil
        if shape & 1 == 0 {
            let count = UInt32(shape & 8 != 0 ? max(0, length - 1) : length)
            let pages = (offset + Int(count) + 4095) / 4096
            var pfns = (0..<pages).map { UInt64(0x100 + $0) }
            if shape & 4 != 0, !pfns.isEmpty { pfns[pfns.count - 1] = 0x4_0000 }
            let r = VStorDataBufferCheck.PageRange(byteCount: count, byteOffset: UInt32(offset), pfns: pfns)
            ranges = shape & 2 != 0 ? [r, r] : [r]
        }
        let completion: VStorReply
        if let problem = VStorDataBufferCheck.check(ranges: ranges, dataTransferLength: srb.dataTransferLength, ram: ram) {
            completion = VStorDataBufferCheck.completion(for: srb, problem: problem)
            precondition(completion.packet[14] & 0x3F == SRBStatus.invalidRequest.rawValue, "refused buffer status")
        } else {
            let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(length, 1), alignment: 16)
            defer { memory.deallocate() }
            memory.initializeMemory(as: UInt8.self, repeating: 0)
            let fill = input.take(min(length, 64))
            for (i, b) in fill.enumerated() { memory[i] = b }
            let lun = controller.disk(for: srb) != nil ? Int(srb.lun) : 0
            let backend = backends[lun]
            backend.failReads = failures & 1 != 0
            backend.failWrites = failures & 2 != 0
            backend.failFlushes = failures & 4 != 0
            let before = backend.log.count
            let result = SCSIDiskExecutor.run(srb, controller: controller, backend: backend,
                                              buffer: SCSIDataBuffer(segments: [UnsafeMutableRawBufferPointer(rebasing: memory[0..<length])]))
            precondition(result.transferred <= srb.dataTransferLength, "moved more than the buffer")
            precondition((result.srbStatus == .success) == (result.scsiStatus == .good), "status pair")
            if disks[lun].configuration.readOnly, controller.disk(for: srb) != nil {
                precondition(!backend.log[before...].contains { $0.hasPrefix("write") || $0.hasPrefix("punch") }, "wrote a read-only disk")
            }
            completion = machine.completion(for: srb, result: result)
            precondition((completion.packet[14] == 1) == (result.srbStatus == .success), "SRB status byte")
        }
        checkReply(completion, srb.transactionID, sizes: (12 + srb.version.srbSize)...(12 + srb.version.srbSize))
    }

    func roundTrip() {
        let saved = machine.saved
        let bytes = saved.encoded()
        guard let back = try? VStorProtocol.Saved(decoding: bytes) else { preconditionFailure("own saved state refused") }
        precondition(back == saved && back.encoded() == bytes, "saved state round trip")
        guard let restored = try? VStorProtocol.restore(back, configuration: configuration) else { preconditionFailure("own state does not restore") }
        precondition(restored.saved == saved, "restore changed the state")
        machine = restored
    }

    while !input.isEmpty && ops < 200 {
        ops += 1
        switch input.below(6) {
        case 0:
            let bytes = input.take(input.below(80))
            let f = input.u8()
            handle(bytes, completion: f & 1 != 0, sub: f & 2 != 0)
        case 1:
            switch input.below(5) {
            case 0: handle(packet(.beginInitialization))
            case 1: handle(packet(.queryProtocolVersion, le16(input.u16())))
            case 2: handle(packet(.queryProperties))
            case 3: handle(packet(.createSubChannels, le16(UInt16(input.below(8)))))
            default: handle(packet(.endInitialization))
            }
        case 2:
            let lun = input.u8() % 4, addr = input.u8()
            let cdbLength = input.u8()
            var cdb = input.take(16)
            cdb += [UInt8](repeating: 0, count: 16 - cdb.count)
            let dataIn = input.u8() % 4
            let length = input.u32() % 0x20000
            var u = le16(0x34) + [0, 0, 0, addr & 7, addr >> 3 & 1, lun, cdbLength, 20, dataIn, 0] + le32(length)
            u += cdb + [0, 0, 0, 0] + [0, 0, 0xFF, 0x20] + le32(0) + le32(60) + le32(0)
            handle(packet(.executeSRB, u))
        case 3:
            roundTrip()
        case 4:
            let bytes = input.take(input.below(40))
            if let saved = try? VStorProtocol.Saved(decoding: bytes) {
                precondition(saved.encoded() == bytes, "decoded bytes re-encode differently")
                if let restored = try? VStorProtocol.restore(saved, configuration: configuration) { machine = restored }
            }
        default:
            machine.reset()
        }
    }
    return 0
}
