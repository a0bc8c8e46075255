import Foundation
import IPC
import Machine
@testable import Monitor
import Sandbox
import Testing

/// `--disk` (docs/storage.md, "Disks on the command line") and the storage worker
/// (`synthvm-storage`, Workers/storage): refused input before a VM exists, image locking, and the
/// worker jailed and filtered like the others, holding only its regions, doorbells, SINT2
/// eventfds and the disk fds.
@Suite("storage: --disk and the storage worker", .serialized)
struct StorageWorkerTests {
    /// A scratch directory for images, removed by the caller.
    static func scratch() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("synthvm-disk-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func image(_ path: String, bytes: Int) throws {
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let fd = open(path, O_WRONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(ftruncate(fd, off_t(bytes)) == 0)
    }

    static func expectUsageError(_ args: [String], _ message: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let r = try CommandLineTests.synthvm(["run", "--serial", "none"] + args)
        #expect(r.status == 64, "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.hasPrefix("synthvm: error: --disk"), "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains(message), "expected \"\(message)\" in: \(r.stderr)", sourceLocation: sourceLocation)
    }

    @Test("bad --disk input gets one line and status 64 before a VM exists")
    func badDisks() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = dir + "/good.img", odd = dir + "/odd.img", empty = dir + "/empty.img", ro = dir + "/ro.img"
        try Self.image(good, bytes: 1 << 20)
        try Self.image(odd, bytes: 1000)
        try Self.image(empty, bytes: 0)
        try Self.image(ro, bytes: 1 << 20)
        try Self.expectUsageError(["--disk", dir + "/missing.img"], "No such file or directory")
        try Self.expectUsageError(["--disk", dir], "is a directory")
        try Self.expectUsageError(["--disk", odd], "size 1000 is not a multiple of 512 bytes")
        try Self.expectUsageError(["--disk", empty], "is empty")
        try Self.expectUsageError(["--disk", good + ",fast"], "unknown option \"fast\"")
        try Self.expectUsageError(["--disk", good + ",cache=sometimes"], "cache must be writeback, direct or unsafe")
        try Self.expectUsageError(["--disk", good + ",serial="], "serial must be 1 to 64 printable ASCII characters")
        try Self.expectUsageError(["--disk", good + ",readonly,readonly"], "readonly given twice")
        try Self.expectUsageError(["--disk", good, "--disk", good + ",readonly"], "the same file as --disk \(good)")
        // A hard link is the same file by another name.
        try FileManager.default.linkItem(atPath: good, toPath: dir + "/link.img")
        try Self.expectUsageError(["--disk", good, "--disk", dir + "/link.img"], "the same file as --disk \(good)")
        try Self.expectUsageError(Array(repeating: ["--disk", good], count: 65).flatMap { $0 }, "65 disks, but the SCSI controller has 64 LUNs")
        try Self.expectUsageError(["--no-vmbus", "--disk", good], "--disk needs VMBus")
        // A read-write disk on a file this user cannot write (root writes any mode: make it immutable).
        chmod(ro, 0o444)
        let immutable = getuid() == 0 && Self.shell("chattr +i '\(ro)'") == 0
        defer { if immutable { _ = Self.shell("chattr -i '\(ro)'") } }
        if getuid() != 0 || immutable {
            try Self.expectUsageError(["--disk", ro], "cannot open it for writing")
        }
    }

    static func shell(_ command: String) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command + " 2>/dev/null"]
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    @Test("an image another process holds locked is refused: exclusive for read-write disks, shared for read-only ones")
    func locking() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/locked.img"
        try Self.image(path, bytes: 1 << 20)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        // Another reader: a writer is refused, a reader is not (that one boots: built-in guest).
        try #require(flock(fd, LOCK_SH | LOCK_NB) == 0)
        try Self.expectUsageError(["--disk", path], "Failed to get \"write\" lock")
        let reader = try CommandLineTests.synthvm(["run", "--serial", "none", "--disk", path + ",readonly"])
        #expect(reader.status == 0, "\(reader.stderr)")
        // Another writer: a reader is refused too.
        try #require(flock(fd, LOCK_EX | LOCK_NB) == 0)
        try Self.expectUsageError(["--disk", path + ",readonly"], "Failed to get shared \"read\" lock")
        // Parsed and opened in-process the same way (`MachineConfig` users: tests, the launcher).
        #expect(throws: MonitorError.self) { try DiskImage.openAll([DiskImage(path: path)]) }
    }

    @Test("--help documents --disk, its options and that cache=unsafe ignores flushes")
    func help() throws {
        let r = try CommandLineTests.synthvm(["run", "--help"])
        #expect(r.status == 0)
        let text = r.stdout.replacingOccurrences(of: "\n", with: " ").split(separator: " ").joined(separator: " ")
        for s in ["--disk", "readonly", "serial=STR", "cache=writeback", "cache=direct", "cache=unsafe",
                  "flushes and FUA are IGNORED", "O_DIRECT"] {
            #expect(text.contains(s), "missing \(s)")
        }
    }

    static func config(disks: [String], cpus: Int = 1) throws -> MachineConfig {
        var c = try WorkerTests.config("hello")
        c.vmbus = true
        c.cpuCount = cpus
        c.disks = try DiskImage.openAll(try disks.map { (d) throws(MonitorError) in try DiskImage.parse(d) })
        return c
    }

    @Test("jailed, filtered on every thread, holding stdio, its control socket, guest RAM, the SynIC region, the device rings, its state and metrics regions, its two doorbells, each VP's SINT2 eventfd and the disk fds; exits with the VM",
          arguments: [1, 2])
    func jailedFilteredAndClean(cpus: Int) throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.image(dir + "/a.img", bytes: 4 << 20)
        try Self.image(dir + "/b.img", bytes: 1 << 20)
        let c = try Self.config(disks: [dir + "/a.img", dir + "/b.img,readonly,serial=B"], cpus: cpus)
        defer { for d in c.disks { close(d.fd) } }
        // Relid 4 the controller; with 2 vCPUs relid 5 its sub-channel (published before the guest runs).
        #expect(c.workerNames == ["synic-router", "vmbus", "storage"] && c.vmbusRelIDs == (cpus == 1 ? 1...4 : 1...5))
        let vm = try VirtualMachine(config: c)
        let link = try #require(vm.workerLinks.first { $0.kind == .storage })
        let pid = link.process.pid
        let fds = try WorkerTests.openFDs(pid)
        #expect(Array(fds.prefix(4)) == [0, 1, 2, 3], "fds \(fds)")
        let held = try fds.dropFirst(4).map {
            String(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)").split(separator: " ")[0])
        }.sorted()
        #expect(held == ([dir + "/a.img", dir + "/b.img", "/memfd:synthvm-device-rings", "/memfd:synthvm-guest-ram", "/memfd:synthvm-heartbeats",
                          "/memfd:synthvm-storage-metrics", "/memfd:synthvm-storage-state", "/memfd:synthvm-synic"]
                         + [String](repeating: "anon_inode:[eventfd]", count: 2 + cpus)).sorted(), "\(held)")
        // The read-only disk's fd is read-only (O_RDONLY: flags & O_ACCMODE == 0).
        for n in fds.dropFirst(4) {
            let target = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(n)")
            guard target.hasSuffix(".img") else { continue }
            let info = try String(contentsOfFile: "/proc/\(pid)/fdinfo/\(n)", encoding: .utf8)
            let flags = info.split(separator: "\n").first { $0.hasPrefix("flags:") }.map { Int($0.split(separator: "\t").last!, radix: 8) ?? -1 } ?? -1
            #expect(flags & 3 == (target.hasSuffix("b.img") ? 0 : 2), "\(target): \(info)")
        }
        // The VMBus worker holds the device rings and both doorbells too.
        let vmbus = try #require(vm.workerLinks.first { $0.kind == .vmbus }).process.pid
        let maps = try String(contentsOfFile: "/proc/\(vmbus)/maps", encoding: .utf8)
        #expect(maps.contains("synthvm-device-rings"))
        #expect(try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8).contains("synthvm-device-rings"))
        try WorkerTests.expectFiltered(pid)
        // The ring thread and its I/O threads, each filtered (TSYNC: created before the filter).
        #expect(try JailTests.threads(pid).count == 1 + 4, "the ring thread and StorageService.defaultIOThreads")
        for t in try JailTests.threads(pid) {
            let s = try JailTests.status("/proc/\(pid)/task/\(t)/status")
            #expect(s["CapEff"] == "0000000000000000" && s["CapBnd"] == "0000000000000000", "thread \(t)")
        }
        #expect(try JailTests.status("/proc/\(pid)/status")["NSpid"] == "\(pid)\t1")
        for ns in ["user", "pid", "mnt", "net", "ipc", "uts"] {
            #expect(try JailTests.namespaceLink("self", ns) != JailTests.namespaceLink("\(pid)", ns), "shares \(ns)")
        }
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        #expect(limits.contains { _ in true } && limits.split(separator: "\n").contains { $0.hasPrefix("Max file size") && $0.contains("\(4 << 20)") },
                "RLIMIT_FSIZE is the largest disk: \(limits)")
        let outcome = vm.run()
        #expect(outcome.exitStatus == 0)
        #expect(outcome.workers.map(\.name) == ["synic-router", "vmbus", "storage"])
        for w in outcome.workers { #expect(w.exit == .exited(status: 0), "\(w.name): \(String(describing: w.exit))") }
    }

    @Test("a call its policy refuses kills it by SIGSYS, named on stderr")
    func forbiddenSyscallIsReported() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.image(dir + "/a.img", bytes: 1 << 20)
        let err = try JailTests.StderrPipe()
        defer { close(err.read) }
        var c = try Self.config(disks: [dir + "/a.img"])
        defer { for d in c.disks { close(d.fd) } }
        c.workerArguments = ["--test-forbidden-syscall"]
        // It fails on purpose, every start: the old behaviour, no restarts (docs/faults.md).
        c.restartBudget = nil
        c.workerStandardError = err.write
        let outcome: RunOutcome
        do {
            defer { close(err.write) }
            outcome = try VirtualMachine(config: c).run()
        }
        let w = try #require(outcome.workers.first { $0.name == "storage" })
        #expect(w.exit?.description.hasPrefix("killed by signal 31 (SIGSYS)") == true, "\(String(describing: w.exit))")
        let text = err.drain()
        #expect(text.contains("synthvm-storage: seccomp violation: syscall 41 (socket)\n"), "stderr: \(text)")
    }

    /// Runs the synthvm-bench built next to synthvm with `arguments`: its status and stdout
    /// (stderr, the workers' lines, dropped).
    static func bench(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
        let p = Process()
        p.executableURL = CommandLineTests.binary.deletingLastPathComponent().appendingPathComponent("synthvm-bench")
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    @Test("synthvm-bench storage runs the real worker under a fake storvsc and prints every figure (no timing asserted)")
    func benchPrintsItsLines() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (status, text) = try Self.bench(["storage", "--disk", dir + "/bench.img", "--disk-mib", "16", "--scale", "0.001"])
        #expect(status == 0, "\(text)")
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("storage: IPC floor (eventfd wake + eventfd signal back, round trip): ") && $0.hasSuffix(" µs") })
        #expect(lines.contains { $0.hasPrefix("storage: raw side: QD threads, taking QD buffers in turn") })
        for engine in ["nowait+pool", "pool"] {
            for w in ["4k randread qd1", "4k randwrite qd1", "4k randread qd32", "4k randwrite qd32", "1m seqread qd16", "1m seqwrite qd16"] {
                let line = lines.first { $0.hasPrefix("storage: [\(engine)] \(w): worker ") }
                #expect(line?.contains(" k req/s, raw ") == true && line?.contains(", ratio ") == true, "\(engine) \(w): \(text)")
                if w.hasSuffix("qd1") { #expect(line?.contains("added latency") == true && line?.contains("(floor ") == true) }
                if !w.hasSuffix("qd1") { #expect(line?.contains("target 0.9") == true) }
                Self.expectCPULines(lines, engine: engine, workload: w)
            }
        }
    }

    @Test("synthvm-bench storage --only and --repeat run just the workloads asked for, that many times; --raw-own-buffers runs")
    func benchOnlyAndRepeat() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for extra in [[], ["--raw-own-buffers"]] {
            let (status, text) = try Self.bench(["storage", "--disk", dir + "/bench.img", "--disk-mib", "16", "--scale", "0.001",
                                                 "--only", "seqread,randwrite qd32", "--repeat", "2"] + extra)
            #expect(status == 0, "\(text)")
            let figures = text.split(separator: "\n").filter { $0.contains(": worker ") && $0.contains(", ratio ") }
            // Per engine: 1m seqread qd16 and 4k randwrite qd32, twice each; nothing else.
            #expect(figures.count == 8, "\(extra): \(text)")
            #expect(figures.allSatisfy { $0.contains("] 1m seqread qd16: ") || $0.contains("] 4k randwrite qd32: ") }, "\(text)")
        }
    }
    @Test("synthvm-bench storage --raw-own-buffers --raw-into-guest-ram: the method said, every CPU line printed (no timing asserted)")
    func benchRawMethods() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (status, text) = try Self.bench(["storage", "--disk", dir + "/bench.img", "--disk-mib", "16", "--scale", "0.001",
                                             "--only", "seqread,randread qd1", "--raw-own-buffers", "--raw-into-guest-ram"])
        #expect(status == 0, "\(text)")
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("storage: raw side: QD threads, each reading into its own buffer every time (--raw-own-buffers")
            && $0.contains("(--raw-into-guest-ram)") }, "\(text)")
        for engine in ["nowait+pool", "pool"] {
            for w in ["4k randread qd1", "1m seqread qd16"] { Self.expectCPULines(lines, engine: engine, workload: w) }
        }
    }

    /// The per-side CPU lines after a workload's figure: shares of the CPUs, then CPU per request.
    static func expectCPULines(_ lines: [String], engine: String, workload w: String) {
        let used = lines.first { $0.hasPrefix("storage: [\(engine)] \(w): CPUs used (waiting for a CPU): raw threads ") }
        #expect(used?.contains("; worker ") == true && used?.contains(", fake guest ") == true
            && used?.contains("the idle worker during the raw run ") == true && used?.contains("; host load ") == true,
            "\(engine) \(w): \(String(describing: used))")
        let perRequest = lines.first { $0.hasPrefix("storage: [\(engine)] \(w): CPU per request: raw ") }
        #expect(perRequest?.contains(" µs, worker ") == true && perRequest?.contains(" µs + fake guest ") == true
            && perRequest?.contains("; CPU ratio ") == true, "\(engine) \(w): \(String(describing: perRequest))")
        if w.hasPrefix("1m") { #expect(perRequest?.hasSuffix(" GiB per CPU-second)") == true, "\(String(describing: perRequest))") }
    }
}
