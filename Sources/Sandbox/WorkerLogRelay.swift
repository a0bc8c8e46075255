/// What the monitor makes of the bytes a worker writes to its stdout/stderr (a pipe the monitor
/// reads: docs/security.md, "Worker output"). Pure: bytes and the time in, finished lines out;
/// the supervisor does the reading and writing.
///
/// A worker is assumed compromised, so its output is treated like any other hostile input:
/// - every line is written as `synthvm: worker <name> (pid N): <line>`. Lines of the monitor's
///   own about a worker never have ": " right after the pid (`... (pid N) exited with status 1`,
///   `... (pid N) exceeded its output budget: ...`), so none can be forged;
/// - printable ASCII (0x20...0x7e) is kept except the backslash; every other byte (controls
///   including ESC, CR and TAB, DEL, anything non-ASCII, and `\` itself) becomes `\xNN`, so a
///   worker cannot move the cursor, clear the screen, overwrite the line with CR or end it
///   early, and the encoding stays unambiguous (a literal `\x1b` in the output is always the
///   escaped byte). Only LF ends a line; UTF-8 is escaped byte by byte, so a sequence split across
///   reads comes out the same as an unsplit one;
/// - a line longer than `maxLineLength` (after escaping) is split: the piece ends in ` [...]`
///   and the rest continues on a new prefixed line that starts with `[...] `;
/// - a partial last line is flushed by `finish` (end of file: the worker closed its end or died);
/// - bytes are admitted from a bucket of `burstBytes` that refills at `bytesPerSecond`. What does
///   not fit is dropped uncounted in cost (no escaping, no writing); dropping goes on until the
///   bucket holds `resumeBytes` again, and then one monitor line says how many bytes were lost.
///   A worker that floods costs the monitor a read per pipe-full, nothing more.
public struct WorkerLogRelay: Sendable {
    public struct Budget: Sendable, Equatable {
        public var burstBytes: UInt64
        public var bytesPerSecond: UInt64
        /// Dropping stops once the bucket has refilled to this (hysteresis: a steady flood gives
        /// a notice every resumeBytes/bytesPerSecond seconds, not one per read).
        public var resumeBytes: UInt64
        public init(burstBytes: UInt64, bytesPerSecond: UInt64, resumeBytes: UInt64) {
            // Bounded so the refill arithmetic cannot overflow.
            self.burstBytes = min(max(1, burstBytes), 1 << 32)
            self.bytesPerSecond = min(max(1, bytesPerSecond), 1 << 32)
            self.resumeBytes = min(max(1, resumeBytes), self.burstBytes)
        }

        /// 16 KiB at once, 4 KiB/s after that: far above what a worker's diagnostics need (the
        /// jail probes, the longest, are ~1.5 KiB), small enough that a flood is a few lines a second.
        public static let standard = Budget(burstBytes: 16384, bytesPerSecond: 4096, resumeBytes: 4096)
    }

    /// The longest line body written (escaped bytes, without the prefix and the markers).
    public static let defaultMaxLineLength = 1024
    public static let cutMarker = " [...]"
    public static let continuationMarker = "[...] "

    /// `synthvm: worker <name> (pid N)`: every line this relay writes starts with it.
    public let label: String
    public let maxLineLength: Int
    public let budget: Budget

    private var line: [UInt8] = []
    private var lineIsContinuation = false
    private var tokens: UInt64
    private var lastRefill: UInt64?
    private var dropping = false
    private var dropped: UInt64 = 0
    public private(set) var finished = false

    /// `name` and `pid` are the monitor's (never the worker's word). `name` is escaped like
    /// worker bytes, so even an odd configured name cannot break the line.
    public init(name: String, pid: Int32, maxLineLength: Int = WorkerLogRelay.defaultMaxLineLength,
                budget: Budget = .standard) {
        var n: [UInt8] = []
        for b in name.utf8 { Self.escape(b, into: &n) }
        label = "synthvm: worker \(String(decoding: n, as: UTF8.self)) (pid \(pid))"
        self.maxLineLength = max(16, maxLineLength)
        self.budget = budget
        tokens = budget.burstBytes
    }

    /// Whether `b` is written as itself: printable ASCII other than `\`.
    static func isKept(_ b: UInt8) -> Bool { b >= 0x20 && b <= 0x7e && b != UInt8(ascii: "\\") }

    /// Appends `b` as the relay writes it: itself if `isKept`, else `\xNN`.
    public static func escape(_ b: UInt8, into out: inout [UInt8]) {
        if isKept(b) {
            out.append(b)
        } else {
            let hex = Array("0123456789abcdef".utf8)
            out += [UInt8(ascii: "\\"), UInt8(ascii: "x"), hex[Int(b >> 4)], hex[Int(b & 15)]]
        }
    }

    /// The escaped form of `bytes` (tests and messages).
    public static func sanitise<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var out: [UInt8] = []
        for b in bytes { escape(b, into: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Bytes the worker wrote, read at monotonic time `now` (ns): the complete lines they finish,
    /// each ending in "\n", ready to write.
    public mutating func feed<C: Collection>(_ bytes: C, now: UInt64) -> [String] where C.Element == UInt8 {
        guard !finished else { return [] }
        var out: [String] = []
        refill(now: now, into: &out)
        var rest = bytes[...]
        while !rest.isEmpty {
            if dropping {
                // Everything until the bucket has refilled is lost; the line it interrupted ends here.
                dropped &+= UInt64(rest.count)
                if !line.isEmpty { emit(cut: true, into: &out) }
                lineIsContinuation = true
                break
            }
            let admitted = Int(min(UInt64(rest.count), tokens))
            tokens -= UInt64(admitted)
            for b in rest.prefix(admitted) { take(b, into: &out) }
            rest = rest.dropFirst(admitted)
            if !rest.isEmpty { dropping = true }
        }
        return out
    }

    /// Time passing without output: the drop notice, once the bucket has refilled.
    public mutating func tick(now: UInt64) -> [String] {
        guard !finished else { return [] }
        var out: [String] = []
        refill(now: now, into: &out)
        return out
    }

    /// When `tick` would have something to say (ns, monotonic), if ever: the supervisor's poll
    /// timeout while this relay is dropping.
    public func nextDeadline() -> UInt64? {
        guard dropping, !finished, let t = lastRefill else { return nil }
        let missing = budget.resumeBytes > tokens ? budget.resumeBytes - tokens : 0
        return t &+ (missing * 1_000_000_000 + budget.bytesPerSecond - 1) / budget.bytesPerSecond
    }

    /// End of file: the partial last line (as if it had ended in LF) and any drop notice. Later bytes are ignored.
    public mutating func finish() -> [String] {
        guard !finished else { return [] }
        var out: [String] = []
        if !line.isEmpty { emit(cut: false, into: &out) }
        if dropped > 0 { out.append(dropNotice()) }
        dropped = 0
        dropping = false
        finished = true
        return out
    }

    private mutating func refill(now: UInt64, into out: inout [String]) {
        guard let last = lastRefill else {
            lastRefill = now
            return
        }
        guard now > last else { return }
        // Whole bytes only; the remainder of the interval is kept for the next refill.
        let product = (now - last).multipliedFullWidth(by: budget.bytesPerSecond)
        let earned = product.high >= 1_000_000_000 ? UInt64.max
            : UInt64(1_000_000_000).dividingFullWidth(product).quotient
        guard earned > 0 else { return }
        tokens = earned >= budget.burstBytes - tokens ? budget.burstBytes : tokens + earned
        lastRefill = tokens == budget.burstBytes ? now : last + earned * 1_000_000_000 / budget.bytesPerSecond
        if dropping && tokens >= budget.resumeBytes {
            dropping = false
            if dropped > 0 { out.append(dropNotice()) }
            dropped = 0
        }
    }

    private func dropNotice() -> String {
        "\(label) exceeded its output budget (\(budget.bytesPerSecond) bytes/s): \(dropped) bytes of output dropped\n"
    }

    private mutating func take(_ b: UInt8, into out: inout [String]) {
        if b == UInt8(ascii: "\n") {
            emit(cut: false, into: &out)
            return
        }
        let width = Self.isKept(b) ? 1 : 4
        let room = maxLineLength - (lineIsContinuation ? Self.continuationMarker.utf8.count : 0)
        if line.count + width > room {
            emit(cut: true, into: &out)
            lineIsContinuation = true
        }
        Self.escape(b, into: &line)
    }

    private mutating func emit(cut: Bool, into out: inout [String]) {
        let body = String(decoding: line, as: UTF8.self)
        out.append("\(label): \(lineIsContinuation ? Self.continuationMarker : "")\(body)\(cut ? Self.cutMarker : "")\n")
        line.removeAll(keepingCapacity: true)
        lineIsContinuation = false
    }
}
