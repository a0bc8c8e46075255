// The VMBus ring buffer (`VMBusRingConsumer`, `VMBusRingProducer`, `VMBusGPADirectRanges`,
// Sources/VMBus) over a flat ring whose control page and data the input scribbles on between
// operations, as a hostile guest can at any time: write_index, read_index, interrupt_mask,
// pending_send_sz, feature bits, descriptors, trailers, range lists. The data area is
// 8 × (1 + u8 % 64) bytes (from the first byte). Operations:
//
//   0  write: u8 type, u8 flags, u8 header-extension words (% 8), u8 payload length, bytes
//      (header extension then payload)
//   1  producer commit               2  consumer next (and read the whole packet)
//   3  consumer commit               4  enable interrupts (bit 0 of u8: disable instead)
//   5  arm for space: u16 bytes      6  scribble a control field: u8 which (write_index, read_index,
//      interrupt_mask, pending_send_sz, feature bits), u32 value (with bit 31 set: value % (size + 16))
//   7  scribble data: u16 offset, u8 length (% 32), bytes
//   8  reattach: u8 bit 0 consumer, bit 1 producer (a restarted worker resumes from the indices)
//
// Checked: nothing traps (ASan: no access outside the ring); every packet returned lies inside
// the ring, its length is len8 × 8 and its payload and header extension are the descriptor's;
// a GPA-direct range list yields ranges inside the header extension with in-page offsets;
// corruption is reported once, recorded, and then every call answers `.cutOff`; while nobody
// scribbled, packets come out in order with what went in and no corruption is reported.
import FuzzSupport
import VMBus

let controlFields = [0, 4, 8, 12, 64]   // write_index, read_index, interrupt_mask, pending_send_sz, feature bits

struct Sent: Equatable {
    var type: UInt16, flags: UInt16, transactionID: UInt64, headerExtension: [UInt8], payload: [UInt8]
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVMBusRing(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let dataCount = 8 * (1 + input.below(64))
    let memory = try! VMBusFlatRingMemory(dataCount: dataCount)
    guard var consumer = try? VMBusRingConsumer(memory: memory), var producer = try? VMBusRingProducer(memory: memory) else {
        preconditionFailure("a zeroed ring does not attach")
    }
    var scribbled = false
    var committed: [Sent] = [], uncommitted: [Sent] = []
    var consumerFailed = false, producerFailed = false
    var transactionID: UInt64 = 0
    var ops = 0
    while !input.isEmpty, ops < 256 {
        ops += 1
        switch input.u8() % 9 {
        case 0:
            let type = UInt16(input.u8() % 14), flags = UInt16(input.u8() & 1)
            let ext = input.take(8 * Int(input.u8() % 8))
            let payload = input.take(Int(input.u8()))
            transactionID &+= 1
            let result = ext.withUnsafeBytes { e in
                payload.withUnsafeBytes { p in
                    producer.tryWrite(type: VMBusPacketType(rawValue: type), flags: flags, transactionID: transactionID,
                                      headerExtension: e, payload: p)
                }
            }
            switch result {
            case .written:
                precondition(!producerFailed, "written after corruption")
                uncommitted.append(Sent(type: type, flags: flags, transactionID: transactionID, headerExtension: ext, payload: payload))
            case .full, .tooLarge:
                precondition(!producerFailed, "an answer after corruption")
            case .corrupted(let why):
                precondition(scribbled, "producer: corruption nobody caused: \(why)")
                precondition(!producerFailed, "producer: corruption reported twice")
                precondition(producer.corruption == why, "producer: corruption not recorded")
                producerFailed = true
            case .cutOff:
                precondition(producerFailed, "producer: cut off without corruption")
            }
        case 1:
            switch producer.commit() {
            case .signal, .noSignal:
                precondition(!producerFailed, "commit after corruption")
                committed += uncommitted
                uncommitted = []
                precondition(producer.uncommitted == 0, "bytes left uncommitted")
            case .corrupted(let why):
                precondition(scribbled, "producer commit: corruption nobody caused: \(why)")
                precondition(!producerFailed, "producer: corruption reported twice")
                precondition(producer.corruption == why, "producer: corruption not recorded")
                producerFailed = true
            case .cutOff:
                precondition(producerFailed, "producer: cut off without corruption")
            }
        case 2:
            switch consumer.next() {
            case .packet(let packet):
                precondition(!consumerFailed, "a packet after corruption")
                let got = read(packet, dataCount: dataCount)
                if !scribbled {
                    precondition(!committed.isEmpty, "a packet from an empty ring")
                    var sent = committed.removeFirst()
                    sent.payload += [UInt8](repeating: 0, count: (8 - sent.payload.count % 8) % 8)   // the writer's padding
                    precondition(got == sent, "a packet came out changed: \(got) != \(sent)")
                }
            case .empty:
                precondition(!consumerFailed, "empty after corruption")
                precondition(scribbled || committed.isEmpty, "empty with \(committed.count) packets committed")
            case .corrupted(let why):
                precondition(scribbled, "consumer: corruption nobody caused: \(why)")
                precondition(!consumerFailed, "consumer: corruption reported twice")
                precondition(consumer.corruption == why, "consumer: corruption not recorded")
                consumerFailed = true
            case .cutOff:
                precondition(consumerFailed, "consumer: cut off without corruption")
            }
        case 3:
            switch consumer.commit() {
            case .signal, .noSignal: precondition(!consumerFailed, "commit after corruption")
            case .corrupted(let why):
                precondition(scribbled, "consumer commit: corruption nobody caused: \(why)")
                precondition(!consumerFailed, "consumer: corruption reported twice")
                precondition(consumer.corruption == why, "consumer: corruption not recorded")
                consumerFailed = true
            case .cutOff:
                precondition(consumerFailed, "consumer: cut off without corruption")
            }
        case 4:
            if input.bool() {
                consumer.disableInterrupts()
                continue
            }
            switch consumer.enableInterrupts() {
            case .sleep, .readAgain: precondition(!consumerFailed, "an answer after corruption")
            case .corrupted(let why):
                precondition(scribbled, "enableInterrupts: corruption nobody caused: \(why)")
                precondition(!consumerFailed, "consumer: corruption reported twice")
                precondition(consumer.corruption == why, "consumer: corruption not recorded")
                consumerFailed = true
            case .cutOff:
                precondition(consumerFailed, "consumer: cut off without corruption")
            }
        case 5:
            let wasFailed = producer.corruption != nil
            _ = producer.armForSpace(Int(input.u16()))
            if let why = producer.corruption, !wasFailed {
                precondition(scribbled, "armForSpace: corruption nobody caused: \(why)")
                producerFailed = true
                // The next write or commit reports `.cutOff` (armForSpace has no corruption answer).
            }
        case 6:
            let field = controlFields[input.below(controlFields.count)]
            var value = input.u32()
            if value & 0x8000_0000 != 0 { value = value % UInt32(dataCount + 16) }   // often a plausible index
            withUnsafeBytes(of: value.littleEndian) { memory.control.advanced(by: field).copyMemory(from: $0.baseAddress!, byteCount: 4) }
            // interrupt_mask, pending_send_sz and the feature bits are the reader's and writer's
            // hints: changing them is not corruption.
            if field < 8 { scribbled = true }
        case 7:
            let at = Int(input.u16()) % dataCount
            let bytes = input.take(Int(input.u8() % 32))
            for (i, b) in bytes.enumerated() { memory.dataRun(at: (at + i) % dataCount).baseAddress!.storeBytes(of: b, as: UInt8.self) }
            if !bytes.isEmpty { scribbled = true }
        default:
            let which = input.u8()
            if which & 1 != 0 {
                if let c = try? VMBusRingConsumer(memory: memory) {
                    consumer = c
                    consumerFailed = false
                } else {
                    precondition(scribbled || consumerFailed || producerFailed, "consumer cannot reattach to an intact ring")
                }
                // A new consumer resumes at read_index: packets read but not committed come again.
                scribbled = true
            }
            if which & 2 != 0 {
                if let p = try? VMBusRingProducer(memory: memory) {
                    producer = p
                    producerFailed = false
                } else {
                    precondition(scribbled || consumerFailed || producerFailed, "producer cannot reattach to an intact ring")
                }
                scribbled = true
            }
        }
    }
    return 0
}

/// Reads every byte of the packet through its views and checks them against the descriptor.
func read(_ packet: VMBusRingPacket<VMBusFlatRingMemory>, dataCount: Int) -> Sent {
    let d = packet.descriptor
    precondition(d.offset8 >= 2 && d.offset8 <= d.len8, "descriptor offset8 \(d.offset8) len8 \(d.len8)")
    precondition(packet.bytes.count == d.packetLength, "packet of \(packet.bytes.count) bytes, len8 \(d.len8)")
    precondition(packet.bytes.count + VMBusPacketDescriptor.trailerSize <= dataCount, "packet larger than the ring")
    let payload = packet.payload, ext = packet.headerExtension
    precondition(payload.count == d.packetLength - d.payloadOffset, "payload \(payload.count) bytes")
    precondition(ext.count == d.payloadOffset - VMBusPacketDescriptor.size, "header extension \(ext.count) bytes")
    var all = [UInt8](repeating: 0, count: packet.bytes.count)
    precondition(all.withUnsafeMutableBytes { packet.bytes.copyBytes(to: $0) }, "packet bytes not readable")
    precondition(packet.bytes.load(UInt8.self, at: packet.bytes.count) == nil, "a load past the packet")
    precondition(packet.bytes.slice(from: 1, count: packet.bytes.count) == nil, "a slice past the packet")
    _ = packet.bytes.withContiguousBytes { b in precondition(b.count == packet.bytes.count) }
    if packet.descriptor.type == .dataUsingGPADirect || ext.count >= 8 { ranges(packet) }
    return Sent(type: d.type.rawValue, flags: d.flags, transactionID: d.transactionID,
                headerExtension: Array(all[16..<d.payloadOffset]),
                payload: Array(all[d.payloadOffset...]))
}

func ranges(_ packet: VMBusRingPacket<VMBusFlatRingMemory>) {
    guard var list = try? VMBusGPADirectRanges(packet: packet) else { return }
    let ext = packet.headerExtension.count
    var used = 8, count = 0
    while true {
        let r: VMBusGPADirectRanges<VMBusFlatRingMemory>.Range?
        do { r = try list.next() } catch { return }
        guard let r else { break }
        count += 1
        precondition(r.byteOffset < 4096 && r.byteCount > 0, "range \(r.byteOffset)+\(r.byteCount)")
        precondition(r.pageCount == Int((UInt64(r.byteOffset) + UInt64(r.byteCount) + 4095) / 4096), "range pages")
        used += 8 + r.pfns.count
        precondition(used <= ext, "ranges past the header extension: \(used) of \(ext)")
        for i in 0..<r.pageCount { precondition(r.pfn(i) != nil, "pfn \(i) unreadable") }
        precondition(r.pfn(r.pageCount) == nil, "a pfn past the range")
    }
    precondition(count == Int(list.rangeCount), "\(count) of \(list.rangeCount) ranges")
}
