import CSynthVM
import Glibc
import Sandbox

/// The host side of COM1's receive line: one thread that reads the console input (stdin for
/// `--serial stdio`, a terminal in raw mode or a pipe) and feeds the UART as fast as the guest
/// takes it (`SerialPort.receive`). It only moves bytes; the UART model decides everything else.
/// End of file stops the reading (the VM runs on); Ctrl-A x on a terminal stops the VM.
final class ConsoleInput: @unchecked Sendable {
    private let fd: Int32
    private let serial: SerialPort
    private let control: VMControl
    private let escapes: Bool
    private let service: ServiceThread

    init(fd: Int32, serial: SerialPort, control: VMControl, escapes: Bool) throws(MonitorError) {
        self.fd = fd
        self.serial = serial
        self.control = control
        self.escapes = escapes
        service = try ServiceThread()
    }

    /// The running feeder for `config.consoleInput`, or nil when the VM has no console input.
    /// The thread runs under `filter` (the vmm policy: it reads, polls and raises IRQ 4).
    static func start(config: MachineConfig, serial: SerialPort, control: VMControl,
                      filter: ThreadFilter) throws(MonitorError) -> ConsoleInput? {
        guard let fd = config.consoleInput else { return nil }
        let input = try ConsoleInput(fd: fd, serial: serial, control: control, escapes: config.consoleEscapes)
        try input.start(filter: filter)
        return input
    }

    func start(filter: ThreadFilter) throws(MonitorError) {
        try service.start(name: "synthvm-console", filter: filter) { [self] in loop() }
    }

    /// Only `stop` wakes this thread, so any wake-up ends its loop.
    func stop() { service.stop() }

    private func loop() {
        var held: [UInt8] = []
        var next = 0  // first byte of `held` the UART has not taken
        var endOfInput = false
        var escape = ConsoleEscape()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if next < held.count {
                next += serial.receive(held[next...])
                if next == held.count {
                    held.removeAll(keepingCapacity: true)
                    next = 0
                }
            }
            let holding = next < held.count
            if endOfInput && !holding { return }
            // While holding bytes back, wait for the UART to take more; otherwise for input.
            var fds = [pollfd(fd: service.wakeFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: holding ? serial.inputReadyFD : fd, events: Int16(POLLIN), revents: 0)]
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[0].revents != 0 { return }
            guard fds[1].revents != 0 else { continue }
            if holding {
                var count: UInt64 = 0
                _ = Glibc.read(serial.inputReadyFD, &count, 8)
                continue
            }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                endOfInput = true  // EIO from a hung-up terminal, EBADF: no more input
                continue
            }
            if n == 0 {
                endOfInput = true
                continue
            }
            if escapes {
                let (forward, quit) = escape.filter(buffer[0..<n])
                if quit {
                    control.requestStop(.consoleQuit)
                    return
                }
                held += forward
            } else {
                held += buffer[0..<n]
            }
        }
    }
}
