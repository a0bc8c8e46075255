import Foundation
import Machine
@testable import Monitor
import Testing

@Suite("Worker processes: spawn, handshake, death detection")
struct WorkerTests {
    static func config(_ guest: String, cmdline: String = "") throws -> MachineConfig {
        try GuestHarness.requireKVM()
        var c = try MachineConfig.load(kernelPath: try GuestHarness.guestPath(guest), commandLine: cmdline,
                                       memory: "64M", serial: "none")
        c.console = .capture
        c.timeoutSeconds = 60
        c.workers = ["synic-router"]
        return c
    }

    /// The fd numbers open in a process.
    static func openFDs(_ pid: pid_t) throws -> [Int] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap(Int.init).sorted()
    }

    @Test("the router starts with only stdio and its control socket, attaches to guest RAM, and exits with the VM")
    func handshakeAndCleanExit() throws {
        let vm = try VirtualMachine(config: try Self.config("hello"))
        let link = try #require(vm.workerLinks.first)
        // After the handshake: stdin/stdout/stderr, the control socket (3), and the guest RAM
        // memfd it was handed (kept for its mapping). Nothing of the monitor's leaked in.
        let fds = try Self.openFDs(link.process.pid)
        #expect(fds.count == 5 && Array(fds.prefix(4)) == [0, 1, 2, 3], "fds \(fds)")
        let maps = try String(contentsOfFile: "/proc/\(link.process.pid)/maps", encoding: .utf8)
        #expect(maps.contains("synthvm-guest-ram"), "guest RAM not mapped by the worker")
        let outcome = vm.run()
        #expect(outcome.exitStatus == 0)
        let w = try #require(outcome.workers.first)
        #expect(w.name == "synic-router")
        #expect(w.exit == .exited(status: 0))
    }

    @Test("killing the router is detected and reported by name and signal; the VM keeps running")
    func killedWorkerIsReported() throws {
        // The bench guest runs long enough (~100k exits) to kill the worker under it.
        let vm = try VirtualMachine(config: try Self.config("bench", cmdline: "pio=100000 msr=1"))
        let link = try #require(vm.workerLinks.first)
        let killer = Thread {
            usleep(100_000)
            link.process.signal(SIGKILL)
        }
        killer.start()
        let outcome = vm.run()
        #expect(outcome.reason == .exitDevice(value: 0), "the guest did not finish: \(outcome.reason)")
        let w = try #require(outcome.workers.first)
        #expect(w.name == "synic-router" && w.pid == link.process.pid)
        #expect(w.exit == .killed(signal: SIGKILL, coreDumped: false))
        #expect(w.exit?.description == "killed by signal 9 (SIGKILL)")
    }

    @Test("a worker that crashes is reported with the signal that killed it")
    func crashedWorker() throws {
        let vm = try VirtualMachine(config: try Self.config("bench", cmdline: "pio=100000 msr=1"))
        let link = try #require(vm.workerLinks.first)
        let crasher = Thread {
            usleep(100_000)
            link.process.signal(SIGSEGV)
        }
        crasher.start()
        let outcome = vm.run()
        #expect(outcome.exitStatus == 1)
        let w = try #require(outcome.workers.first)
        if case let .killed(sig, _) = w.exit { #expect(sig == SIGSEGV) } else { Issue.record("\(String(describing: w.exit))") }
    }

    @Test("an unknown worker name is a configuration error")
    func unknownWorker() throws {
        var c = try Self.config("hello")
        c.workers = ["nonesuch"]
        #expect { try VirtualMachine(config: c) } throws: { "\($0)".contains("unknown worker nonesuch") }
    }
}
