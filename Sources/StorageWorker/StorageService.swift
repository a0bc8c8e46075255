import IPC
import Storage
import VMBus
import VMBusWorker

/// The storage worker's service (STYLE.md, "Worker skeleton"): one SCSI controller (storvsp) on
/// the channel the VMBus worker hands over. No fds of its own and no system calls but the
/// backends' and its I/O threads' (the shell in Workers/storage moves the records, waits and
/// rings doorbells), so tests run it in-process over a memfd.
///
/// - `handle(_:)`: a `ChannelControlRecord` from the VMBus worker. Open builds the channel
///   substrate (`VMBusChannel`: rings in place over the guest's pages, its own signals) and a
///   fresh `VStorProtocol` (a restored open: the saved one, and the requests its predecessor
///   left in the in-flight table), and answers OPENED with the status that becomes
///   OPENCHANNEL_RESULT; close waits for the channel's I/O, forgets it and answers CLOSED (the
///   VMBus worker frees the ring GPADL only then); modify moves the channel's interrupt.
/// - `serve()`: for every open channel, in rounds: the I/O threads' finished operations become
///   completions; requests are taken from the guest-to-host ring while the channel has fewer
///   than `maxInFlight` and the host-to-guest ring has room for every completion owed plus this
///   one (reserved before the take, as OpenVMM's storvsp does), each recorded in the in-flight
///   table before the ring's read index is published; each is decided on this thread
///   (`VStorProtocol`, the GPA-direct buffer checked against guest RAM and turned into iovecs
///   over the mapped pages, the CDB and LBA range by `SCSIController`); data I/O goes to the
///   pool (`StorageIOPool`; with 0 threads it runs here), everything else completes at once.
///   Completions (exactly 12 + the SRB size: 64 bytes for Linux) are written by this thread as
///   VM_PKT_COMP with the request's transaction id, in whatever order the I/O finished, never
///   before the I/O returned, recorded in the table before the ring's write index is published;
///   one commit and at most one interrupt per round.
///
/// Durability: a write completes once pwritev returned (FUA: and fdatasync); SYNCHRONIZE CACHE
/// runs fdatasync, which covers every write that returned before it, so every write the guest
/// saw completed before it sent the flush (SCSI asks no more: writes in flight alongside a flush
/// are not covered).
public final class StorageService {
    public let controller: SCSIController
    let backends: [any DiskBackend]
    let vstorConfiguration: VStorProtocol.Configuration
    let map: VMBusGuestMemoryMap
    let ram: [Range<UInt64>]
    let signals: VMBusChannelSignals
    let log: (String) -> Void

    public struct Options: Sendable {
        /// I/O threads (0: the I/O runs on the ring thread, synchronously).
        public var ioThreads: Int
        /// Requests a channel may have taken and not completed.
        public var maxInFlight: Int
        /// Try reads and non-FUA writes on the ring thread first with RWF_NOWAIT (a page-cache
        /// hit completes with no hand-off); the pool gets what would block.
        public var inlineNonBlocking: Bool
        public init(ioThreads: Int = 0, maxInFlight: Int = 128, inlineNonBlocking: Bool = true) {
            self.ioThreads = ioThreads
            self.maxInFlight = maxInFlight
            self.inlineNonBlocking = inlineNonBlocking
        }
    }

    final class OpenChannel {
        let channel: VMBusChannel
        /// 0: the controller's primary channel; n: its sub-channel n, whose packets are decided
        /// by the primary's vstor state (`onSubChannel: true`).
        let subChannelIndex: UInt32
        /// The primary's CREATE_SUB_CHANNELS answer is decided: once it is in the guest's ring,
        /// the VMBus worker is asked for this many sub-channels in all.
        var subChannelsToRequest: UInt16?
        var vstor: VStorProtocol
        /// Bumped on every vstor state change (the in-flight table's entries carry it).
        var generation: UInt64 = 0
        /// The vstor state (and its generation) whose reply was recorded: what the state slot
        /// holds. Ahead of it, `vstor` may have decided packets whose replies are not recorded
        /// yet; a successor decides those again from the old state.
        var persisted: (UInt64, VStorProtocol.Saved)
        /// Entries of this channel that are not free.
        var inFlight = 0
        /// Entries whose I/O runs on the pool.
        var ioRunning = 0
        /// Completions decided and not yet written to the ring: (entry, reply, vstor state after).
        var completions: [(Int, VStorReply, (UInt64, [UInt8])?)] = []
        /// Taken entries to decide (a restored channel starts with its predecessor's).
        var redo: [Int] = []
        /// Left with packets in the ring after its last round (the shell then polls with a timeout).
        var unfinished = false
        var reported = false
        init(channel: VMBusChannel, vstor: VStorProtocol, subChannelIndex: UInt32 = 0) {
            self.channel = channel
            self.subChannelIndex = subChannelIndex
            self.vstor = vstor
            persisted = (0, vstor.saved)
        }
    }

    var channels: [UInt32: OpenChannel] = [:]
    /// Requests for sub-channels to push to the VMBus worker (`takeSubChannelRequests`).
    var subChannelRequests: [SubChannelRequestRecord] = []
    /// This worker saw its primary channel closed (and none opened since): a sub-channel's
    /// packets are then answered INVALID_DEVICE_STATE. Until this worker has seen a primary at
    /// all (a successor the old VMBus worker hands a sub-channel before its own restart
    /// re-announces the primary), a sub-channel waits for it, packets left in its ring.
    var primaryClosed = false
    /// Sub-channels that said once that they wait for their primary.
    var waitingReported: Set<UInt32> = []
    /// SRBs decided per relid since the start (sub-channels included; for tests and the log).
    public private(set) var srbsByRelID: [UInt32: Int] = [:]
    /// SRBs decided, packets read (for tests and the log).
    public private(set) var requestsCompleted = 0
    public private(set) var packetsRead = 0
    /// The most requests in flight on one channel at once (for tests and the bench).
    public private(set) var peakInFlight = 0

    let options: Options
    let state: WorkerStateRegion?
    let table: StorageInflightTable
    let tableArea: UnsafeMutableRawBufferPointer?
    var freeEntries: [Int] = []
    let pool: StorageIOPool?
    /// Entry -> what its running I/O is for.
    var running: [Int: (relID: UInt32, srb: VStorSRB, io: SCSIDisk.IO)] = [:]
    var finished: [StorageIOPool.Done] = []
    /// Operations decided this round, handed to the pool together.
    var jobs: [StorageIOPool.Job] = []
    /// vstor states a predecessor saved, by relid (taken by a restored open).
    var savedVStor: [UInt32: (UInt64, VStorProtocol.Saved)] = [:]

    /// Tests only: where the service "dies" (stops doing anything, as if SIGKILLed there), and on
    /// which occurrence of that point (0: the first).
    public enum StopPoint: String, CaseIterable, Sendable {
        case takeRecorded, takeCommitted, taken, dispatched, ioFinished, completionRecorded, completionWritten, published
    }
    public var stopAt: (StopPoint, Int)?
    public internal(set) var dead = false

    /// Operator faults (`io-error`, `torn`) and the per-disk metrics: StorageService+Faults.swift.
    var faults = StorageFaultState()
    var accounting: StorageIOAccounting?
    /// What a torn write does after writing its part (the worker: exit; tests: nothing, the
    /// service is then dead as at a `stopAt` point).
    public var afterTornWrite: () -> Void = {}

    /// Packets taken from one channel per round before the others get a turn.
    static let batchLimit = 256
    /// Bytes of the vstor packet read from each request (`VStorPacket.maxSize`).
    static let packetBytes = 64
    /// The ring footprint of the largest completion (12 + 0x34 bytes).
    static let completionFootprint = VMBusRingProducer<VMBusPagedRingMemory>.footprint(headerExtension: 0, payload: 64)
    /// Entries of the private table used when there is no state region.
    static let privateTableEntries = 256

    /// The in-flight table's extra area for `entries` requests (the supervisor's region size).
    public static func stateExtraBytes(entries: Int = 256) -> Int {
        (entries * StorageInflightTable.entrySize + 4095) / 4096 * 4096
    }
    /// The region id of the worker's state region (WorkerLink.workerStateRegion).
    public static let stateRegionID: UInt32 = 2
    /// I/O threads of the worker (docs/storage.md, "The I/O model": the bench's QD32 figures
    /// reach the raw ratio with 4 on a page-cached file; more only add wake-ups).
    public static let defaultIOThreads = 4
    /// The state slot: the vstor state of up to 64 channels (48 bytes each, after a u32 count).
    public static let stateSlotSize = 4096

    public init(disks: [(SCSIDisk.Configuration, any DiskBackend)], vstor: VStorProtocol.Configuration = .init(),
                map: VMBusGuestMemoryMap, ram: [Range<UInt64>], signals: VMBusChannelSignals,
                state: WorkerStateRegion? = nil, options: Options = .init(), wake: @escaping @Sendable () -> Void = {},
                log: @escaping (String) -> Void) throws(StorageSetupError) {
        var scsi: [SCSIDisk] = []
        for (i, (c, _)) in disks.enumerated() {
            guard let d = SCSIDisk(c) else { throw .disk(lun: i, c.problem ?? "invalid configuration") }
            scsi.append(d)
        }
        guard !disks.isEmpty, let controller = SCSIController(disks: scsi) else { throw .disk(lun: disks.count, "1...64 disks") }
        guard vstor.isValid else { throw .disk(lun: 0, "vstor configuration out of range") }
        guard options.maxInFlight >= 1, options.ioThreads >= 0, options.ioThreads <= 64 else { throw .disk(lun: 0, "options out of range") }
        self.controller = controller
        backends = disks.map(\.1)
        vstorConfiguration = vstor
        self.map = map
        self.ram = ram
        self.signals = signals
        self.log = log
        self.options = options
        self.state = state
        if let state, let area = state.extra, let t = StorageInflightTable(area: area) {
            table = t
            tableArea = nil
        } else {
            if state != nil { throw .disk(lun: 0, "the state region has no room for the in-flight table") }
            let area = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.privateTableEntries * StorageInflightTable.entrySize,
                                                              alignment: 64)
            area.initializeMemory(as: UInt8.self, repeating: 0)
            table = StorageInflightTable(area: area)!
            tableArea = area
        }
        for i in (0..<table.capacity).reversed() where table.state(i) == .free { freeEntries.append(i) }
        pool = options.ioThreads > 0 ? StorageIOPool(threads: options.ioThreads, wake: wake) : nil
        loadVStorStates()
    }

    deinit {
        pool?.stop()
        tableArea?.deallocate()
    }

    /// Starts the I/O threads; the worker calls it before installing its filter (TSYNC covers
    /// them). False when a thread could not be created.
    public func start() -> Bool { pool?.start() ?? true }

    /// Tests: the I/O threads end (what they run finishes; its results are dropped).
    public func stopThreads() { pool?.stop() }

    public var openRelIDs: [UInt32] { channels.keys.sorted() }

    /// Whether a channel has a completion waiting for room (the shell then polls with a timeout).
    /// Room is reserved before a request is taken, so only a guest that cut its ring off leaves one.
    public var hasPendingCompletions: Bool {
        channels.values.contains { !$0.completions.isEmpty || !$0.redo.isEmpty || $0.unfinished }
    }

    /// Requests in flight on all channels.
    public var inFlight: Int { channels.values.reduce(0) { $0 + $1.inFlight } }

    func stop(_ p: StopPoint) -> Bool {
        if dead { return true }
        guard let (point, n) = stopAt, point == p else { return false }
        if n > 0 {
            stopAt = (point, n - 1)
            return false
        }
        dead = true
        return true
    }

    // MARK: vstor state in the state region's slot

    func loadVStorStates() {
        guard let state, let (_, bytes) = try? state.load() else { return }
        guard bytes.count >= 4 else { return }
        let count = Int(UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
        guard count <= 64, bytes.count == 4 + count * 48 else { log("saved vstor state of \(bytes.count) bytes ignored"); return }
        for k in 0..<count {
            let at = 4 + k * 48
            func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[at + o + $1]) << (8 * $1) } }
            let relID = UInt32(truncatingIfNeeded: u64(0))
            guard let saved = try? VStorProtocol.Saved(decoding: Array(bytes[(at + 16)..<(at + 48)])) else { continue }
            savedVStor[relID] = (u64(8), saved)
        }
    }

    func saveVStorStates() {
        guard let state else { return }
        var out: [UInt8] = []
        var all = savedVStor
        for (relID, c) in channels { all[relID] = c.persisted }
        let keys = all.keys.sorted().prefix(64)
        func put(_ v: UInt64, _ n: Int) { for i in 0..<n { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        put(UInt64(keys.count), 4)
        for k in keys {
            put(UInt64(k), 8)
            put(all[k]!.0, 8)
            out += all[k]!.1.encoded()
        }
        do { try state.save(out) } catch { log("cannot save the vstor state: \(error)") }
    }

    // MARK: channel control

    /// One record from the VMBus worker; the answer to push back (nil for modify, or a
    /// restored open that needs none).
    public func handle(_ control: ChannelControlRecord) -> ChannelAnswerRecord? {
        if dead { return nil }
        switch control.operation {
        case .open:
            let open = VMBusChannelOpen(relID: control.relID, connectionID: control.connectionID, targetVP: control.targetVP,
                                        ringGPADL: 0, ringPFNs: control.pfns, downstreamPageOffset: control.downstreamPageOffset,
                                        userData: [], restored: control.restored)
            // A restarted VMBus worker re-announces the channels that were open (restored), and
            // hands over again one it had handed over but not seen answered (its state said
            // opening: this worker's answer was lost with it, or is still in the ring): one this
            // worker still serves on the same ring keeps going, requests in flight and all. (No
            // close came in between, so it cannot be the guest's new open: the VMBus worker
            // closes a channel here before the guest may open it again.)
            if let c = channels[control.relID], c.channel.open.ringPFNs == control.pfns,
               c.channel.open.downstreamPageOffset == control.downstreamPageOffset, c.subChannelIndex == control.subChannelIndex {
                c.channel.targetVP = control.targetVP
                // The VMBus worker may have lost a sub-channel request in its restart: asking
                // again is harmless (the server only grows to the total).
                requestSubChannelsAgain(c)
                if control.restored { return nil }
                log("relid \(control.relID): handed over again while open on the same ring; kept, answered again")
                return ChannelAnswerRecord(operation: .opened, relID: control.relID, status: VMBusStatus.success.rawValue)
            }
            if channels[control.relID] != nil { close(relID: control.relID) }
            let status: VMBusStatus
            do {
                let channel = try VMBusChannel(open: open, map: map, signals: signals)
                let c = OpenChannel(channel: channel, vstor: VStorProtocol(configuration: vstorConfiguration),
                                    subChannelIndex: control.subChannelIndex)
                channels[control.relID] = c
                if control.subChannelIndex == 0 {
                    primaryClosed = false
                    waitingReported = []
                }
                if control.subChannelIndex > 0 {
                    log("relid \(control.relID): sub-channel \(control.subChannelIndex) open, interrupts to VP \(control.targetVP)")
                }
                if control.restored { restore(c) } else { forget(relID: control.relID) }
                saveVStorStates()
                status = .success
            } catch {
                log("cannot open relid \(control.relID): \(error)")
                status = .unsuccessful
            }
            if control.restored { return nil }
            return ChannelAnswerRecord(operation: .opened, relID: control.relID, status: status.rawValue)
        case .close:
            if channels[control.relID]?.subChannelIndex == 0 { primaryClosed = true }
            close(relID: control.relID)
            forget(relID: control.relID)
            saveVStorStates()
            return ChannelAnswerRecord(operation: .closed, relID: control.relID)
        case .modify:
            channels[control.relID]?.channel.targetVP = control.targetVP
            return nil
        }
    }

    /// A fresh open (or a close): whatever a predecessor left for this relid is void.
    func forget(relID: UInt32) {
        savedVStor[relID] = nil
        for i in 0..<table.capacity where table.state(i) != .free && table.relID(i) == relID && running[i] == nil {
            if channels[relID]?.redo.contains(i) == true { continue }
            table.setState(i, .free)
            freeEntries.append(i)
        }
    }

    /// Waits for the channel's running I/O (its buffers are the guest's: nothing may land in them
    /// after CLOSED), then forgets the channel and its entries.
    func close(relID: UInt32) {
        guard let c = channels[relID] else { return }
        while c.ioRunning > 0, let pool {
            pool.waitForDone()
            collectFinished()
        }
        channels[relID] = nil
        for i in 0..<table.capacity where table.state(i) != .free && table.relID(i) == relID {
            table.setState(i, .free)
            freeEntries.append(i)
        }
    }

    /// A restored open: the predecessor's vstor state, then its entries for this channel
    /// (StorageInflightTable: the ring indices say which side of each commit it died on).
    func restore(_ c: OpenChannel) {
        let relID = c.channel.relID
        if let (generation, saved) = savedVStor[relID] {
            do {
                c.vstor = try VStorProtocol.restore(saved, configuration: vstorConfiguration)
                c.generation = generation
                c.persisted = (generation, saved)
            } catch { log("relid \(relID): saved vstor state refused: \(error)") }
        }
        var rewritten = 0, redone = 0, dropped = 0
        for i in 0..<table.capacity where table.relID(i) == relID {
            guard let s = table.state(i), s != .free else { continue }
            c.inFlight += 1
            switch s {
            case .free:
                break
            case .taking:
                if table.mark(i) == c.channel.inbound.publishedIndex {
                    release(i, c)
                    dropped += 1
                } else {
                    table.setState(i, .taken)
                    c.redo.append(i)
                    redone += 1
                }
            case .taken:
                c.redo.append(i)
                redone += 1
            case .completing:
                if let (generation, bytes) = table.vstorAfter(i), generation > c.generation,
                   let saved = try? VStorProtocol.Saved(decoding: bytes),
                   let v = try? VStorProtocol.restore(saved, configuration: vstorConfiguration) {
                    c.vstor = v
                    c.generation = generation
                    c.persisted = (generation, saved)
                }
                if table.mark(i) == c.channel.outbound.publishedIndex, let bytes = table.completion(i) {
                    var packet = VStorPacketBytes(count: bytes.count)
                    for (k, b) in bytes.enumerated() { packet[k] = b }
                    c.completions.append((i, VStorReply(transactionID: table.transactionID(i), packet: packet), nil))
                    rewritten += 1
                } else {
                    release(i, c)
                }
            }
        }
        // A predecessor may have died between publishing its CREATE_SUB_CHANNELS answer and
        // asking the VMBus worker: ask again (once any rewritten answer is in the ring).
        requestSubChannelsAgain(c)
        // Oldest first is not recorded; the guest accepts completions in any order.
        if rewritten + redone + dropped > 0 {
            log("relid \(relID): restored: \(redone) request(s) to redo, \(rewritten) completion(s) to write again, \(dropped) still in the ring")
        }
    }

    func release(_ i: Int, _ c: OpenChannel) {
        table.setState(i, .free)
        freeEntries.append(i)
        c.inFlight -= 1
    }

    // MARK: serving

    /// Serves every open channel (the guest's signal is taken, but each channel is drained
    /// whether or not it signalled: the doorbell is shared). Returns whether any work was done.
    @discardableResult
    public func serve() -> Bool {
        if dead { return false }
        collectFinished()
        var worked = false
        for relID in channels.keys.sorted() {
            guard !dead, let c = channels[relID] else { continue }
            _ = c.channel.takeSignal()
            if c.subChannelIndex > 0, primary == nil, !primaryClosed {
                if waitingReported.insert(relID).inserted {
                    log("relid \(relID): sub-channel \(c.subChannelIndex) waits for its primary's hand-over")
                }
                continue
            }
            if serve(c) { worked = true }
        }
        // A channel served early in the pass may have had its I/O finish while a later one
        // collected it: write those completions now (no wake-up will come for them again).
        for relID in channels.keys.sorted() {
            guard !dead, let c = channels[relID], !c.completions.isEmpty else { continue }
            writeCompletions(c)
        }
        return worked
    }

    /// The pool's finished operations become completions of their channels.
    func collectFinished() {
        guard let pool else { return }
        finished.removeAll(keepingCapacity: true)
        pool.takeDone(into: &finished)
        for d in finished {
            guard let r = running.removeValue(forKey: d.tag) else { continue }
            guard let c = channels[r.relID] else { continue }
            c.ioRunning -= 1
            if stop(.ioFinished) { return }
            accounting?.io(d.tag, r.io, d.result)
            let result = controller.complete(r.srb, io: r.io, result: d.result)
            c.completions.append((d.tag, VStorProtocol.completion(for: r.srb, result: result), nil))
        }
    }

    func serve(_ c: OpenChannel) -> Bool {
        let inbound = c.channel.inbound
        var worked = false
        var rounds = 0
        c.unfinished = false
        defer { if rounds >= 64 { c.unfinished = true } }
        while !dead && rounds < 64 {
            rounds += 1
            if !c.redo.isEmpty {
                let redo = c.redo
                c.redo = []
                for i in redo where !dead { decide(i, c) }
                if let pool, !jobs.isEmpty {
                    pool.submit(jobs)
                    jobs.removeAll(keepingCapacity: true)
                }
                worked = true
            }
            if dead { return worked }
            var taken = 0
            var empty = false
            let mark = inbound.publishedIndex
            // Room for every completion owed on this channel (written ones are in freeSpace already).
            var room = (c.channel.outbound.freeSpace() - 1) / Self.completionFootprint - c.inFlight
            var takenEntries: [Int] = []
            var takenRequests: [StorageInflightTable.Request] = []
            if room < 1, c.inFlight < options.maxInFlight {
                // Ask the guest to signal once it read enough completions.
                if c.channel.outbound.armForSpace((c.inFlight + 1) * Self.completionFootprint) { room = 1 }
            }
            while taken < Self.batchLimit, c.inFlight < options.maxInFlight, room > 0, let entry = freeEntries.last {
                switch inbound.next() {
                case .packet(let packet):
                    freeEntries.removeLast()
                    let r = request(from: packet, relID: c.channel.relID)
                    table.recordTake(entry, r, mark: mark)
                    takenEntries.append(entry)
                    takenRequests.append(r)
                    c.inFlight += 1
                    room -= 1
                    taken += 1
                    packetsRead += 1
                    if stop(.takeRecorded) { return true }
                case .empty:
                    empty = true
                case .corrupted(let why):
                    report(c, "guest-to-host ring: \(why)")
                    empty = true
                case .cutOff:
                    empty = true
                }
                if empty { break }
            }
            peakInFlight = max(peakInFlight, c.inFlight)
            if !takenEntries.isEmpty {
                worked = true
                if case .signal = inbound.commit() { c.channel.interruptGuest() }
                if stop(.takeCommitted) { return true }
                for i in takenEntries { table.setState(i, .taken) }
                accounting?.taken(takenEntries)
                if stop(.taken) { return true }
                for (i, r) in zip(takenEntries, takenRequests) where !dead { decide(i, c, request: r) }
                if dead { return true }
                if let pool, !jobs.isEmpty {
                    pool.submit(jobs)
                    jobs.removeAll(keepingCapacity: true)
                    _ = stop(.dispatched)
                }
            }
            if pool != nil { collectFinished() }
            if dead { return true }
            // Completions free entries and room: a take stopped by a limit may go on.
            let freed = !c.completions.isEmpty
            if freed {
                worked = true
                writeCompletions(c)
                if dead { return true }
            }
            if !takenEntries.isEmpty || !c.redo.isEmpty || (!empty && freed) { continue }
            if empty {
                switch inbound.enableInterrupts() {
                case .readAgain: continue
                case .sleep, .cutOff: return worked
                case .corrupted(let why): report(c, "guest-to-host ring: \(why)"); return worked
                }
            }
            return worked
        }
        return worked
    }

    /// Writes the channel's decided completions, records each before the write index is
    /// published, publishes them together, interrupts the guest if it may sleep, frees them.
    func writeCompletions(_ c: OpenChannel) {
        let outbound = c.channel.outbound
        let mark = outbound.publishedIndex
        var written: [Int] = []
        var now: UInt64 = 0
        for (entry, reply, after) in c.completions {
            reply.packet.withUnsafeBytes { table.recordCompletion(entry, $0, mark: mark, vstorAfter: after) }
            if stop(.completionRecorded) { return }
            if let (generation, bytes) = after, let saved = try? VStorProtocol.Saved(decoding: bytes) {
                c.persisted = (generation, saved)
                saveVStorStates()
            }
            let result = reply.packet.withUnsafeBytes {
                outbound.tryWrite(type: .completion, transactionID: reply.transactionID, payload: $0)
            }
            switch result {
            case .written: accounting?.completed(entry, now: &now)
            case .full: report(c, "host-to-guest ring full despite the room reserved")
            case .tooLarge: report(c, "completion of \(reply.packet.count) bytes does not fit the ring")
            case .corrupted(let why): report(c, "host-to-guest ring: \(why)")
            case .cutOff: break
            }
            written.append(entry)
            if stop(.completionWritten) { return }
        }
        c.completions.removeAll(keepingCapacity: true)
        switch outbound.commit() {
        case .signal: c.channel.interruptGuest()
        case .noSignal, .cutOff: break
        case .corrupted(let why): report(c, "host-to-guest ring: \(why)")
        }
        if stop(.published) { return }
        for i in written { release(i, c) }
        // The CREATE_SUB_CHANNELS answer is in the guest's ring: now the offers (reference 4.2).
        if let total = c.subChannelsToRequest {
            c.subChannelsToRequest = nil
            subChannelRequests.append(SubChannelRequestRecord(relID: c.channel.relID, total: UInt32(total)))
        }
    }

    /// What to push to the VMBus worker after the answers: requests for sub-channels.
    public func takeSubChannelRequests() -> [SubChannelRequestRecord] {
        defer { subChannelRequests.removeAll() }
        return subChannelRequests
    }

    /// A primary whose vstor state has sub-channels asks for them again (after its answer is
    /// written, if that is still to do).
    func requestSubChannelsAgain(_ c: OpenChannel) {
        guard c.subChannelIndex == 0 else { return }
        let n: UInt16
        switch c.vstor.state {
        case .ready(_, let k), .endInitialization(_, subChannels: .some(let k)): n = k
        default: return
        }
        guard n > 0 else { return }
        if c.completions.isEmpty {
            subChannelRequests.append(SubChannelRequestRecord(relID: c.channel.relID, total: UInt32(n)))
        } else {
            c.subChannelsToRequest = n
        }
    }

    /// The primary channel, when open.
    var primary: OpenChannel? { channels.values.first { $0.subChannelIndex == 0 } }

    /// "relid: SRBs" for every channel that served any (the log at exit and in tests).
    public var srbCounts: String {
        srbsByRelID.keys.sorted().map { "relid \($0): \(srbsByRelID[$0]!)" }.joined(separator: ", ")
    }

    func report(_ c: OpenChannel, _ why: String) {
        guard !c.reported else { return }
        c.reported = true
        log("relid \(c.channel.relID): \(why); the channel is cut off")
    }

    /// The packet's bytes as the table keeps them: the vstor packet and the GPA-direct range.
    func request(from packet: VMBusRingPacket<VMBusPagedRingMemory>, relID: UInt32) -> StorageInflightTable.Request {
        let d = packet.descriptor
        let n = min(packet.payload.count, Self.packetBytes)
        var payload = [UInt8](repeating: 0, count: n)
        payload.withUnsafeMutableBytes { _ = packet.payload.copyBytes(to: $0) }
        var range: (UInt32, UInt32, [UInt64])?
        var problem: UInt32 = 0
        if d.type == .dataUsingGPADirect {
            do throws(VMBusGPADirectRanges<VMBusPagedRingMemory>.Problem) {
                var list = try VMBusGPADirectRanges(packet: packet)
                if list.rangeCount != 1 {
                    problem = 2
                } else if let r = try list.next() {
                    let k = min(r.pageCount, StorageInflightTable.maxPFNs)
                    // The PFNs in one copy out of the ring (a 1 MiB request has 256; one generic
                    // load each was most of the ring thread's own CPU, docs/storage.md "1 MiB reads").
                    var pfns = [UInt64](repeating: 0, count: k)
                    if pfns.withUnsafeMutableBytes({ r.pfns.copyBytes(to: $0) }) {
                        for i in pfns.indices { pfns[i] = UInt64(littleEndian: pfns[i]) }
                        range = (r.byteCount, r.byteOffset, pfns)
                    } else {
                        problem = 5
                    }
                } else {
                    problem = 1
                }
            } catch {
                problem = 5
            }
        }
        return .init(relID: relID, transactionID: d.transactionID, packetType: d.type.rawValue, payload: payload,
                     range: range, problem: problem)
    }

    /// Decides a taken request: a completion now, or its I/O on the pool (or here without one).
    func decide(_ entry: Int, _ c: OpenChannel, request: StorageInflightTable.Request? = nil) {
        guard let r = request ?? table.request(entry) else {
            log("relid \(c.channel.relID): in-flight entry \(entry) unreadable; dropped")
            release(entry, c)
            return
        }
        if c.subChannelIndex > 0 {
            // A sub-channel's packets meet the primary's vstor state, which they cannot change
            // (only SRBs and resets are served there); with the primary closed, a detached
            // state that is not ready answers INVALID_DEVICE_STATE.
            var vstor = primary?.vstor ?? VStorProtocol(configuration: vstorConfiguration)
            let decision = r.payload.withUnsafeBytes {
                vstor.handle(transactionID: r.transactionID, payload: $0,
                             isCompletion: r.packetType == VMBusPacketType.completion.rawValue, onSubChannel: true)
            }
            switch decision {
            case .reply(let reply), .createSubChannels(let reply, _):
                c.completions.append((entry, reply, nil))
            case .ignore:
                release(entry, c)
            case .execute(let srb):
                countSRB(c)
                execute(srb, r, entry: entry, c)
            }
            return
        }
        let wasReady = c.vstor.isReady
        let before = c.vstor.saved
        let decision = r.payload.withUnsafeBytes {
            c.vstor.handle(transactionID: r.transactionID, payload: $0,
                           isCompletion: r.packetType == VMBusPacketType.completion.rawValue, onSubChannel: false)
        }
        var after: (UInt64, [UInt8])?
        if c.vstor.saved != before {
            c.generation += 1
            after = (c.generation, c.vstor.saved.encoded())
        }
        if !wasReady, case .ready(let version, _) = c.vstor.state {
            log("relid \(c.channel.relID): vstor: protocol 0x\(String(version.rawValue, radix: 16, uppercase: false).leftPadded(4)), \(controller.disks.count) LUN(s)")
        }
        switch decision {
        case .reply(let reply):
            c.completions.append((entry, reply, after))
        case .createSubChannels(let reply, let total):
            c.completions.append((entry, reply, after))
            c.subChannelsToRequest = total
            log("relid \(c.channel.relID): CREATE_SUB_CHANNELS: \(total) sub-channel(s) (limit \(vstorConfiguration.maxSubChannels))")
        case .ignore:
            release(entry, c)
        case .execute(let srb):
            countSRB(c)
            execute(srb, r, entry: entry, c)
        }
    }

    /// Counts an SRB; a sub-channel's 1st, 10th, 100th, ... is logged, so the host can see
    /// that the guest uses it.
    func countSRB(_ c: OpenChannel) {
        requestsCompleted += 1
        srbsByRelID[c.channel.relID, default: 0] += 1
        let n = srbsByRelID[c.channel.relID]!
        if c.subChannelIndex > 0, n == 1 || n == 10 || n == 100 || n == 1000 || n == 10000 {
            log("relid \(c.channel.relID): sub-channel \(c.subChannelIndex): \(n) request(s) served")
        }
    }

    func execute(_ srb: VStorSRB, _ r: StorageInflightTable.Request, entry: Int, _ c: OpenChannel) {
        func complete(_ reply: VStorReply) { c.completions.append((entry, reply, nil)) }
        accounting?.srb(entry, lun: srb.lun)
        var segments: [UnsafeMutableRawBufferPointer] = []
        if srb.dataTransferLength > 0 {
            let problem: VStorDataBufferCheck.Problem?
            if r.problem != 0 {
                problem = .badRangeList
            } else {
                problem = VStorDataBufferCheck.check(ranges: r.range.map { [.init(byteCount: $0.byteCount, byteOffset: $0.byteOffset, pfns: $0.pfns)] },
                                                     dataTransferLength: srb.dataTransferLength, ram: ram)
            }
            if let problem { return complete(VStorDataBufferCheck.completion(for: srb, problem: problem)) }
            guard let range = r.range,
                  let s = Self.segments(pfns: range.pfns, byteOffset: Int(range.byteOffset), length: Int(srb.dataTransferLength), map: map)
            else { return complete(VStorDataBufferCheck.completion(for: srb, problem: .badRangeList)) }
            segments = s
        }
        let buffer = SCSIDataBuffer(segments: segments)
        var decision = controller.execute(srb)
        if case .needParameterList(let n) = decision {
            decision = controller.executeUnmap(srb, parameters: buffer.copyOut(n))
        }
        switch decision {
        case .complete(let result):
            complete(VStorProtocol.completion(for: srb, result: result))
        case .dataIn(let bytes):
            complete(VStorProtocol.completion(for: srb, result: .good(transferred: UInt32(buffer.copyIn(bytes)))))
        case .needParameterList:
            complete(VStorProtocol.completion(for: srb, result: .illegalRequest(.invalidFieldInCDB)))
        case .io(let io):
            let backend = backends[Int(srb.lun)]
            if !faults.isIdle, let done = injectedFault(io, srb, buffer, entry: entry, backend: backend) {
                if let result = done { complete(VStorProtocol.completion(for: srb, result: controller.complete(srb, io: io, result: result))) }
                return
            }
            if options.inlineNonBlocking, let fast = backend as? NonBlockingDiskBackend,
               let result = fast.performWithoutBlocking(io, buffer: buffer) {
                accounting?.io(entry, io, result)
                complete(VStorProtocol.completion(for: srb, result: controller.complete(srb, io: io, result: result)))
            } else if pool != nil {
                running[entry] = (c.channel.relID, srb, io)
                c.ioRunning += 1
                jobs.append(.init(tag: entry, io: io, backend: backend, buffer: buffer))
            } else {
                let result = SCSIDiskExecutor.perform(io, backend: backend, buffer: buffer)
                accounting?.io(entry, io, result)
                complete(VStorProtocol.completion(for: srb, result: controller.complete(srb, io: io, result: result)))
            }
        }
    }

    /// The first `length` bytes of the range (its pages from `byteOffset` in the first) as spans
    /// of mapped guest memory, pages that are contiguous in the mapping merged into one span; nil
    /// when a page is not mapped or the pages run out.
    static func segments(pfns: [UInt64], byteOffset: Int, length: Int, map: VMBusGuestMemoryMap) -> [UnsafeMutableRawBufferPointer]? {
        var out: [UnsafeMutableRawBufferPointer] = []
        var left = length
        var offset = byteOffset
        var page = 0
        guard offset < 4096 else { return nil }
        while left > 0 {
            guard page < pfns.count, let host = map.page(pfn: pfns[page]) else { return nil }
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
