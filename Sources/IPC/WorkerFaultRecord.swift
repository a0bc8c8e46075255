/// Supervisor -> worker, on the control socket: a fault the operator asked for through the
/// control socket's `fault WORKER KIND [ARG]` (docs/api.md, docs/faults.md), with
/// `synthvm run --allow-fault-injection` only. WorkerRuntime handles it in every worker kind
/// (`kill` needs no record: the supervisor SIGKILLs through the pidfd).
///
/// ```
/// body (8 bytes): 0 u16 kind   2 u16 reserved (0)   4 u32 argument
/// ```
/// kind 1 crash (a SIGSEGV inside the worker; argument 0), 2 hang (stop serving and beating for
/// `argument` seconds, 1...3600), 3 slow (delay each wake-up that has work by `argument` ms,
/// 0...10000; 0 ends it), 4 syscall (a call its policy refuses: socket(AF_INET); argument 0);
/// storage workers only (the worker kind's own handler, `StorageFaultState`): 5 io-error (the
/// next `argument` I/O requests fail as a failed host call would, 1...1000000), 6 torn (the next
/// write writes part of its data, then the worker exits before completing it; argument 0).
/// Kinds 5 and 6 came after version 1's first four: the body's layout is unchanged, and a worker
/// of an older build refuses them as an unknown kind (strict decoding), as it should.
public struct WorkerFault: WireRecord, Equatable {
    public static let recordType = WireRecordType.workerFault
    public static let version: UInt16 = 1
    public static let maxHangSeconds: UInt32 = 3600
    public static let maxSlowMilliseconds: UInt32 = 10000
    public static let maxIOErrors: UInt32 = 1_000_000

    public enum Kind: UInt16, Sendable, CaseIterable {
        case crash = 1
        case hang = 2
        case slow = 3
        case syscall = 4
        case ioError = 5
        case torn = 6

        /// The control socket's name for it.
        public var name: String {
            switch self {
            case .crash: return "crash"
            case .hang: return "hang"
            case .slow: return "slow"
            case .syscall: return "syscall"
            case .ioError: return "io-error"
            case .torn: return "torn"
            }
        }

        /// The kind with the control socket's name `name` (kill has no record: nil).
        public init?(name: String) {
            guard let k = Self.allCases.first(where: { $0.name == name }) else { return nil }
            self = k
        }

        /// The argument's valid range (crash, syscall and torn take none: 0).
        public var argumentRange: ClosedRange<UInt32> {
            switch self {
            case .crash, .syscall, .torn: return 0...0
            case .hang: return 1...WorkerFault.maxHangSeconds
            case .slow: return 0...WorkerFault.maxSlowMilliseconds
            case .ioError: return 1...WorkerFault.maxIOErrors
            }
        }

        /// Kinds only a storage worker serves (its disks' requests).
        public var storageOnly: Bool { self == .ioError || self == .torn }
    }

    public var kind: Kind
    public var argument: UInt32

    public init(kind: Kind, argument: UInt32 = 0) {
        self.kind = kind
        self.argument = argument
    }

    public func encodeBody(into w: inout WireWriter) {
        w.u16(kind.rawValue)
        w.u16(0)
        w.u32(argument)
    }

    public static func decodeBody(_ r: inout WireReader) throws(WireError) -> WorkerFault {
        let raw = try r.u16()
        try r.reserved16()
        let argument = try r.u32()
        guard let kind = Kind(rawValue: raw) else { throw .invalidField(type: recordType.rawValue, field: "fault kind", value: UInt64(raw)) }
        guard kind.argumentRange.contains(argument) else {
            throw .invalidField(type: recordType.rawValue, field: "\(kind.name) argument", value: UInt64(argument))
        }
        return WorkerFault(kind: kind, argument: argument)
    }
}

/// The liveness word (docs/faults.md, "Liveness"): the supervisor owns one sealed memfd with a
/// page per worker and hands each worker only its own page, as region `regionID` in its
/// `RegionLayout`. The worker adds 1 to the u64 at offset 0 each time round its serve loop,
/// whose poll() never sleeps longer than `intervalMilliseconds`, so an idle worker still
/// beats; the supervisor kills one whose word has not moved for `--worker-hang-timeout`.
public enum WorkerHeartbeat {
    public static let regionID: UInt32 = 8
    public static let slotSize = 4096
    public static let intervalMilliseconds: Int32 = 100
}
