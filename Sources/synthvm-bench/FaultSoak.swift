import CSynthVM
import ControlAPI
import Glibc

/// `synthvm-bench faults`: kills every worker kind `kills` times at random moments through the
/// control socket (`fault WORKER kill`) while a guest keeps every worker busy, and counts
/// (docs/faults.md, "Soak"). The guest is soak (Tests/Guests/soak.c), run with
/// `--hyperv-testdev --test-echo-device --disk <scratch image>`; per batch it drives:
/// - the SynIC router: `per` test-device writes, `per` HvPostMessage calls each checked in its
///   SIMP slot by sequence number, `per` events;
/// - the VMBus worker: `echoes` packets through the echo device, each echo checked exactly once
///   and in order;
/// - the storage worker (and VMBus on the way): `writes` disk writes, then their read-back, every
///   completion's transaction id matched exactly once, SRB and SCSI status checked.
/// It stops at the first discrepancy with `soak: FAIL lost|duplicated|error: ...`.
///
/// The kills of all kinds are shuffled together and come 10-150 ms apart. A kill is survived when
/// `status` shows a new process of that worker running and beating (attached: `heartbeat_age_ms`
/// not null) within 5 s; a storage kill also waits for the VMBus worker the supervisor restarts
/// with it (docs/faults.md, "A restart"). After the last kill the guest must finish two more
/// batches within 10 s, with echoes and disk writes among them. Then the VM is stopped and the
/// image is checked from the host: every slot holds the pattern of the last batch that wrote it
/// (or, for the batch the stop interrupted, that batch's or the one before).
/// Prints the figures; exits 1 if a kill was not survived, the guest saw an error, it stopped
/// making progress, or the image is wrong.
struct FaultSoak {
    let synthvm: String
    let guest: String
    let kills: Int
    let workers: [String]
    let workDir: String
    let seed: UInt64

    /// The guest's load per batch (soak.c's command line).
    static let per = 10, echoes = 8, writes = 4
    /// soak.c's disk layout: slots of 8 blocks from LBA 2048.
    static let slots = 32, slotBlocks = 8, firstLBA = 2048, blockSize = 512

    struct Failure: Error { let message: String }

    /// One request line to the control socket, its reply parsed.
    func request(_ socket: String, _ line: String) throws -> JSONValue {
        let fd = svm_api_connect(socket)
        guard fd >= 0 else { throw Failure(message: "connect \(socket): \(String(cString: strerror(-fd)))") }
        defer { close(fd) }
        let bytes = Array((line + "\n").utf8)
        guard bytes.withUnsafeBytes({ svm_api_send(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw Failure(message: "send to \(socket) failed")
        }
        var reply: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 5000) == 1, read(fd, &byte, 1) == 1 else { throw Failure(message: "no reply to \(line)") }
            if byte == 0x0A { break }
            reply.append(byte)
        }
        return try JSONParser.parse(reply)
    }

    func worker(_ status: JSONValue, _ name: String) -> JSONValue? {
        status["return"]?["workers"]?.arrayValue?.first { $0["name"] == .string(name) }
    }

    /// The worker's pid when it is running and attached (beating), else nil.
    func attachedPID(_ socket: String, _ name: String) -> Int64? {
        guard let s = try? request(socket, #"{"execute":"status"}"#), let w = worker(s, name), w["running"] == .bool(true),
              w["heartbeat_age_ms"]?.intValue != nil else { return nil }
        return w["pid"]?.intValue
    }

    static func nowMs() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
    }

    static func sleepMs(_ ms: Int) { usleep(UInt32(ms) * 1000) }

    static func readBytes(_ path: String) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return bytes
    }

    func readFile(_ path: String) -> String { String(decoding: Self.readBytes(path), as: UTF8.self) }

    /// What the guest has verified so far (its last whole `soak: batch` line).
    struct Progress: Equatable {
        var batches = 0, messages = 0, events = 0, echoes = 0, writes = 0, reads = 0
    }

    /// soak's whole lines so far: its last progress line and its failure line, if any.
    static func guestProgress(_ out: String) -> (Progress, failure: String?) {
        var p = Progress()
        var failure: String?
        // Only whole lines: the last one may be half written.
        for line in out.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            if line.hasPrefix("soak: batch ") {
                var fields: [String: Int] = [:]
                for word in line.split(separator: " ") {
                    let kv = word.split(separator: "=")
                    if kv.count == 2, let v = Int(kv[1]) { fields[String(kv[0])] = v }
                }
                let words = line.split(separator: " ")
                p = Progress(batches: words.count > 2 ? Int(words[2]) ?? 0 : 0, messages: fields["messages"] ?? 0,
                             events: fields["events"] ?? 0, echoes: fields["echoes"] ?? 0, writes: fields["writes"] ?? 0,
                             reads: fields["reads"] ?? 0)
            } else if failure == nil, line.hasPrefix("soak:"), line.contains("FAIL") || line.hasPrefix("soak: exception") {
                failure = String(line)
            } else if failure == nil, line.hasPrefix("exception ") {
                failure = String(line)
            }
        }
        return (p, failure)
    }

    /// soak.c's pattern: the 8 bytes at disk offset `off` written by batch `batch`.
    /// (storvsc_guest.h's `pattern` with the batch folded into the seed.)
    static func pattern(_ off: UInt64, batch: UInt64, seed: UInt64) -> UInt64 {
        StorvscGuestBenchmark.pattern(off, seed ^ (batch &* 0x9E37_79B9_7F4A_7C15))
    }

    /// The image checked from the host: every block of every slot holds the pattern of the last
    /// batch up to `batches` that wrote it; a slot the next batch (the one the stop interrupted)
    /// writes may hold that batch's pattern instead. Returns (blocks checked, first wrong block).
    static func checkImage(_ bytes: [UInt8], batches: Int, seed: UInt64) -> (blocks: Int, wrong: String?) {
        var last = [Int](repeating: 0, count: slots)   // 0: never written
        var interrupted = [Bool](repeating: false, count: slots)
        for b in 1...(batches + 1) {
            for j in 0..<writes {
                let slot = ((b - 1) * writes + j) % slots
                if b <= batches { last[slot] = b } else { interrupted[slot] = true }
            }
        }
        var checked = 0
        for slot in 0..<slots {
            for block in 0..<slotBlocks {
                let lba = firstLBA + slot * slotBlocks + block
                let base = lba * blockSize
                guard base + blockSize <= bytes.count else { return (checked, "lba \(lba): past the end of the image") }
                func holds(_ batch: Int) -> Bool {
                    for w in 0..<(blockSize / 8) {
                        var v: UInt64 = 0
                        for k in 0..<8 { v |= UInt64(bytes[base + 8 * w + k]) << (8 * k) }
                        let want = batch == 0 ? 0 : pattern(UInt64(base + 8 * w), batch: UInt64(batch), seed: seed)
                        if v != want { return false }
                    }
                    return true
                }
                if !holds(last[slot]) && !(interrupted[slot] && holds(batches + 1)) {
                    return (checked, "lba \(lba) (slot \(slot)) holds neither batch \(last[slot])'s pattern"
                                + (interrupted[slot] ? " nor batch \(batches + 1)'s" : ""))
                }
                checked += 1
            }
        }
        return (checked, nil)
    }

    func runAndPrint() throws -> Int32 {
        var rng = seed
        func random(_ range: ClosedRange<Int>) -> Int {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return range.lowerBound + Int((rng >> 33) % UInt64(range.count))
        }
        let socket = workDir + "/faults-\(getpid()).sock"
        let disk = workDir + "/faults-\(getpid()).img"
        unlink(socket)
        let dfd = open(disk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard dfd >= 0, ftruncate(dfd, 8 << 20) == 0 else { throw Failure(message: "scratch disk \(disk)") }
        close(dfd)
        defer { unlink(disk) }
        // The budget covers every kill in one window as long as the run, with 10 to spare: one
        // unit per kill, a storage kill included (the VMBus worker restarted with it is a planned
        // restart, not counted: docs/faults.md, "A restart"). A restart that cost more would
        // exhaust it and stop the VM (status 6), which the soak reports.
        let restarts = workers.count * kills + 10
        let budget = restarts <= 1000 ? "\(restarts)/86400" : "1000/1"
        let diskSeed = seed | 1
        let cmdline = "per=\(Self.per) echoes=\(Self.echoes) writes=\(Self.writes) seed=\(diskSeed)"
        let argv = [synthvm, "run", "--kernel", guest, "--memory", "64M", "--hyperv-testdev", "--test-echo-device",
                    "--cmdline", cmdline, "--serial", "stdio", "--disk", disk, "--api-socket", socket,
                    "--allow-fault-injection", "--restart-budget", budget, "--timeout", "3600"]
        let outPath = workDir + "/faults.stdout", errPath = workDir + "/faults.stderr"
        let pid = try spawnToFiles(argv, stdout: outPath, stderr: errPath)
        var reaped = false
        defer {
            if !reaped {
                kill(pid, SIGKILL)
                var s: Int32 = 0
                _ = waitpid(pid, &s, 0)
            }
        }
        print("faults: \(kills) kills per worker (\(workers.joined(separator: ", "))) at random moments, soak \(cmdline), "
              + "restart budget \(budget), seed \(seed)")
        // Up: the socket answers and the guest has finished a batch.
        let started = Self.nowMs()
        while Self.nowMs() - started < 60_000 {
            if (try? request(socket, #"{"execute":"status"}"#)) != nil, Self.guestProgress(readFile(outPath)).0.batches > 0 { break }
            if Self.guestProgress(readFile(outPath)).failure != nil { break }
            Self.sleepMs(50)
        }
        var failed = false
        // Every kill of every kind, shuffled (Fisher-Yates with the seeded generator).
        var schedule = workers.flatMap { [String](repeating: $0, count: kills) }
        for i in stride(from: schedule.count - 1, to: 0, by: -1) { schedule.swapAt(i, random(0...i)) }
        var survived: [String: Int] = [:]
        var latencies: [String: [Double]] = [:]
        for name in schedule {
            if Self.guestProgress(readFile(outPath)).failure != nil { break }
            Self.sleepMs(random(10...150))
            // A storage restart restarts the VMBus worker too: wait for both.
            let vmbusBefore = name == "storage" ? attachedPID(socket, "vmbus") : nil
            let killed: Int64
            do {
                let r = try request(socket, #"{"execute":"fault","arguments":{"worker":"\#(name)","kind":"kill"}}"#)
                guard let p = r["return"]?["pid"]?.intValue else {
                    print("faults: \(name): kill refused: \(r.encoded)")
                    failed = true
                    continue
                }
                killed = p
            } catch {
                print("faults: \(name): \(error)")
                failed = true
                break
            }
            let t0 = Self.nowMs()
            var back: Double?
            while Self.nowMs() - t0 < 5000 {
                if back == nil, let p = attachedPID(socket, name), p != killed { back = Self.nowMs() - t0 }
                if back != nil, vmbusBefore == nil || (attachedPID(socket, "vmbus").map { $0 != vmbusBefore } ?? false) { break }
                Self.sleepMs(2)
            }
            if let back, vmbusBefore == nil || (attachedPID(socket, "vmbus").map { $0 != vmbusBefore } ?? false) {
                survived[name, default: 0] += 1
                latencies[name, default: []].append(back)
            } else {
                print("faults: \(name): pid \(killed) not replaced by a running process within 5 s"
                      + (back != nil ? " (the VMBus worker restarted with it was not)" : ""))
                failed = true
            }
        }
        // The guest must still make progress after the last kill, echoes and disk writes included.
        let atLastKill = Self.guestProgress(readFile(outPath)).0
        let t0 = Self.nowMs()
        while Self.nowMs() - t0 < 10_000 {
            let (p, failure) = Self.guestProgress(readFile(outPath))
            if failure != nil || p.batches >= atLastKill.batches + 2 { break }
            Self.sleepMs(20)
        }
        let seen = Self.guestProgress(readFile(outPath)).0
        let progressing = seen.batches >= atLastKill.batches + 2 && seen.echoes > atLastKill.echoes
            && seen.writes > atLastKill.writes
        _ = try? request(socket, #"{"execute":"stop"}"#)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
        unlink(socket)
        // The guest ran on until the stop: what it did is read again now that it cannot go on
        // (the image check needs the last batch it finished, not the last one seen above).
        let (progress, failure) = Self.guestProgress(readFile(outPath))
        for name in workers {
            let sorted = (latencies[name] ?? []).sorted()
            let median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
            let fmt = { (v: Double) in String(Int(v.rounded())) }
            print("faults: \(name): \(kills) kills, \(survived[name] ?? 0) survived; back in median \(fmt(median)) ms, "
                  + "max \(fmt(sorted.last ?? 0)) ms (kill to a new attached process seen in status)")
        }
        // A guest that stopped making progress without a failure line is waiting on something that
        // never came back: counted as one lost.
        let lost = failure?.contains("FAIL lost:") == true || (failure == nil && !progressing) ? 1 : 0
        let duplicated = failure?.contains("FAIL duplicated:") == true ? 1 : 0
        let errors = failure != nil && lost == 0 && duplicated == 0 ? 1 : 0
        let p = progress
        print("faults: guest: \(p.batches) batches: \(p.messages) messages, \(p.events) events, \(p.echoes) echoes, "
              + "\(p.writes) disk writes (\(p.reads) read back) verified; lost \(lost), duplicated \(duplicated), "
              + "guest-visible errors \(errors)")
        print("faults: after the last kill: +\(p.batches - atLastKill.batches) batches, +\(p.messages - atLastKill.messages) "
              + "messages, +\(p.echoes - atLastKill.echoes) echoes, +\(p.writes - atLastKill.writes) disk writes"
              + (progressing ? "" : "; the guest STALLED (not 2 batches with echoes and writes within 10 s)"))
        if let failure { print("faults: guest: \(failure)") }
        let image = Self.checkImage(Self.readBytes(disk), batches: p.batches, seed: diskSeed)
        print("faults: image: \(image.blocks) blocks of \(Self.slots) slots checked from the host: "
              + (image.wrong.map { "WRONG: \($0)" } ?? "each holds the last pattern written"))
        let stderr = readFile(errPath).split(separator: "\n")
        let unexpected = stderr.filter {
            !$0.contains("fault injection: kill of worker") && !$0.contains("; restarted (")
                && !$0.hasSuffix("stopped through the control socket") && !$0.contains("stop requested through the control socket")
                && !$0.contains("synthvm-storage: relid") && !$0.contains(": restart: ")
                && !$0.contains("restored the VMBus state of generation")
        }
        for line in unexpected.prefix(20) { print("faults: stderr: \(line)") }
        let ok = !failed && failure == nil && progressing && image.wrong == nil && workers.allSatisfy { survived[$0] == kills }
        print("faults: \(ok ? "ok" : "FAILED")")
        return ok ? 0 : 1
    }
}
