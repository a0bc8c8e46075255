import Glibc
import Machine

/// `synthvm-bench startup`: how long `synthvm run` (the real binary, as a subprocess) takes from
/// spawn to its guest's first instruction, against `qemu-system-x86_64 -accel kvm` doing the same.
///
/// What is measured: the time from just before posix_spawn to the first byte of the guest's serial
/// output arriving on the bench's stdout pipe. Both guests are a few hand-assembled instructions
/// whose first effect is writing "!\n" to COM1 (port 0x3f8), then 0 to the exit device at port 0xf4
/// (SynthVM's exit device, QEMU's `isa-debug-exit`), so both VMMs end with status 1 and the total
/// to process exit is printed too. The guests are the closest equivalents each VMM boots without
/// firmware:
/// - SynthVM: an ELF64 entered directly in long mode (`--kernel`, SynthVM's direct boot). SynthVM
///   flushes COM1 output at each newline, so the byte arrives after the guest's 5th instruction.
/// - QEMU: a 64 KiB `-bios` image whose reset vector (the first instruction QEMU's vCPU runs) jumps
///   to the same sequence in real mode; `-machine pc -nodefaults -nographic -serial stdio`, same
///   RAM. QEMU's serial backend writes each byte at once.
/// Each configuration runs `rounds` times after one unmeasured warm-up (page cache); the median is
/// reported. Never asserted by a test.
struct StartupBenchmark {
    let synthvm: String
    let qemu: String?
    let rounds: Int
    let workDir: String

    static let serialBytes: [UInt8] = Array("!\n".utf8)

    /// mov dx,0x3f8; mov al,'!'; out dx,al; mov al,'\n'; out dx,al; mov dx,0xf4; xor al,al;
    /// out dx,al; cli; hlt. The same bytes decode identically in real mode and, with the operand
    /// size prefixes below, in long mode.
    static let longModeCode: [UInt8] = [
        0x66, 0xBA, 0xF8, 0x03, 0xB0, 0x21, 0xEE, 0xB0, 0x0A, 0xEE,
        0x66, 0xBA, 0xF4, 0x00, 0x30, 0xC0, 0xEE, 0xFA, 0xF4, 0xEB, 0xFD,
    ]
    static let realModeCode: [UInt8] = [
        0xBA, 0xF8, 0x03, 0xB0, 0x21, 0xEE, 0xB0, 0x0A, 0xEE,
        0xBA, 0xF4, 0x00, 0x30, 0xC0, 0xEE, 0xFA, 0xF4, 0xEB, 0xFD,
    ]

    /// QEMU's pc machine maps a -bios image (a multiple of 64 KiB) to end at 4 GiB; the CPU starts
    /// at CS base 0xffff0000, IP 0xfff0. There: jmp near 0xff00, where the code is.
    static func biosImage() -> [UInt8] {
        var image = [UInt8](repeating: 0xFF, count: 0x10000)
        image.replaceSubrange(0xFF00..<(0xFF00 + realModeCode.count), with: realModeCode)
        let rel = UInt16(truncatingIfNeeded: 0xFF00 - 0xFFF3)
        image.replaceSubrange(0xFFF0..<0xFFF3, with: [0xE9, UInt8(rel & 0xFF), UInt8(rel >> 8)])
        return image
    }

    struct Sample { var firstByte: Double; var exit: Double }

    func runAndPrint() throws {
        let elf = workDir + "/startup-guest.elf"
        let bios = workDir + "/startup-bios.bin"
        try write(BuiltinGuest.elf64(code: Self.longModeCode), to: elf)
        try write(Self.biosImage(), to: bios)

        let synthvmDefault = [synthvm, "run", "--kernel", elf, "--memory", "256M", "--serial", "stdio"]
        let synthvmOff = synthvmDefault + ["--hyperv", "off"]
        print("startup: spawn to the guest's first serial byte (its first instructions), median of \(rounds) runs")
        let ours = try measure("synthvm run (defaults: --hyperv default, SynIC router worker, jail, seccomp)", synthvmDefault)
        let oursOff = try measure("synthvm run --hyperv off", synthvmOff)
        guard let qemu else {
            print("  qemu-system-x86_64 not found: install Debian's qemu-system-x86 (apt-get install qemu-system-x86) for the ratio")
            return
        }
        let qemuArgs = [qemu, "-accel", "kvm", "-machine", "pc", "-m", "256M", "-nodefaults", "-nographic",
                        "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-bios", bios]
        let theirs = try measure("qemu-system-x86_64 -accel kvm -bios (reset vector)", qemuArgs)
        print("  ratio synthvm/qemu to the first byte: \(format2(ours.firstByte / theirs.firstByte)) (defaults), "
              + "\(format2(oursOff.firstByte / theirs.firstByte)) (--hyperv off); to exit: "
              + "\(format2(ours.exit / theirs.exit)), \(format2(oursOff.exit / theirs.exit)) (target: < 1)")
    }

    private func measure(_ label: String, _ argv: [String]) throws -> Sample {
        _ = try runOnce(argv)   // warm-up: page cache, first-use costs
        var samples: [Sample] = []
        for _ in 0..<rounds { samples.append(try runOnce(argv)) }
        let first = median(samples.map(\.firstByte)), exit = median(samples.map(\.exit))
        func ms(_ s: Double) -> String { format2(s * 1e3) + " ms" }
        print("  \(label): first byte \(ms(first)) (min \(ms(samples.map(\.firstByte).min()!)), "
              + "max \(ms(samples.map(\.firstByte).max()!))), exit \(ms(exit))")
        return Sample(firstByte: first, exit: exit)
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    /// Spawns argv with stdin /dev/null, stdout a pipe, stderr /dev/null; returns the seconds to
    /// the first byte on the pipe and to the process's exit. Anything but "!\n" and status 1 is an
    /// error: the figure would not be measuring a guest that ran.
    private func runOnce(_ argv: [String]) throws -> Sample {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw BenchError("pipe: " + String(cString: strerror(errno))) }
        // Only the child's dup2'd stdout may hold the write end, or EOF never comes.
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        defer { close(fds[0]) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }

        var pid: pid_t = 0
        let start = now()
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        close(fds[1])
        guard rc == 0 else { throw BenchError("posix_spawn \(argv[0])" + ": " + String(cString: strerror(rc))) }
        var output: [UInt8] = []
        var firstByte = -1.0
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let n = read(fds[0], &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if firstByte < 0 { firstByte = now() - start }
            output += buffer[0..<n]
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = now() - start
        let exited = status & 0x7F == 0, code = (status >> 8) & 0xFF
        guard firstByte >= 0, output == Self.serialBytes, exited, code == 1 else {
            throw BenchError("the startup guest did not run as expected: \(argv[0]): output \(output), wait status \(status)")
        }
        return Sample(firstByte: firstByte, exit: exit)
    }

    private func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private func write(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BenchError("open \(path)" + ": " + String(cString: strerror(errno))) }
        defer { close(fd) }
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw BenchError("write \(path)" + ": " + String(cString: strerror(errno))) }
    }
}
