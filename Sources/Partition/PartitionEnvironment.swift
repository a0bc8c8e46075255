/// What the partition layer needs from the VM around it. The monitor implements these over KVM
/// and guest RAM; unit tests implement them over arrays and counters.

/// Guest-physical memory. Every access is bounds-checked: a hostile GPA gives nil/false, never a trap.
public protocol PartitionMemory: AnyObject, Sendable {
    /// True when [gpa, gpa + length) is entirely guest RAM.
    func contains(gpa: UInt64, length: UInt64) -> Bool
    /// The bytes at [gpa, gpa + count), or nil unless entirely RAM.
    func read(gpa: UInt64, count: Int) -> [UInt8]?
    /// Writes `bytes` at `gpa`; false (and nothing written) unless entirely RAM.
    @discardableResult
    func write(gpa: UInt64, bytes: [UInt8]) -> Bool
}

/// The guest's time base. The guest TSC is the same on every VP (KVM keeps them in step).
public protocol PartitionClock: AnyObject, Sendable {
    /// Guest TSC ticks per second.
    var tscFrequencyHz: UInt64 { get }
    /// The guest TSC now.
    func guestTSC() -> UInt64
    /// Host-side CPU time consumed by VP `vp`, in nanoseconds (for VP_RUNTIME).
    func vpRuntimeNanoseconds(vp: UInt32) -> UInt64
}

/// Interrupt delivery to VPs (VP index == APIC ID in SynthVM).
public protocol PartitionInterrupts: AnyObject, Sendable {
    /// A fixed, edge-triggered interrupt with `vector` to VP `vp`.
    func sendFixedInterrupt(vp: UInt32, vector: UInt8)
}

/// What the guest reported when it wrote CRASH_CTL with CrashNotify.
public struct GuestCrashNotification: Equatable, Sendable {
    /// CRASH_P0...P4 as written.
    public var parameters: [UInt64]
    /// The message the guest pointed at (P3 = GPA, P4 = length) when CrashMessage was set;
    /// nil if not set or unreadable. At most 4096 bytes.
    public var message: [UInt8]?
    /// True when CrashMessage was set but the GPA/length did not name readable guest RAM.
    public var messageUnreadable: Bool
    public var vp: UInt32

    public init(parameters: [UInt64], message: [UInt8]?, messageUnreadable: Bool, vp: UInt32) {
        self.parameters = parameters
        self.message = message
        self.messageUnreadable = messageUnreadable
        self.vp = vp
    }
}

/// VM-level events the partition raises.
public protocol PartitionEvents: AnyObject, Sendable {
    /// The guest wrote the RESET MSR: reset the VM.
    func resetRequested(vp: UInt32)
    /// The guest wrote CRASH_CTL with CrashNotify.
    func guestCrashed(_ notification: GuestCrashNotification)
}
