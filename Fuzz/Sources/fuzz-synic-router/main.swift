// The SynIC message router (`MessageRouter`, what the synic-router worker runs) over a real
// shared SynIC region (a memfd) and guest RAM the input scribbles on. The input plays the guest
// (testdev commands, HvPostMessage, HvSignalEvent, EOM, freeing slots, writing its pages), the
// monitor's half of the conversation (publishing SynIC registers; for HvPostMessage, looking the
// connection up, reserving a buffer and pushing the record into the calling VP's ring, as
// Sources/Monitor/SynICRouterLink.swift does), a compromised monitor (raw bytes in a ring, a
// record with any fields) and other workers (host-to-guest messages). After every operation the
// rings are served by the worker's own `RouterRingService.serveOnce` (each record decoded in
// place and handed to the router; then `service()`, and `retry()` when it asks). Operations:
//
//   0  testdev write: u32 port value (conn << 24 | ctl << 16 | vp << 8 | sint), through the
//      test-device ring
//   1  HvPostMessage: u8 conn, u8 from-VP, u32 type, u8 length, payload
//   2  raw bytes in a ring: u8 ring, u16 length, bytes (a compromised monitor)
//   3  HvSignalEvent: u8 conn
//   4  EOM: u8 VP (the monitor counts it)
//   5  the guest writes its SIM/SIEF pages: u32 offset, u8 length, bytes
//   6  the monitor publishes registers: u8 VP, u8 form (enables, page GPAs, SINT values)
//   7  a host-to-guest message from a worker: u8 VP, u8 SINT, u32 type, u8 length, payload
//   8  a record handed over directly with any fields: u8 ring, u32 vp, u32 conn, u32 entry,
//      u32 generation, u32 type, u8 length, payload
//
// Checked: nothing traps; SINTs are raised only for existing VPs and SINTs; the published pending
// mask always equals the router's queues; a record the monitor built always decodes.
import FuzzSupport
import HyperV
import IPC
import Partition
import SynICRouting

let simp: UInt64 = 0x1_0000, siefp: UInt64 = 0x2_0000
let ringLayout = try! RecordRing.Layout(recordSize: 512, capacity: 8)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRouter(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let vpCount = 1 + Int(input.u8() % 3)
    let region = try! SynICRegion.create(vpCount: vpCount, ringLayout: ringLayout)
    let memory = FuzzMemory(size: 0x3_0000)
    let polling = input.bool()
    func raise(_ vp: UInt32, _ sint: Int) {
        precondition(Int(vp) < vpCount && (0..<HvSynIC.sintCount).contains(sint), "SINT raised for no such VP/SINT")
    }
    var router = try! MessageRouter(region: region, memory: memory, pollingAvailable: polling, testDevice: true, raiseSINT: raise)
    // Ring i < vpCount is VP i's; ring vpCount is the test device's.
    let rings = (0...vpCount).map { i in
        (try! RecordRing.Producer(region: region.region, offset: region.ringOffset(i), layout: ringLayout),
         try! RecordRing.Consumer(region: region.region, offset: region.ringOffset(i), layout: ringLayout))
    }
    var service = RouterRingService(consumers: rings.map(\.1), testDeviceRing: region.testDeviceRing)
    /// A restart: a successor router (and ring consumers) over the same regions.
    func restart() {
        router = try! MessageRouter(region: region, memory: memory, pollingAvailable: polling, testDevice: true,
                                    state: router.state, raiseSINT: raise)
        service = RouterRingService(consumers: (0...vpCount).map { i in
            try! RecordRing.Consumer(region: region.region, offset: region.ringOffset(i), layout: ringLayout)
        }, testDeviceRing: region.testDeviceRing)
    }
    for vp in 0..<vpCount { publish(region, vp: UInt32(vp), form: 0) }
    var sequence: UInt64 = 0
    var ops = 0
    while !input.isEmpty, ops < 256 {
        ops += 1
        switch input.u8() % 10 {
        case 0:
            sequence += 1
            _ = rings[vpCount].0.tryPush(TestDeviceWriteRecord(vp: 0, value: input.u32(), sequence: sequence).encoded())
        case 1:
            let conn = UInt32(input.u8() % 8), from = Int(input.u8()) % vpCount
            let type = input.u32()
            let payload = input.take(Int(input.u8() % 241))
            guard let e = region.connections.find(conn), e.kind == .message, region.connections.reserveBuffer(e) else { break }
            let record = PostedMessageRecord(vp: UInt32(from), connectionID: conn, entry: UInt32(e.index),
                                             generation: e.generation, messageType: type, payload: payload)
            // The monitor refuses type 0 (HvPostMessage's input check) before it gets here.
            precondition(type == 0 || (try? PostedMessageRecord.decode(record.encoded())) == record,
                         "a PostedMessageRecord the monitor built does not decode")
            guard type != 0, case .pushed = rings[from].0.tryPush(record.encoded()) else {
                region.connections.releaseBuffer(index: e.index)
                break
            }
        case 2:
            let ring = Int(input.u8()) % rings.count
            let bytes = input.take(Int(input.u16()) % (ringLayout.maxRecordLength + 1))
            _ = rings[ring].0.tryPush(bytes)
        case 3:
            if let e = region.connections.find(UInt32(input.u8() % 8)), e.kind == .event {
                _ = region.connections.setEventPending(e)
            }
        case 4:
            region.addEOM(vp: UInt32(input.u8()) % UInt32(vpCount + 1))
        case 5:
            let at = Int(simp) + Int(input.u32() % 0x1_4000)
            memory.scribble(input.take(Int(input.u8())), at: at)
        case 6:
            publish(region, vp: UInt32(input.u8()) % UInt32(vpCount), form: input.u8())
        case 7:
            let vp = UInt32(input.u8() % 4), sint = Int(input.u8() % 17)
            let message = HvMessage(type: HvMessageType(rawValue: input.u32()), payload: input.take(Int(input.u8())))
            _ = router.post(message, vp: vp, sint: sint)
        case 9:
            // A kill and a successor on the same regions; before it, a predecessor that parsed
            // guest bytes may have scribbled on its state region (hostile for the successor).
            for _ in 0..<Int(input.u8() % 4) {
                let bytes = input.take(Int(input.u8() % 16))
                try? router.state.region.write(bytes, at: Int(input.u32()) % max(1, router.state.region.size - bytes.count))
            }
            restart()
        default:
            let ring = Int(input.u8() % 4)
            let record = PostedMessageRecord(vp: input.u32() % 4, connectionID: input.u32() % 8, entry: input.u32() % 300,
                                             generation: input.u32() % 4, messageType: input.u32(),
                                             payload: input.take(Int(input.u8() % 241)))
            router.handle(record, fromRing: ring)
        }
        service.serveOnce(router, testDeviceApplied: { region.testDeviceAck = $0 }, report: { _ in })
        for vp in 0..<vpCount {
            var mask: UInt32 = 0
            for sint in 0..<HvSynIC.sintCount where !router.queued(vp: UInt32(vp), sint: sint).isEmpty { mask |= 1 << UInt32(sint) }
            precondition(region.routerPending(vp: UInt32(vp)) == mask, "published pending mask disagrees with the queues")
        }
    }
    return 0
}

/// The monitor's publication of VP `vp`'s SynIC registers: form 0 is everything enabled with
/// SINTx = 0x50 + x; other forms disable pieces, mask, poll, or point the pages elsewhere.
func publish(_ region: SynICRegion, vp: UInt32, form: UInt8) {
    var sints = (0..<HvSynIC.sintCount).map { 0x50 + UInt64($0) }
    if form & 0x04 != 0 { sints = sints.map { $0 | HvMSR.Sint.masked } }
    if form & 0x08 != 0 { sints = sints.map { $0 | HvMSR.Sint.polling } }
    if form & 0x10 != 0 { sints = sints.map { $0 | HvMSR.Sint.autoEOI } }
    let page = UInt64(vp) * 0x1000
    let simpValue = (form & 0x20 != 0 ? 0x2_F000 : simp + page) | (form & 0x01 == 0 ? 1 : 0)
    let siefpValue = (form & 0x40 != 0 ? 0x7FFF_F000 : siefp + page) | (form & 0x02 == 0 ? 1 : 0)
    region.publish(vp: vp, registers: SynICRegisters(scontrol: form & 0x80 == 0 ? 1 : 0, simp: simpValue,
                                                     siefp: siefpValue, sints: sints))
}
