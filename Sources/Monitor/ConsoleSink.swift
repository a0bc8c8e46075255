import Glibc
import Synchronization

/// Where the guest's serial output goes: stdout, a file, nowhere, or a buffer (tests).
/// Shared by every vCPU thread; bytes are line-buffered and flushed on newline, at 256 bytes
/// and when the VM stops, so concurrent vCPUs do not interleave inside a line.
public final class ConsoleSink: Sendable {
    public enum Target: Sendable, Equatable {
        case stdout
        case file(String)
        case none
        case capture
    }

    private struct State {
        var pending: [UInt8] = []
        var captured: [UInt8] = []
        var total = 0
    }

    public let target: Target
    private let fd: Int32
    private let state = Mutex(State())

    public init(_ target: Target) throws(MonitorError) {
        self.target = target
        switch target {
        case .stdout: fd = 1
        case .none, .capture: fd = -1
        case let .file(path):
            let f = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if f < 0 { throw .config("cannot open serial output file \(path): \(String(cString: strerror(errno)))") }
            fd = f
        }
    }

    deinit {
        if case .file = target { close(fd) }
    }

    public func write(_ byte: UInt8) {
        let flushNow: [UInt8]? = state.withLock { s in
            s.total += 1
            if target == .capture { s.captured.append(byte) }
            guard fd >= 0 else { return nil }
            s.pending.append(byte)
            if byte == 0x0A || s.pending.count >= 256 {
                defer { s.pending.removeAll(keepingCapacity: true) }
                return s.pending
            }
            return nil
        }
        if let bytes = flushNow { writeAll(bytes, fd: fd) }
    }

    public func flush() {
        let bytes = state.withLock { s -> [UInt8] in
            defer { s.pending.removeAll() }
            return s.pending
        }
        if !bytes.isEmpty { writeAll(bytes, fd: fd) }
    }

    /// Everything the guest wrote, for `.capture`.
    public var captured: String {
        state.withLock { String(decoding: $0.captured, as: UTF8.self) }
    }

    public var bytesWritten: Int { state.withLock { $0.total } }
}
