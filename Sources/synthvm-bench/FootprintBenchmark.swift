import Glibc
import Machine

/// `synthvm-bench footprint`: the resident memory of each process of a running `synthvm run`
/// (the launcher, the VM process, every worker) with an idle guest, next to the targets of
/// docs/monitor.md ("Footprint").
///
/// The guest is `sti; hlt` in a loop: halted with interrupts on, so it never stops and makes no
/// exits of its own; the default enlightenments give it a SynIC, so the SynIC router runs. Once
/// every process is there and has settled, each one's `/proc/<pid>/smaps` is summed mapping by
/// mapping: Rss, private (Private_Clean + Private_Dirty) and shared (Shared_Clean +
/// Shared_Dirty), leaving out guest RAM (the `synthvm-guest-ram` memfd, which the VM process and
/// the workers map and which is the guest's, not the process's). VmRSS from `/proc/<pid>/status`
/// is printed beside it, guest RAM included, as `ps` would show it. Figures are this host's; no
/// test asserts them.
struct FootprintBenchmark {
    let synthvm: String
    let workDir: String

    /// sti; hlt; jmp back to the hlt.
    static let idleCode: [UInt8] = [0xFB, 0xF4, 0xEB, 0xFD]
    static let guestRAMName = "memfd:synthvm-guest-ram"
    static let vmProcessTarget = 8.0, workerTarget = 6.0

    struct Usage {
        var name: String
        var pid: Int32
        var vmRSS = 0.0, guestRAM = 0.0, rss = 0.0, privateBytes = 0.0, shared = 0.0
        var libraries = 0
    }

    func runAndPrint() throws {
        let elf = workDir + "/footprint-idle.elf"
        try writeFile(BuiltinGuest.elf64(code: Self.idleCode), to: elf)
        let argv = [synthvm, "run", "--kernel", elf, "--memory", "256M", "--serial", "none", "--timeout", "120"]
        let launcher = try spawn(argv)
        defer {
            kill(launcher, SIGTERM)
            var status: Int32 = 0
            while waitpid(launcher, &status, 0) < 0 && errno == EINTR {}
        }
        guard let (vm, workers) = waitForProcesses(launcher: launcher) else {
            throw BenchError("no VM process with a running vCPU and its workers appeared within 20 s under \(argv.joined(separator: " "))")
        }
        usleep(500_000)  // let the workers finish attaching and the vCPU settle in hlt
        var rows = [try measure(launcher, name: "launcher (synthvm run)"), try measure(vm, name: "VM process")]
        for w in workers { rows.append(try measure(w, name: "worker " + comm(w))) }
        print("footprint: \(argv.dropFirst().joined(separator: " ")), idle guest (sti; hlt), MiB")
        print("  process                        VmRSS  guest RAM  RSS w/o guest RAM  private  shared  libs  target")
        for (i, r) in rows.enumerated() {
            let target = i == 0 ? "-" : i == 1 ? "<= \(format2(Self.vmProcessTarget))" : "<= \(format2(Self.workerTarget))"
            let verdict = i == 0 ? "" : r.rss <= (i == 1 ? Self.vmProcessTarget : Self.workerTarget) ? " met" : " NOT met"
            print("  " + pad(r.name, 28) + pad(format2(r.vmRSS), 8, left: true) + pad(format2(r.guestRAM), 11, left: true)
                  + pad(format2(r.rss), 19, left: true) + pad(format2(r.privateBytes), 9, left: true)
                  + pad(format2(r.shared), 8, left: true) + pad("\(r.libraries)", 6, left: true) + "  " + target + verdict)
        }
    }

    /// The launcher's child with a `synthvm-vcpu0` thread (the VM runs) and, once the router is
    /// up, that child's children (the workers).
    private func waitForProcesses(launcher: Int32) -> (Int32, [Int32])? {
        for _ in 0..<400 {
            usleep(50_000)
            guard let vm = children(of: launcher).first else { continue }
            let threads = (try? listDirectory("/proc/\(vm)/task")) ?? []
            guard threads.contains(where: { comm(vm, task: $0) == "synthvm-vcpu0" }) else { continue }
            let workers = children(of: vm)
            guard !workers.isEmpty, workers.allSatisfy({ comm($0).hasPrefix("synthvm-") }) else { continue }
            return (vm, workers)
        }
        return nil
    }

    /// Sums /proc/<pid>/smaps mapping by mapping, guest RAM apart.
    private func measure(_ pid: Int32, name: String) throws -> Usage {
        var u = Usage(name: name, pid: pid)
        let status = try readText("/proc/\(pid)/status")
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") { u.vmRSS = kib(line) / 1024 }
        var inGuestRAM = false
        var libraries = Set<Substring>()
        for line in try readText("/proc/\(pid)/smaps").split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if first.contains("-"), !first.hasSuffix(":") {
                // A mapping's header: range perms offset dev inode [path].
                let path = fields.count >= 6 ? fields[5] : ""
                inGuestRAM = path.contains(Self.guestRAMName)
                if path.contains(".so") { libraries.insert(path) }
                continue
            }
            let value = kib(line) / 1024
            switch first {
            case "Rss:": if inGuestRAM { u.guestRAM += value } else { u.rss += value }
            case "Private_Clean:", "Private_Dirty:": if !inGuestRAM { u.privateBytes += value }
            case "Shared_Clean:", "Shared_Dirty:": if !inGuestRAM { u.shared += value }
            default: break
            }
        }
        u.libraries = libraries.count
        return u
    }

    private func kib(_ line: Substring) -> Double {
        Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
    }

    private func children(of pid: Int32) -> [Int32] {
        ((try? readText("/proc/\(pid)/task/\(pid)/children")) ?? "").split(separator: " ").compactMap { Int32($0) }
    }

    private func comm(_ pid: Int32, task: String? = nil) -> String {
        let path = task.map { "/proc/\(pid)/task/\($0)/comm" } ?? "/proc/\(pid)/comm"
        return ((try? readText(path)) ?? "?").split(separator: "\n").first.map(String.init) ?? "?"
    }

    private func spawn(_ argv: [String]) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { throw BenchError("posix_spawn \(argv[0]): " + String(cString: strerror(rc))) }
        return pid
    }

    private func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? fill + s : s + fill
    }
}

/// The whole of a (small, /proc) text file.
func readText(_ path: String) throws -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw BenchError("open \(path): " + String(cString: strerror(errno))) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 && errno == EINTR { continue }
        if n < 0 { throw BenchError("read \(path): " + String(cString: strerror(errno))) }
        if n == 0 { break }
        out += chunk[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

func listDirectory(_ path: String) throws -> [String] {
    guard let d = opendir(path) else { throw BenchError("opendir \(path): " + String(cString: strerror(errno))) }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

func writeFile(_ bytes: [UInt8], to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw BenchError("open \(path): " + String(cString: strerror(errno))) }
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    guard n == bytes.count else { throw BenchError("write \(path): " + String(cString: strerror(errno))) }
}
