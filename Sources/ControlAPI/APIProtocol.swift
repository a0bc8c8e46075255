/// The control socket's protocol (docs/api.md): QMP's framing and shapes, without its greeting
/// and capabilities negotiation. One JSON object per line each way:
///
///     {"execute":"status"}                       -> {"return":{...}}
///     {"execute":"fault","arguments":{"worker":"synic-router","kind":"kill"},"id":7}
///                                                -> {"return":{...},"id":7}
///     anything wrong                             -> {"error":{"class":"...","desc":"..."}}
///
/// The handler here is pure: it parses a line, asks an `APIBackend` (the VM, or a fake in the
/// tests) and encodes the reply. The server that owns the socket is in Monitor
/// (`ControlSocketServer`); the client is `synthvm ctl`.
public enum APIProtocol {
    /// A request line longer than this (without its LF) gets `LineTooLong` and the connection is closed.
    public static let maxLineBytes = 64 << 10
    /// Nesting bound of a request.
    public static let maxDepth = 16
    /// The commands, in the order docs/api.md lists them.
    public static let commands = ["status", "metrics", "fault", "shutdown", "stop"]
    /// Fault kinds of issue 14 (`io-error` and `torn`: storage workers only).
    public static let faultKinds = ["kill", "crash", "hang", "slow", "syscall", "io-error", "torn"]
    /// The kinds only a storage worker serves.
    public static let storageFaultKinds = ["io-error", "torn"]
    /// `io-error N`: N in 1...this.
    public static let maxIOErrors: UInt32 = 1_000_000
    /// The `id` a request may carry is echoed only if its encoding is at most this long.
    public static let maxIDBytes = 256
}

/// Error classes (QMP's `class` member). Stable strings: scripts may match them.
public enum APIErrorClass: String, Sendable, CaseIterable {
    /// The line is not JSON.
    case parseError = "ParseError"
    /// JSON, but not a request object (`execute` missing or not a string, unknown members).
    case invalidRequest = "InvalidRequest"
    case commandNotFound = "CommandNotFound"
    /// An argument is missing, of the wrong type, or out of range.
    case invalidArgument = "InvalidArgument"
    /// `fault` without `synthvm run --allow-fault-injection`.
    case faultInjectionDisabled = "FaultInjectionDisabled"
    /// A fault kind this VM cannot inject (a backend without fault records).
    case notSupported = "NotSupported"
    /// No worker of that name in this VM.
    case workerNotFound = "WorkerNotFound"
    /// The worker exists but is not running (it already ended).
    case workerNotRunning = "WorkerNotRunning"
    /// The VM is already stopping.
    case stopping = "Stopping"
    /// The request line exceeded `APIProtocol.maxLineBytes` (the connection is then closed).
    case lineTooLong = "LineTooLong"
    /// The server holds its maximum of connections (this one is closed after the error).
    case tooManyConnections = "TooManyConnections"
    /// The connection was idle past the server's timeout (it is closed after the error).
    case idleTimeout = "IdleTimeout"
}

/// A parsed request.
public enum APIRequest: Sendable, Equatable {
    case status
    case metrics
    case fault(worker: String, kind: String, argument: String?)
    case shutdown
    case stop

    /// Parses a request object. `id` is returned separately (it is echoed even with an error).
    public static func parse(_ v: JSONValue) -> Result<APIRequest, APIError> {
        guard let members = v.objectValue else {
            return .failure(APIError(.invalidRequest, "a request is a JSON object: {\"execute\":\"COMMAND\"}"))
        }
        for (k, _) in members where !["execute", "arguments", "id"].contains(k) {
            return .failure(APIError(.invalidRequest, "unknown member \"\(k.prefix(64))\" (expected execute, arguments, id)"))
        }
        guard let command = v["execute"]?.stringValue else {
            return .failure(APIError(.invalidRequest, "missing \"execute\" (a string naming the command)"))
        }
        let args = v["arguments"]
        if let a = args, a.objectValue == nil {
            return .failure(APIError(.invalidRequest, "\"arguments\" must be an object"))
        }
        func noArguments(_ r: APIRequest) -> Result<APIRequest, APIError> {
            if let a = args?.objectValue, !a.isEmpty {
                return .failure(APIError(.invalidArgument, "\(command) takes no arguments"))
            }
            return .success(r)
        }
        switch command {
        case "status": return noArguments(.status)
        case "metrics": return noArguments(.metrics)
        case "shutdown": return noArguments(.shutdown)
        case "stop": return noArguments(.stop)
        case "fault":
            let a = args ?? .object([])
            for (k, _) in a.objectValue ?? [] where !["worker", "kind", "arg"].contains(k) {
                return .failure(APIError(.invalidArgument, "fault: unknown argument \"\(k.prefix(64))\" (expected worker, kind, arg)"))
            }
            guard let worker = a["worker"]?.stringValue, !worker.isEmpty, worker.utf8.count <= 64 else {
                return .failure(APIError(.invalidArgument, "fault: \"worker\" must be a worker name (a string)"))
            }
            guard let kind = a["kind"]?.stringValue else {
                return .failure(APIError(.invalidArgument, "fault: \"kind\" must be one of \(APIProtocol.faultKinds.joined(separator: ", "))"))
            }
            var argument: String?
            switch a["arg"] {
            case nil, .null?: argument = nil
            case let .string(s)?: argument = s
            case let .int(i)?: argument = String(i)
            default: return .failure(APIError(.invalidArgument, "fault: \"arg\" must be a string or an integer"))
            }
            if let s = argument, s.utf8.count > 64 {
                return .failure(APIError(.invalidArgument, "fault: \"arg\" is longer than 64 bytes"))
            }
            return .success(.fault(worker: worker, kind: kind, argument: argument))
        default:
            return .failure(APIError(.commandNotFound,
                                     "unknown command \"\(command.prefix(64))\" (commands: \(APIProtocol.commands.joined(separator: ", ")))"))
        }
    }

    /// The request as a line (without LF): what `synthvm ctl` sends.
    public var json: JSONValue {
        switch self {
        case .status: return .object([("execute", .string("status"))])
        case .metrics: return .object([("execute", .string("metrics"))])
        case .shutdown: return .object([("execute", .string("shutdown"))])
        case .stop: return .object([("execute", .string("stop"))])
        case let .fault(worker, kind, arg):
            var a: [(String, JSONValue)] = [("worker", .string(worker)), ("kind", .string(kind))]
            if let arg { a.append(("arg", .string(arg))) }
            return .object([("execute", .string("fault")), ("arguments", .object(a))])
        }
    }
}

public struct APIError: Error, Sendable, Equatable {
    public var errorClass: APIErrorClass
    public var desc: String

    public init(_ c: APIErrorClass, _ desc: String) {
        errorClass = c
        self.desc = desc
    }

    public var json: JSONValue { .object([("class", .string(errorClass.rawValue)), ("desc", .string(desc))]) }
}

/// Who is on the other end of a connection (SO_PEERCRED at accept).
public struct APIPeer: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "pid \(pid), uid \(uid)" }
}

/// A worker as `status` reports it.
public struct APIWorkerStatus: Sendable, Equatable {
    public var name: String
    /// The kind its hello announces (synic-router, vmbus, storage).
    public var kind: String
    public var pid: Int32
    public var running: Bool
    /// Times the supervisor restarted it (0 until restart exists, issue 14 item 1).
    public var restarts: Int
    /// How its last process ended ("killed by signal 9 (SIGKILL)"), nil while its first runs.
    public var lastExit: String?
    /// Milliseconds since its last heartbeat through the shared region; nil until heartbeats exist.
    public var heartbeatAgeMs: Int?

    public init(name: String, kind: String, pid: Int32, running: Bool, restarts: Int = 0, lastExit: String? = nil,
                heartbeatAgeMs: Int? = nil) {
        self.name = name
        self.kind = kind
        self.pid = pid
        self.running = running
        self.restarts = restarts
        self.lastExit = lastExit
        self.heartbeatAgeMs = heartbeatAgeMs
    }

    public var json: JSONValue {
        .object([("name", .string(name)), ("kind", .string(kind)), ("pid", .int(Int64(pid))), ("running", .bool(running)),
                 ("restarts", .int(Int64(restarts))), ("last_exit", lastExit.map { .string($0) } ?? .null),
                 ("heartbeat_age_ms", heartbeatAgeMs.map { .int(Int64($0)) } ?? .null)])
    }
}

/// What `status` returns.
public struct APIStatus: Sendable, Equatable {
    /// "running" or "stopping".
    public var state: String
    public var uptimeSeconds: Double
    public var vcpus: Int
    /// The VM process's pid.
    public var pid: Int32
    public var faultInjection: Bool
    public var workers: [APIWorkerStatus]
    /// The guest's heartbeat (the heartbeat integration service's sequence and age): nil until
    /// that IC exists.
    public var guestHeartbeat: JSONValue?

    public init(state: String, uptimeSeconds: Double, vcpus: Int, pid: Int32, faultInjection: Bool,
                workers: [APIWorkerStatus], guestHeartbeat: JSONValue? = nil) {
        self.state = state
        self.uptimeSeconds = uptimeSeconds
        self.vcpus = vcpus
        self.pid = pid
        self.faultInjection = faultInjection
        self.workers = workers
        self.guestHeartbeat = guestHeartbeat
    }

    public var json: JSONValue {
        .object([("state", .string(state)), ("uptime_seconds", .double((uptimeSeconds * 1000).rounded() / 1000)),
                 ("vcpus", .int(Int64(vcpus))), ("pid", .int(Int64(pid))),
                 ("fault_injection", .bool(faultInjection)), ("workers", .array(workers.map(\.json))),
                 ("guest_heartbeat", guestHeartbeat ?? .null)])
    }
}

/// How `shutdown` went.
public enum APIShutdownResult: Sendable, Equatable {
    /// The guest was asked (the shutdown integration service) and the VM keeps running until it acts.
    case guestAsked
    /// No graceful path: the VM was stopped as by `stop`.
    case hardStop
}

/// What the handler needs from a VM. The Monitor implements it; the tests fake it.
public protocol APIBackend: Sendable {
    func status() -> APIStatus
    /// The Prometheus exposition text.
    func metricsText() -> String
    var faultInjectionAllowed: Bool { get }
    /// SIGKILLs the named worker; its pid, or an error (not found, not running).
    func killWorker(_ name: String) -> Result<Int32, APIError>
    /// Sends the named worker a fault (`crash`, `hang` SECONDS, `slow` MILLISECONDS, `syscall`,
    /// `io-error` N, `torn`); the pid of the process it went to, or an error.
    func injectFault(_ name: String, kind: String, argument: UInt32) -> Result<Int32, APIError>
    func shutdown() -> APIShutdownResult
    /// Stops the VM hard (status 130, as SIGTERM).
    func stop() -> Bool
    /// A line for the operator's log (stderr).
    func log(_ line: String)
}

extension APIBackend {
    public func injectFault(_ name: String, kind: String, argument: UInt32) -> Result<Int32, APIError> {
        .failure(APIError(.notSupported, "fault kind \(kind) is not supported by this VM"))
    }
}

/// Turns request lines into reply lines.
public enum APIHandler {
    /// The reply (one line, without LF) to one request line from `peer`.
    public static func reply(to line: [UInt8], peer: APIPeer?, backend: some APIBackend) -> String {
        let value: JSONValue
        do {
            value = try JSONParser.parse(line, limits: .init(maxBytes: APIProtocol.maxLineBytes, maxDepth: APIProtocol.maxDepth))
        } catch {
            return errorLine(APIError(.parseError, "not JSON: \(error)"), id: nil)
        }
        var id = value["id"]
        if let i = id, i.encoded.utf8.count > APIProtocol.maxIDBytes { id = nil }
        switch APIRequest.parse(value) {
        case let .failure(e): return errorLine(e, id: id)
        case let .success(request):
            switch execute(request, peer: peer, backend: backend) {
            case let .success(v): return JSONValue.object([("return", v)] + (id.map { [("id", $0)] } ?? [])).encoded
            case let .failure(e): return errorLine(e, id: id)
            }
        }
    }

    public static func errorLine(_ e: APIError, id: JSONValue?) -> String {
        JSONValue.object([("error", e.json)] + (id.map { [("id", $0)] } ?? [])).encoded
    }

    public static func execute(_ r: APIRequest, peer: APIPeer?, backend: some APIBackend) -> Result<JSONValue, APIError> {
        let who = peer.map { "\($0)" } ?? "an unknown peer"
        switch r {
        case .status:
            return .success(backend.status().json)
        case .metrics:
            return .success(.object([("content_type", .string("text/plain; version=0.0.4")),
                                     ("text", .string(backend.metricsText()))]))
        case let .fault(worker, kind, arg):
            guard backend.faultInjectionAllowed else {
                return .failure(APIError(.faultInjectionDisabled,
                                         "fault injection is off: start the VM with synthvm run --allow-fault-injection"))
            }
            guard APIProtocol.faultKinds.contains(kind) else {
                return .failure(APIError(.invalidArgument,
                                         "fault: unknown kind \"\(kind.prefix(64))\" (kinds: \(APIProtocol.faultKinds.joined(separator: ", ")))"))
            }
            if kind != "kill" {
                var value: UInt32 = 0
                let takesArgument = kind == "hang" || kind == "slow" || kind == "io-error"
                switch kind {
                case "hang", "slow", "io-error":
                    let range: ClosedRange<UInt32> = kind == "hang" ? 1...3600 : kind == "slow" ? 0...10000 : 1...APIProtocol.maxIOErrors
                    guard let a = arg, let v = UInt32(a), range.contains(v) else {
                        return .failure(APIError(.invalidArgument, "fault \(kind) takes "
                            + (kind == "hang" ? "SECONDS, 1...3600" : kind == "slow" ? "MILLISECONDS, 0...10000 (0 ends it)"
                                : "N, the number of requests to fail, 1...\(APIProtocol.maxIOErrors)")))
                    }
                    value = v
                default:
                    guard arg == nil else { return .failure(APIError(.invalidArgument, "fault \(kind) takes no argument")) }
                }
                // The storage kinds go to a storage worker only (a worker this VM does not run
                // is the backend's WorkerNotFound).
                if APIProtocol.storageFaultKinds.contains(kind),
                   let w = backend.status().workers.first(where: { $0.name == worker }), w.kind != "storage" {
                    return .failure(APIError(.invalidArgument, "fault \(kind) applies to storage workers only "
                        + "(worker \(worker.prefix(64)) is a \(w.kind) worker)"))
                }
                switch backend.injectFault(worker, kind: kind, argument: value) {
                case let .failure(e): return .failure(e)
                case let .success(pid):
                    let what = takesArgument ? "\(kind) \(value)" : kind
                    backend.log("synthvm: fault injection: \(what) of worker \(worker) (pid \(pid)) requested by \(who)")
                    var out: [(String, JSONValue)] = [("worker", .string(worker)), ("kind", .string(kind)), ("pid", .int(Int64(pid)))]
                    if takesArgument { out.append(("arg", .int(Int64(value)))) }
                    return .success(.object(out))
                }
            }
            guard arg == nil else { return .failure(APIError(.invalidArgument, "fault kill takes no argument")) }
            switch backend.killWorker(worker) {
            case let .failure(e): return .failure(e)
            case let .success(pid):
                backend.log("synthvm: fault injection: kill of worker \(worker) (pid \(pid)) requested by \(who)")
                return .success(.object([("worker", .string(worker)), ("kind", .string(kind)), ("pid", .int(Int64(pid)))]))
            }
        case .shutdown:
            backend.log("synthvm: shutdown requested through the control socket by \(who)")
            switch backend.shutdown() {
            case .guestAsked: return .success(.object([("graceful", .bool(true))]))
            case .hardStop: return .success(.object([("graceful", .bool(false))]))
            }
        case .stop:
            backend.log("synthvm: stop requested through the control socket by \(who)")
            guard backend.stop() else { return .failure(APIError(.stopping, "the VM is already stopping")) }
            return .success(.object([]))
        }
    }
}
