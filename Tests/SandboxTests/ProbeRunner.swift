import Glibc

/// Runs synthvm-policy-probe (built next to the test bundle) for many cases, a few at a time.
/// Children are waited for by pid only, never with waitpid(-1), so other tests' children are
/// left alone; a probe still running after `deadlineSeconds` is killed and reported as hung.
enum ProbeRunner {
    static let executable: String = {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        let me = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        let dir = me.lastIndex(of: "/").map { String(me[..<$0]) } ?? "."
        return dir + "/synthvm-policy-probe"
    }()

    static var available: Bool { access(executable, X_OK) == 0 }

    /// Probes in flight at once: enough to hide process start-up, few enough for a 2-core machine
    /// that is running other tests too.
    static let parallelism = 6
    static let deadlineSeconds = 20.0

    static func arguments(_ c: ProbeCase) -> [String] {
        c.extraArguments + [c.policyFile, c.syscall] + c.probeArguments
    }

    /// The outcome of every case, in order.
    static func run(_ cases: [ProbeCase]) -> [ProbeOutcome] {
        var outcomes = [ProbeOutcome](repeating: .hung, count: cases.count)
        var next = 0
        var running: [(index: Int, pid: pid_t)] = []
        let start = now()
        while next < cases.count || !running.isEmpty {
            while running.count < parallelism, next < cases.count {
                switch spawn(arguments(cases[next])) {
                case .success(let pid): running.append((next, pid))
                case .failure(let e): outcomes[next] = .notStarted(e.code)
                }
                next += 1
            }
            var progressed = false
            running.removeAll { entry in
                var status: Int32 = 0
                let r = waitpid(entry.pid, &status, WNOHANG)
                guard r == entry.pid else { return false }
                progressed = true
                let sig = status & 0x7f
                outcomes[entry.index] = sig == 0 ? .exited((status >> 8) & 0xff) : .signaled(sig)
                return true
            }
            if now() - start > deadlineSeconds {
                for entry in running {
                    kill(entry.pid, SIGKILL)
                    var status: Int32 = 0
                    _ = waitpid(entry.pid, &status, 0)
                    outcomes[entry.index] = .hung
                }
                running.removeAll()
                // Whatever was not started is reported as hung too: the machine is stuck.
                next = cases.count
            }
            if !progressed { usleep(500) }
        }
        return outcomes
    }

    struct SpawnError: Error { var code: Int32 }

    static func spawn(_ args: [String]) -> Result<pid_t, SpawnError> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + args).map { strdup($0) }
        argv.append(nil)
        // The Swift runtime's crash backtracer would catch the SIGSEGV the probe expects from
        // rt_sigreturn; the probe resets the signals itself too.
        let envp: [UnsafeMutablePointer<CChar>?] = [strdup("SWIFT_BACKTRACE=enable=no"), nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        return r == 0 ? .success(pid) : .failure(SpawnError(code: r))
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
