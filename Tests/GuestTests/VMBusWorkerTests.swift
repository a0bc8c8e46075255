import Foundation
import IPC
import Machine
@testable import Monitor
import Sandbox
import VMBus
import Testing

/// The VMBus server worker (`synthvm-vmbus`, Workers/vmbus): started by default when the guest
/// has a SynIC (`--no-vmbus` leaves it out), jailed and filtered like the router (docs/processes.md).
@Suite("VMBus worker: spawn, jail, filter, exit")
struct VMBusWorkerTests {
    static func config(_ guest: String = "hello") throws -> MachineConfig {
        var c = try WorkerTests.config(guest)
        c.vmbus = true
        return c
    }

    @Test("it runs by default when the guest has a SynIC, after the router, and not with --no-vmbus")
    func startsOnlyWithSynIC() throws {
        let path = try GuestHarness.guestPath("hello")
        var on = try MachineConfig.load(kernelPath: path, memory: "64M", serial: "none", hyperv: "default")
        #expect(on.workerNames == ["synic-router", "vmbus"] && on.runsVMBus)
        on.vmbus = false
        #expect(on.workerNames == ["synic-router"] && !on.runsVMBus)
        on.vmbus = true
        var off = try MachineConfig.load(kernelPath: path, memory: "64M", serial: "none", hyperv: "default,-stimer,-stimer-direct,-synic")
        off.vmbus = true
        #expect(!off.runsVMBus && off.workerNames.isEmpty)
    }

    @Test("jailed (own PID and other namespaces, no capabilities), filtered on every thread, holding stdio, its control socket, guest RAM, the SynIC region and its state region mapped, its doorbell, the router's and each VP's SINT2 eventfd; saves its state; exits with the VM",
          arguments: [1, 2])
    func jailedFilteredAndClean(cpus: Int) throws {
        var c = try Self.config()
        c.cpuCount = cpus
        let vm = try VirtualMachine(config: c)
        let link = try #require(vm.workerLinks.first { $0.kind == .vmbus })
        let pid = link.process.pid
        func held(_ pid: pid_t) throws -> [String] {
            let fds = try WorkerTests.openFDs(pid)
            #expect(Array(fds.prefix(4)) == [0, 1, 2, 3], "fds \(fds)")
            return try fds.dropFirst(4).map {
                String(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)").split(separator: " ")[0])
            }.sorted()
        }
        let eventfds = [String](repeating: "anon_inode:[eventfd]", count: 2 + cpus)
        #expect(try held(pid) == ["/memfd:synthvm-guest-ram", "/memfd:synthvm-heartbeats", "/memfd:synthvm-synic",
                                  "/memfd:synthvm-vmbus-state"] + eventfds)
        // The router beside it holds the VMBus worker's doorbell too (it forwards control messages).
        let router = try #require(vm.workerLinks.first { $0.kind == .synicRouter }).process.pid
        #expect(try held(router) == ["/memfd:synthvm-guest-ram", "/memfd:synthvm-heartbeats", "/memfd:synthvm-router-state",
                                     "/memfd:synthvm-synic"]
                + [String](repeating: "anon_inode:[eventfd]", count: 3 + 16 * cpus))
        let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
        #expect(maps.contains("synthvm-guest-ram"), "guest RAM not mapped by the worker")
        #expect(maps.contains("synthvm-synic"), "the SynIC region not mapped by the worker")
        #expect(maps.contains("synthvm-vmbus-state"), "the state region not mapped by the worker")
        // It saved a fresh server's state (disconnected, no channels) before it attached: once
        // when the service starts, once when its devices are in place (VMBusWorkerSaved).
        let state = try #require(vm.vmbusState)
        let saved = try #require(try state.load())
        #expect(saved.generation == 2)
        let worker = try VMBusWorkerSaved(decoding: saved.bytes)
        #expect(worker.inboundNext == 0 && worker.outboundBase == 0 && worker.devices.isEmpty)
        let decoded = worker.server
        // Three offers (the integration services: heartbeat, shutdown, time sync), none open.
        #expect(decoded.channels.count == 3 && decoded.outbound.isEmpty)
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
        // It fails on purpose, every start: the old behaviour, no restarts (docs/faults.md).
        c.restartBudget = nil
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
