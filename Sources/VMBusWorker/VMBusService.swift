import HyperV
import IPC
import VMBus

/// The VMBus worker's service (STYLE.md, "Worker skeleton": a kind's service lives in a library
/// next to its pure module, so tests run it in-process). It owns the `VMBusServer` and keeps its
/// `Saved` state in the supervisor's `WorkerStateRegion`, so a successor continues the same
/// conversation with the guest. No fds, no syscalls: the worker's shell moves the bytes.
///
/// Today the shell uses it only to restore and save at start (no control message reaches the
/// worker yet: docs/vmbus.md, "The worker"); `handle(record:)` and `posted(through:)` are the
/// control path's entry points, tested here without KVM.
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
    public init(state: WorkerStateRegion, configuration: VMBusServer.Configuration, log: (String) -> Void) {
        self.state = state
        self.configuration = configuration
        server = VMBusServer(configuration: configuration, offers: [])
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
    /// `PostedMessageRecord` decoded in place from the ring's buffer. Returns the messages to
    /// post to the guest, in order (each for SINT2 of its VP); the state is saved before it
    /// returns. A record that does not decode is reported and changes nothing.
    public func handle(record: UnsafeRawBufferPointer, log: (String) -> Void) -> [VMBusOutboundMessage] {
        let posted: PostedMessageRecord
        do { posted = try PostedMessageRecord.decode(record) } catch {
            log("bad record: \(error)")
            return []
        }
        let input = VMBusPostedMessage(connectionID: posted.connectionID, vp: posted.vp,
                                       messageType: HvMessageType(rawValue: posted.messageType), bytes: posted.payload)
        var out: [VMBusOutboundMessage] = []
        for action in server.handle(.message(input)) {
            switch action {
            case .post(let m): out.append(m)
            case .log(let line): log(line)
            // No device offers a channel yet, so none can be opened, closed or moved.
            case .openChannel(let o): log("open of relid \(o.relID) with no device behind it")
            case .closeChannel(let relID): log("close of relid \(relID) with no device behind it")
            case .modifyChannel: break
            }
        }
        save(log: log)
        return out
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
