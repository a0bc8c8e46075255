// /proc/<pid>/status, parsed: what the jail checks read (capabilities, no_new_privs, seccomp
// mode, ids, NSpid). Parsing is pure; `read` is the one I/O call (procfs files report size 0, so
// they are read to end-of-file, not by their stat size).
import Glibc

public struct ProcStatus: Sendable, Equatable {
    /// Every `Key:\tvalue` line, value with surrounding blanks trimmed.
    public var fields: [String: String]

    public init(parsing text: String) {
        var f: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingBlanks()
            f[key] = value
        }
        fields = f
    }

    /// A hex capability mask (CapInh, CapPrm, CapEff, CapBnd, CapAmb).
    public func capabilities(_ key: String) -> UInt64? { fields[key].flatMap { UInt64($0, radix: 16) } }
    /// A decimal field (NoNewPrivs, Seccomp).
    public func number(_ key: String) -> Int? { fields[key].flatMap { Int($0) } }
    /// A whitespace-separated list of decimal numbers (Uid, Gid, Groups, NSpid); nil if absent
    /// or not all numbers.
    public func numbers(_ key: String) -> [UInt32]? {
        guard let v = fields[key] else { return nil }
        var out: [UInt32] = []
        for item in v.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            guard let n = UInt32(item) else { return nil }
            out.append(n)
        }
        return out
    }

    public static let capabilityKeys = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]

    /// Reads `/proc/<pid>/status` (or a thread's: `/proc/<pid>/task/<tid>/status`).
    public static func read(path: String) -> ProcStatus? {
        readProcFile(path).map { ProcStatus(parsing: $0) }
    }
}

/// A whole procfs file as text, or nil.
public func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 && errno == EINTR { continue }
        if n < 0 { return nil }
        if n == 0 { break }
        bytes += buf[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

extension Substring {
    func trimmingBlanks() -> String {
        var s = self[...]
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return String(s)
    }
}
