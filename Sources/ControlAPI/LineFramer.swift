/// Splits a byte stream into LF-terminated lines with a bound: a line (without its LF) longer than
/// `maxLine` is an overflow, after which the framer yields nothing more (the server answers with
/// one error and closes the connection). Memory held is at most `maxLine` + one read.
public struct LineFramer: Sendable {
    public let maxLine: Int
    private var buffer: [UInt8] = []
    public private(set) var overflowed = false

    public init(maxLine: Int = APIProtocol.maxLineBytes) {
        self.maxLine = maxLine
    }

    /// Bytes held without a newline yet.
    public var pending: Int { buffer.count }

    /// Adds bytes; returns the complete lines they finish (without LF; a CR before the LF is
    /// dropped too, for clients such as `nc -C`). After an overflow nothing more is returned.
    public mutating func feed<C: Collection>(_ bytes: C) -> [[UInt8]] where C.Element == UInt8 {
        guard !overflowed else { return [] }
        var lines: [[UInt8]] = []
        for b in bytes {
            if b == 0x0A {
                if buffer.last == 0x0D { buffer.removeLast() }
                lines.append(buffer)
                buffer.removeAll(keepingCapacity: true)
            } else {
                guard buffer.count < maxLine else {
                    overflowed = true
                    buffer = []
                    return lines
                }
                buffer.append(b)
            }
        }
        return lines
    }
}
