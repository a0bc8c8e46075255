import IPC
import Storage

/// The storage worker's operator faults (docs/faults.md, "Fault injection"): `io-error N` and
/// `torn`, armed by a `WorkerFault` record from the supervisor and consulted by the ring thread
/// for each SRB that reaches the disk (`SCSIDisk.IO`: read, write, flush, unmap, write same).
/// Pure: the service acts on the verdict.
///
/// - `io-error N`: the next N operations are not performed; each completes as a failed host call
///   does (`SCSIDisk.complete(_:result: .ioError)`: CHECK CONDITION, MEDIUM ERROR, UNRECOVERED
///   READ ERROR 11/00 for a read, WRITE ERROR 0C/00 for the rest). A later `io-error M` replaces
///   what is left.
/// - `torn`: the next write (WRITE of any CDB size; not WRITE SAME, flush or unmap) writes only
///   its first part (`tornBytes`) and the worker exits before completing it, as a host crash in
///   the middle of the write would leave it. Its in-flight entry is `taken`, so the successor
///   redoes the whole write and completes it once.
///
/// Both persist only in the process they were sent to: a successor starts with nothing armed.
/// io-error is consulted first (a request it fails is not torn).
public struct StorageFaultState: Equatable, Sendable {
    /// Operations still to fail.
    public private(set) var ioErrorsLeft: UInt32 = 0
    /// The next write is torn.
    public private(set) var tornArmed = false

    /// The exit status of a worker that tore a write on purpose (the supervisor's line says
    /// "exited with status 75"; EX_TEMPFAIL).
    public static let tornExitStatus: Int32 = 75

    public init() {}

    public enum Verdict: Equatable, Sendable {
        /// Do the operation.
        case perform
        /// Complete it as a failed host call (MEDIUM ERROR).
        case fail
        /// Write the first `bytes` bytes of the write's data, then die.
        case tear(bytes: Int)
    }

    /// Takes an operator's fault; the line the worker says about it, or nil for a kind this
    /// state does not handle (WorkerRuntime's own kinds).
    public mutating func arm(_ fault: WorkerFault) -> String? {
        switch fault.kind {
        case .ioError:
            ioErrorsLeft = fault.argument
            return "fault injection: the next \(fault.argument) I/O request(s) fail (MEDIUM ERROR)"
        case .torn:
            tornArmed = true
            return "fault injection: the next write is torn (part of it written, then this worker exits)"
        default:
            return nil
        }
    }

    /// Nothing armed: the common case, one branch.
    @inline(__always) public var isIdle: Bool { ioErrorsLeft == 0 && !tornArmed }

    /// What to do with the next operation (and the fault it used up).
    public mutating func verdict(for io: SCSIDisk.IO) -> Verdict {
        if ioErrorsLeft > 0 {
            ioErrorsLeft -= 1
            return .fail
        }
        if tornArmed, case .write(_, let blocks, _) = io {
            tornArmed = false
            return .tear(bytes: Self.tornBytes(blocks: blocks))
        }
        return .perform
    }

    /// The part of a write of `blocks` 512-byte blocks a torn write leaves on the disk: its first
    /// half in whole blocks, and the first half of the block when there is only one.
    public static func tornBytes(blocks: UInt32) -> Int {
        let block = SCSIDisk.Configuration.logicalBlockSize
        return blocks >= 2 ? Int(blocks / 2) * block : block / 2
    }
}
