import CSynthVM
import ControlAPI
import Glibc

/// `synthvm-bench faults`: kills every worker kind `kills` times at random moments through the
/// control socket (`fault WORKER kill`) while a guest keeps working, and counts (docs/faults.md,
/// "Soak"). The guest is memflood (Tests/Guests/memflood.c) with `--hyperv-testdev`: per batch,
/// `per` test-device writes, `per` HvPostMessage calls each checked in the guest's SIMP slot
/// (payload = sequence number: a message that never arrives is "lost", one that arrives with
/// another number "duplicated or out of order") and `per` events; it stops at the first error.
/// The VM also runs the VMBus worker and, with a scratch disk, the storage worker: memflood does
/// not drive them, so their kills are restarts under an idle device (no VMBus guest traffic
/// until a guest that loops over VMBus and the disk exists).
///
/// A kill is survived when `status` shows a new process of that worker running and beating
/// (attached: `heartbeat_age_ms` not null) within 5 s.
/// Prints the figures; exits 1 if a kill was not survived, the guest saw an error, or it stopped
/// making progress.
struct FaultSoak {
    let synthvm: String
    let guest: String
    let kills: Int
    let workers: [String]
    let workDir: String
    let seed: UInt64

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

    static func nowMs() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
    }

    static func sleepMs(_ ms: Int) { usleep(UInt32(ms) * 1000) }

    func readFile(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
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

    /// memflood's lines so far: completed batches and its failure line, if any.
    func guestProgress(_ out: String) -> (batches: Int, failure: String?) {
        let lines = out.split(separator: "\n")
        let batches = lines.filter { $0.hasPrefix("memflood: batch ") }.count
        let failure = lines.first { $0.hasPrefix("memflood:") && ($0.contains("FAIL") || $0.contains("never") || $0.contains("holds")
            || $0.contains("status 0x")) }.map(String.init)
        return (batches, failure)
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
        let per = 100
        let argv = [synthvm, "run", "--kernel", guest, "--hyperv-testdev", "--cmdline", "per=\(per)", "--serial", "stdio",
                    "--disk", disk, "--api-socket", socket, "--allow-fault-injection", "--restart-budget", "1000/1",
                    "--timeout", "3600"]
        let outPath = workDir + "/faults.stdout", errPath = workDir + "/faults.stderr"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { throw Failure(message: "posix_spawn \(argv[0]): " + String(cString: strerror(rc))) }
        var reaped = false
        defer {
            if !reaped {
                kill(pid, SIGKILL)
                var s: Int32 = 0
                _ = waitpid(pid, &s, 0)
            }
        }
        print("faults: \(kills) kills per worker (\(workers.joined(separator: ", "))) at random moments, memflood per=\(per), seed \(seed)")
        // Up: the socket answers and the guest has finished a batch.
        let started = Self.nowMs()
        while Self.nowMs() - started < 30_000 {
            if (try? request(socket, #"{"execute":"status"}"#)) != nil, guestProgress(readFile(outPath)).batches > 0 { break }
            Self.sleepMs(50)
        }
        var failed = false
        var totals: [(String, Int, [Double])] = []
        for name in workers {
            var survived = 0
            var latencies: [Double] = []
            for _ in 0..<kills {
                Self.sleepMs(random(10...150))
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
                var ok = false
                while Self.nowMs() - t0 < 5000 {
                    if let s = try? request(socket, #"{"execute":"status"}"#), let w = worker(s, name),
                       let p = w["pid"]?.intValue, p != killed, w["running"] == .bool(true),
                       w["heartbeat_age_ms"]?.intValue != nil {  // attached: it beats
                        ok = true
                        break
                    }
                    Self.sleepMs(2)
                }
                if ok {
                    survived += 1
                    latencies.append(Self.nowMs() - t0)
                } else {
                    print("faults: \(name): pid \(killed) not replaced by a running process within 5 s")
                    failed = true
                }
            }
            totals.append((name, survived, latencies))
        }
        // The guest must still make progress after the last kill.
        let before = guestProgress(readFile(outPath)).batches
        let t0 = Self.nowMs()
        while Self.nowMs() - t0 < 10_000, guestProgress(readFile(outPath)).batches <= before + 1 { Self.sleepMs(20) }
        let (batches, failure) = guestProgress(readFile(outPath))
        let progressing = batches > before + 1
        _ = try? request(socket, #"{"execute":"stop"}"#)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
        unlink(socket)
        for (name, survived, lat) in totals {
            let sorted = lat.sorted()
            let median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
            let fmt = { (v: Double) in String(Int(v.rounded())) }
            print("faults: \(name): \(kills) kills, \(survived) survived; back in median \(fmt(median)) ms, max \(fmt(sorted.last ?? 0)) ms "
                  + "(kill to a new running process seen in status)")
        }
        // A guest that stopped making progress without a failure line is waiting on a message,
        // event or connection buffer that never came back: counted as one lost.
        let lost = failure?.contains("never") == true || (failure == nil && !progressing) ? 1 : 0
        let duplicated = failure?.contains("holds payload") == true ? 1 : 0
        let errors = failure == nil ? 0 : 1
        print("faults: guest: \(batches) batches: \(batches * per) messages, \(batches * per) events, \(batches * per) "
              + "test-device writes verified; lost \(lost), duplicated \(duplicated), guest-visible errors \(errors)"
              + (progressing ? "" : "; the guest STALLED (no batch for 10 s after the last kill)"))
        if let failure { print("faults: guest: \(failure)") }
        let stderr = readFile(errPath).split(separator: "\n")
        let unexpected = stderr.filter {
            !$0.contains("fault injection: kill of worker") && !$0.contains("killed by signal 9 (SIGKILL); restarted")
                && !$0.hasSuffix("stopped through the control socket") && !$0.contains("stop requested through the control socket")
                && !$0.contains("synthvm-storage: relid")
        }
        for line in unexpected.prefix(20) { print("faults: stderr: \(line)") }
        let ok = !failed && failure == nil && progressing && totals.allSatisfy { $0.1 == kills }
        print("faults: \(ok ? "ok" : "FAILED")")
        return ok ? 0 : 1
    }
}
