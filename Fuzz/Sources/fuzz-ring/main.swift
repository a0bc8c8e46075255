// The record ring between processes (`RecordRing` Producer and Consumer, Sources/IPC) over a
// real shared region whose bytes the input scribbles on, as a hostile peer could: header,
// indices, slot lengths, payloads. The ring's shape and offset come from the first bytes.
// Operations:
//
//   0  push: u8 length, bytes                 4  a new consumer attaches (a restarted worker)
//   1  pop into a buffer of one record        5  a new producer attaches
//   2  scribble: u16 offset, u8 length, bytes 6  scribble an index: u8 which, u64 value
//   3  scribble a slot's length: u8 slot, u32
//
// Checked: nothing traps; a popped length fits the buffer; while nobody scribbled, records come
// out in order with the bytes they went in with, and a full/empty answer matches the count.
import FuzzSupport
import IPC

/// One region for every input (a memfd: creating one per input would dominate the run time).
let region = try! SharedRegion(name: "synthvm-fuzz-ring", size: 64 << 10)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRing(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    try! region.write([UInt8](repeating: 0, count: region.size), at: 0)
    let recordSize = 16 << Int(input.u8() % 4)           // 16...128 bytes
    let capacity = 1 << Int(input.u8() % 5)              // 1...16 slots
    let offset = Int(input.u8() % 16) * 64
    guard let layout = try? RecordRing.Layout(recordSize: recordSize, capacity: capacity),
          (try? RecordRing.format(region, at: offset, layout: layout)) != nil,
          var producer = try? RecordRing.Producer(region: region, offset: offset, layout: layout),
          var consumer = try? RecordRing.Consumer(region: region, offset: offset, layout: layout)
    else { return 0 }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: layout.maxRecordLength, alignment: 8)
    defer { buffer.deallocate() }
    var inFlight: [[UInt8]] = []   // what went in, while the model still holds
    var scribbled = false
    var ops = 0
    while !input.isEmpty, ops < 512 {
        ops += 1
        switch input.u8() % 8 {
        case 0:
            let record = input.take(Int(input.u8()) % (layout.maxRecordLength + 1))
            switch producer.tryPush(record) {
            case .pushed: inFlight.append(record)
            case .full: precondition(scribbled || inFlight.count == capacity, "full with \(inFlight.count) of \(capacity)")
            case .corrupted, .cutOff: precondition(scribbled, "the ring reported corruption nobody caused")
            }
        case 1:
            switch consumer.tryPop(into: buffer) {
            case .record(let length):
                precondition(length >= 0 && length <= buffer.count, "popped \(length) bytes into \(buffer.count)")
                if !scribbled {
                    precondition(!inFlight.isEmpty, "a record came out of an empty ring")
                    precondition(Array(buffer[0..<length]) == inFlight.removeFirst(), "a record came out changed")
                }
            case .empty: precondition(scribbled || inFlight.isEmpty, "empty with \(inFlight.count) in flight")
            case .corrupted, .cutOff: precondition(scribbled, "the ring reported corruption nobody caused")
            }
        case 2:
            scribble(at: offset + Int(input.u16()) % layout.byteCount, input.take(Int(input.u8() % 16)))
            scribbled = true
        case 3:
            let slot = Int(input.u8()) % capacity
            scribble(at: offset + RecordRing.Layout.headerSize + slot * recordSize, input.take(4))
            scribbled = true
        case 4:
            if let c = try? RecordRing.Consumer(region: region, offset: offset, layout: layout) { consumer = c }
        case 5:
            if let p = try? RecordRing.Producer(region: region, offset: offset, layout: layout) { producer = p }
        case 7:
            // Take with a later commit (or a keep): the same record until it is committed.
            let commit = input.bool()
            var lent: [UInt8] = []
            switch consumer.tryTake({ bytes, _ in lent = Array(bytes); return commit ? .commit : .keep }) {
            case .record(let length):
                precondition(length == lent.count, "took \(length) bytes, lent \(lent.count)")
                if !scribbled {
                    precondition(!inFlight.isEmpty, "a record came out of an empty ring")
                    precondition(lent == inFlight.first, "a record came out changed")
                    if commit { inFlight.removeFirst() }
                }
            case .empty: precondition(scribbled || inFlight.isEmpty, "empty with \(inFlight.count) in flight")
            case .corrupted, .cutOff: precondition(scribbled, "the ring reported corruption nobody caused")
            }
        default:
            let at = offset + (input.bool() ? 128 : 256)
            scribble(at: at, input.take(8))
            scribbled = true
        }
    }
    return 0
}

func scribble(at offset: Int, _ bytes: [UInt8]) {
    let n = min(bytes.count, region.size - offset)
    if n > 0 { try! region.write(Array(bytes[0..<n]), at: offset) }
}
