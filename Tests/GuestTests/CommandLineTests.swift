import Foundation
import Machine
import Testing

/// Runs the real `synthvm` binary, as an operator would.
@Suite("synthvm command line")
struct CommandLineTests {
    static var binary: URL {
        // The test bundle and the synthvm executable are built into the same folder.
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("synthvm")
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func synthvm(_ args: [String]) throws -> Result {
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        // COM1 reads stdin: never let a test's synthvm take the terminal the tests run in.
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                      stderr: String(decoding: e, as: UTF8.self))
    }

    @Test("the binary exists next to the tests")
    func binaryExists() {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary.path), "\(Self.binary.path)")
    }

    @Test("`synthvm run` boots the built-in guest and exits 0")
    func runBuiltin() throws {
        try GuestHarness.requireKVM()
        let r = try Self.synthvm(["run", "--cmdline", "from-cli"])
        #expect(r.status == 0)
        #expect(r.stdout == BuiltinGuest.greeting + "from-cli\n")
        #expect(r.stderr.isEmpty, "\(r.stderr)")
    }

    @Test("`synthvm run --kernel hello.elf --cpus 4` prints the greeting and exits 0")
    func runHello() throws {
        try GuestHarness.requireKVM()
        let r = try Self.synthvm(["run", "--kernel", try GuestHarness.guestPath("hello"), "--cpus", "4"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("Hello from SynthVM guest\n"))
        #expect(r.stdout.contains("cpus: 4\n"))
    }

    @Test("--serial file: writes the console to a file")
    func serialFile() throws {
        try GuestHarness.requireKVM()
        let path = try GuestHarness.temporaryFile([], name: "serial.log")
        let r = try Self.synthvm(["run", "--serial", "file:\(path)", "--cmdline", "to-file"])
        #expect(r.status == 0)
        #expect(r.stdout.isEmpty)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == BuiltinGuest.greeting + "to-file\n")
    }

    @Test("bad input gets one line on stderr and status 64, before a VM exists", arguments: [
        (["run", "--kernel", "/nonexistent/kernel"], "cannot read kernel /nonexistent/kernel"),
        (["run", "--cpus", "0"], "--cpus 0 is out of range"),
        (["run", "--cpus", "65"], "--cpus 65 is out of range"),
        (["run", "--cpus", "four"], "'four' is invalid"),
        (["run", "--memory", "lots"], "--memory"),
        (["run", "--memory", "1M"], "--memory"),
        (["run", "--memory", "100G"], "--memory"),
        (["run", "--serial", "tcp:1"], "--serial tcp:1"),
        (["run", "--kernel", "/etc/hostname"], "unknown kernel format"),
        (["run", "--kernel", "/"], "is not a regular file"),
        (["run", "--bogus"], "--bogus"),
        (["run", "--timeout", "0"], "--timeout 0 must be positive"),
        (["run", "--hyperv", "bogus"], "--hyperv"),
        (["run", "--hyperv", "time,time"], "--hyperv"),
        (["run", "--on-guest-crash", "explode"], "--on-guest-crash explode"),
        (["run", "--on-reset", "maybe"], "--on-reset maybe"),
        (["run", "--profile", "windows"], "--profile windows"),
    ])
    func badInput(args: [String], message: String) throws {
        let r = try Self.synthvm(args)
        #expect(r.status == 64)
        #expect(r.stdout.isEmpty)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("synthvm: error: "))
        #expect(r.stderr.contains(message), "\(r.stderr)")
    }

    @Test("a malformed or oversized kernel is rejected with a clear error")
    func malformedKernels() throws {
        let good = BuiltinGuest.elf()
        let truncated = try GuestHarness.temporaryFile(Array(good.prefix(70)), name: "truncated.elf")
        var badSegment = good
        badSegment[64 + 32] = 0xFF // p_filesz low byte beyond the file
        badSegment[64 + 33] = 0xFF
        let outside = try GuestHarness.temporaryFile(badSegment, name: "badseg.elf")
        // A segment at 1 MiB that is 64 MiB long cannot fit in 32 MiB of RAM.
        var huge = good
        huge.replaceSubrange((64 + 40)..<(64 + 48), with: withUnsafeBytes(of: UInt64(64 << 20).littleEndian, Array.init))
        let big = try GuestHarness.temporaryFile(huge, name: "huge.elf")
        for (path, message, extra) in [(truncated, "bad ELF kernel", [String]()),
                                       (outside, "bad ELF kernel", []),
                                       (big, "does not fit in guest RAM", ["--memory", "32M"])] {
            let r = try Self.synthvm(["run", "--kernel", path] + extra)
            #expect(r.status == 64)
            #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
            #expect(r.stderr.contains(message), "\(r.stderr)")
        }
    }

    @Test("--timeout stops a guest that never ends, with status 124")
    func timeout() throws {
        try GuestHarness.requireKVM()
        let spin = try GuestHarness.temporaryFile(GuestHarness.rawELF64(code: [0xEB, 0xFE]), name: "spin.elf")
        let r = try Self.synthvm(["run", "--kernel", spin, "--timeout", "1"])
        #expect(r.status == 124)
        #expect(r.stderr.contains("timed out after 1 s"), "\(r.stderr)")
    }

    /// Prints "B" on COM1, then writes 1 to the Hyper-V RESET MSR (0x40000003).
    static let resetGuest: [UInt8] = [
        0x66, 0xBA, 0xF8, 0x03, 0xB0, 0x42, 0xEE, 0xB0, 0x0A, 0xEE, // mov dx,0x3f8; "B\n"
        0xB9, 0x03, 0x00, 0x00, 0x40, 0xB8, 0x01, 0x00, 0x00, 0x00, 0x31, 0xD2, 0x0F, 0x30, // wrmsr RESET=1
        0xFA, 0xF4, // cli; hlt
    ]

    @Test("a guest RESET restarts the VM, or exits with status 10 with --on-reset exit")
    func reset() throws {
        try GuestHarness.requireKVM()
        let path = try GuestHarness.temporaryFile(GuestHarness.rawELF64(code: Self.resetGuest), name: "reset.elf")
        let exit = try Self.synthvm(["run", "--kernel", path, "--on-reset", "exit"])
        #expect(exit.status == 10)
        #expect(exit.stdout == "B\n")
        let restart = try Self.synthvm(["run", "--kernel", path, "--timeout", "2"])
        #expect(restart.status == 124)
        #expect(restart.stdout.components(separatedBy: "B\n").count > 3, "booted only: \(restart.stdout)")
        #expect(restart.stderr.contains("restarting the VM"))
        // Without the reset enlightenment the MSR is not there: #GP, and with no IDT a triple fault.
        let noReset = try Self.synthvm(["run", "--kernel", path, "--hyperv", "time"])
        #expect(noReset.status == 2)
    }

    @Test("SIGTERM stops a running VM cleanly with status 130")
    func sigterm() throws {
        try GuestHarness.requireKVM()
        let spin = try GuestHarness.temporaryFile(GuestHarness.rawELF64(code: [0xEB, 0xFE]), name: "spin-term.elf")
        let run = try VMProcessTests.launch(["run", "--kernel", spin, "--timeout", "60"])
        usleep(500_000)
        run.process.terminate() // SIGTERM
        let (reason, status, e) = run.finish()
        #expect(reason == .exit)
        #expect(status == 130)
        #expect(e.contains("stopped by signal 15"), "\(e)")
    }

    @Test("--seccomp log and errno say loudly that nothing is enforced; a bad mode is a usage error")
    func seccompModes() throws {
        try GuestHarness.requireKVM()
        for mode in ["log", "errno"] {
            let r = try Self.synthvm(["run", "--seccomp", mode, "--serial", "none"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains("synthvm: WARNING: seccomp NOT ENFORCED (--seccomp \(mode))"), "\(r.stderr)")
        }
        let enforced = try Self.synthvm(["run", "--seccomp", "enforce", "--serial", "none"])
        #expect(enforced.status == 0 && enforced.stderr.isEmpty, "\(enforced.stderr)")
        let bad = try Self.synthvm(["run", "--seccomp", "off"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("--seccomp off: expected enforce, log or errno"), "\(bad.stderr)")
    }

    @Test("a vCPU thread making a call its policy refuses kills the monitor by SIGSYS, naming the call")
    func monitorViolation() throws {
        try GuestHarness.requireKVM()
        // A vcpu.policy without KVM_RUN: the first KVM_RUN is refused.
        let dir = try MonitorFilterTests.policyCopy(editing: "vcpu.policy") { text in
            text.replacingOccurrences(of: "ioctl: arg1 in {KVM_RUN, ", with: "ioctl: arg1 in {")
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let hello = try GuestHarness.guestPath("hello")
        let (reason, status, e) = try VMProcessTests.launch(["run", "--kernel", hello, "--serial", "none",
                                                             "--policy-dir", dir]).finish()
        #expect(reason == .uncaughtSignal && status == SIGSYS, "\(status): \(e)")
        #expect(e.contains("synthvm monitor: seccomp violation: syscall 16 (ioctl)\n"), "\(e)")
        // The debug modes, on the same broken policy: log lets KVM_RUN through, errno fails it.
        let logged = try Self.synthvm(["run", "--kernel", hello, "--serial", "none", "--policy-dir", dir, "--seccomp", "log"])
        #expect(logged.status == 0, "\(logged.stderr)")
        let refused = try Self.synthvm(["run", "--kernel", hello, "--serial", "none", "--policy-dir", dir, "--seccomp", "errno"])
        #expect(refused.status == 6, "\(refused.stderr)")
        #expect(refused.stderr.contains("KVM_RUN(vCPU 0)"), "\(refused.stderr)")
    }

    @Test("--help documents every run option")
    func help() throws {
        let r = try Self.synthvm(["run", "--help"])
        #expect(r.status == 0)
        for option in ["--kernel", "--initrd", "--module", "--cmdline", "--cpus", "--memory", "--serial", "--timeout", "--stats",
                       "--hyperv", "--crash-report", "--on-guest-crash", "--on-reset", "--seccomp", "--policy-dir",
                       "--profile"] {
            #expect(r.stdout.contains(option), "missing \(option)")
        }
    }

    @Test("`synthvm info` says whether the host is PVM and what --profile linux-pvm adds; run --profile appends it")
    func pvmInfoAndProfile() throws {
        try GuestHarness.requireKVM()
        let info = try Self.synthvm(["info"])
        #expect(info.status == 0, "\(info.stderr)")
        let isPVM = PVMHostProbe.moduleLoaded
        #expect(info.stdout.contains(isPVM ? "host KVM = PVM" : "host KVM = not PVM"), "\(info.stdout)")
        let line = try #require(info.stdout.split(separator: "\n").first { $0.hasPrefix("--profile linux-pvm adds = ") })
        let additions = String(line.dropFirst("--profile linux-pvm adds = ".count))
        let run = try Self.synthvm(["run", "--profile", "linux-pvm", "--cmdline", "console=ttyS0"])
        #expect(run.status == 0, "\(run.stderr)")
        if isPVM {
            #expect(run.stdout == BuiltinGuest.greeting + "console=ttyS0 " + additions + "\n", "\(run.stdout)")
            #expect(run.stderr.contains("--profile linux-pvm: command line is now: console=ttyS0 " + additions))
        } else {
            #expect(additions == "nothing on this host")
            #expect(run.stdout == BuiltinGuest.greeting + "console=ttyS0\n")
        }
    }
}

/// The CLI tests do not link the monitor's PVMHost; this is the same check it makes.
enum PVMHostProbe {
    static var moduleLoaded: Bool { FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm") }
}
