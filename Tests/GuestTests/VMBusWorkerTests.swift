import Foundation
import IPC
import Machine
@testable import Monitor
import Sandbox
import VMBus
import Testing

/// The VMBus server worker (`synthvm-vmbus`, Workers/vmbus): started with `--vmbus` when the guest
/// has a SynIC, jailed and filtered like the router (docs/processes.md).
@Suite("VMBus worker: spawn, jail, filter, exit")
struct VMBusWorkerTests {
    static func config(_ guest: String = "hello") throws -> MachineConfig {
        var c = try WorkerTests.config(guest)
        c.vmbus = true
        return c
    }

    @Test("it runs only when asked for and the guest has a SynIC, after the router")
    func startsOnlyWithSynIC() throws {
        let path = try GuestHarness.guestPath("hello")
        var on = try MachineConfig.load(kernelPath: path, memory: "64M", serial: "none", hyperv: "default")
        #expect(on.workerNames == ["synic-router"])
        on.vmbus = true
        #expect(on.workerNames == ["synic-router", "vmbus"])
        var off = try MachineConfig.load(kernelPath: path, memory: "64M", serial: "none", hyperv: "default,-stimer,-stimer-direct,-synic")
        off.vmbus = true
        #expect(!off.runsVMBus && off.workerNames.isEmpty)
    }

    @Test("jailed (own PID and other namespaces, no capabilities), filtered on every thread, holding stdio, its control socket, guest RAM and its state region mapped; saves its state; exits with the VM")
    func jailedFilteredAndClean() throws {
        let vm = try VirtualMachine(config: try Self.config())
        let link = try #require(vm.workerLinks.first { $0.kind == .vmbus })
        let pid = link.process.pid
        let fds = try WorkerTests.openFDs(pid)
        #expect(fds.count == 6 && Array(fds.prefix(4)) == [0, 1, 2, 3], "fds \(fds)")
        let held = try fds.dropFirst(4).map {
            String(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)").split(separator: " ")[0])
        }
        #expect(held.sorted() == ["/memfd:synthvm-guest-ram", "/memfd:synthvm-vmbus-state"], "\(held)")
        let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
        #expect(maps.contains("synthvm-guest-ram"), "guest RAM not mapped by the worker")
        #expect(maps.contains("synthvm-vmbus-state"), "the state region not mapped by the worker")
        // It saved a fresh server's state (disconnected, no channels) before it attached.
        let state = try #require(vm.vmbusState)
        let saved = try #require(try state.load())
        #expect(saved.generation == 1)
        let decoded = try VMBusServer.Saved(decoding: saved.bytes)
        #expect(decoded.channels.isEmpty && decoded.outbound.isEmpty)
        try WorkerTests.expectFiltered(pid)
        for t in try JailTests.threads(pid) {
            let s = try JailTests.status("/proc/\(pid)/task/\(t)/status")
            #expect(s["CapEff"] == "0000000000000000" && s["CapBnd"] == "0000000000000000", "thread \(t)")
        }
        #expect(try JailTests.status("/proc/\(pid)/status")["NSpid"] == "\(pid)\t1")
        for ns in ["user", "pid", "mnt", "net", "ipc", "uts"] {
            #expect(try JailTests.namespaceLink("self", ns) != JailTests.namespaceLink("\(pid)", ns), "shares \(ns)")
        }
        let outcome = vm.run()
        #expect(outcome.exitStatus == 0)
        #expect(outcome.workers.map(\.name) == ["synic-router", "vmbus"])
        for w in outcome.workers { #expect(w.exit == .exited(status: 0), "\(w.name): \(String(describing: w.exit))") }
    }

    @Test("a call its policy refuses kills it by SIGSYS, named on stderr; the guest completes")
    func forbiddenSyscallIsReported() throws {
        let err = try JailTests.StderrPipe()
        defer { close(err.read) }
        var c = try Self.config()
        c.workerArguments = ["--test-forbidden-syscall"]
        c.workerStandardError = err.write
        let outcome: RunOutcome
        do {
            defer { close(err.write) }
            outcome = try VirtualMachine(config: c).run()
        }
        #expect(outcome.exitStatus == 0, "the guest did not finish: \(outcome.reason)")
        let w = try #require(outcome.workers.first { $0.name == "vmbus" })
        #expect(w.exit?.description.hasPrefix("killed by signal 31 (SIGSYS)") == true, "\(String(describing: w.exit))")
        let text = err.drain()
        #expect(text.contains("synthvm-vmbus: seccomp violation: syscall 41 (socket)\n"), "stderr: \(text)")
    }
}
