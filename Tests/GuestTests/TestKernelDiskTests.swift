import Foundation
import Testing

/// The test kernel (docs/test-kernel.md) on SynthVM disks (issue 13, items 4 and 6): Linux's
/// storvsc drives the storage worker, mounts an ext4 root read-write from a `--disk` image built
/// with `mkfs.ext4 -d`, and reaches its init step (there is no user space that can run on this
/// host: it panics with "No working init found", which ends synthvm with status 8). Then the
/// image is fsck-clean and its superblock shows the mount. A second case boots two disks, the
/// second read-only; a third SIGKILLs the whole synthvm process tree right after the mount and
/// finds the kernel's flushed writes in the image.
///
/// Needs /dev/kvm and e2fsprogs (scripts/install-deps.sh).
@Suite("test kernel on SynthVM disks (storvsc, ext4 root)", .serialized)
struct TestKernelDiskTests {
    struct Run {
        var log: String
        var lines: [String]
        var stderr: String
        var status: Int32
        var seconds: Double
        var killed: Bool
    }

    static let mounted = "EXT4-fs (sda): mounted filesystem"

    static func tool(_ name: String, _ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        let path = ["/usr/sbin/", "/sbin/", "/usr/bin/"].map { $0 + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
        p.executableURL = URL(fileURLWithPath: try #require(path, "\(name) is missing: scripts/install-deps.sh installs e2fsprogs"))
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// An ext4 image of `megabytes` built from a small directory (`mkfs.ext4 -d`).
    static func rootImage(_ dir: String, megabytes: Int) throws -> String {
        let tree = dir + "/tree"
        try FileManager.default.createDirectory(atPath: tree + "/etc", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/sbin", withIntermediateDirectories: true)
        try "made by TestKernelDiskTests\n".write(toFile: tree + "/etc/motd", atomically: true, encoding: .utf8)
        let image = dir + "/root.ext4"
        #expect(FileManager.default.createFile(atPath: image, contents: nil))
        try #require(truncate(image, off_t(megabytes << 20)) == 0)
        let mkfs = try tool("mkfs.ext4", ["-q", "-F", "-d", tree, image])
        try #require(mkfs.status == 0, "\(mkfs.output)")
        return image
    }

    /// Every pid below `root` (children first found by their ppid in /proc).
    static func tree(_ root: pid_t) -> [pid_t] {
        var parent: [pid_t: pid_t] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let ppid = pid_t(fields[1]) { parent[pid] = ppid }
        }
        var out = [root]
        var i = 0
        while i < out.count {
            out += parent.filter { $0.value == out[i] }.map(\.key)
            i += 1
        }
        return out
    }

    /// Runs `synthvm run` on the test kernel with `disks` until it ends (or `timeout`); with
    /// `killAfter`, SIGKILLs the whole process tree (launcher, VM process, workers) as soon as
    /// that line is in the serial log.
    static func boot(disks: [String], cpus: Int = 1, timeout: Int = 300, killAfter: String? = nil) throws -> Run {
        let kernel = try TestKernelTests.kernel.get()
        let p = Process()
        p.executableURL = CommandLineTests.binary
        p.arguments = ["run", "--profile", "linux-pvm", "--kernel", kernel, "--cpus", "\(cpus)", "--memory", "256M",
                       "--cmdline", "console=ttyS0 root=/dev/sda rootwait rw", "--serial", "stdio",
                       "--timeout", "\(timeout)"] + disks.flatMap { ["--disk", $0] }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        let buffer = LockedData(), errBuffer = LockedData()
        out.fileHandleForReading.readabilityHandler = { h in buffer.append(h.availableData) }
        err.fileHandleForReading.readabilityHandler = { h in errBuffer.append(h.availableData) }
        let start = Date()
        try p.run()
        var killed = false
        while p.isRunning {
            if let line = killAfter, buffer.string.contains(line) {
                for pid in tree(p.processIdentifier) { kill(pid, SIGKILL) }
                killed = true
                break
            }
            usleep(50_000)
        }
        p.waitUntilExit()
        let seconds = Date().timeIntervalSince(start)
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
        buffer.append(out.fileHandleForReading.readDataToEndOfFile())
        errBuffer.append(err.fileHandleForReading.readDataToEndOfFile())
        return Run(log: buffer.string, lines: ReferenceLinuxTests.serialLines(buffer.string), stderr: errBuffer.string,
                   status: p.terminationStatus, seconds: seconds, killed: killed)
    }

    static func superblock(_ image: String) throws -> [String: String] {
        let d = try tool("dumpe2fs", ["-h", image])
        var out: [String: String] = [:]
        for line in d.output.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            out[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }

    static func expectClean(_ run: Run, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        let trouble = run.lines.filter { l in
            ["I/O error", "Buffer I/O", "EXT4-fs error", "hv_storvsc ", "Oops", "BUG:", "WARNING:", "Call Trace"].contains { l.contains($0) }
                && !l.contains("registering driver hv_storvsc")
        }
        #expect(trouble.isEmpty, "\(trouble.joined(separator: "\n"))", sourceLocation: sourceLocation)
        #expect(!run.stderr.contains("MEDIUM ERROR") && !run.stderr.contains("cut off"), "\(run.stderr)", sourceLocation: sourceLocation)
    }

    @Test("Linux mounts its ext4 root read-write from a SynthVM disk and reaches init; the image is fsck-clean and shows the mount")
    func mountsRoot() throws {
        try GuestHarness.requireKVM()
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = try Self.rootImage(dir, megabytes: 64)
        #expect(try Self.superblock(image)["Mount count"] == "0")
        let run = try Self.boot(disks: [image])
        let tail = "last serial lines:\n" + run.lines.suffix(30).joined(separator: "\n") + "\nstderr:\n" + run.stderr
        print("test-kernel-disk: root disk: synthvm status \(run.status) after \(String(format: "%.1f", run.seconds)) s; "
              + (run.lines.first { $0.contains(Self.mounted) } ?? "no mount line"))
        // storvsc prints no protocol version: the worker says what it agreed.
        #expect(run.stderr.contains("synthvm-storage: relid 4: vstor: protocol 0x0602, 1 LUN(s)"), "\(tail)")
        #expect(run.lines.contains { $0.contains("scsi 0:0:0:0: Direct-Access     Msft     Virtual Disk     1.0") }, "\(tail)")
        #expect(run.lines.contains { $0.contains("sd 0:0:0:0: [sda] 131072 512-byte logical blocks: (67.1 MB/64.0 MiB)") }, "\(tail)")
        #expect(run.lines.contains { $0.contains("[sda] Write Protect is off") }, "\(tail)")
        #expect(run.lines.contains { $0.contains("[sda] Write cache: enabled, read cache: enabled, supports DPO and FUA") }, "\(tail)")
        #expect(run.lines.contains { $0.contains(Self.mounted) }, "\(tail)")
        #expect(run.lines.contains { $0.contains("VFS: Mounted root (ext4 filesystem) on device 8:0.") }, "read-write root\n\(tail)")
        #expect(run.lines.contains { $0.contains("Run /sbin/init as init process") }, "\(tail)")
        // No user space can run here: the kernel gives up on init (crash MSRs: status 8).
        #expect(run.lines.contains { $0.contains("No working init found") }, "\(tail)")
        #expect(run.status == 8, "\(tail)")
        Self.expectClean(run)
        let fsck = try Self.tool("e2fsck", ["-fn", image])
        #expect(fsck.status == 0, "\(fsck.output)")
        let sb = try Self.superblock(image)
        #expect(sb["Mount count"] == "1", "\(sb)")
        #expect((sb["Last mount time"] ?? "n/a") != "n/a", "\(sb)")
    }

    @Test("2 vCPUs: storvsc asks for a sub-channel (max_channel_cnt 1), opens it and does I/O on it; the root mounts read-write, the image is fsck-clean")
    func mountsRootWithSubChannels() throws {
        try GuestHarness.requireKVM()
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = try Self.rootImage(dir, megabytes: 64)
        let run = try Self.boot(disks: [image], cpus: 2)
        let tail = "last serial lines:\n" + run.lines.suffix(30).joined(separator: "\n") + "\nstderr:\n" + run.stderr
        let served = run.stderr.split(separator: "\n").first { $0.contains("synthvm-storage: requests served: ") } ?? "no count"
        print("test-kernel-disk: 2 vCPUs with sub-channels: synthvm status \(run.status) after \(String(format: "%.1f", run.seconds)) s; "
              + (run.lines.first { $0.contains(Self.mounted) } ?? "no mount line") + "; " + served)
        #expect(run.stderr.contains("synthvm-storage: relid 4: vstor: protocol 0x0602, 1 LUN(s)"), "\(tail)")
        // Linux: CREATE_SUB_CHANNELS n = min(CPUs - 1, max_channel_cnt) = 1, answered before the
        // offer; then it opens the sub-channel (relid 5) with a target CPU of its choosing.
        #expect(run.stderr.contains("synthvm-storage: relid 4: CREATE_SUB_CHANNELS: 1 sub-channel(s) (limit 1)"), "\(tail)")
        #expect(run.stderr.contains("synthvm-vmbus: relid 4: storage asked for 1 sub-channel(s); offered: 5/1"), "\(tail)")
        #expect(run.stderr.contains("synthvm-vmbus: relid 5: sub-channel 1 of relid 4 opened, interrupts to VP "), "\(tail)")
        #expect(run.stderr.contains("synthvm-storage: relid 5: sub-channel 1 open, interrupts to VP "), "\(tail)")
        // And uses it: requests were taken from the sub-channel's ring and completed there.
        #expect(run.stderr.contains("synthvm-storage: relid 5: sub-channel 1: 1 request(s) served"), "\(tail)")
        #expect(run.lines.contains { $0.contains("sd 0:0:0:0: [sda] 131072 512-byte logical blocks: (67.1 MB/64.0 MiB)") }, "\(tail)")
        #expect(run.lines.contains { $0.contains(Self.mounted) }, "\(tail)")
        #expect(run.lines.contains { $0.contains("VFS: Mounted root (ext4 filesystem) on device 8:0.") }, "read-write root\n\(tail)")
        #expect(run.lines.contains { $0.contains("No working init found") }, "\(tail)")
        #expect(run.status == 8, "\(tail)")
        Self.expectClean(run)
        let fsck = try Self.tool("e2fsck", ["-fn", image])
        #expect(fsck.status == 0, "\(fsck.output)")
        #expect(try Self.superblock(image)["Mount count"] == "1")
    }

    @Test("a disk served at an older protocol (--disk ...,protocol=0x0600): Linux agrees 0x0600, mounts its root read-write, the image is fsck-clean")
    func olderProtocol() throws {
        try GuestHarness.requireKVM()
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = try Self.rootImage(dir, megabytes: 64)
        let run = try Self.boot(disks: [image + ",protocol=0x0600"])
        let tail = "last serial lines:\n" + run.lines.suffix(30).joined(separator: "\n") + "\nstderr:\n" + run.stderr
        print("test-kernel-disk: protocol 0x0600: synthvm status \(run.status) after \(String(format: "%.1f", run.seconds)) s")
        // storvsc tried 0x0602 first (REVISION_MISMATCH), then 0x0600.
        #expect(run.stderr.contains("synthvm-storage: relid 4: vstor: protocol 0x0600, 1 LUN(s)"), "\(tail)")
        #expect(!run.stderr.contains("vstor: protocol 0x0602"), "\(tail)")
        #expect(run.lines.contains { $0.contains("sd 0:0:0:0: [sda] 131072 512-byte logical blocks: (67.1 MB/64.0 MiB)") }, "\(tail)")
        #expect(run.lines.contains { $0.contains("[sda] Write Protect is off") }, "\(tail)")
        #expect(run.lines.contains { $0.contains(Self.mounted) }, "\(tail)")
        #expect(run.lines.contains { $0.contains("VFS: Mounted root (ext4 filesystem) on device 8:0.") }, "read-write root\n\(tail)")
        #expect(run.lines.contains { $0.contains("No working init found") }, "\(tail)")
        #expect(run.status == 8, "\(tail)")
        Self.expectClean(run)
        let fsck = try Self.tool("e2fsck", ["-fn", image])
        #expect(fsck.status == 0, "\(fsck.output)")
        #expect(try Self.superblock(image)["Mount count"] == "1")
    }

    @Test("two disks, the second read-only: both appear with their sizes, sdb write-protected")
    func twoDisks() throws {
        try GuestHarness.requireKVM()
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = try Self.rootImage(dir, megabytes: 64)
        let data = dir + "/data.img"
        #expect(FileManager.default.createFile(atPath: data, contents: Data(repeating: 0xA5, count: 8 << 20)))
        let run = try Self.boot(disks: [image, data + ",readonly,serial=DATA0"])
        let tail = "last serial lines:\n" + run.lines.suffix(30).joined(separator: "\n") + "\nstderr:\n" + run.stderr
        print("test-kernel-disk: two disks: synthvm status \(run.status) after \(String(format: "%.1f", run.seconds)) s")
        #expect(run.stderr.contains("vstor: protocol 0x0602, 2 LUN(s)"), "\(tail)")
        #expect(run.lines.contains { $0.contains("sd 0:0:0:0: [sda] 131072 512-byte logical blocks") }, "\(tail)")
        #expect(run.lines.contains { $0.contains("sd 0:0:0:1: [sdb] 16384 512-byte logical blocks: (8.39 MB/8.00 MiB)") }, "\(tail)")
        #expect(run.lines.contains { $0.contains("[sdb] Write Protect is on") }, "\(tail)")
        #expect(run.lines.contains { $0.contains("[sda] Write Protect is off") }, "\(tail)")
        #expect(run.lines.contains { $0.contains(Self.mounted) }, "\(tail)")
        #expect(run.lines.contains { $0.contains("No working init found") }, "\(tail)")
        Self.expectClean(run)
        // The read-only image is untouched.
        let after = try Data(contentsOf: URL(fileURLWithPath: data))
        #expect(after == Data(repeating: 0xA5, count: 8 << 20))
    }

    @Test("what the guest flushed survives SIGKILL of the whole synthvm process tree")
    func flushedWritesSurviveSIGKILL() throws {
        try GuestHarness.requireKVM()
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = try Self.rootImage(dir, megabytes: 64)
        // ext4's mount writes the superblock (mount count, last mount time) with REQ_FUA and
        // commits its journal with a flush: completed only once fdatasync returned.
        let run = try Self.boot(disks: [image], killAfter: "VFS: Mounted root (ext4 filesystem)")
        let tail = "last serial lines:\n" + run.lines.suffix(20).joined(separator: "\n") + "\nstderr:\n" + run.stderr
        #expect(run.killed, "\(tail)")
        #expect(run.status == 9 || run.status == 137, "killed: \(run.status)")
        print("test-kernel-disk: SIGKILL after the mount, \(String(format: "%.1f", run.seconds)) s into the run")
        let sb = try Self.superblock(image)
        #expect(sb["Mount count"] == "1", "\(sb)")
        #expect((sb["Last mount time"] ?? "n/a") != "n/a", "\(sb)")
        // Journal replay aside (the kernel never unmounted), the file system is consistent.
        let fsck = try Self.tool("e2fsck", ["-fn", image])
        #expect(fsck.status == 0, "\(fsck.output)")
    }
}
