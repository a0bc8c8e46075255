// A worker's memory budget (docs/security.md, "Memory budget"): what it may allocate besides the
// shared regions it maps, enforced by RLIMIT_AS, and how its death by running out is told apart
// from any other crash. Pure constants shared by the worker (which reports) and the monitor
// (which sets the limit and names the worker).

public enum MemoryBudget {
    /// A worker's own address space on top of its regions (JailConfig.addressSpaceHeadroom's
    /// default). Measured on the SynIC router with an idle guest and under the memflood guest's
    /// flood: 24 MiB of address space besides its regions (the executable and the libraries it
    /// maps, the 8 MiB main-stack reservation, the heap: under 1 MiB of it resident), and flat
    /// under traffic. 64 MiB is that plus a 40 MiB margin: room for the heap to breathe, small
    /// enough that a leak is caught within seconds (not after the ~1.3 GiB the old 1 GiB
    /// headroom let one guest take from the host).
    public static let defaultHeadroom: UInt64 = 64 << 20

    /// The status a worker exits with when its reporter found the budget used up
    /// (svm_install_memory_budget_reporter); the supervisor reports it as "exceeded its memory
    /// budget". 86: outside the statuses a worker otherwise uses (0, 1) and the 128 + signal range.
    public static let exitStatus: Int32 = 86

    /// When a fatal signal comes with errno other than ENOMEM, the reporter still calls it the
    /// budget when a mapping this large no longer fits under RLIMIT_AS.
    public static let probeBytes = 16 << 20

    /// "64 MiB", "1.3 GiB", "64.1 MiB", "512 KiB": in the largest unit it reaches, whole when
    /// that unit divides it, else to a tenth (for the supervisor's line).
    public static func describe(_ bytes: UInt64) -> String {
        let units: [(shift: UInt64, name: String)] = [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        for u in units where bytes >= 1 << u.shift {
            if bytes % (1 << u.shift) == 0 { return "\(bytes >> u.shift) \(u.name)" }
            let tenths = (bytes / (1 << u.shift)) * 10 + ((bytes % (1 << u.shift)) * 10 + (1 << (u.shift - 1))) / (1 << u.shift)
            return "\(tenths / 10).\(tenths % 10) \(u.name)"
        }
        return "\(bytes) bytes"
    }
}
