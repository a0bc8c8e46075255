/// The control socket's JSON (docs/api.md): a value type, a strict RFC 8259 parser with bounds,
/// and a compact encoder. Pure Swift, no Foundation: it runs in the VM process, whose threads
/// are filtered and which links no Foundation, and in the `synthvm ctl` client.
///
/// Bounds: the parser refuses input longer than `JSONParser.Limits.maxBytes` and nesting deeper
/// than `maxDepth` (so a hostile line cannot recurse the stack away), strings with raw control
/// characters, invalid UTF-8, lone surrogates, duplicate keys, leading zeros, trailing garbage.
/// Every error is a `JSONError` with the byte offset; nothing traps.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// An integer literal that fits Int64.
    case int(Int64)
    /// Any other number (fraction, exponent, or too large for Int64).
    case double(Double)
    case string(String)
    case array([JSONValue])
    /// Members in their order (keys are unique: the parser refuses duplicates).
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y || (x.isNaN && y.isNaN)
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The member `key` of an object (nil for anything else or a missing key).
    public subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    public var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
    public var intValue: Int64? { if case let .int(i) = self { return i } else { return nil } }
    public var boolValue: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    public var arrayValue: [JSONValue]? { if case let .array(a) = self { return a } else { return nil } }
    public var objectValue: [(String, JSONValue)]? { if case let .object(o) = self { return o } else { return nil } }
    public var isNull: Bool { if case .null = self { return true } else { return false } }

    /// Compact encoding (no spaces, no newline): one line of the protocol.
    public var encoded: String {
        var out = ""
        encode(into: &out)
        return out
    }

    func encode(into out: inout String) {
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .int(i): out += String(i)
        case let .double(d):
            // JSON has no NaN or infinity: they become null.
            if d.isFinite {
                if d == d.rounded(.towardZero), abs(d) < 1e15 { out += String(Int64(d)) } else { out += "\(d)" }
            } else {
                out += "null"
            }
        case let .string(s): JSONValue.encodeString(s, into: &out)
        case let .array(a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.encode(into: &out)
            }
            out += "]"
        case let .object(o):
            out += "{"
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out += "," }
                JSONValue.encodeString(k, into: &out)
                out += ":"
                v.encode(into: &out)
            }
            out += "}"
        }
    }

    static let hexDigits = Array("0123456789abcdef")

    /// A JSON string literal: `"` and `\` escaped, control characters as \n, \t, ... or \u00XX;
    /// everything else (valid Unicode, as every Swift String is) as UTF-8.
    static func encodeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    out += "\\u00"
                    out.append(hexDigits[Int(u.value >> 4)])
                    out.append(hexDigits[Int(u.value & 0xF)])
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

public struct JSONError: Error, Equatable, Sendable, CustomStringConvertible {
    public var offset: Int
    public var message: String

    public var description: String { "at byte \(offset): \(message)" }
}

/// A strict, bounded, recursive-descent JSON parser over bytes.
public struct JSONParser {
    public struct Limits: Sendable {
        /// Longest input accepted (the protocol's line limit).
        public var maxBytes: Int
        /// Deepest nesting of arrays and objects.
        public var maxDepth: Int
        /// Most members of one object or elements of one array.
        public var maxElements: Int

        public init(maxBytes: Int = 64 << 10, maxDepth: Int = 32, maxElements: Int = 4096) {
            self.maxBytes = maxBytes
            self.maxDepth = maxDepth
            self.maxElements = maxElements
        }
    }

    /// Parses exactly one JSON value (surrounded by optional whitespace) from `bytes`.
    public static func parse(_ bytes: [UInt8], limits: Limits = Limits()) throws(JSONError) -> JSONValue {
        guard bytes.count <= limits.maxBytes else {
            throw JSONError(offset: limits.maxBytes, message: "longer than \(limits.maxBytes) bytes")
        }
        var p = JSONParser(bytes: bytes, limits: limits)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        guard p.pos == bytes.count else { throw p.error("unexpected data after the value") }
        return v
    }

    public static func parse(_ text: String, limits: Limits = Limits()) throws(JSONError) -> JSONValue {
        try parse(Array(text.utf8), limits: limits)
    }

    private let bytes: [UInt8]
    private let limits: Limits
    private var pos = 0

    private init(bytes: [UInt8], limits: Limits) {
        self.bytes = bytes
        self.limits = limits
    }

    private func error(_ message: String) -> JSONError { JSONError(offset: pos, message: message) }

    private var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    private mutating func skipWhitespace() {
        while pos < bytes.count, bytes[pos] == 0x20 || bytes[pos] == 0x0A || bytes[pos] == 0x0D || bytes[pos] == 0x09 {
            pos += 1
        }
    }

    private mutating func value(depth: Int) throws(JSONError) -> JSONValue {
        guard let c = peek else { throw error("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("unexpected character 0x\(String(c, radix: 16))")
        }
    }

    private mutating func literal(_ word: String) throws(JSONError) {
        let w = Array(word.utf8)
        guard bytes.count - pos >= w.count, bytes[pos..<(pos + w.count)].elementsEqual(w) else {
            throw error("invalid literal")
        }
        pos += w.count
    }

    private mutating func object(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= limits.maxDepth else { throw error("nested deeper than \(limits.maxDepth)") }
        pos += 1
        var members: [(String, JSONValue)] = []
        skipWhitespace()
        if peek == UInt8(ascii: "}") {
            pos += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let key = try string()
            if members.contains(where: { $0.0 == key }) { throw error("duplicate key \"\(key.prefix(64))\"") }
            skipWhitespace()
            guard peek == UInt8(ascii: ":") else { throw error("expected ':'") }
            pos += 1
            skipWhitespace()
            members.append((key, try value(depth: depth)))
            guard members.count <= limits.maxElements else { throw error("more than \(limits.maxElements) members") }
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): pos += 1
            case UInt8(ascii: "}"): pos += 1; return .object(members)
            default: throw error("expected ',' or '}'")
            }
        }
    }

    private mutating func array(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= limits.maxDepth else { throw error("nested deeper than \(limits.maxDepth)") }
        pos += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") {
            pos += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try value(depth: depth))
            guard elements.count <= limits.maxElements else { throw error("more than \(limits.maxElements) elements") }
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): pos += 1
            case UInt8(ascii: "]"): pos += 1; return .array(elements)
            default: throw error("expected ',' or ']'")
            }
        }
    }

    private mutating func hex4() throws(JSONError) -> UInt32 {
        guard bytes.count - pos >= 4 else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("bad hex digit in \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    private mutating func string() throws(JSONError) -> String {
        pos += 1  // the opening quote
        var scalars = String.UnicodeScalarView()
        var runStart = pos
        // Raw runs are validated as UTF-8 when they end.
        func flush(_ p: inout JSONParser, _ scalars: inout String.UnicodeScalarView, from start: Int) throws(JSONError) {
            guard p.pos > start else { return }
            guard let s = String(validating: p.bytes[start..<p.pos], as: UTF8.self) else {
                throw JSONError(offset: start, message: "invalid UTF-8 in a string")
            }
            scalars.append(contentsOf: s.unicodeScalars)
        }
        while true {
            guard pos < bytes.count else { throw error("unterminated string") }
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") {
                try flush(&self, &scalars, from: runStart)
                pos += 1
                return String(scalars)
            }
            if c < 0x20 { throw error("control character in a string") }
            if c != UInt8(ascii: "\\") {
                pos += 1
                continue
            }
            try flush(&self, &scalars, from: runStart)
            pos += 1
            guard pos < bytes.count else { throw error("unterminated escape") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                let u = try hex4()
                var value = u
                if (0xD800...0xDBFF).contains(u) {
                    guard bytes.count - pos >= 2, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                        throw error("lone high surrogate")
                    }
                    pos += 2
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw error("bad low surrogate") }
                    value = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(u) {
                    throw error("lone low surrogate")
                }
                guard let scalar = Unicode.Scalar(value) else { throw error("bad \\u escape") }
                scalars.append(scalar)
            default:
                throw error("bad escape")
            }
            runStart = pos
        }
    }

    private mutating func number() throws(JSONError) -> JSONValue {
        let start = pos
        var integral = true
        if peek == UInt8(ascii: "-") { pos += 1 }
        guard let first = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { throw error("bad number") }
        if first == UInt8(ascii: "0") {
            pos += 1
            if let d = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(d) { throw error("leading zero in a number") }
        } else {
            digits()
        }
        if peek == UInt8(ascii: ".") {
            integral = false
            pos += 1
            guard digits() > 0 else { throw error("no digits after '.'") }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            integral = false
            pos += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { pos += 1 }
            guard digits() > 0 else { throw error("no digits in the exponent") }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        if integral, let i = Int64(text) { return .int(i) }
        guard let d = Double(text) else { throw JSONError(offset: start, message: "bad number") }
        return .double(d)
    }

    @discardableResult
    private mutating func digits() -> Int {
        let start = pos
        while let d = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(d) { pos += 1 }
        return pos - start
    }
}
