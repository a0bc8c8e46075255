import ArgumentParser
import CSynthVM
import ControlAPI
import Glibc
import Monitor

/// `synthvm ctl PATH COMMAND`: the control socket's client (docs/api.md). Sends one request,
/// prints the reply for people (or, with --json, the raw reply line for scripts), and exits 0;
/// any failure (no socket, refused, a JSON error, no reply) is one line on stderr and status 1.
struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Talk to a running VM through its control socket (synthvm run --api-socket PATH).",
        discussion: """
            Commands: status; metrics (Prometheus text); fault WORKER KIND [ARG] (needs synthvm run \
            --allow-fault-injection; KIND kill, crash, hang SECONDS, slow MILLISECONDS, syscall, and for the storage worker io-error N or torn: docs/faults.md); shutdown (graceful where the guest has a \
            shutdown service, else a hard stop); stop (hard stop: the VM ends with status 130). \
            Exit status: 0, or 1 with one line on stderr (no socket, refused, an error reply), 64 bad usage. \
            See docs/api.md.
            """)

    @Flag(name: .long, help: "Print the raw JSON reply line (for scripts).")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for the reply.", valueName: "seconds"))
    var timeout: Int = 10

    @Argument(help: ArgumentHelp("The control socket's path.", valueName: "path"))
    var path: String

    @Argument(help: ArgumentHelp("status | metrics | fault WORKER KIND [ARG] | shutdown | stop", valueName: "command"))
    var words: [String] = []

    /// The request the words ask for, or a usage error.
    static func request(_ words: [String]) -> Result<APIRequest, APIError> {
        guard let command = words.first else {
            return .failure(APIError(.invalidRequest, "no command (status, metrics, fault, shutdown, stop)"))
        }
        let rest = Array(words.dropFirst())
        switch command {
        case "status", "metrics", "shutdown", "stop":
            guard rest.isEmpty else { return .failure(APIError(.invalidArgument, "\(command) takes no arguments")) }
            return .success(command == "status" ? .status : command == "metrics" ? .metrics : command == "stop" ? .stop : .shutdown)
        case "fault":
            guard rest.count == 2 || rest.count == 3 else {
                return .failure(APIError(.invalidArgument, "usage: fault WORKER KIND [ARG]"))
            }
            return .success(.fault(worker: rest[0], kind: rest[1], argument: rest.count == 3 ? rest[2] : nil))
        default:
            return .failure(APIError(.commandNotFound, "unknown command \(command) (status, metrics, fault, shutdown, stop)"))
        }
    }

    func run() throws {
        let request: APIRequest
        switch Self.request(words) {
        case let .success(r): request = r
        case let .failure(e): fail(e.desc, status: StopReason.usageStatus)
        }
        let fd = svm_api_connect(path)
        if fd < 0 { fail("cannot connect to \(path): \(String(cString: strerror(-fd)))", status: 1) }
        defer { close(fd) }
        let line = Array((request.json.encoded + "\n").utf8)
        var off = 0
        while off < line.count {
            let n = line[off...].withUnsafeBytes { svm_api_send(fd, $0.baseAddress, $0.count) }
            if n == -Int(EINTR) { continue }
            if n <= 0 { fail("cannot send to \(path): \(String(cString: strerror(Int32(-n))))", status: 1) }
            off += n
        }
        let reply = readLine(fd: fd)
        if json { print(String(decoding: reply, as: UTF8.self)) }
        let value: JSONValue
        do { value = try JSONParser.parse(reply, limits: .init(maxBytes: Int.max, maxDepth: 64, maxElements: 1 << 20)) } catch {
            fail("bad reply from \(path): \(error)", status: 1)
        }
        if let e = value["error"] {
            fail("\(e["class"]?.stringValue ?? "Error"): \(e["desc"]?.stringValue ?? "")", status: 1)
        }
        guard let result = value["return"] else { fail("bad reply from \(path): neither return nor error", status: 1) }
        if !json { print(Self.describe(request, result), terminator: "") }
    }

    /// One reply line (without its LF), at most 64 MiB, waiting at most `timeout` s.
    func readLine(fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        let deadline = monotonicSeconds() + Double(timeout)
        while true {
            if let nl = out.firstIndex(of: 0x0A) { return Array(out[..<nl]) }
            let left = deadline - monotonicSeconds()
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(max(0, left * 1000)))
            if r < 0 && errno == EINTR { continue }
            if r == 0 { fail("no reply from \(path) within \(timeout) s", status: 1) }
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { fail("cannot read from \(path): \(String(cString: strerror(errno)))", status: 1) }
            if n == 0 { fail("\(path) closed the connection without a reply", status: 1) }
            out += chunk[0..<n]
            if out.count > 64 << 20 { fail("reply from \(path) longer than 64 MiB", status: 1) }
        }
    }

    /// The reply for people.
    static func describe(_ request: APIRequest, _ r: JSONValue) -> String {
        switch request {
        case .status:
            var s = "state: \(r["state"]?.stringValue ?? "?")\n"
            if case let .double(u)? = r["uptime_seconds"] { s += "uptime: \(u) s\n" } else if let u = r["uptime_seconds"]?.intValue {
                s += "uptime: \(u) s\n"
            }
            s += "vCPUs: \(r["vcpus"]?.intValue.map(String.init) ?? "?")\n"
            s += "VM process: pid \(r["pid"]?.intValue.map(String.init) ?? "?")\n"
            s += "fault injection: \(r["fault_injection"]?.boolValue == true ? "allowed" : "off")\n"
            let workers = r["workers"]?.arrayValue ?? []
            if workers.isEmpty { s += "workers: none\n" }
            for w in workers {
                let name = w["name"]?.stringValue ?? "?"
                let pid = w["pid"]?.intValue.map(String.init) ?? "?"
                let state = w["running"]?.boolValue == true ? "running" : "not running"
                s += "worker \(name) (\(w["kind"]?.stringValue ?? "?")): pid \(pid), \(state), "
                    + "restarts \(w["restarts"]?.intValue.map(String.init) ?? "?")"
                if let e = w["last_exit"]?.stringValue { s += ", last exit: \(e)" }
                if let h = w["heartbeat_age_ms"]?.intValue { s += ", heartbeat \(h) ms ago" }
                s += "\n"
            }
            return s
        case .metrics:
            return r["text"]?.stringValue ?? ""
        case let .fault(worker, kind, _):
            let arg = r["arg"]?.intValue.map { " \($0)" } ?? ""
            return "fault \(kind)\(arg) injected into worker \(worker) (pid \(r["pid"]?.intValue.map(String.init) ?? "?"))\n"
        case .shutdown:
            return r["graceful"]?.boolValue == true ? "the guest was asked to shut down\n"
                : "no graceful shutdown path (no shutdown service in the guest): the VM was stopped\n"
        case .stop:
            return "the VM is stopping\n"
        }
    }
}
