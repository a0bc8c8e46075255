import Testing

@testable import ControlAPI

@Suite struct JSONTests {
    @Test func parsesEveryKindOfValue() throws {
        let v = try JSONParser.parse(#" {"a": [1, -2, 3.5, 1e3, true, false, null], "b": {"c": "d\n\u00e9\ud83d\ude00"}} "#)
        #expect(v["a"] == .array([.int(1), .int(-2), .double(3.5), .double(1000), .bool(true), .bool(false), .null]))
        #expect(v["b"]?["c"] == .string("d\né😀"))
        #expect(v["missing"] == nil)
    }

    @Test func roundTripsThroughTheEncoder() throws {
        let v: JSONValue = .object([("s", .string("q\"\\\u{1}\t\u{7f}é")), ("n", .int(Int64.min)), ("d", .double(0.25)),
                                    ("a", .array([.null, .object([])]))])
        let text = v.encoded
        #expect(!text.contains("\n"))
        #expect(try JSONParser.parse(text) == v)
        #expect(JSONValue.string("\u{1}").encoded == #""\u0001""#)
        #expect(JSONValue.double(.nan).encoded == "null")
    }

    @Test("refuses what RFC 8259 refuses", arguments: [
        "", " ", "{", "[1,]", "{\"a\":1,}", "01", "-", "1.", "1e", ".5", "+1", "tru", "nul", "\"abc", "\"\\x\"",
        "\"\u{1}\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "{\"a\":1,\"a\":2}", "{1:2}", "[1 2]",
        "{\"a\" 1}", "1 2", "\"\\u12\"", "NaN", "[true false]",
    ])
    func refuses(_ text: String) {
        #expect(throws: JSONError.self) { try JSONParser.parse(text) }
    }

    @Test func refusesInvalidUTF8() {
        #expect(throws: JSONError.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: JSONError.self) { try JSONParser.parse([0x22, 0xFF, 0x22]) }
    }

    @Test func boundsDepthLengthAndWidth() throws {
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        #expect(throws: JSONError.self) { try JSONParser.parse(deep) }
        let ok = String(repeating: "[", count: 10) + String(repeating: "]", count: 10)
        _ = try JSONParser.parse(ok, limits: .init(maxDepth: 10))
        #expect(throws: JSONError.self) { try JSONParser.parse(ok, limits: .init(maxDepth: 9)) }
        // A million nested brackets: an error, not a stack overflow.
        #expect(throws: JSONError.self) {
            try JSONParser.parse(Array(repeating: UInt8(ascii: "["), count: 1 << 20), limits: .init(maxBytes: 1 << 21))
        }
        #expect(throws: JSONError.self) { try JSONParser.parse("\"" + String(repeating: "a", count: 100) + "\"", limits: .init(maxBytes: 50)) }
        let wide = "[" + Array(repeating: "1", count: 20).joined(separator: ",") + "]"
        #expect(throws: JSONError.self) { try JSONParser.parse(wide, limits: .init(maxElements: 10)) }
    }

    @Test func numbers() throws {
        #expect(try JSONParser.parse("9223372036854775807") == .int(Int64.max))
        #expect(try JSONParser.parse("9223372036854775808") == .double(9223372036854775808))
        #expect(try JSONParser.parse("-0") == .int(0))
        #expect(try JSONParser.parse("2.5E-1") == .double(0.25))
    }
}

@Suite struct LineFramerTests {
    @Test func splitsAcrossReads() {
        var f = LineFramer(maxLine: 16)
        #expect(f.feed(Array("ab".utf8)) == [])
        #expect(f.feed(Array("c\r\nde\n\nf".utf8)) == [Array("abc".utf8), Array("de".utf8), []])
        #expect(f.pending == 1)
    }

    @Test func overflowStopsTheStream() {
        var f = LineFramer(maxLine: 4)
        #expect(f.feed(Array("abcd\n".utf8)) == [Array("abcd".utf8)])
        #expect(f.feed(Array("abcde".utf8)) == [])
        #expect(f.overflowed)
        #expect(f.feed(Array("\nok\n".utf8)) == [])
        #expect(f.pending == 0)
    }
}

@Suite struct PrometheusTests {
    @Test func writesAndParsesBack() throws {
        var p = PrometheusText()
        p.family("synthvm_x_total", type: "counter", help: "an x\nwith a newline",
                 [.init(labels: [("vcpu", "0"), ("reason", "a\"b\\c\nd")], value: 3), .init(value: 0.5)])
        let samples = try #require(PrometheusText.parse(p.text))
        #expect(samples.count == 2)
        #expect(samples[0].name == "synthvm_x_total")
        #expect(samples[0].labels == ["vcpu": "0", "reason": "a\"b\\c\nd"])
        #expect(samples[0].value == 3)
        #expect(samples[1].value == 0.5)
        #expect(p.text.hasPrefix("# HELP synthvm_x_total an x\\nwith a newline\n# TYPE synthvm_x_total counter\n"))
        #expect(PrometheusText.parse("bad line") == nil)
        #expect(PrometheusText.parse("x{a=\"1} 2") == nil)
    }
}

@Suite struct PrometheusHistogramTests {
    @Test func histogramRendersCumulativeBucketsSumAndCount() throws {
        var p = PrometheusText()
        p.histogram("synthvm_d_seconds", help: "a histogram",
                    [.init(labels: [("disk", "0"), ("path", "/tmp/a \"b\"\\c\nd.img")],
                           buckets: [(1e-06, 1), (2e-06, 3), (0.5, 3), (nil, 4)], sum: 1.25, count: 4),
                     .init(labels: [("disk", "1")], buckets: [(1e-06, 0)], sum: 0, count: 2)])
        let lines = p.text.split(separator: "\n").map(String.init)
        #expect(lines[0] == "# HELP synthvm_d_seconds a histogram")
        #expect(lines[1] == "# TYPE synthvm_d_seconds histogram")
        let path = #"path="/tmp/a \"b\"\\c\nd.img""#
        #expect(lines[2] == #"synthvm_d_seconds_bucket{disk="0","# + path + #",le="1e-06"} 1"#)
        #expect(lines[3] == #"synthvm_d_seconds_bucket{disk="0","# + path + #",le="2e-06"} 3"#)
        #expect(lines[4] == #"synthvm_d_seconds_bucket{disk="0","# + path + #",le="0.5"} 3"#)
        #expect(lines[5] == #"synthvm_d_seconds_bucket{disk="0","# + path + #",le="+Inf"} 4"#)
        #expect(lines[6] == #"synthvm_d_seconds_sum{disk="0","# + path + #"} 1.25"#)
        #expect(lines[7] == #"synthvm_d_seconds_count{disk="0","# + path + #"} 4"#)
        // A series without +Inf gets one, equal to its count.
        #expect(lines[8] == #"synthvm_d_seconds_bucket{disk="1",le="1e-06"} 0"#)
        #expect(lines[9] == #"synthvm_d_seconds_bucket{disk="1",le="+Inf"} 2"#)
        #expect(lines.count == 12)
        let samples = try #require(PrometheusText.parse(p.text))
        #expect(samples.count == 10)
        #expect(samples[0].labels == ["disk": "0", "path": "/tmp/a \"b\"\\c\nd.img", "le": "1e-06"])
        #expect(samples[3].labels["le"] == "+Inf" && samples[3].value == 4)
        #expect(samples[4].name == "synthvm_d_seconds_sum" && samples[4].value == 1.25)
    }

    @Test func labelValuesAreEscapedAndHelpToo() throws {
        var p = PrometheusText()
        p.family("synthvm_y", type: "gauge", help: "back\\slash \"quoted\"\nnext", [.init(labels: [("path", "\\\"\n")], value: 1)])
        #expect(p.text == "# HELP synthvm_y back\\\\slash \"quoted\"\\nnext\n# TYPE synthvm_y gauge\nsynthvm_y{path=\"\\\\\\\"\\n\"} 1\n")
        #expect(try #require(PrometheusText.parse(p.text)).first?.labels == ["path": "\\\"\n"])
    }
}
