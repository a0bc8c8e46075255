import Glibc

/// `synthvm-bench hostile`: the hostile-guest campaign (Tests/Guests/hostile.c) as a soak. Runs
/// the `synthvm` binary built next to the bench, with its defaults (every worker jailed and
/// filtered, the VM process filtered), for seeds first..<first+seeds on 1 and 2 vCPUs, and counts
/// a run as failed when its status is not 0, the guest did not print `hostile: ok`, or any
/// process wrote to stderr other than the VMBus server's drop lines (a worker death, a seccomp violation, a ring cut off, an internal
/// error). Prints each run's ops/s (guest operations per second of reference time, per vCPU) and
/// each failure with its command line, stdout tail and stderr, so a seed can be replayed with
/// `synthvm run --kernel .build/guests/hostile.elf --hyperv-testdev --cmdline "seed=N ops=M trace=1"`.
/// ops/s is the campaign's pace on this host, not a performance target.
struct HostileSoak {
    let synthvm: String
    let guest: String
    let firstSeed: Int
    let seeds: Int
    let ops: Int
    let workDir: String

    /// What every line the VMBus worker writes for a dropped guest message contains.
    static let expectedDropLine = ": synthvm-vmbus: vmbus: dropped: "

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs every seed; returns the number of failed runs.
    func runAndPrint() throws -> Int {
        print("hostile: \(seeds) seeds from \(firstSeed), \(ops) operations per vCPU, 1 and 2 vCPUs, \(synthvm)")
        var failures = 0, runs = 0
        var opsPerSecond: [Int: [Int]] = [1: [], 2: []]
        for seed in firstSeed..<(firstSeed + seeds) {
            for cpus in [1, 2] {
                let args = [synthvm, "run", "--kernel", guest, "--cmdline", "seed=\(seed) ops=\(ops)", "--cpus", "\(cpus)",
                            "--hyperv-testdev", "--timeout", "600", "--serial", "stdio"]
                let r = try spawn(args)
                runs += 1
                let lines = r.stdout.split(separator: "\n").map(String.init)
                let rates = lines.compactMap { line -> Int? in
                    guard line.hasPrefix("hostile: vcpu "), let f = line.split(separator: " ").first(where: { $0.hasPrefix("ops/s=") })
                    else { return nil }
                    return Int(f.dropFirst(6))
                }
                // The VMBus server's rate-limited drop lines are expected: the guest posts junk on
                // connection 4, which the VMBus worker owns (VMBus is on by default with the
                // SynIC). Anything else on stderr is a failure (HostileGuestTests, the same rule).
                let unexpected = r.stderr.split(separator: "\n").filter { !$0.contains(Self.expectedDropLine) }
                let ok = r.status == 0 && unexpected.isEmpty && lines.last == "hostile: ok" && rates.count == cpus
                if ok {
                    opsPerSecond[cpus, default: []] += rates
                    print("hostile: seed \(seed) cpus \(cpus): ok, ops/s per vCPU \(rates.map(String.init).joined(separator: " "))")
                } else {
                    failures += 1
                    print("hostile: seed \(seed) cpus \(cpus): FAILED, status \(r.status)")
                    print("  command: \(args.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " "))")
                    for line in lines.suffix(5) { print("  stdout: \(line)") }
                    for line in unexpected { print("  stderr: \(line)") }
                }
            }
        }
        for cpus in [1, 2] {
            let r = opsPerSecond[cpus, default: []].sorted()
            if !r.isEmpty { print("hostile: \(cpus) vCPU(s): median \(r[r.count / 2]) ops/s per vCPU (min \(r[0]), max \(r[r.count - 1]))") }
        }
        print("hostile: \(runs - failures) of \(runs) runs passed")
        return failures
    }

    /// Spawns argv with stdin /dev/null and stdout/stderr in files of workDir; waits for it.
    private func spawn(_ argv: [String]) throws -> Run {
        let outPath = workDir + "/hostile.stdout", errPath = workDir + "/hostile.stderr"
        let pid = try spawnToFiles(argv, stdout: outPath, stderr: errPath)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return Run(status: code, stdout: try readFile(outPath), stderr: try readFile(errPath))
    }

    private func readFile(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError("open \(path): " + String(cString: strerror(errno))) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
