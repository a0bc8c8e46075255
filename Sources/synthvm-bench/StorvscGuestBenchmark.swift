import Glibc

/// `synthvm-bench storvsc` (issue 13 item 7: "the guest-level figure with the test guest
/// (requests per second) for the record"): the freestanding bench guest Tests/Guests/storvscbench.c
/// under the real `synthvm run` binary with its defaults (the storage worker jailed and filtered
/// as in production), 1 vCPU, one scratch `--disk` image the bench fills with the guest's
/// pattern first (storvsc_guest.h `pattern(off, seed)`), so every read can be checked.
///
/// The guest does the vstor handshake, then times with TIME_REF_COUNT: 4 KiB random READ(10) and
/// WRITE(10) at QD1 and at `depth` SRBs outstanding (completions matched by transaction id), and
/// 1 MiB sequential READ(10) and WRITE(10) at QD1 (the guest library's 12 KiB ring holds about
/// five 1 MiB SRBs with their 257-entry page lists). Reads check three sample words of every
/// request; after each write workload 32 of its requests are read back and checked. Any failed
/// check fails the guest and the run.
///
/// For context, in the same run: the guest's own cost of one 4 KiB request with no host (the SRB
/// built, put into a ring no host sees, a completion read back: the guest times it), and the
/// echo channel's ring round trip of `synthvm-bench vmbus` (`VMBusBenchmark.once`: the same
/// guest, vmbus.elf, the same code). This host emulates guest kernel-mode code at about 1 µs an
/// instruction, so the guest-level figures are mostly the guest's own ring and SRB code; the
/// figure is for the record, not a target (`synthvm-bench storage` measures the storage path
/// without KVM).
struct StorvscGuestBenchmark {
    let synthvm: String
    let guest: String
    /// vmbus.elf, for the echo round trip.
    let echoGuest: String
    let diskPath: String
    let diskMiB: Int
    let scale: Double
    let depth: Int
    let workDir: String

    static let seed: UInt64 = 1

    /// The guest's data at byte offset `off` (storvsc_guest.h `pattern`).
    static func pattern(_ off: UInt64, _ seed: UInt64) -> UInt64 {
        let x = (off ^ seed) &* 0x9E37_79B9_7F4A_7C15
        return x ^ (x >> 29)
    }

    /// The guest's command-line counts at this scale.
    var counts: (qd1: Int, deep: Int, seq: Int, own: Int, verify: Int) {
        func n(_ x: Int, _ least: Int) -> Int { max(least, Int(Double(x) * scale)) }
        return (n(2000, 8), n(4000, 2 * depth), n(256, 4), n(2000, 20), 32)
    }

    /// One workload line of the guest.
    struct Workload {
        var name: String
        var requests: Int
        var depth: Int
        var bytes: Int
        /// 100 ns units.
        var elapsed: Int
        var verified: Int
        var seconds: Double { Double(elapsed) / 1e7 }
        var requestsPerSecond: Double { Double(requests) / seconds }
        var mibPerSecond: Double { Double(requests * bytes) / Double(1 << 20) / seconds }
    }

    struct GuestResult {
        var ownIterations = 0
        /// 100 ns units.
        var ownElapsed = 0
        var workloads: [Workload] = []
        var ok = false
    }

    /// The workload names, in the guest's order.
    static func workloadNames(depth: Int) -> [String] {
        ["4k randread qd1", "4k randwrite qd1", "4k randread qd\(depth)", "4k randwrite qd\(depth)", "1m seqread qd1",
         "1m seqwrite qd1"]
    }

    /// The guest's lines: `storvscbench: own n=.. elapsed=..`, `storvscbench: workload NAME k=v ...`,
    /// `storvscbench: ok`.
    static func parse(_ out: String) -> GuestResult {
        var r = GuestResult()
        for line in out.split(separator: "\n") {
            let words = line.split(separator: " ")
            var fields: [String: Int] = [:]
            for word in words {
                let kv = word.split(separator: "=", maxSplits: 1)
                if kv.count == 2, let v = Int(kv[1]) { fields[String(kv[0])] = v }
            }
            if line.hasPrefix("storvscbench: own ") {
                r.ownIterations = fields["n"] ?? 0
                r.ownElapsed = fields["elapsed"] ?? 0
            } else if line.hasPrefix("storvscbench: workload "), words.count > 2 {
                r.workloads.append(Workload(name: words[2].replacingDashes(), requests: fields["requests"] ?? 0,
                                            depth: fields["depth"] ?? 0, bytes: fields["bytes"] ?? 0,
                                            elapsed: fields["elapsed"] ?? 0, verified: fields["verified"] ?? 0))
            } else if line == "storvscbench: ok" {
                r.ok = true
            }
        }
        return r
    }

    /// The whole image filled with pattern(offset, seed), so every read can be checked.
    static func fillImage(_ path: String, mib: Int, seed: UInt64) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BenchError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var chunk = [UInt64](repeating: 0, count: (1 << 20) / 8)
        for m in 0..<mib {
            let base = UInt64(m) << 20
            for i in chunk.indices { chunk[i] = pattern(base + UInt64(8 * i), seed).littleEndian }
            let n = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(base)) }
            guard n == 1 << 20 else { throw BenchError("writing \(path): \(String(cString: strerror(errno)))") }
        }
    }

    func runAndPrint() throws -> Int32 {
        var load = [Double](repeating: 0, count: 3)
        _ = getloadavg(&load, 3)
        let c = counts
        try Self.fillImage(diskPath, mib: diskMiB, seed: Self.seed)
        let cmdline = "qd1=\(c.qd1) deep=\(c.deep) depth=\(depth) seq=\(c.seq) own=\(c.own) verify=\(c.verify) seed=\(Self.seed)"
        print("storvsc: the guest-level figure, for the record (issue 13 item 7): \(guest.split(separator: "/").last ?? "") "
              + "under `synthvm run --disk` (\(diskPath), \(diskMiB) MiB, page-cached; the storage worker jailed and filtered), "
              + "1 vCPU, guest command line \"\(cmdline)\"; host load average \(load.map { format2($0) }.joined(separator: " "))")
        print("storvsc: this host emulates guest kernel-mode code at about 1 us an instruction, so these figures are mostly "
              + "the guest's own ring and SRB code (see the floor lines), not the storage path: `synthvm-bench storage` "
              + "measures that")

        let argv = [synthvm, "run", "--kernel", guest, "--memory", "64M", "--disk", diskPath, "--cmdline", cmdline,
                    "--serial", "stdio", "--timeout", "600"]
        let outPath = workDir + "/storvsc-bench.stdout", errPath = workDir + "/storvsc-bench.stderr"
        let t0 = FaultSoak.nowMs()
        let pid = try spawnToFiles(argv, stdout: outPath, stderr: errPath)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let wall = (FaultSoak.nowMs() - t0) / 1000
        let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        let out = String(decoding: FaultSoak.readBytes(outPath), as: UTF8.self)
        let err = String(decoding: FaultSoak.readBytes(errPath), as: UTF8.self)
        let result = Self.parse(out)
        // The worker's protocol line and its served-requests summary at exit are expected;
        // anything else on stderr is shown.
        for line in err.split(separator: "\n") where !line.contains("vstor: protocol 0x") && !line.contains(": requests served: ") {
            print("storvsc: stderr: \(line)")
        }
        let names = Self.workloadNames(depth: depth)
        guard code == 0, result.ok, result.workloads.map(\.name) == names, result.ownIterations > 0, result.ownElapsed > 0,
              result.workloads.allSatisfy({ $0.elapsed > 0 && $0.verified > 0 && $0.requests > 0 }) else {
            print("storvsc: the bench guest did not finish (status \(code)); its output:")
            for line in out.split(separator: "\n").suffix(20) { print("  \(line)") }
            return 1
        }
        for w in result.workloads {
            var line = "storvsc: \(w.name): \(w.requests) requests in \(format2(w.seconds)) s: "
                + "\(Int(w.requestsPerSecond.rounded())) req/s"
            if w.bytes >= 1 << 20 { line += ", \(format2(w.mibPerSecond)) MiB/s" }
            if w.depth == 1 { line += ", \(format2(w.seconds * 1e6 / Double(w.requests))) us per request" }
            line += w.name.contains("read")
                ? "; data verified (3 sample words of every request)"
                : "; data verified (\(w.verified) requests read back, 3 sample words each)"
            print(line)
        }
        let ownUs = Double(result.ownElapsed) / 10 / Double(result.ownIterations)
        print("storvsc: floor, the guest's own code for one 4 KiB request (SRB built, put with its page list into a ring no "
              + "host sees, a completion read back and checked; \(result.ownIterations) times): \(format2(ownUs)) us, "
              + "so at most \(Int((1e6 / ownUs).rounded())) req/s at any queue depth from the guest's code alone")

        // The echo channel's round trip, as `synthvm-bench vmbus` measures it (the same guest
        // and code, one run).
        let n = max(50, Int(1000 * scale))
        let f0 = FaultSoak.nowMs()
        let echo = try VMBusBenchmark(guest: echoGuest, n: n, batch: 32, batches: max(4, Int(20 * scale)), rounds: 1).once()
        print("storvsc: floor, synthvm-bench vmbus's echo channel (\(n) round trips, this run): one 64-byte packet's ring round "
              + "trip \(format2(echo.roundTripNs / 1000)) us; the guest's own ring code alone (its own loop, so on a "
              + "loaded host it can exceed the round trip) \(format2(echo.guestRingNs / 1000)) us; HvSignalEvent with only "
              + "the interrupt back "
              + "\(format2(echo.floorNs / 1000)) us")
        print("storvsc: wall time: bench guest \(format2(wall)) s (boot and handshake included), echo floor "
              + "\(format2((FaultSoak.nowMs() - f0) / 1000)) s")
        return 0
    }
}

extension Substring {
    func replacingDashes() -> String { String(map { $0 == "-" ? " " : $0 }) }
}
