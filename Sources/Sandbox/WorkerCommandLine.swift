// A worker's command line, which only the monitor writes (the guest never sees it):
//
//   --jail nofile=N,nproc=N[,as=N]   enter the jail with these limits (JailLimits), or
//   --no-jail                        run unjailed (the operator's `synthvm run --no-jail`);
//                                    exactly one of the two, so a worker never guesses.
//   --test-forbidden-syscall         tests: call socket(2) once the seccomp filter is installed
//   --test-crash-after-ms N          tests: once attached, crash by a real fault (SIGSEGV) after
//                                    N ms (a jailed worker is pid 1 of its PID namespace, which
//                                    ignores a SIGSEGV sent from outside)
//   --test-print HEX                 tests: once attached, write these bytes (hex, two digits each)
//                                    to stderr as they are: forged monitor lines, escapes, no
//                                    final newline (the monitor's relay must neutralise them)
//   --test-exhaust-memory            tests: once attached, allocate (and touch) 1 MiB blocks until
//                                    the worker's memory budget (RLIMIT_AS) is used up
//   --test-jail-probes PID:PORT:NAME tests: right after entering the jail, before the filter, try
//                                    to reach the host (JailProbes) and report on stderr
//   --bench-wake-mailbox 0xGPA       synthvm-bench: the SynIC router records its wake-up times in
//                                    a mailbox at that guest-physical address
//   --test-echo-device               tests and synthvm-bench vmbus: the VMBus worker also offers
//                                    its echo device (VMBusEchoDevice), after the standard ones;
//                                    the monitor publishes one more relid's event connection
//   --bench-storage-pool-only        synthvm-bench storage: the storage worker sends every read
//                                    and write to its I/O threads (no RWF_NOWAIT attempt first)

public struct WorkerCommandLine: Sendable, Equatable {
    /// nil: `--no-jail`.
    public var jail: JailLimits?
    public var testForbiddenSyscall = false
    public var testCrashAfterMilliseconds: UInt32?
    public var testPrint: [UInt8]?
    public var testExhaustMemory = false
    public var jailProbes: JailProbes.Targets?
    public var benchWakeMailbox: UInt64?
    public var testEchoDevice = false
    public var benchStoragePoolOnly = false
    public static let benchStoragePoolOnlyArgument = "--bench-storage-pool-only"
    /// The argument that asks for the echo device (the monitor checks for it too).
    public static let testEchoDeviceArgument = "--test-echo-device"

    public init(jail: JailLimits?) { self.jail = jail }

    /// Parses the arguments after argv[0]. Unknown arguments, repeats, a missing or doubled
    /// jail choice and bad values are errors.
    public static func parse(_ arguments: [String]) throws(JailError) -> WorkerCommandLine {
        var jail: JailLimits?? = nil
        var forbidden = false
        var crash: UInt32?
        var print: [UInt8]?
        var exhaust = false
        var probes: JailProbes.Targets?
        var mailbox: UInt64?
        var echo = false
        var poolOnly = false
        var rest = arguments[...]
        while let a = rest.popFirst() {
            switch a {
            case "--jail", "--no-jail":
                guard jail == nil else { throw JailError("--jail/--no-jail given twice") }
                if a == "--no-jail" {
                    jail = .some(nil)
                } else {
                    guard let v = rest.popFirst() else { throw JailError("--jail needs a value") }
                    jail = .some(try JailLimits(argument: v))
                }
            case "--test-forbidden-syscall":
                guard !forbidden else { throw JailError("\(a) given twice") }
                forbidden = true
            case "--test-crash-after-ms":
                guard crash == nil else { throw JailError("\(a) given twice") }
                guard let v = rest.popFirst(), let ms = UInt32(v) else { throw JailError("\(a) needs a number of milliseconds") }
                crash = ms
            case "--test-print":
                guard print == nil else { throw JailError("\(a) given twice") }
                guard let v = rest.popFirst(), let bytes = Self.hexBytes(v) else {
                    throw JailError("\(a) needs hexadecimal bytes (two digits each)")
                }
                print = bytes
            case "--test-exhaust-memory":
                guard !exhaust else { throw JailError("\(a) given twice") }
                exhaust = true
            case "--test-jail-probes":
                guard probes == nil else { throw JailError("\(a) given twice") }
                guard let v = rest.popFirst() else { throw JailError("\(a) needs a value") }
                probes = try JailProbes.Targets(argument: v)
            case "--bench-wake-mailbox":
                guard mailbox == nil else { throw JailError("\(a) given twice") }
                guard let v = rest.popFirst(), v.hasPrefix("0x"), let gpa = UInt64(v.dropFirst(2), radix: 16) else {
                    throw JailError("\(a) needs a hexadecimal guest-physical address (0x...)")
                }
                mailbox = gpa
            case Self.testEchoDeviceArgument:
                guard !echo else { throw JailError("\(a) given twice") }
                echo = true
            case Self.benchStoragePoolOnlyArgument:
                guard !poolOnly else { throw JailError("\(a) given twice") }
                poolOnly = true
            default:
                throw JailError("unknown argument \(a)")
            }
        }
        guard let choice = jail else { throw JailError("neither --jail nor --no-jail given") }
        if probes != nil && choice == nil { throw JailError("--test-jail-probes needs --jail") }
        var c = WorkerCommandLine(jail: choice)
        c.testForbiddenSyscall = forbidden
        c.testCrashAfterMilliseconds = crash
        c.testPrint = print
        c.testExhaustMemory = exhaust
        c.jailProbes = probes
        c.benchWakeMailbox = mailbox
        c.testEchoDevice = echo
        c.benchStoragePoolOnly = poolOnly
        return c
    }

    /// "48690a" -> [0x48, 0x69, 0x0a]; nil unless an even number of hex digits.
    public static func hexBytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        // Hex digits only (Int parsing would also take a sign).
        let hexDigits = Set("0123456789abcdefABCDEF".utf8)
        guard digits.count % 2 == 0, digits.allSatisfy(hexDigits.contains) else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let b = UInt8(String(decoding: digits[i..<(i + 2)], as: UTF8.self), radix: 16) else { return nil }
            out.append(b)
        }
        return out
    }

    /// The inverse of `hexBytes` (the monitor's side, tests).
    public static func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
    }

    /// The jail choice as arguments (the monitor's side).
    public static func jailArguments(_ limits: JailLimits?) -> [String] {
        limits.map { ["--jail", $0.argument] } ?? ["--no-jail"]
    }
}
