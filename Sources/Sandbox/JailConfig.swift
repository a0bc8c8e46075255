// The jail every worker runs in (docs/security.md): what the operator can set, and the two things
// derived from it when a worker starts, the ids the monitor maps (`JailIDs`) and the limits the
// worker applies to itself (`JailLimits`). Pure: no I/O here.

/// A configuration the jail cannot be built from. One line, for the operator.
public struct JailError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// How workers are jailed. `MachineConfig.jail` holds one (nil only with `synthvm run --no-jail`).
public struct JailConfig: Sendable, Equatable {
    /// The uid and gid a worker runs as inside its user namespace. Never 0: root inside the
    /// namespace is what the jail takes away.
    public var uid: UInt32 = 1000
    public var gid: UInt32 = 1000
    /// What `uid`/`gid` are on the host: the owner the kernel sees for everything the worker
    /// does. nil: `defaultHostID` when the monitor runs as root; otherwise the monitor's own
    /// euid/egid, the only mapping an unprivileged process may write.
    public var hostUID: UInt32?
    public var hostGID: UInt32?
    /// RLIMIT_NOFILE: one more than the highest fd number the worker may hold. Its stdio, its
    /// control socket and the fds it is handed (at most `RegionLayout.maxEntries` regions per
    /// message) must fit; an fd passed beyond it is dropped by the kernel, which the worker's
    /// receive reports as a truncated message.
    public var openFiles: UInt64 = 128
    /// RLIMIT_NPROC: threads and processes of the worker's uid in its user namespace, which is
    /// the worker alone (a user namespace per worker).
    public var processes: UInt64 = 16
    /// RLIMIT_FSIZE (0: the worker writes no regular file). The storage worker's: its largest disk.
    public var fileSize: UInt64 = 0
    /// RLIMIT_AS is the sum of the regions the worker is handed plus this; nil: no RLIMIT_AS.
    /// Mapping guest RAM takes address space, not memory, so the limit follows the regions;
    /// the headroom is the worker's own memory budget (`MemoryBudget`: what it needs plus a
    /// margin). A guest that makes a worker allocate hits it, and the worker is then reported by
    /// name as having exceeded its memory budget.
    public var addressSpaceHeadroom: UInt64? = MemoryBudget.defaultHeadroom

    /// The default host uid and gid of jailed workers when the monitor runs as root: 0x7FFF0000,
    /// above the ranges distributions hand to users (up to 60000), systemd's dynamic users
    /// (61184-65519) and container id ranges (524288-1879048191 for systemd-nspawn), below 2^31
    /// (tools that print ids as signed ints), and owning no file on a usual host. Every worker
    /// of every VM shares it: their namespaces keep them apart (docs/security.md). Set
    /// `hostUID`/`hostGID` to give each VM its own.
    public static let defaultHostID: UInt32 = 0x7FFF_0000

    public init() {}

    /// The operator's settings, checked before any worker exists.
    public func validate() throws(JailError) {
        guard uid != 0, gid != 0 else {
            throw JailError("jail: uid/gid \(uid)/\(gid): a worker must not be root (0) inside its user namespace")
        }
        guard uid != UInt32.max, gid != UInt32.max else { throw JailError("jail: uid/gid 4294967295 is not an id") }
        guard (JailLimits.minimumOpenFiles...JailLimits.maximumOpenFiles).contains(openFiles) else {
            throw JailError("jail: open files \(openFiles) outside \(JailLimits.minimumOpenFiles)...\(JailLimits.maximumOpenFiles)")
        }
        guard processes >= 1 else { throw JailError("jail: processes must be at least 1") }
    }

    /// The ids to map for a monitor running with euid `monitorUID` and egid `monitorGID`.
    public func ids(monitorUID: UInt32, monitorGID: UInt32) -> JailIDs {
        let root = monitorUID == 0
        return JailIDs(uid: uid, gid: gid,
                       hostUID: hostUID ?? (root ? Self.defaultHostID : monitorUID),
                       hostGID: hostGID ?? (root ? Self.defaultHostID : monitorGID),
                       denySetgroups: !root)
    }

    /// The limits a worker that will be handed `regionBytes` of shared regions applies.
    public func limits(regionBytes: UInt64) -> JailLimits {
        let space = addressSpaceHeadroom.map { h in
            let (sum, overflow) = h.addingReportingOverflow(regionBytes)
            return overflow ? UInt64.max : sum
        }
        return JailLimits(openFiles: openFiles, processes: processes, addressSpace: space, fileSize: fileSize)
    }
}

/// The ids a jailed worker gets: `uid`/`gid` inside its user namespace, one-to-one onto
/// `hostUID`/`hostGID` outside (the uid_map and gid_map the monitor writes).
public struct JailIDs: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var hostUID: UInt32
    public var hostGID: UInt32
    /// "deny" in /proc/<pid>/setgroups: needed when the monitor is unprivileged; the worker then
    /// keeps the monitor's supplementary groups (it cannot drop them). Otherwise the worker
    /// drops every supplementary group before it execs.
    public var denySetgroups: Bool

    public init(uid: UInt32, gid: UInt32, hostUID: UInt32, hostGID: UInt32, denySetgroups: Bool) {
        self.uid = uid
        self.gid = gid
        self.hostUID = hostUID
        self.hostGID = hostGID
        self.denySetgroups = denySetgroups
    }

    /// The uid_map / gid_map lines, as written to /proc/<pid>/.
    public var uidMap: String { "\(uid) \(hostUID) 1" }
    public var gidMap: String { "\(gid) \(hostGID) 1" }
}
