import Foundation
import Machine
import Partition
@testable import Monitor
import Testing

@Suite("Worker processes: spawn, handshake, death detection")
struct WorkerTests {
    static func config(_ guest: String, cmdline: String = "") throws -> MachineConfig {
        try GuestHarness.requireKVM()
        // A guest with a SynIC gets the router (MachineConfig.runsSynICRouter).
        var c = try MachineConfig.load(kernelPath: try GuestHarness.guestPath(guest), commandLine: cmdline,
                                       memory: "64M", serial: "none", hyperv: "default")
        c.console = .capture
        c.timeoutSeconds = 60
        // The router alone: VMBusWorkerTests covers the VMBus worker and the router beside it.
        c.vmbus = false
        return c
    }

    /// Every thread of `pid` runs under a seccomp filter (mode 2) with no_new_privs.
    static func expectFiltered(_ pid: pid_t, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        #expect(!tasks.isEmpty, sourceLocation: sourceLocation)
        for t in tasks {
            let status = try String(contentsOfFile: "/proc/\(pid)/task/\(t)/status", encoding: .utf8)
            #expect(status.contains("Seccomp:\t2\n"), "thread \(t) is not filtered", sourceLocation: sourceLocation)
            #expect(status.contains("NoNewPrivs:\t1\n"), "thread \(t) lacks no_new_privs", sourceLocation: sourceLocation)
        }
    }

    /// The fd numbers open in a process.
    static func openFDs(_ pid: pid_t) throws -> [Int] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap(Int.init).sorted()
    }

    @Test("the router holds exactly stdio, its control socket and what it was handed, attaches to guest RAM and the SynIC region, and exits with the VM",
          arguments: [1, 2])
    func handshakeAndCleanExit(cpus: Int) throws {
        var c = try Self.config("hello")
        c.cpuCount = cpus
        let vm = try VirtualMachine(config: c)
        let link = try #require(vm.workerLinks.first)
        // After the handshake: stdin/stdout/stderr, the control socket (3), the guest-RAM,
        // heartbeat, SynIC and router-state memfds (kept for their mappings), its doorbell and
        // reply eventfds, and one eventfd per (VP, SINT). Nothing of the monitor's leaked in.
        let fds = try Self.openFDs(link.process.pid)
        #expect(fds.count == 4 + 4 + 2 + 16 * cpus && Array(fds.prefix(4)) == [0, 1, 2, 3], "fds \(fds)")
        var kinds: [String: Int] = [:]
        for fd in fds.dropFirst(4) {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(link.process.pid)/fd/\(fd)")) ?? "?"
            kinds[target.hasPrefix("/memfd:") ? String(target.split(separator: " ")[0]) : target, default: 0] += 1
        }
        #expect(kinds == ["/memfd:synthvm-guest-ram": 1, "/memfd:synthvm-heartbeats": 1, "/memfd:synthvm-synic": 1,
                          "/memfd:synthvm-router-state": 1,
                          "anon_inode:[eventfd]": 2 + 16 * cpus],
                "\(kinds)")
        let maps = try String(contentsOfFile: "/proc/\(link.process.pid)/maps", encoding: .utf8)
        #expect(maps.contains("synthvm-guest-ram"), "guest RAM not mapped by the worker")
        #expect(maps.contains("synthvm-synic"), "SynIC region not mapped by the worker")
        // It runs under its seccomp policy from the handshake on, on every thread.
        try Self.expectFiltered(link.process.pid)
        let outcome = vm.run()
        #expect(outcome.exitStatus == 0)
        let w = try #require(outcome.workers.first)
        #expect(w.name == "synic-router")
        #expect(w.exit == .exited(status: 0))
    }

    @Test("a worker killed (SIGKILL: what a jailed worker takes from outside) under a running guest is reported; the VM keeps running")
    func killedWorkerIsReported() throws {
        // The bench guest runs long enough (~100k exits) to kill the worker under it.
        let vm = try VirtualMachine(config: try Self.config("bench", cmdline: "pio=100000 msr=1"))
        let link = try #require(vm.workerLinks.first)
        try Self.expectFiltered(link.process.pid)
        let killer = Thread {
            usleep(100_000)
            link.process.signal(SIGKILL)
        }
        killer.start()
        try Self.expectReported(vm.run(), signal: SIGKILL, pid: link.process.pid)
    }

    @Test("a worker that crashes (a real SIGSEGV) under a running guest is reported by name and signal; the VM keeps running")
    func crashedWorkerIsReported() throws {
        // A jailed worker is pid 1 of its PID namespace: the kernel drops a SIGSEGV sent from
        // outside, so the crash is the worker's own fault (--test-crash-after-ms).
        var c = try Self.config("bench", cmdline: "pio=100000 msr=1")
        c.workerArguments = ["--test-crash-after-ms", "100"]
        // It fails on purpose, every start: the old behaviour, no restarts (docs/faults.md).
        c.restartBudget = nil
        let vm = try VirtualMachine(config: c)
        let link = try #require(vm.workerLinks.first)
        try Self.expectReported(vm.run(), signal: SIGSEGV, pid: link.process.pid)
    }

    static func expectReported(_ outcome: RunOutcome, signal: Int32, pid: pid_t,
                               sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(outcome.reason == .exitDevice(value: 0), "the guest did not finish: \(outcome.reason)",
                sourceLocation: sourceLocation)
        let w = try #require(outcome.workers.first, sourceLocation: sourceLocation)
        #expect(w.name == "synic-router" && w.pid == pid, sourceLocation: sourceLocation)
        #expect(w.exit == .killed(signal: signal, coreDumped: false) || w.exit == .killed(signal: signal, coreDumped: true),
                "\(String(describing: w.exit))", sourceLocation: sourceLocation)
        #expect(w.exit?.description.hasPrefix("killed by signal \(signal) (\(WorkerExit.signalName(signal)))") == true,
                sourceLocation: sourceLocation)
    }

    @Test("a worker that makes a call its policy refuses dies by SIGSYS, names the call, and the guest completes")
    func forbiddenSyscallIsReported() throws {
        // The worker's stderr goes to a pipe of this test's own (not the shared fd 2).
        var p: [Int32] = [-1, -1]
        try #require(pipe(&p) == 0)
        for fd in p { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(p[0], F_SETFL, O_NONBLOCK)  // the worker has written (and died) before run() returns
        defer { close(p[0]) }
        var c = try Self.config("hello")
        c.workerArguments = ["--test-forbidden-syscall"]
        // It fails on purpose, every start: the old behaviour, no restarts (docs/faults.md).
        c.restartBudget = nil
        c.workerStandardError = p[1]
        let outcome: RunOutcome
        do {
            defer { close(p[1]) }
            let vm = try VirtualMachine(config: c)
            outcome = vm.run()
        }
        #expect(outcome.exitStatus == 0, "the guest did not finish: \(outcome.reason)")
        let w = try #require(outcome.workers.first)
        #expect(w.exit == .killed(signal: SIGSYS, coreDumped: false) || w.exit == .killed(signal: SIGSYS, coreDumped: true),
                "\(String(describing: w.exit))")
        #expect(w.exit?.description.hasPrefix("killed by signal 31 (SIGSYS)") == true)
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = read(p[0], &bytes, bytes.count)
        let text = n > 0 ? String(decoding: bytes[0..<n], as: UTF8.self) : ""
        #expect(text.contains("synthvm-synic-router: seccomp violation: syscall 41 (socket)\n"), "stderr: \(text)")
    }

    @Test("a worker that allocates past its memory budget says so, is reported by name with its RLIMIT_AS, and the guest completes")
    func memoryBudgetIsReported() throws {
        var p: [Int32] = [-1, -1]
        try #require(pipe(&p) == 0)
        for fd in p { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(p[0], F_SETFL, O_NONBLOCK)
        defer { close(p[0]) }
        var c = try Self.config("bench", cmdline: "pio=100000 msr=1")
        c.workerArguments = ["--test-exhaust-memory"]
        // It fails on purpose, every start: the old behaviour, no restarts (docs/faults.md).
        c.restartBudget = nil
        c.workerStandardError = p[1]
        let outcome: RunOutcome
        let pid: pid_t
        do {
            defer { close(p[1]) }
            let vm = try VirtualMachine(config: c)
            pid = try #require(vm.workerLinks.first).process.pid
            outcome = vm.run()
        }
        #expect(outcome.reason == .exitDevice(value: 0), "the guest did not finish: \(outcome.reason)")
        let w = try #require(outcome.workers.first)
        #expect(w.exit == .memoryBudgetExceeded, "\(String(describing: w.exit))")
        var bytes = [UInt8](repeating: 0, count: 8192)
        let n = read(p[0], &bytes, bytes.count)
        let text = n > 0 ? String(decoding: bytes[0..<n], as: UTF8.self) : ""
        // The worker's own last words, relayed, then the supervisor's line with the limit it hit:
        // 64 MiB of guest RAM, the SynIC region (168 KiB for one VP) and the router's state region
        // (108 KiB), plus the default budget of its own.
        #expect(text.contains("synthvm: worker synic-router (pid \(pid)): synthvm-synic-router: out of memory: "
                              + "its memory budget (RLIMIT_AS) is used up\n"), "stderr: \(text)")
        #expect(text.contains("synthvm: worker synic-router (pid \(pid)) exceeded its memory budget (RLIMIT_AS 128.3 MiB: "
                              + "64.3 MiB of shared regions and 64 MiB of its own)\n"), "stderr: \(text)")
    }

    @Test("a ring the monitor side scribbles on is reported and cut off by the router, which keeps serving")
    func corruptRingIsCutOff() throws {
        var p: [Int32] = [-1, -1]
        try #require(pipe(&p) == 0)
        for fd in p { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(p[0], F_SETFL, O_NONBLOCK)
        defer { close(p[0]) }
        var c = try Self.config("hello")
        c.workerStandardError = p[1]
        let outcome: RunOutcome
        do {
            defer { close(p[1]) }
            let vm = try VirtualMachine(config: c)
            let link = try #require(vm.routerLink)
            // VP 0's ring: a producer index far beyond the capacity.
            try link.region.region.store(UInt64(1) << 40, at: link.region.ringOffset(0) + 128)
            try link.routerDoorbell.ring()
            var text = ""
            for _ in 0..<200 where !text.contains("cut off") {
                usleep(10_000)
                var bytes = [UInt8](repeating: 0, count: 4096)
                let n = read(p[0], &bytes, bytes.count)
                if n > 0 { text += String(decoding: bytes[0..<n], as: UTF8.self) }
            }
            #expect(text.contains("synthvm-synic-router: ring 0 cut off: "), "stderr: \(text)")
            outcome = vm.run()
        }
        #expect(outcome.exitStatus == 0)
        #expect(outcome.workers.first?.exit == .exited(status: 0))
    }

    @Test("without its policy a worker does not start, and neither does the VM")
    func missingPolicyFailsTheVM() throws {
        var c = try Self.config("hello")
        // The monitor's own policies are there; the worker's is not.
        c.policyDirectory = try MonitorFilterTests.policyCopy(editing: "synic-router.policy") { _ in nil }
        defer { try? FileManager.default.removeItem(atPath: c.policyDirectory) }
        #expect { try VirtualMachine(config: c) } throws: {
            "\($0)".contains("worker synic-router: seccomp policy:") && "\($0)".contains("\(c.policyDirectory)/synic-router.policy")
        }
    }

    @Test("no SynIC, no router; an explicit router without a SynIC still starts (and routes nothing)")
    func routerFollowsTheSynIC() throws {
        var c = try Self.config("hello")
        c.enlightenments = Enlightenments(features: [.time])
        #expect(c.workerNames.isEmpty)
        c.workers = ["synic-router"]
        let vm = try VirtualMachine(config: c)
        #expect(vm.workerLinks.count == 1)
        #expect(vm.run().exitStatus == 0)
    }

    @Test("an unknown worker name is a configuration error")
    func unknownWorker() throws {
        var c = try Self.config("hello")
        c.workers = ["nonesuch"]
        #expect { try VirtualMachine(config: c) } throws: { "\($0)".contains("unknown worker nonesuch") }
    }
}
