import Synchronization
import Testing

@testable import ControlAPI

/// A VM as the handler sees it, recording what it was asked.
final class FakeBackend: APIBackend {
    let faultInjectionAllowed: Bool
    let logs = Mutex<[String]>([])
    let killed = Mutex<[String]>([])
    /// (worker, kind, argument) of every fault record sent.
    let injected = Mutex<[String]>([])
    let stops = Mutex(0)
    let stopping = Mutex(false)

    init(faults: Bool) { faultInjectionAllowed = faults }

    func status() -> APIStatus {
        APIStatus(state: "running", uptimeSeconds: 1.5, vcpus: 2, pid: 42, faultInjection: faultInjectionAllowed,
                  workers: [APIWorkerStatus(name: "synic-router", kind: "synic-router", pid: 43, running: true),
                            APIWorkerStatus(name: "storage", kind: "storage", pid: 44, running: true)])
    }

    /// Fault records reach the storage worker only; the router's kinds stay NotSupported here.
    func injectFault(_ name: String, kind: String, argument: UInt32) -> Result<Int32, APIError> {
        switch name {
        case "storage":
            injected.withLock { $0.append("\(name) \(kind) \(argument)") }
            return .success(44)
        case "synic-router": return .failure(APIError(.notSupported, "fault kind \(kind) is not supported by this fake"))
        default: return .failure(APIError(.workerNotFound, "no worker \(name)"))
        }
    }

    func metricsText() -> String { "# HELP a b\n# TYPE a counter\na 1\n" }

    func killWorker(_ name: String) -> Result<Int32, APIError> {
        guard name == "synic-router" else { return .failure(APIError(.workerNotFound, "no worker \(name)")) }
        killed.withLock { $0.append(name) }
        return .success(43)
    }

    func shutdown() -> APIShutdownResult {
        _ = stop()
        return .hardStop
    }

    func stop() -> Bool {
        stops.withLock { $0 += 1 }
        return stopping.withLock { s in
            defer { s = true }
            return !s
        }
    }

    func log(_ line: String) { logs.withLock { $0.append(line) } }
}

@Suite struct HandlerTests {
    static let peer = APIPeer(pid: 7, uid: 1000, gid: 1000)

    func reply(_ line: String, _ backend: FakeBackend = FakeBackend(faults: false)) throws -> JSONValue {
        let text = APIHandler.reply(to: Array(line.utf8), peer: Self.peer, backend: backend)
        #expect(!text.contains("\n"))
        return try JSONParser.parse(text)
    }

    func errorClass(_ v: JSONValue) -> String? { v["error"]?["class"]?.stringValue }

    @Test func status() throws {
        let r = try reply(#"{"execute":"status","id":"a"}"#)
        #expect(r["id"] == .string("a"))
        let s = try #require(r["return"])
        #expect(s["state"] == .string("running"))
        #expect(s["vcpus"] == .int(2))
        #expect(s["pid"] == .int(42))
        #expect(s["guest_heartbeat"] == .null)
        let w = try #require(s["workers"]?.arrayValue?.first)
        #expect(w["pid"] == .int(43))
        #expect(w["restarts"] == .int(0))
        #expect(w["last_exit"] == .null)
        #expect(w["heartbeat_age_ms"] == .null)
    }

    @Test func metricsAreTextInTheReturnObject() throws {
        let r = try reply(#"{"execute":"metrics"}"#)
        #expect(r["return"]?["text"]?.stringValue == "# HELP a b\n# TYPE a counter\na 1\n")
        #expect(r["return"]?["content_type"]?.stringValue == "text/plain; version=0.0.4")
    }

    @Test("bad requests get JSON errors", arguments: [
        ("not json", "ParseError"), ("[]", "InvalidRequest"), ("{}", "InvalidRequest"),
        (#"{"execute":1}"#, "InvalidRequest"), (#"{"execute":"status","extra":1}"#, "InvalidRequest"),
        (#"{"execute":"status","arguments":[]}"#, "InvalidRequest"),
        (#"{"execute":"status","arguments":{"x":1}}"#, "InvalidArgument"),
        (#"{"execute":"reboot"}"#, "CommandNotFound"), ("", "ParseError"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"kill"}}"#, "FaultInjectionDisabled"),
    ])
    func badRequests(_ line: String, _ expected: String) throws {
        let r = try reply(line)
        #expect(errorClass(r) == expected, "\(line)")
        #expect(r["error"]?["desc"]?.stringValue?.isEmpty == false)
    }

    @Test func faultKillOnlyWhenAllowedAndLogged() throws {
        let b = FakeBackend(faults: true)
        let r = try reply(#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"kill"},"id":3}"#, b)
        #expect(r["return"]?["pid"] == .int(43))
        #expect(r["id"] == .int(3))
        #expect(b.killed.withLock { $0 } == ["synic-router"])
        #expect(b.logs.withLock { $0 } == ["synthvm: fault injection: kill of worker synic-router (pid 43) requested by pid 7, uid 1000"])
        let off = FakeBackend(faults: false)
        _ = try reply(#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"kill"}}"#, off)
        #expect(off.killed.withLock { $0 }.isEmpty)
    }

    @Test("fault errors", arguments: [
        (#"{"execute":"fault","arguments":{"worker":"nope","kind":"kill"}}"#, "WorkerNotFound"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"crash"}}"#, "NotSupported"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"hang","arg":5}}"#, "NotSupported"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"hang"}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"hang","arg":0}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"slow","arg":10001}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"crash","arg":1}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"io-error","arg":1}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"torn"}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"storage","kind":"io-error"}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"storage","kind":"io-error","arg":0}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"storage","kind":"io-error","arg":-3}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"storage","kind":"io-error","arg":"three"}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"storage","kind":"io-error","arg":1000001}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"storage","kind":"io-error","arg":null}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"storage","kind":"torn","arg":1}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"nope","kind":"io-error","arg":1}}"#, "WorkerNotFound"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"explode"}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"kind":"kill"}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router"}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"kill","arg":[1]}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"kill","arg":"1"}}"#, "InvalidArgument"),
        (#"{"execute":"fault","arguments":{"worker":"synic-router","kind":"kill","x":1}}"#, "InvalidArgument"),
    ])
    func faultErrors(_ line: String, _ expected: String) throws {
        let b = FakeBackend(faults: true)
        #expect(errorClass(try reply(line, b)) == expected, "\(line)")
        #expect(b.killed.withLock { $0 }.isEmpty)
        #expect(b.injected.withLock { $0 }.isEmpty)
        #expect(b.logs.withLock { $0 }.isEmpty)
    }

    @Test func storageFaultsReachTheStorageWorkerAndAreLogged() throws {
        let b = FakeBackend(faults: true)
        let r = try reply(#"{"execute":"fault","arguments":{"worker":"storage","kind":"io-error","arg":3},"id":9}"#, b)
        #expect(r["return"] == .object([("worker", .string("storage")), ("kind", .string("io-error")), ("pid", .int(44)), ("arg", .int(3))]))
        let t = try reply(#"{"execute":"fault","arguments":{"worker":"storage","kind":"torn"}}"#, b)
        #expect(t["return"] == .object([("worker", .string("storage")), ("kind", .string("torn")), ("pid", .int(44))]))
        // "arg" as a string, as `synthvm ctl` sends it.
        _ = try reply(#"{"execute":"fault","arguments":{"worker":"storage","kind":"io-error","arg":"1000000"}}"#, b)
        #expect(b.injected.withLock { $0 } == ["storage io-error 3", "storage torn 0", "storage io-error 1000000"])
        #expect(b.logs.withLock { $0 } == [
            "synthvm: fault injection: io-error 3 of worker storage (pid 44) requested by pid 7, uid 1000",
            "synthvm: fault injection: torn of worker storage (pid 44) requested by pid 7, uid 1000",
            "synthvm: fault injection: io-error 1000000 of worker storage (pid 44) requested by pid 7, uid 1000",
        ])
    }

    @Test func stopAndShutdown() throws {
        let b = FakeBackend(faults: false)
        #expect(try reply(#"{"execute":"shutdown"}"#, b)["return"]?["graceful"] == .bool(false))
        #expect(errorClass(try reply(#"{"execute":"stop"}"#, b)) == "Stopping")
        let c = FakeBackend(faults: false)
        #expect(try reply(#"{"execute":"stop"}"#, c)["return"] == .object([]))
        #expect(c.logs.withLock { $0 }.contains { $0.contains("stop requested") && $0.contains("pid 7") })
    }

    @Test func aLongIDIsNotEchoed() throws {
        let id = String(repeating: "x", count: 300)
        let r = try reply(#"{"execute":"status","id":""# + id + #""}"#)
        #expect(r["id"] == nil)
        #expect(r["return"] != nil)
    }

    @Test func requestsEncodeToWhatTheParserAccepts() throws {
        for r: APIRequest in [.status, .metrics, .shutdown, .stop, .fault(worker: "w", kind: "hang", argument: "5")] {
            #expect(APIRequest.parse(try JSONParser.parse(r.json.encoded)) == .success(r))
        }
    }
}
