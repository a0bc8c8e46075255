import Foundation
import Machine
@testable import Monitor
import Sandbox
import Testing

/// The monitor relays what a worker prints (Supervisor, WorkerLogRelay; docs/security.md,
/// "Worker output"): a jailed router made to print hostile bytes (`--test-print`), to fail before
/// its hello, or to print while the monitor's log is a regular file.
@Suite("Worker output: relayed by the monitor, prefixed and escaped")
struct WorkerOutputTests {
    /// The lines of `text` (split at LF; a missing final LF would leave a last piece).
    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    @Test("a forged monitor line with terminal escapes arrives prefixed and escaped, the partial last line flushed, all before the crash is reported")
    func forgedLinesAndCrash() throws {
        let err = try JailTests.StderrPipe()
        defer { close(err.read) }
        let forged = "synthvm: worker synic-router (pid 1) killed by signal 9 (SIGKILL)\n"
            + "\u{1b}[2J\u{1b}[1;1Hsynthvm: VM ok\r\n" + "\u{1b}]0;title\u{07}tail"
        var c = try WorkerTests.config("hello")
        c.workerStandardError = err.write
        c.workerArguments = ["--test-print", WorkerCommandLine.hex(Array(forged.utf8)), "--test-crash-after-ms", "0"]
        // It fails on purpose, every start: the old behaviour, no restarts (docs/faults.md).
        c.restartBudget = nil
        let pid: pid_t
        let outcome: RunOutcome
        do {
            defer { close(err.write) }
            let vm = try VirtualMachine(config: c)
            let link = try #require(vm.workerLinks.first)
            pid = link.process.pid
            // Bounded wait for the supervisor to see the crash (not a timing assertion).
            #expect(try #require(vm.supervisor).awaitExit(of: link.process, timeoutMs: 30_000) != nil)
            outcome = vm.run()
        }
        #expect(outcome.exitStatus == 0, "the guest did not finish: \(outcome.reason)")
        let text = err.drain()
        // Not one byte of the worker's reached the log raw: no ESC, BEL, CR anywhere.
        #expect(text.utf8.allSatisfy { $0 == 0x0a || (0x20...0x7e).contains($0) }, "\(Array(text.utf8))")
        let p = "synthvm: worker synic-router (pid \(pid))"
        #expect(Self.lines(text) == [
            "\(p): synthvm: worker synic-router (pid 1) killed by signal 9 (SIGKILL)",
            "\(p): \\x1b[2J\\x1b[1;1Hsynthvm: VM ok\\x0d",
            "\(p): \\x1b]0;title\\x07tail",
            "\(p) killed by signal 11 (SIGSEGV)",
            "",
        ], "stderr:\n\(text)")
    }

    @Test("a worker that fails before its hello: its reason is relayed before VM creation fails")
    func reasonBeforeTheError() throws {
        let err = try JailTests.StderrPipe()
        defer { close(err.read) }
        var c = try WorkerTests.config("hello")
        c.workerStandardError = err.write
        // Its command-line parser refuses this, says so on stderr and exits 1: before its hello.
        c.workerArguments = ["--test-no-such-argument"]
        var message = ""
        do {
            defer { close(err.write) }
            #expect(throws: MonitorError.self) {
                do { _ = try VirtualMachine(config: c) } catch {
                    message = "\(error)"
                    throw error
                }
            }
        }
        #expect(message.contains("worker synic-router exited before its hello"), "\(message)")
        // Read right after the error, without waiting: the relay has already written the reason.
        let lines = Self.lines(err.drain())
        let reason = try #require(lines.firstIndex { $0.hasPrefix("synthvm: worker synic-router (pid ")
            && $0.hasSuffix("): synthvm-synic-router: unknown argument --test-no-such-argument") }, "\(lines)")
        let exit = try #require(lines.firstIndex { $0.hasPrefix("synthvm: worker synic-router (pid ")
            && $0.hasSuffix(") exited with status 1") }, "\(lines)")
        #expect(reason < exit)
    }

    @Test("with the monitor's log a regular file, a jailed worker (RLIMIT_FSIZE 0) still gets its lines out: the monitor writes them")
    func logIsARegularFile() throws {
        let path = "/tmp/synthvm-worker-output-\(getpid()).log"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { unlink(path) }
        var c = try WorkerTests.config("hello")
        c.workerStandardError = fd
        c.workerArguments = ["--test-print", WorkerCommandLine.hex(Array("written through the monitor\n".utf8))]
        let pid: pid_t
        let outcome: RunOutcome
        do {
            defer { close(fd) }
            let vm = try VirtualMachine(config: c)
            let link = try #require(vm.workerLinks.first)
            pid = link.process.pid
            // The jail's file-size limit that made its own writes to a file fail (EFBIG, SIGXFSZ).
            #expect(try JailTests.limit(pid, "Max file size").map { [$0.0, $0.1] } == ["0", "0"])
            outcome = vm.run()
        }
        #expect(outcome.exitStatus == 0)
        #expect(outcome.workers.first?.exit == .exited(status: 0), "\(String(describing: outcome.workers.first?.exit))")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text == "synthvm: worker synic-router (pid \(pid)): written through the monitor\n", "log:\n\(text)")
    }

    @Test("a worker that floods gets its budget's worth relayed; the rest is dropped and counted in a monitor line")
    func flood() throws {
        let err = try JailTests.StderrPipe()
        defer { close(err.read) }
        // 40 KiB in one write (a command-line argument holds at most 128 KiB): over the 16 KiB burst.
        let line = Array(repeating: UInt8(ascii: "A"), count: 99) + [0x0a]
        let flood = Array([[UInt8]](repeating: line, count: 400).joined())
        var c = try WorkerTests.config("hello")
        c.workerStandardError = err.write
        c.workerArguments = ["--test-print", WorkerCommandLine.hex(flood)]
        let pid: pid_t
        let outcome: RunOutcome
        do {
            defer { close(err.write) }
            let vm = try VirtualMachine(config: c)
            pid = try #require(vm.workerLinks.first).process.pid
            outcome = vm.run()
        }
        #expect(outcome.exitStatus == 0)
        let lines = Self.lines(err.drain()).filter { !$0.isEmpty }
        let p = "synthvm: worker synic-router (pid \(pid))"
        let notices = lines.filter { $0.hasPrefix("\(p) exceeded its output budget (4096 bytes/s): ") }
        let relayed = lines.filter { $0.hasPrefix("\(p): ") }
        #expect(!notices.isEmpty && notices.count + relayed.count == lines.count, "\(lines.filter { !$0.hasPrefix(p) })")
        #expect(relayed.count < 400, "\(relayed.count) lines relayed")
        // Every byte is either relayed (an "A", or the LF that ended a whole line) or counted.
        let dropped = notices.compactMap { Int($0.split(separator: " ").dropLast(4).last ?? "") }.reduce(0, +)
        let written = relayed.map { $0.dropFirst(p.count + 2).filter { $0 == "A" }.count }.reduce(0, +)
        let ended = relayed.filter { !$0.hasSuffix(WorkerLogRelay.cutMarker) }.count
        #expect(written + ended + dropped == flood.count, "\(written) + \(ended) + \(dropped)")
    }

    @Test("a worker's stdout and stderr are one pipe and its stdin is /dev/null, jailed or not", arguments: [true, false])
    func stdioIsTheWorkers(jailed: Bool) throws {
        var config = try WorkerTests.config("hello")
        if !jailed { config.jail = nil }
        let vm = try VirtualMachine(config: config)
        let pid = try #require(vm.workerLinks.first).process.pid
        let input = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/0")
        let out = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/1")
        let err = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/2")
        #expect(out.hasPrefix("pipe:[") && out == err, "fd 1 \(out), fd 2 \(err)")
        let mine = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/2")
        #expect(err != mine, "the worker shares the test's stderr \(mine)")
        // Console input belongs to the guest: a worker never reads the monitor's stdin.
        #expect(input == "/dev/null", "fd 0 \(input)")
        #expect(vm.run().exitStatus == 0)
    }
}
