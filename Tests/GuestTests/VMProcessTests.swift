import Foundation
import Machine
import Testing

/// `synthvm run` as a launcher and one VM process per VM life (Sources/synthvm/VMProcessLauncher.swift):
/// every thread of the VM process filtered, the launcher holding nothing of the VM, every life a
/// fresh exec of synthvm-vm with an address-space layout of its own.
@Suite("synthvm run: the VM process")
struct VMProcessTests {
    /// A running `synthvm run`: the launcher's Process and its stderr.
    struct Launched {
        let process: Process
        let stderr: Pipe

        /// Waits for the launcher's VM process to run its guest, up to `seconds`: its main thread
        /// is named synthvm-monitor once its filter is in, which is after every other thread has
        /// started and before the vCPUs may run.
        func vmProcess(seconds: Double = 30) -> Int32? {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if let child = VMProcessTests.children(of: process.processIdentifier).first,
                   ThreadState(tid: Int(child), process: String(child))?.name == "synthvm-monitor" {
                    return child
                }
                usleep(20_000)
            }
            return nil
        }

        func finish() -> (Process.TerminationReason, Int32, String) {
            let e = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationReason, process.terminationStatus, e)
        }
    }

    static func launch(_ args: [String], standardInput: Any = FileHandle.nullDevice) throws -> Launched {
        let p = Process()
        p.executableURL = CommandLineTests.binary
        p.arguments = args
        p.environment = ["SWIFT_BACKTRACE": "enable=no"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        p.standardInput = standardInput
        try p.run()
        return Launched(process: p, stderr: err)
    }

    /// A guest that spins forever.
    static func spinGuest(_ name: String) throws -> String {
        try GuestHarness.temporaryFile(GuestHarness.rawELF64(code: [0xEB, 0xFE]), name: name)
    }

    /// The children of every thread of `pid` (a worker is the child of the thread that spawned
    /// it, which need not be the main thread).
    static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { t in
            ((try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/children", encoding: .utf8)) ?? "")
                .split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    /// What the process's descriptors point at (`readlink /proc/<pid>/fd/*`).
    static func descriptorTargets(_ pid: Int32) -> [String] {
        let dir = "/proc/\(pid)/fd"
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + $0) }
    }

    @Test("every thread of the VM process runs filtered; the launcher holds no KVM descriptor and one thread")
    func everyThreadFiltered() throws {
        try GuestHarness.requireKVM()
        // stdin a pipe, so a worker that inherited it would show it (rather than a /dev/null
        // the test runner might have been given).
        let input = Pipe()
        let run = try Self.launch(["run", "--kernel", try Self.spinGuest("spin-vmproc.elf"), "--cpus", "2",
                                   "--timeout", "60", "--serial", "none"], standardInput: input)
        let child = Self.vmProcessOrKill(run)
        let vm = try #require(child, "no VM process with a vCPU thread appeared")
        let threads = ThreadState.all(pid: vm)
        let workerStdin = Self.children(of: vm).map {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\($0)/fd/0")) ?? "?"
        }
        let launcher = ThreadState.all(pid: run.process.processIdentifier)
        let launcherFDs = Self.descriptorTargets(run.process.processIdentifier)
        let vmFDs = Self.descriptorTargets(vm)
        run.process.terminate()
        let (reason, status, stderr) = run.finish()
        #expect(reason == .exit && status == 130, "\(status): \(stderr)")

        // The main thread runs the VM under monitor.policy and is named once that is in.
        let main = try #require(threads.first { $0.tid == Int(vm) }, "\(threads)")
        #expect(main.name == "synthvm-monitor", "\(main)")
        for name in ["synthvm-vcpu0", "synthvm-vcpu1", "synthvm-stimer", "synthvm-workers", "synthvm-joiner"] {
            #expect(threads.contains { $0.name == name }, "no \(name): \(threads)")
        }
        // KVM's own kernel worker (kvm-nx-lpage-recovery) is listed among the process's tasks but
        // runs no user-space code; everything else is ours and must be filtered.
        for t in threads where !t.name.hasPrefix("kvm-") {
            #expect(t.seccomp == "2" && t.filters == "1" && t.noNewPrivs == "1", "\(t)")
        }
        #expect(vmFDs.contains("anon_inode:kvm-vm"), "\(vmFDs)")
        // The workers (the SynIC router, and the VMBus worker now that it runs by default): stdin
        // /dev/null, not the operator's console input.
        #expect(!workerStdin.isEmpty && workerStdin.allSatisfy { $0 == "/dev/null" }, "\(workerStdin)")
        // The launcher: unfiltered (it starts the next VM process), single-threaded (it forks and execs),
        // and nothing of the VM: no KVM descriptor, no guest memory.
        #expect(launcher.count == 1, "\(launcher)")
        #expect(!launcherFDs.contains { $0.contains("kvm") || $0.contains("memfd") }, "\(launcherFDs)")
    }

    static func vmProcessOrKill(_ run: Launched) -> Int32? {
        if let c = run.vmProcess() { return c }
        run.process.terminate()
        _ = run.finish()
        return nil
    }

    @Test("a call monitor.policy refuses on the VM process's main thread kills it by SIGSYS, naming the call")
    func monitorThreadViolation() throws {
        try GuestHarness.requireKVM()
        // Without poll, the run loop's first wait is refused: it comes after the filter and
        // before the guest could finish.
        let dir = try MonitorFilterTests.policyCopy(editing: "monitor.policy") { text in
            text.replacingOccurrences(of: "\npoll: 1\n", with: "\n")
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try Self.launch(["run", "--kernel", try Self.spinGuest("spin-monviol.elf"), "--timeout", "60",
                                   "--serial", "none", "--policy-dir", dir])
        let (reason, status, stderr) = run.finish()
        // The launcher ends the way its VM process ended.
        #expect(reason == .uncaughtSignal && status == SIGSYS, "\(status): \(stderr)")
        #expect(stderr.contains("synthvm monitor: seccomp violation: syscall 7 (poll)\n"), "\(stderr)")
    }

    @Test("the VM process dies with its launcher")
    func diesWithLauncher() throws {
        try GuestHarness.requireKVM()
        let run = try Self.launch(["run", "--kernel", try Self.spinGuest("spin-orphan.elf"), "--timeout", "60",
                                   "--serial", "none"])
        let vm = try #require(Self.vmProcessOrKill(run))
        kill(run.process.processIdentifier, SIGKILL)
        _ = run.finish()
        var gone = false
        for _ in 0..<500 {
            // Reaped by init (or a subreaper) once it died: /proc/<pid> goes, or shows a zombie.
            let state = (try? String(contentsOfFile: "/proc/\(vm)/stat", encoding: .utf8))?
                .split(separator: ")").last?.split(separator: " ").first
            if state == nil || state == "Z" || state == "X" { gone = true; break }
            usleep(10_000)
        }
        #expect(gone, "VM process \(vm) outlived its launcher")
    }

    @Test("--crash-report: the VM process hands the JSON to the launcher, which writes the file")
    func crashReportFile() throws {
        try GuestHarness.requireKVM()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("synthvm-crash-\(getpid()).json").path
        try? FileManager.default.removeItem(atPath: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let crash = try CommandLineTests.synthvm(["run", "--kernel", try GuestHarness.guestPath("hvcrash"),
                                                  "--serial", "none", "--crash-report", path])
        #expect(crash.status == 8, "\(crash.stderr)")
        let json = try String(contentsOfFile: path, encoding: .utf8)
        #expect(json.contains("\"message\": \"synthvm test bugcheck\""), "\(json)")
        #expect(json.contains("\"parameters\": [\"0x11\", \"0x22\", \"0x33\""), "\(json)")
        // No crash, no file.
        try FileManager.default.removeItem(atPath: path)
        let fine = try CommandLineTests.synthvm(["run", "--kernel", try GuestHarness.guestPath("hello"),
                                                 "--serial", "none", "--crash-report", path])
        #expect(fine.status == 0, "\(fine.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path))
        // A path that cannot be written: one line, and the guest's status still.
        let bad = try CommandLineTests.synthvm(["run", "--kernel", try GuestHarness.guestPath("hvcrash"),
                                                "--serial", "none", "--crash-report", "/nonexistent-dir/report.json"])
        #expect(bad.status == 8)
        #expect(bad.stderr.contains("synthvm: cannot write crash report /nonexistent-dir/report.json: No such file or directory"),
                "\(bad.stderr)")
    }

    /// Waits for a VM process of `run` other than `previous` whose guest runs (see `vmProcess`).
    static func nextVMProcess(_ run: Launched, after previous: Int32?, seconds: Double = 30) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let child = children(of: run.process.processIdentifier).first, child != previous,
               ThreadState(tid: Int(child), process: String(child))?.name == "synthvm-monitor" {
                return child
            }
            usleep(5_000)
        }
        return nil
    }

    /// Where each mapping of `path` (and of the stack and heap) starts in `pid`: the first
    /// mapping of each name in /proc/<pid>/maps.
    static func mappingBases(_ pid: Int32) -> [String: UInt64] {
        // Read to the end: a /proc file has no size to read up to.
        let data = FileHandle(forReadingAtPath: "/proc/\(pid)/maps")?.readDataToEndOfFile() ?? Data()
        let text = String(decoding: data, as: UTF8.self)
        var bases: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, let start = UInt64(fields[0].split(separator: "-")[0], radix: 16) else { continue }
            let name = String(fields[5])
            if bases[name] == nil { bases[name] = start }
        }
        return bases
    }

    /// Raises RTS (the console feeds COM1 only then), waits for COM1 to have a byte, takes it,
    /// then writes 1 to the Hyper-V RESET MSR: one VM life per byte on stdin.
    static let resetOnInputGuest: [UInt8] = [
        0x66, 0xBA, 0xFC, 0x03, 0xB0, 0x03, 0xEE,                                    // MCR = DTR | RTS
        0x66, 0xBA, 0xFD, 0x03, 0xEC, 0xA8, 0x01, 0x74, 0xF7,                        // LSR.DR? else again
        0x66, 0xBA, 0xF8, 0x03, 0xEC,                                                // in al, 0x3f8
        0xB9, 0x03, 0x00, 0x00, 0x40, 0xB8, 0x01, 0x00, 0x00, 0x00, 0x31, 0xD2, 0x0F, 0x30, // wrmsr RESET=1
        0xFA, 0xF4,                                                                  // cli; hlt
    ]

    @Test("each VM life is a fresh exec of synthvm-vm with an address-space layout of its own")
    func freshAddressSpacePerLife() throws {
        try GuestHarness.requireKVM()
        let aslr = (try? String(contentsOfFile: "/proc/sys/kernel/randomize_va_space", encoding: .utf8)) ?? "?"
        #expect(aslr.hasPrefix("2"), "ASLR is off on this host (randomize_va_space \(aslr)): no layout can differ")
        let guest = try GuestHarness.temporaryFile(GuestHarness.rawELF64(code: Self.resetOnInputGuest), name: "reset-input.elf")
        let input = Pipe()
        let run = try Self.launch(["run", "--kernel", guest, "--timeout", "60", "--serial", "stdio"],
                                  standardInput: input.fileHandleForReading)
        defer { if run.process.isRunning { run.process.terminate() } }
        let expectedExe = CommandLineTests.binary.deletingLastPathComponent().appendingPathComponent("synthvm-vm").path
        var lives: [(pid: Int32, bases: [String: UInt64])] = []
        for life in 0..<3 {
            let vm = try #require(Self.nextVMProcess(run, after: lives.last?.pid), "no VM process for life \(life + 1)")
            // What the VM process is: synthvm-vm, its whole command line the path, no argument.
            let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(vm)/exe")
            let cmdline = try String(contentsOfFile: "/proc/\(vm)/cmdline", encoding: .utf8)
            #expect(exe == expectedExe, "life \(life + 1): exe \(exe)")
            #expect(cmdline == expectedExe + "\0", "life \(life + 1): cmdline \(cmdline.debugDescription)")
            let bases = Self.mappingBases(vm)
            // An exec, not a fork: the launcher's binary is not mapped.
            #expect(bases[CommandLineTests.binary.path] == nil, "life \(life + 1) maps the launcher: \(bases.keys)")
            lives.append((vm, bases))
            input.fileHandleForWriting.write(Data("r".utf8))  // the guest resets; the launcher starts the next life
        }
        run.process.terminate()
        let (_, status, stderr) = run.finish()
        #expect(status == 130, "\(stderr)")
        // Two restarts at least (the third reset may race with the SIGTERM, which then wins).
        #expect(stderr.components(separatedBy: "restarting the VM").count - 1 >= 2, "\(stderr)")
        // Every life has its own layout: the executable, the heap and the stack start elsewhere
        // each time (a forked life would have shared the first two with the launcher and each other).
        for name in [expectedExe, "[heap]", "[stack]"] {
            let starts = lives.compactMap { $0.bases[name] }
            #expect(starts.count == lives.count, "\(name) missing in some life: \(lives.map(\.bases))")
            #expect(Set(starts).count == starts.count, "\(name) at the same address in two lives: \(starts.map { String($0, radix: 16) })")
        }
    }
}
