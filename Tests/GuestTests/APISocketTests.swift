import CSynthVM
import ControlAPI
import Foundation
import Testing

@testable import Monitor

/// The control socket (docs/api.md) of a real `synthvm run --api-socket`, with a guest that keeps
/// running and exiting (a port write to 0x80 after every 4096 iterations of a loop), talked to
/// by `synthvm ctl` and by raw connections.
@Suite("control socket", .serialized)
struct APISocketTests {
    /// mov ecx, 0x1000; 1: dec ecx; jnz 1b; out 0x80, al; jmp to the start.
    static func loopGuest() throws -> String {
        try GuestHarness.temporaryFile(GuestHarness.rawELF64(code: [0xB9, 0x00, 0x10, 0x00, 0x00, 0xFF, 0xC9, 0x75, 0xFC,
                                                                    0xE6, 0x80, 0xEB, 0xF3]), name: "api-loop.elf")
    }

    static func socketPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("synthvm-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    struct Running {
        let run: VMProcessTests.Launched
        let vm: Int32
        let socket: String
    }

    /// Starts the loop guest with the control socket and waits until the VM runs.
    static func start(_ name: String, extra: [String] = []) throws -> Running {
        try GuestHarness.requireKVM()
        let path = socketPath(name)
        unlink(path)
        let run = try VMProcessTests.launch(["run", "--kernel", try loopGuest(), "--serial", "none", "--timeout", "120",
                                             "--api-socket", path] + extra)
        let vm = try #require(VMProcessTests.vmProcessOrKill(run), "no VM process appeared")
        return Running(run: run, vm: vm, socket: path)
    }

    struct Ctl {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func ctl(_ args: [String]) throws -> Ctl {
        let r = try CommandLineTests.synthvm(["ctl"] + args)
        return Ctl(status: r.status, stdout: r.stdout, stderr: r.stderr)
    }

    /// `synthvm ctl --json PATH ARGS`, parsed.
    static func ctlJSON(_ socket: String, _ args: [String]) throws -> JSONValue {
        let r = try ctl(["--json", socket] + args)
        let line = try #require(r.stdout.split(separator: "\n").first.map(String.init), "no reply: \(r.stderr)")
        return try JSONParser.parse(line)
    }

    /// A raw connection: send `bytes`, read one reply line (at most `timeout` s).
    final class Client: @unchecked Sendable {
        let fd: Int32
        init(_ path: String) throws {
            fd = svm_api_connect(path)
            try #require(fd >= 0, "connect \(path): \(fd)")
        }
        deinit { close(fd) }

        func send(_ bytes: [UInt8]) -> Bool {
            var off = 0
            while off < bytes.count {
                let n = bytes[off...].withUnsafeBytes { svm_api_send(fd, $0.baseAddress, $0.count) }
                if n <= 0 { return false }
                off += n
            }
            return true
        }

        func send(_ line: String) -> Bool { send(Array((line + "\n").utf8)) }

        /// The next line, or nil at end of file, an error or the timeout.
        func readLine(timeout: Double = 10) -> String? {
            var out: [UInt8] = []
            let deadline = Date().addingTimeInterval(timeout)
            var byte: UInt8 = 0
            while Date() < deadline {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 100) >= 0 else { return nil }
                if p.revents == 0 { continue }
                let n = read(fd, &byte, 1)
                if n <= 0 { return nil }
                if byte == 0x0A { return String(decoding: out, as: UTF8.self) }
                out.append(byte)
            }
            return nil
        }

        func request(_ line: String) throws -> JSONValue {
            try #require(send(line))
            return try JSONParser.parse(try #require(readLine(), "no reply to \(line)"))
        }
    }

    static func sample(_ text: String, _ name: String, _ labels: [String: String]) -> Double? {
        PrometheusText.parse(text)?.first { $0.name == name && $0.labels == labels }?.value
    }

    @Test("status, metrics that grow, bad requests, refused faults, bounded clients, the filter, mode 0600, stop")
    func statusMetricsAndBounds() throws {
        let r = try Self.start("api-main.sock")
        var stopped = false
        defer { if !stopped { r.run.process.terminate(); _ = r.run.finish() } }

        // The socket: a socket file, mode 0600, ours.
        var st = stat()
        try #require(lstat(r.socket, &st) == 0)
        #expect(st.st_mode & S_IFMT == S_IFSOCK)
        #expect(st.st_mode & 0o7777 == 0o600, "mode \(String(st.st_mode & 0o7777, radix: 8))")
        #expect(st.st_uid == geteuid())

        // status: the VM process and its worker as /proc has them.
        let status = try #require(try Self.ctlJSON(r.socket, ["status"])["return"])
        #expect(status["state"] == .string("running"))
        #expect(status["vcpus"] == .int(1))
        #expect(status["pid"] == .int(Int64(r.vm)))
        // A guest with VMBus but no hv_utils: nothing answered, no shutdown channel.
        #expect(status["guest_heartbeat"]?["answered"] == .int(0) && status["guest_heartbeat"]?["age_ms"] == .null)
        #expect(status["guest_heartbeat"]?["shutdown_negotiated"] == .bool(false))
        let workers = try #require(status["workers"]?.arrayValue)
        let router = try #require(workers.first { $0["name"] == .string("synic-router") }, "\(workers)")
        let children = VMProcessTests.children(of: r.vm)
        #expect(router["pid"]?.intValue.map { children.contains(Int32($0)) } == true, "\(router) vs \(children)")
        #expect(router["running"] == .bool(true) && router["restarts"] == .int(0) && router["last_exit"] == .null)
        // It beats every 100 ms or so, idle or not (WorkerHeartbeat).
        #expect((router["heartbeat_age_ms"]?.intValue ?? 99_999) < 5000 && router["kind"] == .string("synic-router"), "\(router)")
        let human = try Self.ctl([r.socket, "status"])
        #expect(human.status == 0 && human.stdout.contains("state: running")
                && human.stdout.contains("worker synic-router (synic-router): pid "), "\(human)")

        // metrics: Prometheus text whose exit counters grow.
        let m1 = try Self.ctl([r.socket, "metrics"])
        #expect(m1.status == 0, "\(m1.stderr)")
        let parsed = try #require(PrometheusText.parse(m1.stdout), "not Prometheus text: \(m1.stdout)")
        #expect(parsed.contains { $0.name == "synthvm_worker_up" && $0.labels["worker"] == "synic-router" && $0.value == 1 })
        #expect(parsed.contains { $0.name == "synthvm_worker_restarts_total" })
        let io1 = Self.sample(m1.stdout, "synthvm_vcpu_exits_by_reason_total", ["vcpu": "0", "reason": "io"])
        var io2 = io1
        for _ in 0..<50 where io2 == io1 {
            usleep(100_000)
            io2 = Self.sample(try Self.ctl([r.socket, "metrics"]).stdout, "synthvm_vcpu_exits_by_reason_total",
                              ["vcpu": "0", "reason": "io"])
        }
        #expect(io1 != nil && io2 != nil && io2! > io1!, "\(String(describing: io1)) -> \(String(describing: io2))")

        // fault is refused without --allow-fault-injection: a JSON error, status 1, one line.
        let refused = try Self.ctl([r.socket, "fault", "synic-router", "kill"])
        #expect(refused.status == 1 && refused.stderr.contains("FaultInjectionDisabled"), "\(refused)")
        #expect(refused.stderr.split(separator: "\n").count == 1)
        #expect(try Self.ctlJSON(r.socket, ["fault", "synic-router", "kill"])["error"]?["class"] == .string("FaultInjectionDisabled"))

        // Bad requests: JSON errors on the same connection, which stays usable.
        let c = try Client(r.socket)
        for (line, cls) in [("hello", "ParseError"), ("[1]", "InvalidRequest"), (#"{"execute":"reboot"}"#, "CommandNotFound"),
                            (#"{"execute":"status","arguments":{"all":true}}"#, "InvalidArgument"),
                            (String(repeating: "[", count: 100), "ParseError"), ("{\"execute\":\"st\u{1}\"}", "ParseError")] {
            #expect(try c.request(line)["error"]?["class"] == .string(cls), "\(line)")
        }
        #expect(try c.request(#"{"execute":"status","id":{"n":1}}"#)["id"] == .object([("n", .int(1))]))

        // An idle client and one sending a megabyte without a newline do not hold up a status.
        let idle = try Client(r.socket)
        let big = try Client(r.socket)
        let megabyte = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
        let sender = Thread { _ = big.send(megabyte) }
        sender.start()
        let started = Date()
        let during = try Self.ctl([r.socket, "status"])
        #expect(during.status == 0, "\(during)")
        #expect(Date().timeIntervalSince(started) < 10)
        let bigReply = big.readLine(timeout: 15)
        // The error, unless the connection was reset first (both free the server).
        if let line = bigReply { #expect(line.contains("LineTooLong"), "\(line)") } else { print("control socket: the megabyte client saw a reset, not the error") }
        #expect(idle.readLine(timeout: 0.2) == nil)
        #expect(try c.request(#"{"execute":"status"}"#)["return"] != nil)

        // More connections than the server keeps: the extra ones are told and closed.
        var many: [Client] = []
        for _ in 0..<20 { many.append(try Client(r.socket)) }
        var refusedConnections = 0
        for m in many {
            if let line = m.readLine(timeout: 0.3), line.contains("TooManyConnections") { refusedConnections += 1 }
        }
        #expect(refusedConnections >= 20 - ControlSocketLimits.maxConnections + 1, "\(refusedConnections)")
        many.removeAll()
        usleep(200_000)
        #expect(try Self.ctl([r.socket, "status"]).status == 0)

        // Every thread of the VM process is filtered, the control socket's among them.
        let threads = ThreadState.all(pid: r.vm)
        #expect(threads.contains { $0.name == "synthvm-api" }, "\(threads)")
        for t in threads where !t.name.hasPrefix("kvm-") {
            #expect(t.seccomp == "2" && t.filters == "1" && t.noNewPrivs == "1", "\(t)")
        }

        // stop: the hard stop, status 130; the launcher removes the socket file.
        let stop = try Self.ctl([r.socket, "stop"])
        #expect(stop.status == 0, "\(stop)")
        let (reason, code, stderr) = r.run.finish()
        stopped = true
        #expect(reason == .exit && code == 130, "\(code): \(stderr)")
        #expect(stderr.contains("synthvm: stop requested through the control socket by pid "), "\(stderr)")
        #expect(stderr.contains("synthvm: stopped through the control socket"), "\(stderr)")
        #expect(!stderr.contains("seccomp violation"), "\(stderr)")
        #expect(access(r.socket, F_OK) != 0)
    }

    /// The newest status of worker `name` once `done` holds (polled for at most `seconds`).
    static func awaitWorker(_ socket: String, _ name: String, seconds: Double = 10,
                            _ done: (JSONValue) -> Bool) throws -> JSONValue? {
        let deadline = Date().addingTimeInterval(seconds)
        var last: JSONValue?
        while Date() < deadline {
            last = try ctlJSON(socket, ["status"])["return"]?["workers"]?.arrayValue?.first { $0["name"] == .string(name) }
            if let w = last, done(w) { return w }
            usleep(100_000)
        }
        return last
    }

    @Test("fault synic-router kill: the supervisor reports the death and restarts it; shutdown stops the VM (130)")
    func faultKill() throws {
        let r = try Self.start("api-fault.sock", extra: ["--allow-fault-injection", "--worker-hang-timeout", "1"])
        var stopped = false
        defer { if !stopped { r.run.process.terminate(); Issue.record("stderr: \(r.run.finish().2)") } }
        let before = try #require(try Self.ctlJSON(r.socket, ["status"])["return"])
        #expect(before["fault_injection"] == .bool(true))
        let first = try #require(before["workers"]?.arrayValue?.first)
        let routerPID = try #require(first["pid"]?.intValue)
        // The spawner is not a worker.
        #expect(before["workers"]?.arrayValue?.allSatisfy { $0["name"] != .string("spawner") } == true)
        // It beats (an idle worker too): an age well under the hang timeout.
        let beating = try Self.awaitWorker(r.socket, "synic-router") { $0["heartbeat_age_ms"]?.intValue != nil }
        #expect((beating?["heartbeat_age_ms"]?.intValue ?? 99_999) < 2000, "\(String(describing: beating))")

        let kill = try Self.ctl([r.socket, "fault", "synic-router", "kill"])
        #expect(kill.status == 0 && kill.stdout.contains("pid \(routerPID)"), "\(kill)")
        // Storage's kinds: storage workers only (this VM has none), and io-error needs its N.
        for args in [["io-error", "3"], ["torn"]] {
            let r2 = try Self.ctl([r.socket, "fault", "synic-router"] + args)
            #expect(r2.status == 1 && r2.stderr.contains("InvalidArgument") && r2.stderr.contains("applies to storage workers only"), "\(r2)")
        }
        #expect(try Self.ctlJSON(r.socket, ["fault", "storage", "io-error"])["error"]?["class"] == .string("InvalidArgument"))
        #expect(try Self.ctlJSON(r.socket, ["fault", "storage", "io-error", "0"])["error"]?["class"] == .string("InvalidArgument"))
        #expect(try Self.ctlJSON(r.socket, ["fault", "storage", "io-error", "2"])["error"]?["class"] == .string("WorkerNotFound"))
        #expect(try Self.ctlJSON(r.socket, ["fault", "no-such-worker", "kill"])["error"]?["class"] == .string("WorkerNotFound"))
        #expect(try Self.ctlJSON(r.socket, ["fault", "spawner", "kill"])["error"]?["class"] == .string("WorkerNotFound"))

        let w = try #require(try Self.awaitWorker(r.socket, "synic-router") { $0["restarts"] == .int(1) && $0["running"] == .bool(true) })
        #expect(w["restarts"] == .int(1) && w["running"] == .bool(true) && w["last_exit"] == .string("killed by signal 9 (SIGKILL)"), "\(w)")
        let newPID = try #require(w["pid"]?.intValue)
        #expect(newPID != routerPID)
        #expect(Glibc.kill(r.vm, 0) == 0)
        let m = try Self.ctl([r.socket, "metrics"]).stdout
        #expect(Self.sample(m, "synthvm_worker_up", ["worker": "synic-router", "kind": "synic-router"]) == 1, "\(m)")
        #expect(Self.sample(m, "synthvm_worker_restarts_total", ["worker": "synic-router", "kind": "synic-router"]) == 1, "\(m)")

        // crash, hang (the heartbeat stops: killed after --worker-hang-timeout), syscall: each
        // detected and restarted; slow: the worker goes on, slower.
        #expect(try Self.ctl([r.socket, "fault", "synic-router", "slow", "5"]).status == 0)
        var restarts: Int64 = 1
        for (kind, arg, death) in [("crash", nil, "SIGSEGV"), ("hang", "30", "after it hung"), ("syscall", nil, "SIGSYS")] {
            let f = try Self.ctl([r.socket, "fault", "synic-router", kind] + (arg.map { [$0] } ?? []))
            #expect(f.status == 0, "\(kind): \(f)")
            restarts += 1
            let n = restarts
            let after = try Self.awaitWorker(r.socket, "synic-router", seconds: 15) { $0["restarts"] == .int(n) && $0["running"] == .bool(true) }
            #expect(after?["restarts"] == .int(n) && after?["running"] == .bool(true), "\(kind): \(String(describing: after))")
            _ = death
        }

        let shutdown = try Self.ctl([r.socket, "shutdown"])
        #expect(shutdown.status == 0 && shutdown.stdout.contains("the VM was stopped"), "\(shutdown)")
        let (_, code, stderr) = r.run.finish()
        stopped = true
        #expect(code == 130, "\(stderr)")
        #expect(stderr.contains("synthvm: fault injection: kill of worker synic-router (pid \(routerPID)) requested by pid "),
                "\(stderr)")
        #expect(stderr.contains("uid \(geteuid())"), "\(stderr)")
        #expect(stderr.contains("synthvm: worker synic-router (pid \(routerPID)) killed by signal 9 (SIGKILL); restarted (1 of 5 in 60 s) as pid \(newPID)"),
                "\(stderr)")
        for what in ["fault injection: crash of worker synic-router", "fault injection: hang 30 of worker synic-router",
                     "fault injection: syscall of worker synic-router", "fault injection: slow 5 of worker synic-router",
                     "killed by signal 11 (SIGSEGV); restarted (2 of 5", "after it hung (no heartbeat for",
                     "killed by signal 31 (SIGSYS); restarted (4 of 5", "seccomp violation"] {
            #expect(stderr.contains(what), "\(what)\n\(stderr)")
        }
    }

    @Test("past --restart-budget a worker death stops the VM with status 6 and a line naming the worker")
    func restartBudgetExhausted() throws {
        let r = try Self.start("api-budget.sock", extra: ["--allow-fault-injection", "--restart-budget", "1/60"])
        var stopped = false
        defer { if !stopped { r.run.process.terminate(); _ = r.run.finish() } }
        #expect(try Self.ctl([r.socket, "fault", "synic-router", "kill"]).status == 0)
        let w = try Self.awaitWorker(r.socket, "synic-router") { $0["restarts"] == .int(1) && $0["running"] == .bool(true) }
        #expect(w?["running"] == .bool(true), "\(String(describing: w))")
        #expect(try Self.ctl([r.socket, "fault", "synic-router", "kill"]).status == 0)
        let (_, code, stderr) = r.run.finish()
        stopped = true
        #expect(code == 6, "\(stderr)")
        #expect(stderr.contains("restart budget 1/60 used up: stopping the VM"), "\(stderr)")
        #expect(stderr.contains("synthvm: worker synic-router died past its restart budget (1 restarts in 60 s): stopped"), "\(stderr)")
    }

    @Test("crash, syscall and hang of every worker kind (router, vmbus, storage): each detected and restarted, jailed and filtered")
    func everyKindEveryFault() throws {
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try StorageWorkerTests.image(dir + "/a.img", bytes: 1 << 20)
        let r = try Self.start("api-kinds.sock", extra: ["--allow-fault-injection", "--worker-hang-timeout", "1",
                                                         "--restart-budget", "20/60", "--disk", dir + "/a.img"])
        var stopped = false
        defer { if !stopped { r.run.process.terminate(); Issue.record("stderr: \(r.run.finish().2)") } }
        var expected: [String: Int64] = [:]
        for name in ["synic-router", "vmbus", "storage"] {
            for (kind, arg) in [("crash", nil), ("syscall", nil), ("hang", "30")] as [(String, String?)] {
                #expect(try Self.awaitWorker(r.socket, name) { $0["heartbeat_age_ms"]?.intValue != nil }?["running"] == .bool(true))
                let f = try Self.ctl([r.socket, "fault", name, kind] + (arg.map { [$0] } ?? []))
                #expect(f.status == 0, "\(name) \(kind): \(f)")
                expected[name, default: 0] += 1
                let n = expected[name]!
                // Attached (it beats): jailed and filtered by then.
                let w = try Self.awaitWorker(r.socket, name, seconds: 15) {
                    $0["restarts"] == .int(n) && $0["running"] == .bool(true) && $0["heartbeat_age_ms"]?.intValue != nil
                }
                #expect(w?["restarts"] == .int(n), "\(name) \(kind): \(String(describing: w))")
                if let pid = w?["pid"]?.intValue { WorkerRestartTests.expectJailedAndFiltered(Int32(pid)) }
            }
        }
        #expect(try Self.ctl([r.socket, "stop"]).status == 0)
        let (_, code, stderr) = r.run.finish()
        stopped = true
        #expect(code == 130, "\(stderr)")
        for name in ["synic-router", "vmbus", "storage"] {
            for what in ["killed by signal 11 (SIGSEGV); restarted", "killed by signal 31 (SIGSYS); restarted",
                         "killed by signal 9 (SIGKILL) after it hung (no heartbeat for"] {
                #expect(stderr.split(separator: "\n").contains {
                    $0.hasPrefix("synthvm: worker \(name) (pid ") && $0.contains(what)
                }, "\(name): \(what)\n\(stderr)")
            }
        }
    }

    /// A backend with no VM behind it, for the server alone.
    final class StubBackend: APIBackend, @unchecked Sendable {
        let faultInjectionAllowed = false
        func status() -> APIStatus { APIStatus(state: "running", uptimeSeconds: 0, vcpus: 1, pid: getpid(), faultInjection: false, workers: []) }
        func metricsText() -> String { "" }
        func killWorker(_ name: String) -> Result<Int32, APIError> { .failure(APIError(.workerNotFound, name)) }
        func shutdown() -> APIShutdownResult { .hardStop }
        func stop() -> Bool { true }
        func log(_ line: String) {}
    }

    @Test("the server alone, under monitor.policy in this process: an idle client is told IdleTimeout and closed; others go on")
    func idleTimeout() throws {
        let filters = try MonitorFilters.compile(directory: MachineConfig.defaultPolicyDirectory, mode: .enforce)
        let path = Self.socketPath("api-idle.sock")
        unlink(path)
        let listener = svm_api_listen(path, 4)
        try #require(listener >= 0)
        defer {
            close(listener)
            unlink(path)
        }
        let server = try ControlSocketServer(listenFD: listener, backend: StubBackend(), idleTimeoutMs: 300)
        try server.start(filter: filters.monitor)
        defer { server.stop() }
        let idle = try Client(path)
        let started = Date()
        let line = try #require(idle.readLine(timeout: 5), "no IdleTimeout")
        #expect(line.contains("IdleTimeout"), "\(line)")
        #expect(Date().timeIntervalSince(started) < 3)
        #expect(idle.readLine(timeout: 2) == nil)  // closed
        // A client that gave up before reading its reply does not disturb the server.
        let gone = try Client(path)
        _ = gone.send(#"{"execute":"metrics"}"#)
        let busy = try Client(path)
        #expect(try busy.request(#"{"execute":"status"}"#)["return"]?["pid"] == .int(Int64(getpid())))
    }

    @Test("shutdown through the control socket asks Linux through the shutdown IC: graceful, power off, status 0")
    func gracefulShutdownOfTheTestKernel() throws {
        try GuestHarness.requireKVM()
        let kernel = try TestKernelTests.kernel.get()
        let path = Self.socketPath("api-linux.sock")
        unlink(path)
        nonisolated(unsafe) var reply: Ctl?
        nonisolated(unsafe) var heartbeat: JSONValue?
        let boot = try TestKernelTests.boot(kernel, cpus: 1, timeout: 300, awaiting: TestKernelTests.icLines,
                                            extra: ["--api-socket", path]) { _ in
            // The heartbeat IC's view of the guest, before it is asked to shut down.
            heartbeat = (try? Self.ctlJSON(path, ["status"]))?["return"]?["guest_heartbeat"]
            reply = try? Self.ctl([path, "shutdown"])
        }
        // hv_utils negotiated the shutdown IC before the root wait; the first heartbeat request
        // goes out 5 s after negotiation, so "answered" may still be 0 here.
        #expect(heartbeat?["shutdown_negotiated"] == .bool(true), "\(String(describing: heartbeat))")
        #expect(heartbeat?["answered"] != nil && heartbeat?["sequence"] != nil, "\(String(describing: heartbeat))")
        let tail = "last serial lines:\n" + boot.lines.suffix(15).joined(separator: "\n")
        #expect(boot.reachedRootWait, "\(tail)")
        #expect(reply?.status == 0 && reply?.stdout == "the guest was asked to shut down\n", "\(String(describing: reply))")
        #expect(boot.stderr.contains("synthvm: shutdown (control socket): asked the guest to shut down (shutdown IC)"),
                "\(boot.stderr)")
        #expect(boot.status == 0, "\(boot.stderr)\n\(tail)")
        #expect(boot.log.contains("reboot: Power down"), "\(tail)")
        #expect(access(path, F_OK) != 0)
    }

    @Test("the vCPU's published counters read back in ExitCounters.named order, every field")
    func publishedCountersKeepTheirNames() {
        var c = ExitCounters()
        c.exits = 1; c.portIO = 2; c.mmio = 3; c.msr = 4; c.kicks = 5; c.unknownPortReads = 6; c.unknownPortWrites = 7
        c.unknownMMIOReads = 8; c.unknownMMIOWrites = 9; c.unknownMSRReads = 10; c.unknownMSRWrites = 11
        c.syntheticMSRReads = 12; c.syntheticMSRWrites = 13; c.hypercalls = 14; c.autoEOIInjections = 15; c.emulationFixups = 16
        let back = PublishedCounters.roundTrip(c)
        #expect(back.map(\.0) == c.named.map(\.0))
        #expect(back.map(\.1) == c.named.map(\.1))
        #expect(Set(c.named.map(\.1)) == Set(1...16))
        // Every stored property of ExitCounters is named (a new counter must be added there).
        #expect(Mirror(reflecting: c).children.count == c.named.count)
    }

    @Test("the socket outlives a VM life: after a guest reset the next VM process answers on the same path")
    func acrossAReset() throws {
        try GuestHarness.requireKVM()
        // mov ecx, 0x40000; 1: dec ecx; jnz 1b; mov al, 0xfe; out 0x64, al (keyboard controller reset); jmp $
        let guest = try GuestHarness.temporaryFile(
            GuestHarness.rawELF64(code: [0xB9, 0x00, 0x00, 0x04, 0x00, 0xFF, 0xC9, 0x75, 0xFC, 0xB0, 0xFE, 0xE6, 0x64, 0xEB, 0xFE]),
            name: "api-reset.elf")
        let path = Self.socketPath("api-reset.sock")
        unlink(path)
        let run = try VMProcessTests.launch(["run", "--kernel", guest, "--serial", "none", "--timeout", "120",
                                             "--api-socket", path])
        var finished = false
        defer { if !finished { run.process.terminate(); _ = run.finish() } }
        var pids: Set<Int64> = []
        let deadline = Date().addingTimeInterval(60)
        while pids.count < 2 && Date() < deadline {
            // Not ctlJSON: between lives (and before the first) there may be no answer, which is no failure.
            if let r = try? Self.ctl(["--json", path, "status"]), r.status == 0,
               let line = r.stdout.split(separator: "\n").first,
               let pid = (try? JSONParser.parse(String(line)))?["return"]?["pid"]?.intValue {
                pids.insert(pid)
            }
            usleep(100_000)
        }
        #expect(pids.count >= 2, "one VM process answered: \(pids)")
        // A life may end by its reset between accepting the request and reading it (the client
        // then sees the connection closed): ask again, as an operator would.
        var stop = try Self.ctl([path, "stop"])
        for _ in 0..<10 where stop.status != 0 && stop.stderr.contains("without a reply") { stop = try Self.ctl([path, "stop"]) }
        #expect(stop.status == 0, "\(stop)")
        let (_, code, stderr) = run.finish()
        finished = true
        #expect(code == 130, "\(stderr)")
        #expect(stderr.contains("guest requested a reset; restarting the VM") || stderr.contains("restarting"), "\(stderr)")
        #expect(access(path, F_OK) != 0)
    }

    @Test("--api-socket refuses a path that is not a socket (64), replaces a stale one; ctl fails in one line without a socket")
    func socketPaths() throws {
        try GuestHarness.requireKVM()
        let path = Self.socketPath("api-file.sock")
        unlink(path)
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        let refused = try CommandLineTests.synthvm(["run", "--serial", "none", "--api-socket", path])
        #expect(refused.status == 64, "\(refused)")
        #expect(refused.stderr == "synthvm: error: --api-socket \(path): exists and is not a socket; not replacing it\n")
        #expect((try? String(contentsOfFile: path, encoding: .utf8)) == "keep me")
        unlink(path)

        // A socket nobody listens on (its synthvm was killed): replaced; the built-in guest runs.
        let fd = svm_api_listen(path, 1)
        try #require(fd >= 0)
        close(fd)
        let ran = try CommandLineTests.synthvm(["run", "--serial", "none", "--api-socket", path])
        #expect(ran.status == 0, "\(ran)")
        #expect(access(path, F_OK) != 0, "the launcher left its socket behind")

        let none = try Self.ctl([path, "status"])
        #expect(none.status == 1 && none.stderr.hasPrefix("synthvm: error: cannot connect to \(path): "), "\(none)")
        #expect(none.stderr.split(separator: "\n").count == 1)
        let usage = try CommandLineTests.synthvm(["run", "--serial", "none", "--allow-fault-injection"])
        #expect(usage.status == 64, "\(usage)")
    }
}

/// The server's bounds as the tests rely on them.
enum ControlSocketLimits {
    static let maxConnections = 16
}
