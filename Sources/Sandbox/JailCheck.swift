// Judging, from the outside, whether a worker is jailed: the monitor does not take a worker's
// word for it. Before it hands a worker any region it reads /proc/<pid>/status and the
// /proc/<pid>/ns links and refuses the worker (and the VM) on any problem listed here. Pure: the
// caller does the reading.

public enum JailCheck {
    /// The namespaces a jailed worker must not share with the monitor.
    public static let namespaces = ["user", "pid", "mnt", "net", "ipc", "uts"]

    /// Problems with a worker that should run jailed as `ids`, from its /proc status (as the
    /// monitor sees it: host ids, host pid first in NSpid). Empty: jailed.
    public static func problems(status: ProcStatus, ids: JailIDs) -> [String] {
        var p: [String] = []
        if let ns = status.numbers("NSpid") {
            if ns.count < 2 || ns.last != 1 { p.append("not pid 1 of a PID namespace of its own (NSpid \(ns))") }
        } else {
            p.append("no NSpid in its status")
        }
        for (key, want) in [("Uid", ids.hostUID), ("Gid", ids.hostGID)] {
            let have = status.numbers(key)
            if have == nil || have!.count != 4 || have!.contains(where: { $0 != want }) {
                p.append("\(key) \(have.map { "\($0)" } ?? "missing"), expected \(want) (real, effective, saved, filesystem)")
            }
        }
        if !ids.denySetgroups {
            let groups = status.numbers("Groups")
            if groups == nil || !groups!.isEmpty { p.append("supplementary groups \(groups.map { "\($0)" } ?? "unreadable")") }
        }
        for key in ProcStatus.capabilityKeys {
            let c = status.capabilities(key)
            if c != 0 { p.append("\(key) \(c.map { String($0, radix: 16) } ?? "missing")") }
        }
        if status.number("NoNewPrivs") != 1 { p.append("NoNewPrivs \(status.fields["NoNewPrivs"] ?? "missing")") }
        return p
    }

    /// Problems with the namespace links (`readlink /proc/<pid>/ns/<name>`): a worker's must
    /// exist and differ from the monitor's for every name in `namespaces`.
    public static func problems(namespaces links: [(name: String, monitor: String?, worker: String?)]) -> [String] {
        var p: [String] = []
        for name in namespaces {
            guard let l = links.first(where: { $0.name == name }), let m = l.monitor, let w = l.worker else {
                p.append("cannot read its \(name) namespace")
                continue
            }
            if m == w { p.append("shares the monitor's \(name) namespace (\(w))") }
        }
        return p
    }

    /// Problems with one thread of a worker that says it runs under its seccomp filter.
    public static func filterProblems(status: ProcStatus) -> [String] {
        var p: [String] = []
        if status.number("Seccomp") != 2 { p.append("Seccomp \(status.fields["Seccomp"] ?? "missing"), expected 2 (filter)") }
        if status.number("NoNewPrivs") != 1 { p.append("NoNewPrivs \(status.fields["NoNewPrivs"] ?? "missing")") }
        return p
    }
}
