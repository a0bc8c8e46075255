// The control socket's request path (docs/api.md): bytes as a client sends them, cut into reads
// of 1-64 bytes (the first input byte), framed by the server's `LineFramer` (64 KiB lines), each
// line parsed and answered by `APIHandler.reply` against a backend that allows faults; and the
// whole input through `JSONParser.parse` on its own.
//
// Checked: every reply is one line of JSON, an object with exactly one of "return" and "error"
// (with a known class); a framer never holds more than its limit; any input that parses encodes
// to text that parses again and re-encodes to the same text.
import ControlAPI
import Synchronization

final class Backend: APIBackend {
    let faultInjectionAllowed = true
    func status() -> APIStatus {
        APIStatus(state: "running", uptimeSeconds: 1, vcpus: 1, pid: 1, faultInjection: true,
                  workers: [APIWorkerStatus(name: "synic-router", kind: "synic-router", pid: 2, running: true)])
    }
    func metricsText() -> String { "a 1\n" }
    func killWorker(_ name: String) -> Result<Int32, APIError> {
        name == "synic-router" ? .success(2) : .failure(APIError(.workerNotFound, "no \(name)"))
    }
    func shutdown() -> APIShutdownResult { .hardStop }
    func stop() -> Bool { true }
    func log(_ line: String) {}
}

let backend = Backend()
let classes = Set(APIErrorClass.allCases.map(\.rawValue))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAPIJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let chunk = Int(bytes[0] & 63) + 1
    var framer = LineFramer(maxLine: APIProtocol.maxLineBytes)
    var i = 1
    while i < bytes.count {
        let end = min(bytes.count, i + chunk)
        for line in framer.feed(bytes[i..<end]) {
            let reply = APIHandler.reply(to: line, peer: APIPeer(pid: 1, uid: 0, gid: 0), backend: backend)
            precondition(!reply.utf8.contains(0x0A), "a reply spans lines")
            guard let v = try? JSONParser.parse(reply), let members = v.objectValue else {
                preconditionFailure("a reply is not a JSON object: \(reply)")
            }
            let keys = Set(members.map(\.0))
            precondition(keys.subtracting(["id"]) == ["return"] || keys.subtracting(["id"]) == ["error"], "reply \(reply)")
            if let e = v["error"] {
                precondition(e["class"]?.stringValue.map(classes.contains) == true, "unknown error class: \(reply)")
            }
        }
        precondition(framer.pending <= APIProtocol.maxLineBytes, "the framer holds more than a line")
        i = end
    }
    if let v = try? JSONParser.parse(Array(bytes.dropFirst())) {
        let text = v.encoded
        guard let again = try? JSONParser.parse(text) else { preconditionFailure("own encoding does not parse: \(text)") }
        precondition(again.encoded == text, "encoding is not stable: \(text)")
    }
    return 0
}
