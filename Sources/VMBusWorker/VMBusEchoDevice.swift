import VMBus

/// A test-only VMBus device: offered only when the worker runs with `--test-echo-device`
/// (tests, `synthvm-bench vmbus`), after the standard devices. It has two modes, chosen by the
/// first byte of OPENCHANNEL's user data:
///
/// - 0, echo: every packet the guest writes into the guest-to-host ring is written back, same
///   type, transaction id and payload, into the host-to-guest ring; one commit (and at most one
///   interrupt, as the ring rules say) per wake-up, so a guest's batch comes back as a batch.
/// - 1, floor: a signal only raises the channel's interrupt (SIEF bit + SINT2). The rings are not
///   touched: what is left is the raw cost of the path (HvSignalEvent exit, doorbell eventfd,
///   the worker's wake-up, the irqfd interrupt), the floor the echo's round trip is measured
///   against.
///
/// A packet that does not fit into the host-to-guest ring is dropped and counted (the bench
/// sizes its batches to the ring); a corrupt ring cuts the channel off, as for any device.
///
/// Exactly once across a restart of the worker (the soak kills it at random moments,
/// docs/faults.md): before committing either ring, a batch's journal (the guest-to-host read index
/// and the host-to-guest write index it will store) is saved with the worker's state
/// (`savedState`, `channel.saveState()`); then the echoes are published, then the reads. A
/// successor that finds the echoes published (write_index at the journal's) but the reads not
/// (read_index short of it) commits the reads without echoing them again; one that finds the
/// echoes unpublished echoes the batch afresh. Without the journal a kill between the two
/// commits lost the batch (reads first) or echoed it twice (echoes first).
public final class VMBusEchoDevice: VMBusChannelDevice {
    /// The class GUID the guest looks for (made up; no Hyper-V device has it).
    public static let interfaceType = VMBusGUID("5e1f0c4a-9d2b-4c1e-8f3a-0123456789ec") ?? .zero
    public static let interfaceInstance = VMBusGUID("5e1f0c4a-9d2b-4c1e-8f3a-00000000ec01") ?? .zero
    public static let floorMode: UInt8 = 1

    public let offer = VMBusOffer(interfaceType: VMBusEchoDevice.interfaceType,
                                  interfaceInstance: VMBusEchoDevice.interfaceInstance)
    var channel: VMBusChannel?
    var floor = false
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
    public private(set) var echoed = 0
    public private(set) var dropped = 0
    public private(set) var corruption: VMBusRingCorruption?
    /// The last batch's ring indices after its commits (read: guest-to-host read_index, write:
    /// host-to-guest write_index), saved before them.
    var journal: (read: UInt32, write: UInt32)?
    /// Batches a restart found echoed but not yet read (their reads committed without echoing).
    public private(set) var readsFinishedAfterRestart = 0
    let log: (String) -> Void

    public init(log: @escaping (String) -> Void = { _ in }) { self.log = log }

    deinit { buffer.deallocate() }

    public func open(_ channel: VMBusChannel, now: UInt64) -> VMBusStatus {
        self.channel = channel
        floor = channel.open.userData.first == Self.floorMode
        corruption = nil
        journal = nil
        moreToRead = false
        return .success
    }

    /// The journal: u32 version (1), u32 read index, u32 write index.
    public func savedState() -> [UInt8]? {
        guard let journal else { return nil }
        var out: [UInt8] = []
        for v in [UInt32(1), journal.read, journal.write] { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        return out
    }

    /// Reopened by a successor: a batch whose echoes went out but whose reads were not committed
    /// has its reads committed now (walked packet by packet up to the journal's read index).
    /// `saved` is hostile (the predecessor parsed guest bytes): anything but 12 bytes of version 1
    /// is ignored.
    public func open(_ channel: VMBusChannel, restoring saved: [UInt8]?, now: UInt64) -> VMBusStatus {
        let status = open(channel, now: now)
        // The predecessor may have published echoes and died before interrupting the guest.
        defer { channel.interruptGuest() }
        guard !floor, let saved, saved.count == 12 else { return status }
        func word(_ i: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(saved[4 * i + $1]) << (8 * $1) } }
        guard word(0) == 1 else { return status }
        let (read, write) = (word(1), word(2))
        journal = (read, write)
        guard channel.inbound.publishedIndex != read, channel.outbound.publishedIndex == write else { return status }
        while channel.inbound.cursorIndex != read, case .packet = channel.inbound.next() {}
        guard channel.inbound.cursorIndex == read else {
            log("echo device: relid \(channel.relID): restart: the guest-to-host ring does not reach the journal's read index \(read)")
            return status
        }
        _ = channel.inbound.commit()
        readsFinishedAfterRestart += 1
        return status
    }

    public func serve(now: UInt64) {
        guard let channel else { return }
        if floor {
            channel.interruptGuest()
            return
        }
        // The guest signals only when it finds the ring empty (read_index at its old
        // write_index), and the reads of a batch are committed after its echoes (for a
        // restart, above): a guest quick to answer an echo publishes its next packet while
        // read_index is still behind, and sends no signal. So after committing, look again; a
        // guest that keeps writing gets 64 passes, then the rest waits for the worker's next
        // pass (`deadline`), so other channels are served in between.
        moreToRead = false
        for _ in 0..<64 {
            guard echoBatch(channel) else { return }
            switch channel.inbound.enableInterrupts() {
            case .readAgain: continue
            case .corrupted(let why): cut(why)
            case .sleep, .cutOff: break
            }
            return
        }
        moreToRead = true
    }

    /// The guest published more than `serve` took in its passes: serve again without a signal.
    var moreToRead = false

    /// Echoes what the guest-to-host ring holds, then journals, publishes the echoes and commits
    /// the reads. False when a test's step hook stopped it (as a kill would) or a ring was cut off.
    func echoBatch(_ channel: VMBusChannel) -> Bool {
        reading: while true {
            switch channel.inbound.next() {
            case .packet(let p):
                let payload = p.payload
                guard payload.count <= buffer.count,
                      payload.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<payload.count])) else {
                    dropped += 1
                    continue
                }
                switch channel.outbound.tryWrite(type: p.descriptor.type, transactionID: p.descriptor.transactionID,
                                                 payload: UnsafeRawBufferPointer(rebasing: buffer[0..<payload.count])) {
                case .written: echoed += 1
                case .full, .tooLarge: dropped += 1
                case .corrupted(let why): cut(why); break reading
                case .cutOff: break reading
                }
            case .empty, .cutOff:
                break reading
            case .corrupted(let why):
                cut(why)
                break reading
            }
        }
        // Journal, echoes, reads: in that order (above).
        if channel.inbound.cursorIndex != channel.inbound.publishedIndex {
            journal = (channel.inbound.cursorIndex, channel.outbound.cursorIndex)
            channel.saveState()
            if stepHook?(.saved) == false { return false }
        }
        switch channel.outbound.commit() {
        case .signal: channel.interruptGuest()
        case .corrupted(let why): cut(why)
        case .noSignal, .cutOff: break
        }
        if stepHook?(.echoesPublished) == false { return false }
        switch channel.inbound.commit() {
        case .corrupted(let why): cut(why)
        case .signal, .noSignal, .cutOff: break
        }
        return corruption == nil
    }

    /// Tests: called at the crash points of a batch; answering false stops `serve` there, as a
    /// kill would (nothing after it happens).
    public enum Step: Sendable { case saved, echoesPublished }
    public var stepHook: ((Step) -> Bool)?

    func cut(_ why: VMBusRingCorruption) {
        guard corruption == nil else { return }
        corruption = why
        log("echo device: relid \(channel?.relID ?? 0): ring cut off: \(why)")
    }

    /// Due at once when `serve` left packets in the ring; otherwise only signals wake it.
    public var deadline: UInt64? { moreToRead ? 0 : nil }

    public func close() { channel = nil }
}
