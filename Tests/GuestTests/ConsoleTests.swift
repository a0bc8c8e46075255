import CSynthVM
import Foundation
import Machine
@testable import Monitor
import Synchronization
import Testing

/// Records the levels a device drives onto its IRQ line.
final class RecordingLine: InterruptLine {
    let levels = Mutex<[Bool]>([])
    func set(level: Bool) { levels.withLock { $0.append(level) } }
}

/// One FNV-1a 32-bit hash, as the uart guest computes it.
func fnv1a(_ bytes: [UInt8]) -> UInt32 {
    bytes.reduce(2_166_136_261 as UInt32) { ($0 ^ UInt32($1)) &* 16_777_619 }
}

@Suite("COM1 interrupts and console input")
struct ConsoleTests {
    @Test("Ctrl-A x quits, Ctrl-A Ctrl-A is one Ctrl-A, Ctrl-A anything else passes both, across reads")
    func escapes() {
        var e = ConsoleEscape()
        #expect(e.filter(Array("ls\r".utf8)[...]) == (Array("ls\r".utf8), false))
        #expect(e.filter([0x01, 0x01, 0x41][...]) == ([0x01, 0x41], false))
        #expect(e.filter([0x01, 0x63][...]) == ([0x01, 0x63], false))  // Ctrl-A c
        #expect(e.filter([0x42, 0x01][...]) == ([0x42], false))
        #expect(e.armed)
        #expect(e.filter([0x78, 0x43][...]) == ([], true))  // the x arrived in the next read
        var f = ConsoleEscape()
        #expect(f.filter([0x03, 0x01, 0x78, 0x44][...]) == ([0x03], true))  // Ctrl-C goes to the guest
    }

    @Test("the IRQ line sees each THRE edge: a THR write lowers it, the drain raises it again")
    func serialPortEdges() throws {
        let line = RecordingLine()
        let port = try SerialPort(sink: ConsoleSink(.capture), irq: line)
        port.write(port: 0x3FC, size: 1, value: 0x0B)  // DTR | RTS | OUT2
        port.write(port: 0x3F9, size: 1, value: 0x02)  // ETBEI: THRE at once
        #expect(line.levels.withLock { $0 } == [true])
        port.write(port: 0x3F8, size: 1, value: 0x41)
        #expect(line.levels.withLock { $0 } == [true, false, true])
        #expect(port.read(port: 0x3FA, size: 1) == 0x02)  // acknowledges THRE
        #expect(line.levels.withLock { $0 } == [true, false, true, false])
        // Received data raises it; reading the byte lowers it.
        #expect(port.receive([0x61][...]) == 1)
        #expect(line.levels.withLock { $0.last } == false)  // ERBFI is off
        port.write(port: 0x3F9, size: 1, value: 0x01)
        #expect(line.levels.withLock { $0.last } == true)
        #expect(port.read(port: 0x3F8, size: 1) == 0x61)
        #expect(line.levels.withLock { $0 } == [true, false, true, false, true, false])
        // OUT2 off: no line, whatever the UART wants.
        port.write(port: 0x3FC, size: 1, value: 0x03)
        #expect(port.receive([0x62][...]) == 1)
        #expect(line.levels.withLock { $0.count } == 6)
    }

    @Test("input is held while RTS is low or the queue is full, and the feeder is woken when that changes")
    func serialPortFlowControl() throws {
        let port = try SerialPort(sink: ConsoleSink(.none))
        let input = [UInt8](repeating: 0x55, count: UART16550.receiveCapacity + 10)
        #expect(port.receive(input[...]) == 0)  // RTS low
        var fds = [pollfd(fd: port.inputReadyFD, events: Int16(POLLIN), revents: 0)]
        #expect(poll(&fds, 1, 0) == 0)
        port.write(port: 0x3FC, size: 1, value: 0x02)  // RTS
        #expect(poll(&fds, 1, 0) == 1)
        var count: UInt64 = 0
        _ = read(port.inputReadyFD, &count, 8)
        #expect(port.receive(input[...]) == UART16550.receiveCapacity)
        #expect(poll(&fds, 1, 0) == 0)
        #expect(port.read(port: 0x3F8, size: 1) == 0x55)
        #expect(poll(&fds, 1, 0) == 1)  // room for one more
        #expect(port.receive(input[UART16550.receiveCapacity...]) == 1)
        #expect(port.uart.overrunCount == 0)
    }

    @Test("`synthvm run` feeds piped stdin to COM1: the interrupt-driven guest echoes all of it, then stdin's EOF")
    func pipedInputEcho() throws {
        try GuestHarness.requireKVM()
        var x: UInt64 = 42
        var input = (0..<6000).map { _ -> UInt8 in
            x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(ascii: "a") + UInt8((x >> 33) % 26)
        }
        input[1000] = 0x0A
        input.append(UInt8(ascii: "."))
        let p = Process()
        p.executableURL = CommandLineTests.binary
        p.arguments = ["run", "--kernel", try GuestHarness.guestPath("uart"), "--timeout", "120"]
        let stdin = Pipe(), out = Pipe(), err = Pipe()
        p.standardInput = stdin
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // All of it at once, long before the guest raises RTS, then EOF.
        try stdin.fileHandleForWriting.write(contentsOf: Data(input))
        try stdin.fileHandleForWriting.close()
        let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(e)")
        let expectedEcho = "uart: ready\n" + String(decoding: input, as: UTF8.self) + "\n"
        #expect(o.hasPrefix(expectedEcho), "output starts: \(o.prefix(200))")
        let summary = try #require(o.split(separator: "\n").last.map(String.init))
        let fields = Dictionary(uniqueKeysWithValues: summary.split(separator: " ").compactMap { f -> (String, String)? in
            let kv = f.split(separator: "=", maxSplits: 1)
            return kv.count == 2 ? (String(kv[0]), String(kv[1])) : nil
        })
        #expect(summary.hasPrefix("uart: received \(input.count) bytes"), "\(summary)")
        #expect(fields["fnv"] == String(format: "%08x", fnv1a(input)))
        // Interrupts came through IRQ 4: received data at least once, THRE once per echoed byte
        // (each transmitted byte re-raises it) plus the start_tx kicks.
        #expect(Int(fields["irqs"] ?? "") ?? 0 >= 1)
        #expect(Int(fields["rx"] ?? "") ?? 0 >= 1)
        #expect(Int(fields["thre"] ?? "") ?? 0 >= input.count)
    }

    /// A pseudo-terminal pair: the test holds the master and a slave fd; synthvm gets the slave.
    struct PTY {
        let master: Int32
        let slave: Int32

        /// asm-generic/ioctls.h: TIOCGPTN = _IOR('T', 0x30, unsigned int),
        /// TIOCSPTLCK = _IOW('T', 0x31, int). (glibc's posix_openpt and friends are not
        /// visible to Swift here.)
        static let getPTYNumber: UInt = 0x8004_5430
        static let setPTYLock: UInt = 0x4004_5431

        struct Failure: Error {}

        init() throws {
            let m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
            guard m >= 0 else { throw Failure() }
            var unlock: Int32 = 0
            var number: UInt32 = 0
            guard svm_ioctl_ptr(m, Self.setPTYLock, &unlock) == 0, svm_ioctl_ptr(m, Self.getPTYNumber, &number) == 0 else {
                Glibc.close(m)
                throw Failure()
            }
            let s = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY | O_CLOEXEC)
            guard s >= 0 else {
                Glibc.close(m)
                throw Failure()
            }
            master = m
            slave = s
        }

        func close() {
            Glibc.close(master)
            Glibc.close(slave)
        }

        var localFlags: tcflag_t {
            var t = termios()
            tcgetattr(slave, &t)
            return t.c_lflag
        }

        /// Waits (bounded) until synthvm has put the terminal in raw mode.
        func waitForRawMode() -> Bool {
            for _ in 0..<2000 {
                if localFlags & tcflag_t(ICANON | ECHO | ISIG) == 0 { return true }
                usleep(10_000)
            }
            return false
        }

        func send(_ s: String) {
            _ = s.withCString { write(master, $0, strlen($0)) }
        }
    }

    static func startOnTerminal(_ pty: PTY, guest: String) throws -> (Process, Pipe, Pipe) {
        let p = Process()
        p.executableURL = CommandLineTests.binary
        p.arguments = ["run", "--kernel", try GuestHarness.guestPath(guest), "--timeout", "120"]
        let out = Pipe(), err = Pipe()
        p.standardInput = FileHandle(fileDescriptor: pty.slave, closeOnDealloc: false)
        p.standardOutput = out
        p.standardError = err
        // The child inherits this thread's signal mask, and test-runner threads block nearly
        // everything; unblock the signals the tests send while spawning.
        var unblock = sigset_t(), saved = sigset_t()
        sigemptyset(&unblock)
        for s in [SIGHUP, SIGUSR2] { sigaddset(&unblock, s) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        try p.run()
        return (p, out, err)
    }

    @Test("a terminal on stdin goes raw while the VM runs (keys reach the guest) and is restored at the end")
    func terminalRawModeAndRestore() throws {
        try GuestHarness.requireKVM()
        let pty = try PTY()
        defer { pty.close() }
        let cooked = pty.localFlags
        #expect(cooked & tcflag_t(ICANON | ECHO) == tcflag_t(ICANON | ECHO))
        let (p, out, _) = try Self.startOnTerminal(pty, guest: "uart")
        #expect(pty.waitForRawMode(), "the terminal never went raw")
        pty.send("typed\u{03}.")  // Ctrl-C is a byte for the guest, not a signal
        let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(o.contains("typed\u{03}.\nuart: received 7 bytes"), "\(o)")
        #expect(pty.localFlags == cooked)
    }

    @Test("Ctrl-A x stops the VM (status 130) and restores the terminal")
    func terminalEscapeQuits() throws {
        try GuestHarness.requireKVM()
        let pty = try PTY()
        defer { pty.close() }
        let cooked = pty.localFlags
        let (p, _, err) = try Self.startOnTerminal(pty, guest: "uart")
        #expect(pty.waitForRawMode())
        pty.send("ab\u{01}x")
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 130)
        #expect(e.contains("stopped from the console (Ctrl-A x)"), "\(e)")
        #expect(pty.localFlags == cooked)
    }

    @Test("a signal that kills synthvm still restores the terminal", arguments: [SIGHUP, SIGUSR2])
    func terminalRestoredOnFatalSignal(signal: Int32) throws {
        try GuestHarness.requireKVM()
        let pty = try PTY()
        defer { pty.close() }
        let cooked = pty.localFlags
        let (p, _, err) = try Self.startOnTerminal(pty, guest: "uart")
        #expect(pty.waitForRawMode())
        kill(p.processIdentifier, signal)
        _ = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal)
        #expect(p.terminationStatus == signal)
        #expect(pty.localFlags == cooked)
    }
}
