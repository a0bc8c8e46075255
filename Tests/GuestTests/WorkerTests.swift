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

    @Test("a worker killed or crashed under a running guest is reported by name and signal; the VM keeps running",
          arguments: [SIGKILL, SIGSEGV])
    func deadWorkerIsReported(signal: Int32) throws {
        // The bench guest runs long enough (~100k exits) to kill the worker under it.
        let vm = try VirtualMachine(config: try Self.config("bench", cmdline: "pio=100000 msr=1"))
        let link = try #require(vm.workerLinks.first)
        let killer = Thread {
            usleep(100_000)
            link.process.signal(signal)
        }
        killer.start()
        let outcome = vm.run()
        #expect(outcome.reason == .exitDevice(value: 0), "the guest did not finish: \(outcome.reason)")
        let w = try #require(outcome.workers.first)
        #expect(w.name == "synic-router" && w.pid == link.process.pid)
        #expect(w.exit == .killed(signal: signal, coreDumped: false) || w.exit == .killed(signal: signal, coreDumped: true),
                "\(String(describing: w.exit))")
        #expect(w.exit?.description.hasPrefix("killed by signal \(signal) (\(WorkerExit.signalName(signal)))") == true)
    }

    @Test("an unknown worker name is a configuration error")
    func unknownWorker() throws {
        var c = try Self.config("hello")
        c.workers = ["nonesuch"]
        #expect { try VirtualMachine(config: c) } throws: { "\($0)".contains("unknown worker nonesuch") }
    }
}
