import Foundation
import IPC
import Machine
@testable import Monitor
import Sandbox
import Testing

/// The worker jail (docs/security.md), modelled on Firecracker's jailer tests: what /proc says
/// about a jailed worker, what it can reach with the jail alone, how a jail that cannot be built
/// fails the VM, `--no-jail`, and death with the monitor. Every other worker test runs jailed too
/// (MachineConfig's default).
@Suite("Worker jail: namespaces, ids, capabilities, rlimits, reach, failure, --no-jail")
struct JailTests {
    /// A pipe for a worker's stderr: read end non-blocking, both close-on-exec.
    struct StderrPipe {
        let read: Int32
        let write: Int32
        init() throws {
            var p: [Int32] = [-1, -1]
            try #require(pipe(&p) == 0)
            for fd in p { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            _ = fcntl(p[0], F_SETFL, O_NONBLOCK)
            read = p[0]
            write = p[1]
        }

        /// Everything written so far (call once every writer is gone).
        func drain() -> String {
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = Glibc.read(read, &buf, buf.count)
                if n <= 0 { break }
                out += buf[0..<n]
            }
            return String(decoding: out, as: UTF8.self)
        }
    }

    static func status(_ path: String) throws -> [String: String] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var f: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            f[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return f
    }

    static func threads(_ pid: pid_t) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").sorted()
    }

    static func namespaceLink(_ pid: String, _ ns: String) throws -> String {
        try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/\(ns)")
    }

    /// (soft, hard) of a /proc/<pid>/limits row such as "Max open files".
    static func limit(_ pid: pid_t, _ name: String) throws -> (String, String)? {
        let text = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            let fields = line.dropFirst(name.count).split(separator: " ")
            if fields.count >= 2 { return (String(fields[0]), String(fields[1])) }
        }
        return nil
    }

    @Test("every thread of a jailed worker: own namespaces, mapped unprivileged ids, no capabilities, NoNewPrivs, Seccomp 2; rlimits; an empty read-only root")
    func jailedWorkerAsProcSeesIt() throws {
        let c = try WorkerTests.config("hello")
        let jail = try #require(c.jail)
        let vm = try VirtualMachine(config: c)
        let pid = try #require(vm.workerLinks.first).process.pid
        let ids = jail.ids(monitorUID: geteuid(), monitorGID: getegid())
        #expect(ids.uid == 1000 && ids.gid == 1000)
        if geteuid() == 0 { #expect(ids.hostUID == JailConfig.defaultHostID && ids.hostGID == JailConfig.defaultHostID) }
        let tasks = try Self.threads(pid)
        #expect(!tasks.isEmpty)
        for t in tasks {
            let s = try Self.status("/proc/\(pid)/task/\(t)/status")
            #expect(s["Seccomp"] == "2", "thread \(t): Seccomp \(s["Seccomp"] ?? "-")")
            #expect(s["NoNewPrivs"] == "1", "thread \(t): NoNewPrivs \(s["NoNewPrivs"] ?? "-")")
            for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                #expect(s[key] == "0000000000000000", "thread \(t): \(key) \(s[key] ?? "-")")
            }
            let host = "\(ids.hostUID)\t\(ids.hostUID)\t\(ids.hostUID)\t\(ids.hostUID)"
            #expect(s["Uid"] == host, "thread \(t): Uid \(s["Uid"] ?? "-")")
            #expect(s["Gid"] == "\(ids.hostGID)\t\(ids.hostGID)\t\(ids.hostGID)\t\(ids.hostGID)", "thread \(t): Gid \(s["Gid"] ?? "-")")
            #expect(s["Groups"] == "", "thread \(t): Groups \(s["Groups"] ?? "-")")
        }
        // pid 1 of its own PID namespace, as the monitor's pid for it.
        let main = try Self.status("/proc/\(pid)/status")
        #expect(main["NSpid"] == "\(pid)\t1", "NSpid \(main["NSpid"] ?? "-")")
        // Inside its user namespace it is uid/gid 1000, and only that id is mapped.
        let words = { (s: String) in s.split(whereSeparator: \.isWhitespace).map(String.init) }
        #expect(words(try String(contentsOfFile: "/proc/\(pid)/uid_map", encoding: .utf8)) == ["1000", "\(ids.hostUID)", "1"])
        #expect(words(try String(contentsOfFile: "/proc/\(pid)/gid_map", encoding: .utf8)) == ["1000", "\(ids.hostGID)", "1"])
        for ns in ["user", "pid", "mnt", "net", "ipc", "uts"] {
            let mine = try Self.namespaceLink("self", ns)
            let its = try Self.namespaceLink("\(pid)", ns)
            #expect(mine != its, "the worker shares the test's \(ns) namespace (\(its))")
        }
        // Its mount table: one read-only tmpfs as "/", nothing else.
        let mounts = try String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8).split(separator: "\n")
        #expect(mounts.count == 1, "mounts: \(mounts)")
        let m = mounts.first.map { words(String($0)) } ?? []
        #expect(m.count > 8 && m[4] == "/" && m[5].split(separator: ",").contains("ro") && m.contains("tmpfs"), "mount: \(m)")
        // The rlimits, soft and hard: RLIMIT_AS is its regions (guest RAM, 64 MiB here, and the
        // SynIC region) plus its memory budget.
        #expect(try Self.limit(pid, "Max open files").map { [$0.0, $0.1] } == ["128", "128"])
        #expect(try Self.limit(pid, "Max processes").map { [$0.0, $0.1] } == ["16", "16"])
        #expect(try Self.limit(pid, "Max core file size").map { [$0.0, $0.1] } == ["0", "0"])
        #expect(try Self.limit(pid, "Max file size").map { [$0.0, $0.1] } == ["0", "0"])
        let synicRegion = try #require(vm.routerLink).region.region.size
        let routerState = UInt64(try #require(vm.routerState).region.size)
        let space = "\(UInt64(64 << 20) + UInt64(synicRegion) + routerState + UInt64(WorkerHeartbeat.slotSize) + MemoryBudget.defaultHeadroom)"
        #expect(try Self.limit(pid, "Max address space").map { [$0.0, $0.1] } == [space, space])
        let outcome = vm.run()
        #expect(outcome.exitStatus == 0)
        #expect(outcome.workers.first?.exit == .exited(status: 0))
    }

    @Test("with the jail alone (probed before its seccomp filter) a worker reaches no host file, process, listener or capability")
    func jailAloneHolds() throws {
        // Listeners in the test's own (host) namespaces: reachable from here, not from the jail.
        let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(tcp >= 0)
        defer { close(tcp) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        try #require(withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(tcp, $0, len) } } == 0)
        try #require(listen(tcp, 4) == 0)
        try #require(withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(tcp, $0, &len) } } == 0)
        let port = UInt16(bigEndian: a.sin_port)
        let name = "synthvm-jail-probe-\(getpid())"
        let unix = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(unix >= 0)
        defer { close(unix) }
        var u = sockaddr_un()
        u.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &u.sun_path) { p in for (i, b) in name.utf8.enumerated() { p[i + 1] = b } }
        let ulen = socklen_t(MemoryLayout<sa_family_t>.size + 1 + name.utf8.count)
        try #require(withUnsafePointer(to: &u) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(unix, $0, ulen) } } == 0)
        try #require(listen(unix, 4) == 0)
        // From the host's namespaces both answer (so a refusal below is the jail's doing).
        #expect(JailProbes.connectTCP(port: port) == "ALLOWED")
        #expect(JailProbes.connectAbstract(name) == "ALLOWED")

        let err = try StderrPipe()
        defer { close(err.read) }
        var c = try WorkerTests.config("hello")
        c.workerStandardError = err.write
        let targets = JailProbes.Targets(monitorPID: getpid(), tcpPort: port, unixName: name)
        c.workerArguments = ["--test-jail-probes", targets.argument]
        let outcome: RunOutcome
        do {
            defer { close(err.write) }
            outcome = try VirtualMachine(config: c).run()
        }
        #expect(outcome.exitStatus == 0)
        #expect(outcome.workers.first?.exit == .exited(status: 0), "\(String(describing: outcome.workers.first?.exit))")
        let text = err.drain()
        let expected: [(String, String)] = [
            ("open \(WorkerProcess.executablePath(for: "synic-router"))", "refused (ENOENT)"),
            ("open /etc/passwd", "refused (ENOENT)"),
            ("root directory", "empty"),
            ("mkdir /probe", "refused (EROFS)"),
            ("kill(monitor pid \(getpid()), 0)", "refused (ESRCH)"),
            ("own pid", "1"),
            ("open /proc", "refused (ENOENT)"),
            ("mount proc", "refused (EPERM)"),
            ("network interfaces", "lo"),
            ("connect tcp 127.0.0.1:\(port)", "refused (ENETUNREACH)"),
            ("connect unix @\(name)", "refused (ECONNREFUSED)"),
            ("unshare(CLONE_NEWUSER)", "refused (ENOSPC)"),
            ("setuid(0)", "refused (EINVAL)"),  // no uid 0 in its user namespace to become
            ("raise CAP_SYS_ADMIN", "refused (EPERM)"),
        ]
        for (probe, result) in expected {
            #expect(text.contains("synthvm-synic-router: jail probe: \(probe): \(result)\n"), "\(probe): stderr:\n\(text)")
        }
        #expect(!text.contains("ALLOWED"), "stderr:\n\(text)")
    }

    /// Jail settings that cannot work, and a word the error line must carry.
    enum Unbuildable: String, CaseIterable, Sendable {
        case hostUID = "uid_map", hostGID = "gid_map", rootInside = "must not be root"
        func apply(_ j: inout JailConfig) {
            switch self {
            case .hostUID: j.hostUID = UInt32.max
            case .hostGID: j.hostGID = UInt32.max
            case .rootInside: j.uid = 0
            }
        }
    }

    @Test("a jail that cannot be built fails VM creation with one clear line, and no worker runs", arguments: Unbuildable.allCases)
    func unbuildableJail(_ what: Unbuildable) throws {
        var c = try WorkerTests.config("hello")
        var jail = try #require(c.jail)
        what.apply(&jail)
        c.jail = jail
        var message = ""
        #expect(throws: MonitorError.self, "\(what)") {
            do { _ = try VirtualMachine(config: c) } catch {
                message = "\(error)"
                throw error
            }
        }
        #expect(message.contains("synic-router") && message.contains(what.rawValue) && !message.contains("\n"), "\(message)")
        if what != .rootInside {
            #expect(message.contains("cannot start worker synic-router") && message.contains("Invalid argument"), "\(message)")
        }
    }

    @Test("--no-jail: the worker runs in the test's namespaces as its user, still filtered, and the start is warned about")
    func noJail() throws {
        let err = try StderrPipe()
        defer { close(err.read) }
        var c = try WorkerTests.config("hello")
        c.jail = nil
        c.workerStandardError = err.write
        let pid: pid_t
        let outcome: RunOutcome
        do {
            defer { close(err.write) }
            let vm = try VirtualMachine(config: c)
            pid = try #require(vm.workerLinks.first).process.pid
            for ns in ["user", "pid", "mnt", "net", "ipc", "uts"] {
                #expect(try Self.namespaceLink("self", ns) == Self.namespaceLink("\(pid)", ns), "\(ns)")
            }
            let s = try Self.status("/proc/\(pid)/status")
            #expect(s["Uid"]?.split(separator: "\t").first == "\(geteuid())")
            #expect(s["NSpid"] == "\(pid)")
            try WorkerTests.expectFiltered(pid)
            outcome = vm.run()
        }
        #expect(outcome.exitStatus == 0)
        let text = err.drain()
        #expect(text.contains("synthvm: WARNING: worker synic-router (pid \(pid)) runs WITHOUT its jail (--no-jail)"), "\(text)")
    }

    /// (pid, ppid, starttime) of every process, from /proc/<pid>/stat.
    static func processes() -> [(pid: pid_t, ppid: pid_t, start: String)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { e -> (pid_t, pid_t, String)? in
            guard let pid = pid_t(e), let stat = try? String(contentsOfFile: "/proc/\(e)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // After "pid (comm) ": state ppid ... field 22 is starttime (index 19 from state).
            let f = stat[stat.index(after: close)...].split(separator: " ")
            guard f.count > 19, let ppid = pid_t(f[1]) else { return nil }
            return (pid, ppid, String(f[19]))
        }
    }

    static func isGone(_ pid: pid_t, start: String) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        let f = stat[stat.index(after: close)...].split(separator: " ")
        // A zombie has died; another start time is another process that took the pid.
        return f.count <= 19 || f[0] == "Z" || String(f[19]) != start
    }

    @Test("a jailed worker does not outlive its monitor: SIGKILL synthvm's VM process and the worker goes too")
    func workerDiesWithMonitor() throws {
        // End to end: the parent-death signal or end-of-file on its control socket, whichever
        // comes first (parentDeathSignal below shows the signal alone suffices).
        try GuestHarness.requireKVM()
        let p = Process()
        p.executableURL = CommandLineTests.binary
        // A guest that runs for minutes; --timeout only bounds a failing test.
        p.arguments = ["run", "--kernel", try GuestHarness.guestPath("bench"), "--cmdline", "pio=100000000 msr=1",
                       "--serial", "none", "--timeout", "300", "--worker", "synic-router"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer {
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
        }
        // The monitor is the launcher's child (the VM process); its worker, once attached (running
        // filtered), is the monitor's child. Polled with a generous bound, not timed.
        var worker: (pid: pid_t, ppid: pid_t, start: String)?
        for _ in 0..<600 where worker == nil {
            let all = Self.processes()
            if let vm = all.first(where: { $0.ppid == p.processIdentifier }),
               // (Not the spawner, also the VM process's child: a worker is pid 1 of its namespace.)
               let w = all.first(where: { $0.ppid == vm.pid
                   && ((try? Self.status("/proc/\($0.pid)/status"))?["NSpid"]?.hasSuffix("\t1") ?? false) }),
               (try? Self.status("/proc/\(w.pid)/status"))?["Seccomp"] == "2" {
                worker = w
            } else {
                usleep(100_000)
            }
        }
        let w = try #require(worker, "synthvm started no worker that attached")
        #expect(try Self.status("/proc/\(w.pid)/status")["NSpid"]?.hasSuffix("\t1") == true, "not jailed")
        kill(w.ppid, SIGKILL)
        // The launcher ends the way its VM process did.
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGKILL)
        var gone = false
        for _ in 0..<300 where !gone {
            gone = Self.isGone(w.pid, start: w.start)
            if !gone { usleep(100_000) }
        }
        #expect(gone, "worker \(w.pid) outlived its monitor")
    }

    /// Carries a VM built on another thread back to the test.
    final class Built: @unchecked Sendable {
        var result: Result<VirtualMachine, any Error>?
        let done = DispatchSemaphore(value: 0)
    }

    @Test("the parent-death signal reaches a jailed worker (pid 1 of its namespace) that is not reading its socket")
    func parentDeathSignal() throws {
        // PR_SET_PDEATHSIG fires when the thread that spawned the worker ends (here a thread that
        // builds the VM and returns; in the monitor, the process dying). The worker is asleep
        // (its crash is ten minutes away), so end-of-file on its control socket cannot be what
        // ends it: only the SIGKILL can, which the kernel delivers to a namespace's init from
        // an ancestor namespace.
        var c = try WorkerTests.config("hello")
        c.workerArguments = ["--test-crash-after-ms", "600000"]
        // It fails on purpose, every start: the old behaviour, no restarts (docs/faults.md).
        c.restartBudget = nil
        let config = c
        let built = Built()
        let t = Thread {
            built.result = Result { try VirtualMachine(config: config) }
            built.done.signal()
        }
        t.start()
        built.done.wait()
        let vm = try #require(built.result).get()
        let supervisor = try #require(vm.supervisor)
        // Bounded wait for the supervisor to see it die (not a timing assertion).
        for _ in 0..<300 where supervisor.status.first?.exit == nil { usleep(100_000) }
        let exit = supervisor.status.first?.exit
        #expect(exit == .killed(signal: SIGKILL, coreDumped: false), "\(String(describing: exit))")
        #expect(vm.run().exitStatus == 0)
    }

    @Test("`synthvm run --worker synic-router` runs it jailed and quietly; --no-jail warns at start and per worker")
    func commandLine() throws {
        try GuestHarness.requireKVM()
        let hello = try GuestHarness.guestPath("hello")
        let jailed = try CommandLineTests.synthvm(["run", "--kernel", hello, "--serial", "none", "--worker", "synic-router"])
        #expect(jailed.status == 0, "\(jailed.stderr)")
        #expect(!jailed.stderr.contains("WARNING"), "\(jailed.stderr)")
        // Quietly: a clean exit at the end of the run is not logged either.
        #expect(jailed.stderr.isEmpty, "\(jailed.stderr)")
        let unjailed = try CommandLineTests.synthvm(["run", "--kernel", hello, "--serial", "none", "--worker", "synic-router",
                                                     "--no-jail"])
        #expect(unjailed.status == 0, "\(unjailed.stderr)")
        #expect(unjailed.stderr.contains("synthvm: WARNING: --no-jail: worker processes will run without their jail"),
                "\(unjailed.stderr)")
        #expect(unjailed.stderr.contains("synthvm: WARNING: worker synic-router (pid "), "\(unjailed.stderr)")
        #expect(unjailed.stderr.contains("runs WITHOUT its jail (--no-jail)"), "\(unjailed.stderr)")
    }
}
