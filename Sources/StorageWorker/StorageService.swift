import IPC
import Storage
import VMBus
import VMBusWorker

/// The storage worker's service (STYLE.md, "Worker skeleton"): one SCSI controller (storvsp) on
/// the channel the VMBus worker hands over. No fds of its own and no system calls but the
/// backends' (the shell in Workers/storage moves the records, waits and rings doorbells), so
/// tests run it in-process over a memfd and `MemoryDiskBackend`s.
///
/// - `handle(_:)`: a `ChannelControlRecord` from the VMBus worker. Open builds the channel
///   substrate (`VMBusChannel`: rings in place over the guest's pages, its own signals) and a
///   fresh `VStorProtocol`, and answers OPENED with the status that becomes OPENCHANNEL_RESULT;
///   close forgets the channel and answers CLOSED (the VMBus worker frees the ring GPADL only
///   then); modify moves the channel's interrupt.
/// - `serve()`: drains the guest's packets of every open channel: `VStorProtocol` decides, an
///   SRB's GPA-direct buffer is checked (`VStorDataBufferCheck`) and mapped page by page into
///   iovecs over guest RAM, `SCSIDiskExecutor` runs it against the LUN's backend, and the
///   completion (exactly 12 + the SRB size: 64 bytes for Linux) goes back as VM_PKT_COMP with
///   the request's transaction id. Completions are published in batches and the guest is
///   interrupted when the ring rules say so (SIEF bit + SINT2). I/O is synchronous: a request
///   completes only after its I/O returned, in ring order.
///
/// A completion the outbound ring cannot take waits here (`pending`), the ring is armed for
/// space (pending_send_sz), and no further request is taken until it went out.
public final class StorageService {
    public let controller: SCSIController
    let backends: [any DiskBackend]
    let vstorConfiguration: VStorProtocol.Configuration
    let map: VMBusGuestMemoryMap
    let ram: [Range<UInt64>]
    let signals: VMBusChannelSignals
    let log: (String) -> Void

    final class OpenChannel {
        let channel: VMBusChannel
        var vstor: VStorProtocol
        var pending: VStorReply?
        var reported = false
        init(channel: VMBusChannel, vstor: VStorProtocol) {
            self.channel = channel
            self.vstor = vstor
        }
    }

    var channels: [UInt32: OpenChannel] = [:]
    /// SRBs completed, packets read, interrupts raised (for tests and the log).
    public private(set) var requestsCompleted = 0
    public private(set) var packetsRead = 0

    /// Packets taken from one channel per `serve()` before the others get a turn.
    static let batchLimit = 256
    /// Bytes of the vstor packet read from each request (`VStorPacket.maxSize`).
    static let packetBytes = 64

    public init(disks: [(SCSIDisk.Configuration, any DiskBackend)], vstor: VStorProtocol.Configuration = .init(),
                map: VMBusGuestMemoryMap, ram: [Range<UInt64>], signals: VMBusChannelSignals,
                log: @escaping (String) -> Void) throws(StorageSetupError) {
        var scsi: [SCSIDisk] = []
        for (i, (c, _)) in disks.enumerated() {
            guard let d = SCSIDisk(c) else { throw .disk(lun: i, c.problem ?? "invalid configuration") }
            scsi.append(d)
        }
        guard !disks.isEmpty, let controller = SCSIController(disks: scsi) else { throw .disk(lun: disks.count, "1...64 disks") }
        guard vstor.isValid else { throw .disk(lun: 0, "vstor configuration out of range") }
        self.controller = controller
        backends = disks.map(\.1)
        vstorConfiguration = vstor
        self.map = map
        self.ram = ram
        self.signals = signals
        self.log = log
    }

    public var openRelIDs: [UInt32] { channels.keys.sorted() }

    /// Whether a channel has a completion waiting for room (the shell then polls with a timeout).
    public var hasPendingCompletions: Bool { channels.values.contains { $0.pending != nil } }

    /// One record from the VMBus worker; the answer to push back (nil for modify, or a
    /// restored open that needs none).
    public func handle(_ control: ChannelControlRecord) -> ChannelAnswerRecord? {
        switch control.operation {
        case .open:
            let open = VMBusChannelOpen(relID: control.relID, connectionID: control.connectionID, targetVP: control.targetVP,
                                        ringGPADL: 0, ringPFNs: control.pfns, downstreamPageOffset: control.downstreamPageOffset,
                                        userData: [], restored: control.restored)
            channels[control.relID] = nil
            let status: VMBusStatus
            do {
                let channel = try VMBusChannel(open: open, map: map, signals: signals)
                channels[control.relID] = OpenChannel(channel: channel, vstor: VStorProtocol(configuration: vstorConfiguration))
                status = .success
            } catch {
                log("cannot open relid \(control.relID): \(error)")
                status = .unsuccessful
            }
            if control.restored { return nil }
            return ChannelAnswerRecord(operation: .opened, relID: control.relID, status: status.rawValue)
        case .close:
            channels[control.relID] = nil
            return ChannelAnswerRecord(operation: .closed, relID: control.relID)
        case .modify:
            channels[control.relID]?.channel.targetVP = control.targetVP
            return nil
        }
    }

    /// Serves every open channel (the guest's signal is taken, but each channel is drained
    /// whether or not it signalled: the doorbell is shared). Returns whether any work was done.
    @discardableResult
    public func serve() -> Bool {
        var worked = false
        for relID in channels.keys.sorted() {
            guard let c = channels[relID] else { continue }
            _ = c.channel.takeSignal()
            if serve(c) { worked = true }
        }
        return worked
    }

    func serve(_ c: OpenChannel) -> Bool {
        let inbound = c.channel.inbound, outbound = c.channel.outbound
        var worked = false
        var readAny = false
        defer {
            if readAny, case .signal = inbound.commit() { c.channel.interruptGuest() }
            publish(c)
        }
        if let p = c.pending {
            guard send(p, on: c) else { return false }
            c.pending = nil
            worked = true
        }
        var taken = 0
        while taken < Self.batchLimit {
            switch inbound.next() {
            case .packet(let packet):
                taken += 1
                readAny = true
                worked = true
                packetsRead += 1
                if let reply = process(packet, on: c), !send(reply, on: c) {
                    c.pending = reply
                    return worked
                }
            case .empty:
                if readAny, case .signal = inbound.commit() { c.channel.interruptGuest() }
                readAny = false
                publish(c)
                switch inbound.enableInterrupts() {
                case .sleep: return worked
                case .readAgain: continue
                case .corrupted(let why): report(c, "guest-to-host ring: \(why)"); return worked
                case .cutOff: return worked
                }
            case .corrupted(let why):
                report(c, "guest-to-host ring: \(why)")
                return worked
            case .cutOff:
                return worked
            }
        }
        return worked
    }

    /// Writes a completion at the cursor; false when the ring is full (then it is armed for
    /// space after publishing what was written).
    func send(_ reply: VStorReply, on c: OpenChannel) -> Bool {
        let result = reply.packet.withUnsafeBytes {
            c.channel.outbound.tryWrite(type: .completion, transactionID: reply.transactionID, payload: $0)
        }
        switch result {
        case .written:
            return true
        case .full:
            publish(c)
            let footprint = VMBusRingProducer<VMBusPagedRingMemory>.footprint(headerExtension: 0, payload: reply.packet.count)
            if c.channel.outbound.armForSpace(footprint) {
                // Room appeared meanwhile: try once more.
                let again = reply.packet.withUnsafeBytes {
                    c.channel.outbound.tryWrite(type: .completion, transactionID: reply.transactionID, payload: $0)
                }
                return again != .full
            }
            return false
        case .tooLarge:
            report(c, "completion of \(reply.packet.count) bytes does not fit the ring")
            return true
        case .corrupted(let why):
            report(c, "host-to-guest ring: \(why)")
            return true
        case .cutOff:
            return true
        }
    }

    /// Publishes the completions written so far, interrupting the guest when it may sleep.
    func publish(_ c: OpenChannel) {
        switch c.channel.outbound.commit() {
        case .signal: c.channel.interruptGuest()
        case .noSignal, .cutOff: break
        case .corrupted(let why): report(c, "host-to-guest ring: \(why)")
        }
    }

    func report(_ c: OpenChannel, _ why: String) {
        guard !c.reported else { return }
        c.reported = true
        log("relid \(c.channel.relID): \(why); the channel is cut off")
    }

    /// One guest packet: the reply to send, if any.
    func process(_ packet: VMBusRingPacket<VMBusPagedRingMemory>, on c: OpenChannel) -> VStorReply? {
        let d = packet.descriptor
        var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        let n = min(packet.payload.count, Self.packetBytes)
        let wasReady = c.vstor.isReady
        let decision = withUnsafeMutableBytes(of: &words) { raw in
            let b = UnsafeMutableRawBufferPointer(rebasing: raw[0..<n])
            packet.payload.copyBytes(to: b)
            return c.vstor.handle(transactionID: d.transactionID, payload: UnsafeRawBufferPointer(b),
                                  isCompletion: d.type == .completion, onSubChannel: false)
        }
        if !wasReady, case .ready(let version, _) = c.vstor.state {
            log("relid \(c.channel.relID): vstor: protocol 0x\(String(version.rawValue, radix: 16, uppercase: false).leftPadded(4)), \(controller.disks.count) LUN(s)")
        }
        switch decision {
        case .reply(let r), .createSubChannels(let r, _):
            return r
        case .ignore:
            return nil
        case .execute(let srb):
            requestsCompleted += 1
            return execute(srb, packet: d.type == .dataUsingGPADirect ? packet : nil)
        }
    }

    func execute(_ srb: VStorSRB, packet: VMBusRingPacket<VMBusPagedRingMemory>?) -> VStorReply {
        let range: VMBusGPADirectRanges<VMBusPagedRingMemory>.Range?
        switch VStorDataBufferCheck.check(packet: packet, dataTransferLength: srb.dataTransferLength, ram: ram) {
        case .failure(let problem): return VStorDataBufferCheck.completion(for: srb, problem: problem)
        case .success(let r): range = r
        }
        var segments: [UnsafeMutableRawBufferPointer] = []
        if let range {
            guard let s = Self.segments(of: range, length: Int(srb.dataTransferLength), map: map) else {
                return VStorDataBufferCheck.completion(for: srb, problem: .badRangeList)
            }
            segments = s
        }
        let backend = controller.disk(for: srb) != nil ? backends[Int(srb.lun)] : backends[0]
        let result = SCSIDiskExecutor.run(srb, controller: controller, backend: backend, buffer: SCSIDataBuffer(segments: segments))
        return VStorProtocol.completion(for: srb, result: result)
    }

    /// The first `length` bytes of the range as spans of mapped guest memory, pages that are
    /// contiguous in the mapping merged into one span; nil when a page is not mapped or the
    /// pages run out.
    static func segments(of range: VMBusGPADirectRanges<VMBusPagedRingMemory>.Range, length: Int,
                         map: VMBusGuestMemoryMap) -> [UnsafeMutableRawBufferPointer]? {
        var out: [UnsafeMutableRawBufferPointer] = []
        var left = length
        var offset = Int(range.byteOffset)
        var page = 0
        while left > 0 {
            guard page < range.pageCount, let pfn = range.pfn(page), let host = map.page(pfn: pfn) else { return nil }
            let n = min(4096 - offset, left)
            let start = host + offset
            if let last = out.last, let base = last.baseAddress, base + last.count == start {
                out[out.count - 1] = UnsafeMutableRawBufferPointer(start: base, count: last.count + n)
            } else {
                out.append(UnsafeMutableRawBufferPointer(start: start, count: n))
            }
            left -= n
            offset = 0
            page += 1
        }
        return out
    }
}

public enum StorageSetupError: Error, CustomStringConvertible {
    case disk(lun: Int, String)
    public var description: String {
        switch self {
        case .disk(let lun, let why): return "disk \(lun): \(why)"
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
