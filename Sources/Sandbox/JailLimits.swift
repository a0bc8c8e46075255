// The resource limits a jailed worker sets on itself (Jail.enter), and their spelling on its
// command line: `--jail nofile=128,nproc=16,as=1342177280[,fsize=N]` (`as` absent: no RLIMIT_AS;
// `fsize` absent: RLIMIT_FSIZE 0). The
// monitor writes it; the worker parses it strictly, so a mistyped limit stops the worker instead
// of leaving it unlimited.

public struct JailLimits: Sendable, Equatable {
    /// RLIMIT_NOFILE.
    public var openFiles: UInt64
    /// RLIMIT_NPROC.
    public var processes: UInt64
    /// RLIMIT_AS, in bytes; nil leaves it as inherited.
    public var addressSpace: UInt64?
    /// RLIMIT_FSIZE, in bytes: 0 (no write to a regular file) except for the storage worker,
    /// whose disk images are files it writes inside their size (`fsize`, the largest disk).
    public var fileSize: UInt64 = 0

    /// stdio and the control socket need 0...3.
    public static let minimumOpenFiles: UInt64 = 4
    public static let maximumOpenFiles: UInt64 = 1 << 20

    public init(openFiles: UInt64, processes: UInt64, addressSpace: UInt64?, fileSize: UInt64 = 0) {
        self.openFiles = openFiles
        self.processes = processes
        self.addressSpace = addressSpace
        self.fileSize = fileSize
    }

    /// The command-line spelling.
    public var argument: String {
        var s = "nofile=\(openFiles),nproc=\(processes)"
        if let a = addressSpace { s += ",as=\(a)" }
        if fileSize > 0 { s += ",fsize=\(fileSize)" }
        return s
    }

    /// Parses `argument`: `nofile` and `nproc` required, `as` optional, each once, decimal.
    public init(argument: String) throws(JailError) {
        var seen: [String: UInt64] = [:]
        for item in argument.split(separator: ",", omittingEmptySubsequences: false) {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2 else { throw JailError("--jail \(argument): expected key=value, got \"\(item)\"") }
            let key = String(kv[0])
            guard ["nofile", "nproc", "as", "fsize"].contains(key) else { throw JailError("--jail \(argument): unknown limit \(key)") }
            guard seen[key] == nil else { throw JailError("--jail \(argument): \(key) given twice") }
            guard !kv[1].isEmpty, kv[1].allSatisfy({ $0.isASCII && $0.isNumber }), let v = UInt64(kv[1]) else {
                throw JailError("--jail \(argument): \(key) \"\(kv[1])\" is not a decimal number")
            }
            seen[key] = v
        }
        guard let nofile = seen["nofile"], let nproc = seen["nproc"] else {
            throw JailError("--jail \(argument): nofile and nproc are required")
        }
        guard (Self.minimumOpenFiles...Self.maximumOpenFiles).contains(nofile) else {
            throw JailError("--jail \(argument): nofile outside \(Self.minimumOpenFiles)...\(Self.maximumOpenFiles)")
        }
        guard nproc >= 1 else { throw JailError("--jail \(argument): nproc must be at least 1") }
        self.init(openFiles: nofile, processes: nproc, addressSpace: seen["as"], fileSize: seen["fsize"] ?? 0)
    }
}
