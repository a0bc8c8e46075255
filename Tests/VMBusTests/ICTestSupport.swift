import Testing
@testable import VMBus

/// The guest side of one IC channel as Linux 6.1 hv_utils behaves (drivers/hv/hv_util.c and
/// channel_mgmt.c `vmbus_prep_negotiate_resp`), over the same rings the host pump uses: it
/// reads each host packet into a buffer (recvlen = the padded payload length), answers in
/// place with icflags TRANSACTION | RESPONSE and the request's transaction id.
final class FakeLinuxIC {
    typealias Memory = VMBusFlatRingMemory
    let kind: VMBusIntegrationService.Kind
    let consumer: VMBusRingConsumer<Memory>   // host-to-guest
    let producer: VMBusRingProducer<Memory>   // guest-to-host

    /// Linux's preference lists.
    var frameworkVersions = [VMBusICVersion(3, 0), VMBusICVersion(1, 0)]
    var messageVersions: [VMBusICVersion]
    /// Whether hibernation (ACPI S4) is supported: decides shutdown flags 4/5.
    var hibernateSupported = false

    // What the guest saw.
    var negotiated: (framework: VMBusICVersion, message: VMBusICVersion)?
    var serviceVersion: VMBusICVersion?
    var requests: [(transactionID: UInt64, payload: [UInt8])] = []
    var shutdownFlags: [UInt32] = []
    var timesyncs: [(parent: UInt64, reference: UInt64?, flags: UInt8)] = []
    var dropped = 0
    /// Replies the guest-to-host ring refused (full, or scribbled on by a random test).
    var writeFailures = 0
    /// Interrupts the host must raise for the guest side are not modelled: the test calls `run`.
    /// Change a reply before it is sent (for damage tests).
    var damage: ((inout [UInt8], inout UInt64) -> Void)?
    /// Read requests but never answer.
    var silent = false

    init(kind: VMBusIntegrationService.Kind, hostToGuest: Memory, guestToHost: Memory) throws {
        self.kind = kind
        consumer = try VMBusRingConsumer(memory: hostToGuest)
        producer = try VMBusRingProducer(memory: guestToHost)
        switch kind {
        case .heartbeat: messageVersions = [VMBusICVersion(3, 0), VMBusICVersion(1, 0)]
        case .shutdown: messageVersions = [VMBusICVersion(3, 2), VMBusICVersion(3, 1), VMBusICVersion(3, 0), VMBusICVersion(1, 0)]
        case .timesync: messageVersions = [VMBusICVersion(4, 0), VMBusICVersion(3, 0), VMBusICVersion(1, 0)]
        }
    }

    /// Reads every host packet and answers; returns how many were answered.
    @discardableResult
    func run() -> Int {
        var answered = 0
        while case .packet(let p) = consumer.next() {
            var buf = p.payload.array
            var tid = p.descriptor.transactionID
            requests.append((tid, buf))
            guard answer(&buf) else { dropped += 1; continue }
            if silent { continue }
            damage?(&buf, &tid)
            if producer.tryWrite(type: .dataInBand, transactionID: tid, payload: buf) == .written { answered += 1 } else { writeFailures += 1 }
        }
        _ = consumer.commit()
        _ = producer.commit()
        return answered
    }

    private func u16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    private func u32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(u16(b, o)) | UInt32(u16(b, o + 2)) << 16 }
    private func u64(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(u32(b, o)) | UInt64(u32(b, o + 4)) << 32 }
    private func put16(_ b: inout [UInt8], _ o: Int, _ v: UInt16) { b[o] = UInt8(v & 0xFF); b[o + 1] = UInt8(v >> 8) }
    private func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) { put16(&b, o, UInt16(v & 0xFFFF)); put16(&b, o + 2, UInt16(v >> 16)) }
    private func put64(_ b: inout [UInt8], _ o: Int, _ v: UInt64) { put32(&b, o, UInt32(v & 0xFFFF_FFFF)); put32(&b, o + 4, UInt32(v >> 32)) }

    /// False when Linux would drop the packet without a reply.
    private func answer(_ b: inout [UInt8]) -> Bool {
        let recvlen = b.count
        guard recvlen >= 28 else { return false }
        let type = u16(b, 12)
        if type == 0 {
            negotiate(&b)
        } else if type == kind.rawValue {
            switch kind {
            case .heartbeat:
                guard recvlen >= 28 + 8 else { return false }
                put64(&b, 28, u64(b, 28) &+ 1)
            case .shutdown:
                guard recvlen >= 28 + 12 + 2048 else { return false }
                let flags = u32(b, 36)
                shutdownFlags.append(flags)
                let ok = flags <= 3 || ((flags == 4 || flags == 5) && hibernateSupported)
                put32(&b, 20, ok ? 0 : 0x8000_4005)
            case .timesync:
                if let v = serviceVersion, v > VMBusICVersion(3, 0) {
                    guard recvlen >= 28 + 22 else { return false }
                    timesyncs.append((u64(b, 28), u64(b, 36), b[44]))
                } else {
                    guard recvlen >= 28 + 25 else { return false }
                    timesyncs.append((u64(b, 28), nil, b[52]))
                }
            }
        } else {
            put32(&b, 20, 0x8000_4005)
        }
        b[25] = 5   // ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_RESPONSE
        return true
    }

    /// `vmbus_prep_negotiate_resp`.
    private func negotiate(_ b: inout [UInt8]) {
        guard b.count >= 32 else { return }
        put16(&b, 18, 16)   // icmsgsize
        let fwCount = Int(u16(b, 28)), msgCount = Int(u16(b, 30))
        var fw = VMBusICVersion(UInt16(fwCount), 0), msg = VMBusICVersion(UInt16(msgCount), 0)
        var found = false
        if fwCount <= 100, msgCount <= 100, 36 + 4 * (fwCount + msgCount) <= b.count {
            let offered = (0..<(fwCount + msgCount)).map { VMBusICVersion(u16(b, 36 + 4 * $0), u16(b, 38 + 4 * $0)) }
            if let f = frameworkVersions.first(where: { offered[..<fwCount].contains($0) }) {
                fw = f
                if let m = messageVersions.first(where: { offered[fwCount...].contains($0) }) {
                    msg = m
                    found = true
                }
            }
        }
        put16(&b, 28, found ? 1 : 0)
        put16(&b, 30, found ? 1 : 0)
        if b.count >= 44 {
            put16(&b, 36, fw.major); put16(&b, 38, fw.minor)
            put16(&b, 40, msg.major); put16(&b, 42, msg.minor)
        }
        if found {
            negotiated = (fw, msg)
            serviceVersion = msg
        }
    }
}

/// A host pump and a fake Linux guest over two flat rings of Linux's IC size (12 KiB of data each way).
struct ICHarness {
    let guestToHost: VMBusFlatRingMemory
    let hostToGuest: VMBusFlatRingMemory
    let channel: VMBusICChannel<VMBusFlatRingMemory>
    let guest: FakeLinuxIC
    var now: UInt64 = 1_000_000_000
    /// 2026-01-01T00:00:00Z.
    var unix: Int64 = 1_767_225_600_000_000_000
    var reference: UInt64 = 5_000_000

    init(_ kind: VMBusIntegrationService.Kind, timing: VMBusIntegrationService.Timing = .init(), dataCount: Int = 12288,
         configure: (FakeLinuxIC) -> Void = { _ in }) throws {
        guestToHost = try VMBusFlatRingMemory(dataCount: dataCount)
        hostToGuest = try VMBusFlatRingMemory(dataCount: dataCount)
        for m in [guestToHost, hostToGuest] { m.setControlU32(64, 1) }   // Linux sets feature bit 0 in both
        channel = try VMBusICChannel(service: VMBusIntegrationService(kind: kind, timing: timing),
                                     guestToHost: guestToHost, hostToGuest: hostToGuest)
        guest = try FakeLinuxIC(kind: kind, hostToGuest: hostToGuest, guestToHost: guestToHost)
        configure(guest)
    }

    var clock: VMBusIntegrationService.Clock {
        VMBusIntegrationService.Clock(monotonic: now, unixNanoseconds: unix, referenceTime: reference)
    }

    mutating func advance(seconds: UInt64) {
        now += seconds * 1_000_000_000
        unix += Int64(seconds) * 1_000_000_000
        reference += seconds * 10_000_000
    }

    /// start, then the guest answers, then the host reads the answer.
    func negotiate() -> [VMBusICChannel<VMBusFlatRingMemory>.Result] {
        let a = channel.start(clock)
        guest.run()
        let b = channel.pump(clock)
        guest.run()
        let c = channel.pump(clock)
        return [a, b, c]
    }
}
