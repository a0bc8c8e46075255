/// Prometheus text exposition format 0.0.4 (what `metrics` returns, docs/api.md): `# HELP` and
/// `# TYPE` lines per family, then `name{label="value",...} number` samples.
public struct PrometheusText: Sendable {
    public struct Sample: Sendable, Equatable {
        public var labels: [(String, String)]
        public var value: Double

        public init(labels: [(String, String)] = [], value: Double) {
            self.labels = labels
            self.value = value
        }

        public static func == (a: Sample, b: Sample) -> Bool {
            a.value == b.value && a.labels.count == b.labels.count && zip(a.labels, b.labels).allSatisfy { $0 == $1 }
        }
    }

    public private(set) var text = ""

    public init() {}

    /// One metric family. `type`: counter or gauge. Names must match [a-zA-Z_:][a-zA-Z0-9_:]*
    /// (every caller passes a literal).
    public mutating func family(_ name: String, type: String, help: String, _ samples: [Sample]) {
        text += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(type)\n"
        for s in samples {
            text += name
            if !s.labels.isEmpty {
                text += "{" + s.labels.map { "\($0.0)=\"\(Self.escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
            }
            text += " " + Self.number(s.value) + "\n"
        }
    }

    /// One series of a histogram: its labels (without `le`), the cumulative count at each upper
    /// bound in increasing order (nil: +Inf, which must come last and equals `count`), the sum.
    public struct HistogramSeries: Sendable {
        public var labels: [(String, String)]
        public var buckets: [(le: Double?, count: UInt64)]
        public var sum: Double
        public var count: UInt64

        public init(labels: [(String, String)], buckets: [(le: Double?, count: UInt64)], sum: Double, count: UInt64) {
            self.labels = labels
            self.buckets = buckets
            self.sum = sum
            self.count = count
        }
    }

    /// A histogram family: `NAME_bucket{...,le="B"}` per bound (cumulative), then `NAME_sum` and
    /// `NAME_count` per series. A series whose last bucket is not +Inf gets one (= count).
    public mutating func histogram(_ name: String, help: String, _ series: [HistogramSeries]) {
        text += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) histogram\n"
        func labels(_ l: [(String, String)]) -> String {
            l.isEmpty ? "" : "{" + l.map { "\($0.0)=\"\(Self.escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
        }
        for s in series {
            var buckets = s.buckets
            if buckets.last.map({ $0.le != nil }) ?? true { buckets.append((nil, s.count)) }
            for b in buckets {
                text += "\(name)_bucket\(labels(s.labels + [("le", b.le.map(Self.number) ?? "+Inf")])) \(b.count)\n"
            }
            text += "\(name)_sum\(labels(s.labels)) \(Self.number(s.sum))\n"
            text += "\(name)_count\(labels(s.labels)) \(s.count)\n"
        }
    }

    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(.towardZero), abs(v) < 9.0e15 { return String(Int64(v)) }
        return "\(v)"
    }

    /// Label values: backslash, double quote and newline escaped.
    static func escapeLabel(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func escapeHelp(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Parses exposition text back into (name, labels, value) samples; nil if a line is not
    /// valid. For tests and `synthvm ctl` (a strict subset: what `family` writes).
    public static func parse(_ text: String) -> [(name: String, labels: [String: String], value: Double)]? {
        var out: [(String, [String: String], Double)] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3)
                guard parts.count >= 3, parts[1] == "HELP" || parts[1] == "TYPE" else { return nil }
                if parts[1] == "TYPE" {
                    guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        return nil
                    }
                }
                continue
            }
            guard let space = line.lastIndex(of: " ") else { return nil }
            let series = line[..<space]
            let valueText = line[line.index(after: space)...]
            guard let value = Double(valueText) ?? (valueText == "+Inf" ? .infinity : nil) else { return nil }
            var name = Substring(series)
            var labels: [String: String] = [:]
            if let brace = series.firstIndex(of: "{") {
                guard series.last == "}" else { return nil }
                name = series[..<brace]
                var rest = series[series.index(after: brace)..<series.index(before: series.endIndex)]
                while !rest.isEmpty {
                    guard let eq = rest.firstIndex(of: "=") else { return nil }
                    let key = String(rest[..<eq])
                    rest = rest[rest.index(after: eq)...]
                    guard rest.first == "\"" else { return nil }
                    rest = rest.dropFirst()
                    var v = ""
                    var closed = false
                    while let c = rest.first {
                        rest = rest.dropFirst()
                        if c == "\\" {
                            guard let n = rest.first else { return nil }
                            rest = rest.dropFirst()
                            v.append(n == "n" ? "\n" : n)
                        } else if c == "\"" {
                            closed = true
                            break
                        } else {
                            v.append(c)
                        }
                    }
                    guard closed else { return nil }
                    labels[key] = v
                    if rest.first == "," { rest = rest.dropFirst() } else { guard rest.isEmpty else { return nil } }
                }
            }
            guard let f = name.first, f.isLetter || f == "_" || f == ":",
                  name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }) else { return nil }
            out.append((String(name), labels, value))
        }
        return out
    }
}
