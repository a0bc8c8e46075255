import CSynthVM
import Glibc
import Monitor

/// `synthvm run` runs every VM life in a process of its own: a fresh `execve` of `synthvm-vm`
/// (built next to `synthvm`) started by this one (the launcher), so each life has an
/// address-space layout of its own (ASLR) and none inherits the launcher's heap. The launcher
/// hands it the validated configuration as a `VMProcessSetup` record in a sealed memfd (its fd
/// 3), with `--crash-report` the pipe for the report (fd 4), and the `--disk`s' fds (5, 6, ...,
/// opened and locked here once for all lives); stdio stays. The VM process
/// builds the VM and then runs it on its main thread (`VirtualMachine.runOnCallingThread`), so
/// once it runs every one of its threads is under a seccomp filter and none can open a file,
/// start a process or make a setup ioctl again. The launcher holds no KVM descriptor and no
/// guest memory; it owns the terminal, restarts the VM process after a guest reset
/// (`--on-reset restart`), passes SIGINT/SIGTERM on, writes the JSON crash report the VM process
/// hands it through the pipe, and ends the way the last VM process ended: its exit status, or its
/// fatal signal (a seccomp kill stays a SIGSYS death). docs/monitor.md ("The VM process") has the
/// picture.
struct VMProcessLauncher {
    /// `--on-reset restart`.
    var restartOnReset: Bool
    /// `--crash-report`.
    var crashReportPath: String?
    /// `--timeout`, over all the VM's lives together.
    var timeoutSeconds: Int?
    /// `--stats`, printed by the VM process that ends the run.
    var stats: Bool
    /// `--api-socket`: the listening socket, created here once and handed to every VM life as
    /// its fd 5 (docs/api.md, "Where the socket lives"); removed when the launcher ends.
    var apiSocket: APISocket?

    /// The JSON crash report is at most this long; a VM process that sends more is not trusted
    /// with the rest (the real one is a few KiB: five parameters and one 4 KiB page, escaped).
    static let crashReportLimit = 1 << 20

    /// Runs VM lives until one ends without a reset to restart; never returns. Each life is a
    /// new VM process running `config` (its timeout is what is left).
    func run(config: MachineConfig) -> Never {
        if svm_launcher_forward_signals() != 0 {
            fail("cannot install the SIGINT/SIGTERM handlers", status: StopReason.setupFailureStatus)
        }
        // `synthvm-vm`, next to this binary, found the way the VM process finds its workers.
        let executable = WorkerProcess.executablePath(for: "vm")
        let started = monotonicSeconds()
        var config = config
        while true {
            if let t = timeoutSeconds {
                let left = Double(t) - (monotonicSeconds() - started)
                guard left > 0 else {
                    printErr("synthvm: timed out after \(t) s")
                    end(status: StopReason.timedOut(seconds: t).exitStatus)
                }
                config.timeoutSeconds = max(1, Int(left.rounded(.up)))
            }
            var report: [Int32] = [-1, -1]
            if crashReportPath != nil, case let r = svm_pipe_cloexec(&report), r != 0 {
                fail("cannot create the crash-report pipe: \(String(cString: strerror(-r)))",
                     status: StopReason.setupFailureStatus)
            }
            config.apiSocket = apiSocket != nil ? VMProcessSetup.apiSocketFD : nil
            // The disks' fds (opened and locked by `synthvm run`, kept here for every life) become
            // fds 6, 7, ... of the VM process, and the record says so.
            let diskFDs = config.disks.map(\.fd)
            var lifeConfig = config
            for i in lifeConfig.disks.indices { lifeConfig.disks[i].fd = VMProcessSetup.firstDiskFD + Int32(i) }
            let setup = VMProcessSetup(config: lifeConfig, restartOnReset: restartOnReset, stats: stats,
                                       hasCrashReportPipe: report[1] >= 0)
            let setupFD = setup.writeToSealedMemfd()
            if setupFD < 0 {
                fail("cannot hand the VM process its setup: \(String(cString: strerror(-setupFD)))",
                     status: StopReason.setupFailureStatus)
            }
            // argv is the executable alone: everything else is in the record.
            var argv: [UnsafeMutablePointer<CChar>?] = [strdup(executable), nil]
            let pid = svm_launcher_spawn(executable, &argv, setupFD, report[1], apiSocket?.fd ?? -1, diskFDs,
                                         Int32(diskFDs.count))
            free(argv[0])
            close(setupFD)
            if pid < 0 {
                fail("cannot start the VM process \(executable): \(String(cString: strerror(-pid)))",
                     status: StopReason.setupFailureStatus)
            }
            if report[1] >= 0 { close(report[1]) }
            // Read to the end first: the VM process may block writing a report the pipe cannot hold.
            let json = report[0] >= 0 ? Self.readAll(fd: report[0], limit: Self.crashReportLimit) : []
            if report[0] >= 0 { close(report[0]) }
            let status = svm_launcher_wait(pid)
            if let path = crashReportPath, !json.isEmpty { Self.write(json, to: path) }
            if status <= -1000 {
                fail("cannot wait for the VM process: \(String(cString: strerror(-1000 - status)))",
                     status: StopReason.hostFailure("").exitStatus)
            }
            if status < 0 {
                apiSocket?.remove()
                svm_launcher_die_by(-status)
            }
            if status == StopReason.platformReset.exitStatus, restartOnReset {
                // A SIGINT/SIGTERM that raced with the reset stops here rather than restart.
                let sig = svm_launcher_stop_signal()
                if sig != 0 {
                    printErr("synthvm: \(StopReason.signal(sig).description)")
                    end(status: StopReason.signal(sig).exitStatus)
                }
                printErr("synthvm: guest requested a reset; restarting the VM")
                continue
            }
            end(status: status)
        }
    }

    private func end(status: Int32) -> Never {
        apiSocket?.remove()
        ConsoleTerminal.restore()
        Glibc.exit(status)
    }

    static func readAll(fd: Int32, limit: Int) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if out.count < limit { out += chunk[0..<min(n, limit - out.count)] }
        }
        return out
    }

    static func write(_ bytes: [UInt8], to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            printErr("synthvm: cannot write crash report \(path): \(String(cString: strerror(errno)))")
            return
        }
        defer { close(fd) }
        if !writeAll(bytes, fd: fd) {
            printErr("synthvm: cannot write crash report \(path): \(String(cString: strerror(errno)))")
        }
    }
}
