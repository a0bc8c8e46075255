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
    /// What restoring left to do: a predecessor's unacknowledged outbound messages (to post
    /// again, in order) and channel hand-overs. Empty for a fresh start.
    public private(set) var pendingAfterRestore: [VMBusServerAction] = []

    /// Restores a predecessor's state from `state` if there is one (decoded as hostile bytes: one
    /// that does not decode or restore is reported in `log` and the server starts afresh), then
    /// saves. `log` receives one line per event worth reporting.
    public init(state: WorkerStateRegion, configuration: VMBusServer.Configuration, offers: [VMBusOffer] = [],
                log: (String) -> Void) {
        self.state = state
        self.configuration = configuration
        server = VMBusServer(configuration: configuration, offers: offers)
        do {
            if let (generation, bytes) = try state.load() {
                do {
                    (server, pendingAfterRestore) = try VMBusServer.restore(try VMBusServer.Saved(decoding: bytes),
                                                                            configuration: configuration)
                    log("restored the VMBus state of generation \(generation)")
                } catch {
                    log("the saved VMBus state of generation \(generation) does not restore (\(error)); starting afresh")
                }
            }
        } catch {
            log("state region: \(error); starting afresh")
        }
        save(log: log)
    }

    /// One guest HvPostMessage for connection 1 or 4, as the router forwards it: a
    /// `PostedMessageRecord` decoded in place from the ring's buffer. Returns the server's
    /// actions (messages to post, each for SINT2 of its VP; channels for devices; log lines are
    /// given to `log`); the state is saved before it returns. A record that does not decode is
    /// reported and changes nothing.
    public func handle(record: UnsafeRawBufferPointer, log: (String) -> Void) -> [VMBusServerAction] {
        let posted: PostedMessageRecord
        do { posted = try PostedMessageRecord.decode(record) } catch {
            log("bad record: \(error)")
            return []
        }
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

    func save(log: (String) -> Void) {
        do { try state.save(server.save().encoded()) } catch { log("cannot save the VMBus state: \(error)") }
    }
}
