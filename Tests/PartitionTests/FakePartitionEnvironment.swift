import HyperV
import Partition
import Synchronization

// Test doubles for the protocols in Sources/Partition/PartitionEnvironment.swift. Shared by every
// PartitionTests file: keep them general (no behaviour specific to one test).

/// Guest RAM as one contiguous [base, base + size) range over a byte array, bounds-checked like
/// the real thing (a hostile GPA gives nil/false). Records every successful write.
final class FakeMemory: PartitionMemory, @unchecked Sendable {
    let base: UInt64
    let size: Int
    private let storage: Mutex<[UInt8]>
    private let log = Mutex<[(gpa: UInt64, count: Int)]>([])

    init(size: Int = 1 << 20, base: UInt64 = 0, fill: UInt8 = 0) {
        self.base = base
        self.size = size
        storage = Mutex([UInt8](repeating: fill, count: size))
    }

    /// The byte offset of [gpa, gpa + length) in `storage`, or nil unless entirely inside.
    private func offset(gpa: UInt64, length: UInt64) -> Int? {
        guard gpa >= base else { return nil }
        let start = gpa - base
        let (end, overflow) = start.addingReportingOverflow(length)
        guard !overflow, end <= UInt64(size) else { return nil }
        return Int(start)
    }

    func contains(gpa: UInt64, length: UInt64) -> Bool { offset(gpa: gpa, length: length) != nil }

    func read(gpa: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0, let o = offset(gpa: gpa, length: UInt64(count)) else { return nil }
        return storage.withLock { Array($0[o..<o + count]) }
    }

    @discardableResult
    func write(gpa: UInt64, bytes: [UInt8]) -> Bool {
        guard let o = offset(gpa: gpa, length: UInt64(bytes.count)) else { return false }
        storage.withLock { $0.replaceSubrange(o..<o + bytes.count, with: bytes) }
        log.withLock { $0.append((gpa, bytes.count)) }
        return true
    }

    // Test helpers: these trap on a bad GPA, because a test that asks for one has a bug.

    /// Every successful `write`, in order.
    var writes: [(gpa: UInt64, count: Int)] { log.withLock { $0 } }

    func bytes(at gpa: UInt64, count: Int) -> [UInt8] { read(gpa: gpa, count: count)! }

    func fill(_ byte: UInt8, at gpa: UInt64, count: Int) {
        precondition(write(gpa: gpa, bytes: [UInt8](repeating: byte, count: count)))
    }

    func load64(at gpa: UInt64) -> UInt64 { loadLE(gpa, 8) }
    func load32(at gpa: UInt64) -> UInt32 { UInt32(loadLE(gpa, 4)) }
    func store64(_ v: UInt64, at gpa: UInt64) { storeLE(v, gpa, 8) }
    func store32(_ v: UInt32, at gpa: UInt64) { storeLE(UInt64(v), gpa, 4) }

    private func loadLE(_ gpa: UInt64, _ n: Int) -> UInt64 {
        bytes(at: gpa, count: n).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    private func storeLE(_ v: UInt64, _ gpa: UInt64, _ n: Int) {
        precondition(write(gpa: gpa, bytes: (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }))
    }
}

/// A guest TSC that moves only when the test says so.
final class FakeClock: PartitionClock, @unchecked Sendable {
    private struct State {
        var tsc: UInt64
        var runtime: [UInt32: UInt64] = [:]
    }
    let tscFrequencyHz: UInt64
    private let state: Mutex<State>

    init(tscFrequencyHz: UInt64 = 2_500_000_000, tsc: UInt64 = 1_000_000_000_000) {
        self.tscFrequencyHz = tscFrequencyHz
        state = Mutex(State(tsc: tsc))
    }

    var tsc: UInt64 {
        get { state.withLock { $0.tsc } }
        set { state.withLock { $0.tsc = newValue } }
    }

    func advance(ticks: UInt64) { state.withLock { $0.tsc &+= ticks } }

    /// Advances by `nanoseconds` of guest time (rounded down to whole ticks).
    func advance(nanoseconds: UInt64) {
        let ticks = nanoseconds.multipliedFullWidth(by: tscFrequencyHz)
        advance(ticks: UInt64(1_000_000_000).dividingFullWidth(ticks).quotient)
    }

    func setRuntime(vp: UInt32, nanoseconds: UInt64) { state.withLock { $0.runtime[vp] = nanoseconds } }

    func guestTSC() -> UInt64 { tsc }

    func vpRuntimeNanoseconds(vp: UInt32) -> UInt64 { state.withLock { $0.runtime[vp] ?? 0 } }
}

/// Records every interrupt sent, in order.
final class FakeInterrupts: PartitionInterrupts, @unchecked Sendable {
    struct Sent: Equatable { var vp: UInt32; var vector: UInt8 }
    private let log = Mutex<[Sent]>([])

    func sendFixedInterrupt(vp: UInt32, vector: UInt8) { log.withLock { $0.append(Sent(vp: vp, vector: vector)) } }

    var sent: [Sent] { log.withLock { $0 } }
}

/// Records every SINT raised and every SINT route change, in order.
final class FakeSynICInterrupts: PartitionSynICInterrupts, @unchecked Sendable {
    struct Raised: Equatable { var vp: UInt32; var sint: Int; var vector: UInt8; var autoEOI: Bool }
    struct Changed: Equatable { var vp: UInt32; var sint: Int; var value: UInt64 }
    private let log = Mutex<(raised: [Raised], changed: [Changed])>(([], []))

    func raiseSINT(vp: UInt32, sint: Int, vector: UInt8, autoEOI: Bool) {
        log.withLock { $0.raised.append(Raised(vp: vp, sint: sint, vector: vector, autoEOI: autoEOI)) }
    }

    func sintChanged(vp: UInt32, sint: Int, value: UInt64) {
        log.withLock { $0.changed.append(Changed(vp: vp, sint: sint, value: value)) }
    }

    var raised: [Raised] { log.withLock { $0.raised } }
    var changed: [Changed] { log.withLock { $0.changed } }
}

/// Records every host-timer request; `armed[vp]` is the one in force.
final class FakeTimers: PartitionTimers, @unchecked Sendable {
    struct Arm: Equatable { var vp: UInt32; var at: UInt64? }
    private let log = Mutex<[Arm]>([])

    func armTimer(vp: UInt32, atReferenceTime referenceTime: UInt64?) {
        log.withLock { $0.append(Arm(vp: vp, at: referenceTime)) }
    }

    var arms: [Arm] { log.withLock { $0 } }
    /// The deadline currently armed for `vp` (nil: none).
    func armed(_ vp: UInt32) -> UInt64? { arms.last { $0.vp == vp }?.at ?? nil }
}

/// Records reset requests and crash notifications, in order.
final class FakeEvents: PartitionEvents, @unchecked Sendable {
    private struct Log {
        var resets: [UInt32] = []
        var crashes: [GuestCrashNotification] = []
    }
    private let log = Mutex(Log())

    func resetRequested(vp: UInt32) { log.withLock { $0.resets.append(vp) } }
    func guestCrashed(_ notification: GuestCrashNotification) { log.withLock { $0.crashes.append(notification) } }

    var resets: [UInt32] { log.withLock { $0.resets } }
    var crashes: [GuestCrashNotification] { log.withLock { $0.crashes } }
}

/// One fake of each, and a partition over them.
struct FakePartitionEnvironment {
    let memory: FakeMemory
    let clock: FakeClock
    let interrupts = FakeInterrupts()
    let events = FakeEvents()
    let sints = FakeSynICInterrupts()
    let timers = FakeTimers()

    init(memorySize: Int = 1 << 20, memoryBase: UInt64 = 0, tscFrequencyHz: UInt64 = 2_500_000_000,
         tsc: UInt64 = 1_000_000_000_000) {
        memory = FakeMemory(size: memorySize, base: memoryBase)
        clock = FakeClock(tscFrequencyHz: tscFrequencyHz, tsc: tsc)
    }

    func makePartition(_ enlightenments: Enlightenments = .default, vpCount: Int = 2,
                       apicFrequencyHz: UInt64 = 1_000_000_000, hypercallPort: UInt8 = 0xE5,
                       synicQueueDepth: Int = 16) -> Partition {
        Partition(configuration: PartitionConfiguration(enlightenments: enlightenments, vpCount: vpCount,
                                                        apicFrequencyHz: apicFrequencyHz,
                                                        hypercallPort: hypercallPort,
                                                        synicQueueDepth: synicQueueDepth),
                  memory: memory, clock: clock, interrupts: interrupts, events: events,
                  synicInterrupts: sints, timers: timers)
    }
}

/// A Linux-style GUEST_OS_ID (0x8100 << 48 | version 6.1.0 << 16).
let linuxGuestOsId: UInt64 = 0x8100_0006_0100_0000
