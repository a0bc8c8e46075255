/// The console's escape sequence while stdin is a raw terminal: the terminal then sends Ctrl-C
/// to the guest instead of signalling SynthVM, so the operator needs another way out.
/// As in QEMU: Ctrl-A x stops the VM, Ctrl-A Ctrl-A sends one Ctrl-A, and Ctrl-A followed by
/// anything else sends both bytes. Pure, so it is tested without a terminal.
struct ConsoleEscape: Sendable, Equatable {
    static let prefix: UInt8 = 0x01  // Ctrl-A
    static let quit: UInt8 = UInt8(ascii: "x")

    /// The last byte was a Ctrl-A not yet passed on.
    private(set) var armed = false

    /// Filters one read's worth of input: the bytes for the guest, and whether Ctrl-A x was
    /// seen (bytes after it are dropped, the VM is stopping).
    mutating func filter(_ input: ArraySlice<UInt8>) -> (forward: [UInt8], quit: Bool) {
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        for byte in input {
            if armed {
                armed = false
                if byte == Self.quit { return (out, true) }
                if byte != Self.prefix { out.append(Self.prefix) }
                out.append(byte)
            } else if byte == Self.prefix {
                armed = true
            } else {
                out.append(byte)
            }
        }
        return (out, false)
    }
}
