import Testing

@testable import Sandbox

/// The monitor's judgement of a worker from its /proc status: a jailed one passes, and every
/// single deviation is named.
@Suite struct JailCheckTests {
    static let ids = JailIDs(uid: 1000, gid: 1000, hostUID: 2_147_418_112, hostGID: 2_147_418_112, denySetgroups: false)

    /// A status as /proc shows a jailed worker, with `changes` applied to single fields.
    static func status(_ changes: [String: String?] = [:]) -> ProcStatus {
        var fields: [(String, String)] = [
            ("Name", "synthvm-synic-r"), ("State", "S (sleeping)"), ("Tgid", "4242"), ("NSpid", "4242\t1"),
            ("Uid", "2147418112\t2147418112\t2147418112\t2147418112"),
            ("Gid", "2147418112\t2147418112\t2147418112\t2147418112"), ("Groups", ""),
            ("CapInh", "0000000000000000"), ("CapPrm", "0000000000000000"), ("CapEff", "0000000000000000"),
            ("CapBnd", "0000000000000000"), ("CapAmb", "0000000000000000"), ("NoNewPrivs", "1"), ("Seccomp", "2"),
        ]
        for (k, v) in changes {
            fields.removeAll { $0.0 == k }
            if let v { fields.append((k, v)) }
        }
        return ProcStatus(parsing: fields.map { "\($0.0):\t\($0.1)" }.joined(separator: "\n") + "\n")
    }

    @Test func parsing() {
        let s = ProcStatus(parsing: "Name:\tx y\nUid:\t1\t2\t3\t4\nGroups:\t \nCapBnd:\t000001ffffffffff\nbogus line\nSeccomp:\t2\n")
        #expect(s.fields["Name"] == "x y")
        #expect(s.numbers("Uid") == [1, 2, 3, 4])
        #expect(s.numbers("Groups") == [])
        #expect(s.capabilities("CapBnd") == 0x1ff_ffff_ffff)
        #expect(s.number("Seccomp") == 2)
        #expect(s.numbers("Name") == nil && s.numbers("Missing") == nil && s.capabilities("Name") == nil)
    }

    @Test func aJailedWorkerPasses() {
        #expect(JailCheck.problems(status: Self.status(), ids: Self.ids).isEmpty)
        #expect(JailCheck.filterProblems(status: Self.status()).isEmpty)
    }

    @Test("every deviation is a problem", arguments: [
        ("NSpid", "4242", "PID namespace"), ("NSpid", "4242\t7", "PID namespace"), ("NSpid", nil, "NSpid"),
        ("Uid", "0\t0\t0\t0", "Uid"), ("Uid", "2147418112\t2147418112\t2147418112\t0", "Uid"), ("Uid", "2147418112", "Uid"),
        ("Gid", "1000\t1000\t1000\t1000", "Gid"), ("Gid", nil, "Gid"), ("Groups", "0", "supplementary groups"),
        ("CapInh", "0000000000000001", "CapInh"), ("CapPrm", "0000000000200000", "CapPrm"),
        ("CapEff", "0000000000200000", "CapEff"), ("CapBnd", "000001ffffffffff", "CapBnd"), ("CapBnd", nil, "CapBnd"),
        ("CapAmb", "0000000000000100", "CapAmb"), ("NoNewPrivs", "0", "NoNewPrivs"), ("NoNewPrivs", nil, "NoNewPrivs"),
    ] as [(String, String?, String)])
    func deviations(_ key: String, _ value: String?, _ mention: String) {
        let p = JailCheck.problems(status: Self.status([key: value]), ids: Self.ids)
        #expect(p.count == 1 && p[0].contains(mention), "\(key)=\(value ?? "absent"): \(p)")
    }

    @Test func groupsAreTheMonitorsWhenSetgroupsIsDenied() {
        var ids = Self.ids
        ids.denySetgroups = true
        #expect(JailCheck.problems(status: Self.status(["Groups": "27 100"]), ids: ids).isEmpty)
    }

    @Test func filterProblems() {
        #expect(JailCheck.filterProblems(status: Self.status(["Seccomp": "0"])).count == 1)
        #expect(JailCheck.filterProblems(status: Self.status(["Seccomp": "1"])).count == 1)
        #expect(JailCheck.filterProblems(status: Self.status(["NoNewPrivs": "0"])).count == 1)
    }

    @Test func namespaces() {
        func links(_ f: (String) -> (String?, String?)) -> [(name: String, monitor: String?, worker: String?)] {
            JailCheck.namespaces.map { n in let (m, w) = f(n); return (name: n, monitor: m, worker: w) }
        }
        #expect(JailCheck.problems(namespaces: links { ("\($0):[1]", "\($0):[2]") }).isEmpty)
        let shared = JailCheck.problems(namespaces: links { ($0 == "net" ? "net:[1]" : "\($0):[1]", $0 == "net" ? "net:[1]" : "\($0):[2]") })
        #expect(shared.count == 1 && shared[0].contains("net"))
        let unreadable = JailCheck.problems(namespaces: links { ("\($0):[1]", $0 == "uts" ? nil : "\($0):[2]") })
        #expect(unreadable.count == 1 && unreadable[0].contains("uts"))
        #expect(JailCheck.problems(namespaces: []).count == 6)
    }
}
