import HyperV
import IPC
import VMBus

/// The VMBus worker's service (STYLE.md, "Worker skeleton": a kind's service lives in a library
/// next to its pure module, so tests run it in-process). It owns the `VMBusServer` and keeps its
/// `Saved` state in the supervisor's `WorkerStateRegion`, so a successor continues the same
/// conversation with the guest. No fds, no syscalls: the worker's shell moves the bytes.
///
/// `VMBusWorkerCore` drives it: `handle(record:)` for each control message the router
/// forwards, `apply(_:)` for the devices' answers, `posted(through:)` once replies are pushed.
public final class VMBusService {
    public private(set) var server: VMBusServer
    public let state: WorkerStateRegion
    public let configuration: VMBusServer.Configuration
    /// What restoring left to do: a predecessor's outbound messages it had not pushed (to push, in
    /// order) and channel hand-overs. Empty for a fresh start.
    public private(set) var pendingAfterRestore: [VMBusServerAction] = []
    /// Inbound ring records numbered below this have had their effect (saved with it; see
    /// `VMBusWorkerSaved`). A record lent again below it is freed without acting.
    public private(set) var inboundNext: UInt64 = 0
    /// The outbound ring's producer index (the number its next push gets); 0 without a ring.
    let outboundIndex: () -> UInt64
    /// The predecessor's device states by relid, for the channels it re-announces.
    public private(set) var restoredDevices: [UInt32: [UInt8]] = [:]
    /// The open devices' states, saved with the server's (the core installs it).
    public var deviceStates: (() -> [UInt32: [UInt8]])?
    /// Outbound messages the predecessor pushed after its last save (not pushed again).
    public private(set) var alreadyPushed = 0

    /// Restores a predecessor's state from `state` if there is one (decoded as hostile bytes: one
    /// that does not decode or restore is reported in `log` and the server starts afresh), then
    /// saves. `outboundIndex` reads the outbound ring's producer index: the saved outbound
    /// messages the predecessor pushed after its last save are dropped from what is left to post.
    /// `log` receives one line per event worth reporting.
    public init(state: WorkerStateRegion, configuration: VMBusServer.Configuration, offers: [VMBusOffer] = [],
                outboundIndex: @escaping () -> UInt64 = { 0 }, log: (String) -> Void) {
        self.state = state
        self.configuration = configuration
        self.outboundIndex = outboundIndex
        server = VMBusServer(configuration: configuration, offers: offers)
        do {
            if let (generation, bytes) = try state.load() {
                do {
                    let saved = try VMBusWorkerSaved(decoding: bytes)
                    (server, pendingAfterRestore) = try VMBusServer.restore(saved.server, configuration: configuration)
                    inboundNext = saved.inboundNext
                    restoredDevices = saved.devices
                    log("restored the VMBus state of generation \(generation)")
                    skipPushed(saved, log: log)
                } catch {
                    log("the saved VMBus state of generation \(generation) does not restore (\(error)); starting afresh")
                }
            }
        } catch {
            log("state region: \(error); starting afresh")
        }
        save(log: log)
    }

    /// The predecessor may have pushed some of its saved outbound messages after its last save:
    /// the producer index tells how many (they went out in order from `outboundBase`).
    func skipPushed(_ saved: VMBusWorkerSaved, log: (String) -> Void) {
        let now = outboundIndex()
        guard now >= saved.outboundBase else {
            log("the outbound ring's index \(now) is below the saved \(saved.outboundBase); posting every saved message")
            return
        }
        let count = saved.server.outbound.count
        var pushed = now - saved.outboundBase
        if pushed > UInt64(count) {
            log("the outbound ring's index \(now) is \(pushed) past the saved \(saved.outboundBase), with \(count) messages saved")
            pushed = UInt64(count)
        }
        guard pushed > 0 else { return }
        alreadyPushed = Int(pushed)
        let through = saved.server.outbound[Int(pushed) - 1].sequence
        var dropped = 0
        pendingAfterRestore.removeAll { action in
            guard dropped < Int(pushed), case .post = action else { return false }
            dropped += 1
            return true
        }
        for case .log(let line) in server.handle(.posted(throughSequence: through)) { log(line) }
    }

    /// One guest HvPostMessage for connection 1 or 4, as the router forwards it: a
    /// `PostedMessageRecord` decoded in place from the ring's buffer. Returns the server's
    /// actions (messages to post, each for SINT2 of its VP; channels for devices; log lines are
    /// given to `log`); the state is saved before it returns. A record that does not decode is
    /// reported and changes nothing.
    /// `index`: the record's number in the inbound ring, saved as done with the record's effect
    /// (nil: not from the ring, nothing to record).
    public func handle(record: UnsafeRawBufferPointer, index: UInt64? = nil, log: (String) -> Void) -> [VMBusServerAction] {
        let posted: PostedMessageRecord
        do { posted = try PostedMessageRecord.decode(record) } catch {
            log("bad record: \(error)")
            return []
        }
        if let index { inboundNext = max(inboundNext, index &+ 1) }
        let input = VMBusPostedMessage(connectionID: posted.connectionID, vp: posted.vp,
                                       messageType: HvMessageType(rawValue: posted.messageType), bytes: posted.payload)
        return apply(.message(input), log: log)
    }

    /// Any input (a device's answer, the shell's receipt): the server's actions, log lines given
    /// to `log` and left out; the state is saved before it returns.
    public func apply(_ input: VMBusServerInput, log: (String) -> Void) -> [VMBusServerAction] {
        var out: [VMBusServerAction] = []
        for action in server.handle(input) {
            if case .log(let line) = action { log(line) } else { out.append(action) }
        }
        save(log: log)
        return out
    }

    /// Takes what restoring left to do (once).
    public func takePendingAfterRestore() -> [VMBusServerAction] {
        defer { pendingAfterRestore = [] }
        return pendingAfterRestore
    }

    /// The shell has handed every outbound message through `sequence` to the router: they leave
    /// the saved state.
    public func posted(through sequence: UInt64, log: (String) -> Void) {
        for case .log(let line) in server.handle(.posted(throughSequence: sequence)) { log(line) }
        save(log: log)
    }

    /// Writes everything in one `WorkerStateRegion.save`: the server, the inbound ring's done
    /// mark, the outbound ring's index, the open devices' states.
    public func save(log: (String) -> Void) {
        let saved = VMBusWorkerSaved(inboundNext: inboundNext, outboundBase: outboundIndex(), server: server.save(),
                                     devices: deviceStates?() ?? restoredDevices)
        do { try state.save(saved.encoded()) } catch { log("cannot save the VMBus state: \(error)") }
    }
}
