import CSynthVM
import Foundation
import Machine
@testable import Monitor
import Synchronization
import Testing

/// A counting semaphore for handing control between a vCPU thread (under its filter: sem_post
/// and sem_wait are futex calls) and a test thread.
final class TestSemaphore: @unchecked Sendable {
    private let sem = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    init() { sem_init(sem, 0, 0) }
    deinit {
        sem_destroy(sem)
        sem.deallocate()
    }
    func post() { sem_post(sem) }
    /// False after `seconds` without a post.
    func wait(seconds: Int) -> Bool {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        ts.tv_sec += seconds
        while sem_timedwait(sem, &ts) != 0 {
            if errno != EINTR { return false }
        }
        return true
    }
}

/// Port 0x510, which the hello guest reads once (expecting all-ones): the read runs on the vCPU
/// thread, under its filter, and calls `body` there.
final class VCPUThreadProbe: PortIODevice, @unchecked Sendable {
    static let port: UInt16 = 0x510
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    func read(port: UInt16, size: Int) -> UInt32 {
        body()
        return 0xFFFF_FFFF
    }
    func write(port: UInt16, size: Int, value: UInt32) {}
}

/// What /proc says about one thread of this process.
struct ThreadState: Sendable, CustomStringConvertible {
    var tid: Int
    var name: String
    var seccomp: String
    var filters: String
    var noNewPrivs: String

    init?(tid: Int, process: String = "self") {
        guard let status = try? String(contentsOfFile: "/proc/\(process)/task/\(tid)/status", encoding: .utf8),
              let comm = try? String(contentsOfFile: "/proc/\(process)/task/\(tid)/comm", encoding: .utf8) else { return nil }
        func field(_ f: String) -> String {
            status.split(separator: "\n").first { $0.hasPrefix(f + ":") }.map {
                String($0.dropFirst(f.count + 1).trimmingCharacters(in: .whitespaces))
            } ?? "?"
        }
        self.tid = tid
        name = comm.trimmingCharacters(in: .newlines)
        seccomp = field("Seccomp")
        filters = field("Seccomp_filters")
        noNewPrivs = field("NoNewPrivs")
    }

    /// Every thread of this process, or of process `pid`.
    static func all(pid: Int32? = nil) -> [ThreadState] {
        let process = pid.map { String($0) } ?? "self"
        let tids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(process)/task"))?.compactMap(Int.init) ?? []
        return tids.compactMap { ThreadState(tid: $0, process: process) }
    }

    var description: String { "\(tid) \(name): Seccomp \(seccomp), filters \(filters), NoNewPrivs \(noNewPrivs)" }
}

@Suite("The monitor's own seccomp filters: one per thread kind, on by default")
struct MonitorFilterTests {
    static func helloConfig() throws -> MachineConfig {
        try GuestHarness.requireKVM()
        var c = try MachineConfig.load(kernelPath: try GuestHarness.guestPath("hello"), memory: "64M", serial: "none")
        c.console = .capture
        c.timeoutSeconds = 60
        return c
    }

    @Test("every VM thread runs under exactly one filter while the guest runs; the caller's thread does not")
    func threadsRunFiltered() throws {
        var config = try Self.helloConfig()
        #expect(config.seccomp == .enforce, "filters must be enforced by default")
        // With a worker, so the supervisor thread exists; the default enlightenments start the
        // synthetic-timer thread.
        config.workers = ["synic-router"]
        let arrived = TestSemaphore(), release = TestSemaphore()
        let vcpuTID = Mutex<Int32>(0)
        let device = VCPUThreadProbe {
            vcpuTID.withLock { $0 = svm_gettid() }
            arrived.post()
            _ = release.wait(seconds: 60)
        }
        let callerTID = Int(svm_gettid())
        let seen = Mutex<[ThreadState]?>(nil)
        let inspector = Thread {
            // While the vCPU thread is held inside the guest's port read, every VM thread is up.
            guard arrived.wait(seconds: 60) else { return }
            seen.withLock { $0 = ThreadState.all() }
            release.post()
        }
        inspector.start()
        let vm = try VirtualMachine(config: config, extraDevices: [(device, VCPUThreadProbe.port...VCPUThreadProbe.port)])
        let outcome = vm.run()
        #expect(outcome.exitStatus == 0, "\(outcome.reason)")
        let threads = try #require(seen.withLock { $0 }, "the guest never read port 0x510")
        let vcpu = try #require(threads.first { $0.tid == Int(vcpuTID.withLock { $0 }) }, "vCPU thread not found")
        #expect(vcpu.name == "synthvm-vcpu0", "\(vcpu)")
        // Every thread named synthvm-* (this VM's and any other test's running now) is filtered:
        // the name is only given once the filter is in place.
        let ours = threads.filter { $0.name.hasPrefix("synthvm-") }
        for name in ["synthvm-vcpu0", "synthvm-monitor", "synthvm-stimer", "synthvm-workers", "synthvm-joiner",
                     "synthvm-autoeoi"] {
            #expect(ours.contains { $0.name == name }, "no \(name) thread: \(threads)")
        }
        for t in ours {
            #expect(t.seccomp == "2" && t.filters == "1" && t.noNewPrivs == "1", "\(t)")
        }
        // The thread that called run() (the test runner's) only waits for synthvm-monitor, and is
        // not the VM's to filter; `synthvm run` runs the VM on its VM process's main thread
        // (CommandLineTests checks that process).
        let caller = try #require(threads.first { $0.tid == callerTID })
        #expect(caller.seccomp == "0", "\(caller)")
    }

    @Test("log and errno modes reach the vCPU threads through MachineConfig", arguments: [SeccompMode.log, .errno])
    func debugModes(mode: SeccompMode) throws {
        var config = try Self.helloConfig()
        config.seccomp = mode
        // uname is in no monitor policy: on the vCPU thread, log mode lets it run (and fail on
        // its NULL buffer with EFAULT), errno mode refuses it with ENOSYS. (Enforced, it would
        // take this test process down: the command-line tests show that.)
        let result = Mutex<(Int32, Int32)?>(nil)
        let device = VCPUThreadProbe {
            errno = 0
            let r = uname(nil)
            let e = errno
            result.withLock { $0 = (r, e) }
        }
        let vm = try VirtualMachine(config: config, extraDevices: [(device, VCPUThreadProbe.port...VCPUThreadProbe.port)])
        let outcome = vm.run()
        #expect(outcome.exitStatus == 0, "\(outcome.reason)")
        let (r, e) = try #require(result.withLock { $0 }, "the guest never read port 0x510")
        switch mode {
        case .log: #expect(r == -1 && e == EFAULT, "uname(NULL) = \(r), errno \(e)")
        default: #expect(r == -1 && e == ENOSYS, "uname(NULL) = \(r), errno \(e)")
        }
    }

    @Test("a vCPU thread's tgkill reaches its own process only ($SELF_PID is the monitor's pid)")
    func tgkillOnlyToTheOwnProcess() throws {
        var config = try Self.helloConfig()
        // errno mode, so a refused call fails with ENOSYS instead of killing this test process.
        // tid 0 in both calls: the kernel refuses it with EINVAL before looking for any task, so
        // even a call the filter wrongly let through signals nothing.
        config.seccomp = .errno
        let result = Mutex<(own: Int32, pid1: Int32, neighbour: Int32)?>(nil)
        let me = getpid()
        let device = VCPUThreadProbe {
            let own = svm_tgkill(Int(me), 0, Int(SIGABRT))
            let initProcess = svm_tgkill(1, 0, Int(SIGABRT))
            let neighbour = svm_tgkill(Int(me) + 1, 0, Int(SIGABRT))
            result.withLock { $0 = (own, initProcess, neighbour) }
        }
        let vm = try VirtualMachine(config: config, extraDevices: [(device, VCPUThreadProbe.port...VCPUThreadProbe.port)])
        let outcome = vm.run()
        #expect(outcome.exitStatus == 0, "\(outcome.reason)")
        let r = try #require(result.withLock { $0 }, "the guest never read port 0x510")
        #expect(r.own == -EINVAL, "tgkill(own pid, 0, SIGABRT) = \(r.own): the filter must let it through")
        #expect(r.pid1 == -ENOSYS, "tgkill(1, 0, SIGABRT) = \(r.pid1): the filter must refuse it")
        #expect(r.neighbour == -ENOSYS, "tgkill(own pid + 1, 0, SIGABRT) = \(r.neighbour): the filter must refuse it")
    }

    @Test("a worker policy that names $SELF_PID fails VM creation, naming file and line")
    func workerPolicyCannotUseSelfPID() throws {
        var config = try Self.helloConfig()
        config.workers = ["synic-router"]
        let edited = try Self.policyCopy(editing: "synic-router.policy") {
            $0.replacingOccurrences(of: "tgkill: arg2 in", with: "tgkill: arg0 == $SELF_PID && arg2 in")
        }
        defer { try? FileManager.default.removeItem(atPath: edited) }
        config.policyDirectory = edited
        #expect { try VirtualMachine(config: config) } throws: {
            "\($0)".hasPrefix("worker synic-router: seccomp policy: \(edited)/synic-router.policy:")
                && "\($0)".contains("$SELF_PID has no value here")
        }
    }

    /// A copy of Policies/ in a fresh directory, with `edit` applied to one file.
    static func policyCopy(editing name: String, _ edit: (String) -> String?) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("synthvm-policies-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let source = URL(fileURLWithPath: MachineConfig.defaultPolicyDirectory)
        for f in try FileManager.default.contentsOfDirectory(atPath: source.path) where f.hasSuffix(".policy") {
            let text = try String(contentsOf: source.appendingPathComponent(f), encoding: .utf8)
            if f == name {
                if let edited = edit(text) { try edited.write(to: dir.appendingPathComponent(f), atomically: true, encoding: .utf8) }
            } else {
                try text.write(to: dir.appendingPathComponent(f), atomically: true, encoding: .utf8)
            }
        }
        return dir.path
    }

    @Test("a monitor policy that is missing or does not parse fails VM creation, naming file and line",
          arguments: ["vcpu.policy", "vmm.policy"])
    func badMonitorPolicy(name: String) throws {
        var config = try Self.helloConfig()
        let broken = try Self.policyCopy(editing: name) { $0 + "\nnot_a_syscall: 1\n" }
        defer { try? FileManager.default.removeItem(atPath: broken) }
        config.policyDirectory = broken
        #expect { try VirtualMachine(config: config) } throws: {
            "\($0)".hasPrefix("monitor: seccomp policy: \(config.policyDirectory)/\(name):") && "\($0)".contains("not_a_syscall")
        }
        let missing = try Self.policyCopy(editing: name) { _ in nil }
        defer { try? FileManager.default.removeItem(atPath: missing) }
        config.policyDirectory = missing
        #expect { try VirtualMachine(config: config) } throws: {
            "\($0)".contains("monitor: seccomp policy:") && "\($0)".contains("\(config.policyDirectory)/\(name)")
        }
    }
}
