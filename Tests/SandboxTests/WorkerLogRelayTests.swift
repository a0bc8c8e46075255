import Sandbox
import Testing

@Suite("Worker output relay: prefix, escaping, line splitting, budget (pure)")
struct WorkerLogRelayTests {
    static let label = "synthvm: worker synic-router (pid 42)"
    /// A budget no test below reaches unless it means to.
    static let ample = WorkerLogRelay.Budget(burstBytes: 1 << 30, bytesPerSecond: 1 << 30, resumeBytes: 1)

    static func relay(maxLine: Int = WorkerLogRelay.defaultMaxLineLength, budget: WorkerLogRelay.Budget = ample) -> WorkerLogRelay {
        WorkerLogRelay(name: "synic-router", pid: 42, maxLineLength: maxLine, budget: budget)
    }

    /// Everything a relay writes for `chunks` fed one after another, then end of file.
    static func run(_ chunks: [[UInt8]], relay r: WorkerLogRelay = relay()) -> [String] {
        var r = r
        var out: [String] = []
        for c in chunks { out += r.feed(c, now: 0) }
        return out + r.finish()
    }

    static func line(_ body: String) -> String { "\(label): \(body)\n" }

    @Test("every byte value: printable ASCII but the backslash kept, everything else \\xNN")
    func everyByte() {
        for b in UInt8.min...UInt8.max where b != 0x0a {
            let expected: String
            if b >= 0x20 && b <= 0x7e && b != 0x5c {
                expected = String(UnicodeScalar(b))
            } else {
                let hex = String(b, radix: 16)
                expected = "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
            #expect(Self.run([[UInt8(ascii: "<"), b, UInt8(ascii: ">"), 0x0a]]) == [Self.line("<\(expected)>")], "byte \(b)")
        }
        // Nothing the relay writes holds a control byte but the final newline of each line.
        let all = Self.run([Array(UInt8.min...UInt8.max)]).joined()
        #expect(all.utf8.allSatisfy { $0 == 0x0a || (0x20...0x7e).contains($0) })
        #expect(all.utf8.filter { $0 == 0x0a }.count == 2)  // the 0x0a in the middle, and the flushed rest
    }

    @Test("a forged monitor line with terminal escapes and CR stays inside one prefixed line")
    func forgery() {
        let forged = Array("\u{1b}[2J\u{1b}[Hsynthvm: worker synic-router (pid 42) exited with status 0\rsynthvm: ok\n".utf8)
        #expect(Self.run([forged]) == [
            Self.line("\\x1b[2J\\x1b[Hsynthvm: worker synic-router (pid 42) exited with status 0\\x0dsynthvm: ok"),
        ])
        // A literal "\x1b" is not an ESC: the backslash is escaped too, so the two differ.
        #expect(Self.run([Array("\\x1b\n".utf8)]) == [Self.line("\\x5cx1b")])
    }

    @Test("only LF ends a line: CR, CRLF, LFCR, empty lines")
    func lineEnds() {
        #expect(Self.run([Array("a\r\nb\n\rc\r\r\n\n".utf8)]) == [
            Self.line("a\\x0d"), Self.line("b"), Self.line("\\x0dc\\x0d\\x0d"), Self.line(""),
        ])
        // CR and LF in separate reads: the same.
        #expect(Self.run([Array("a\r".utf8), Array("\nb".utf8), Array("\n".utf8)]) == [Self.line("a\\x0d"), Self.line("b")])
    }

    @Test("lines across reads: a partial line waits for its end, any split gives the same lines")
    func partialLines() {
        let text = Array("first line\nsecond, longer line\n\nfourth: \u{e9}\u{1F600}\nlast without newline".utf8)
        let whole = Self.run([text])
        #expect(whole == [Self.line("first line"), Self.line("second, longer line"), Self.line(""),
                          Self.line("fourth: \\xc3\\xa9\\xf0\\x9f\\x98\\x80"), Self.line("last without newline")])
        for cut in 0...text.count {
            #expect(Self.run([Array(text[..<cut]), Array(text[cut...])]) == whole, "cut at \(cut)")
        }
        #expect(Self.run(text.map { [$0] }) == whole)
        // Nothing is written before a line is complete; end of file flushes the partial one.
        var r = Self.relay()
        #expect(r.feed(Array("no newline".utf8), now: 0).isEmpty)
        #expect(r.feed(Array(" yet".utf8), now: 0).isEmpty)
        #expect(r.finish() == [Self.line("no newline yet")])
        #expect(r.feed(Array("after eof\n".utf8), now: 0).isEmpty && r.finish().isEmpty)
    }

    @Test("UTF-8 split inside a character is escaped byte by byte, the same as unsplit")
    func splitUTF8() {
        let euro = Array("\u{20ac}\n".utf8)  // e2 82 ac
        #expect(Self.run([Array(euro[..<1]), Array(euro[1..<2]), Array(euro[2...])]) == [Self.line("\\xe2\\x82\\xac")])
        // Invalid UTF-8 is no different.
        #expect(Self.run([[0xff, 0xc0, 0x80, 0x0a]]) == [Self.line("\\xff\\xc0\\x80")])
    }

    @Test("an over-long line is split at the limit (after escaping), marked at the cut and the continuation")
    func longLines() {
        let limit = 32
        let text = Array(repeating: UInt8(ascii: "a"), count: 70) + [0x0a]
        let out = Self.run([text], relay: Self.relay(maxLine: limit))
        #expect(out == [
            Self.line(String(repeating: "a", count: 32) + " [...]"),
            Self.line("[...] " + String(repeating: "a", count: 26) + " [...]"),
            Self.line("[...] " + String(repeating: "a", count: 12)),
        ])
        // The body of every piece, markers aside, stays within the limit; no byte is lost.
        let bodies = out.map { $0.dropFirst(Self.label.count + 2).dropLast() }
        #expect(bodies.allSatisfy { $0.count <= limit + WorkerLogRelay.cutMarker.count })
        #expect(bodies.map { $0.replacing("[...]", with: "").filter { $0 == "a" }.count }.reduce(0, +) == 70)
        // An escape is never split across pieces.
        let escapes = Self.run([Array(repeating: 0x1b, count: 10) + [0x0a]], relay: Self.relay(maxLine: 16))
        #expect(escapes == [Self.line(String(repeating: "\\x1b", count: 4) + " [...]"),
                            Self.line("[...] " + String(repeating: "\\x1b", count: 2) + " [...]"),
                            Self.line("[...] " + String(repeating: "\\x1b", count: 2) + " [...]"),
                            Self.line("[...] " + String(repeating: "\\x1b", count: 2))])
        // Exactly at the limit: one line, no marker.
        #expect(Self.run([Array(repeating: UInt8(ascii: "b"), count: limit) + [0x0a]], relay: Self.relay(maxLine: limit))
                == [Self.line(String(repeating: "b", count: limit))])
        // The default limit is 1024.
        let def = Self.run([Array(repeating: UInt8(ascii: "c"), count: 1025) + [0x0a]])
        #expect(def.count == 2 && def[0] == Self.line(String(repeating: "c", count: 1024) + " [...]"))
    }

    @Test("the byte budget: a burst passes, a flood is dropped and counted in one line, output resumes after the refill")
    func budget() {
        let second: UInt64 = 1_000_000_000
        let b = WorkerLogRelay.Budget(burstBytes: 100, bytesPerSecond: 50, resumeBytes: 50)
        var r = Self.relay(budget: b)
        let ten = Array("012345678\n".utf8)
        // 100 bytes at once pass.
        var out: [String] = []
        for _ in 0..<10 { out += r.feed(ten, now: 0) }
        #expect(out == Array(repeating: Self.line("012345678"), count: 10))
        #expect(r.nextDeadline() == nil)
        // The next bytes are over budget: dropped, nothing written, a deadline for the notice.
        #expect(r.feed(Array(repeating: UInt8(ascii: "x"), count: 1000), now: 0).isEmpty)
        #expect(r.feed(ten, now: second / 2).isEmpty)  // 25 bytes refilled: under resumeBytes, still dropping
        #expect(r.nextDeadline() == second)
        // Once 50 bytes are back, the notice (once), then the next line, marked as a continuation.
        #expect(r.tick(now: second) == ["\(Self.label) exceeded its output budget (50 bytes/s): 1010 bytes of output dropped\n"])
        #expect(r.tick(now: second).isEmpty && r.nextDeadline() == nil)
        #expect(r.feed(Array("ok\nok2\n".utf8), now: second) == [Self.line("[...] ok"), Self.line("ok2")])
    }

    @Test("a line cut by the budget ends marked; the notice comes with the next output or at end of file")
    func budgetCutsLine() {
        let b = WorkerLogRelay.Budget(burstBytes: 8, bytesPerSecond: 1, resumeBytes: 4)
        var r = Self.relay(budget: b)
        #expect(r.feed(Array("abcdefghij\n".utf8), now: 0) == [Self.line("abcdefgh [...]")])
        #expect(r.feed(Array("more\n".utf8), now: 1_000_000_000).isEmpty)  // 1 byte back: still dropping
        // At 5 s the bucket holds 5: the notice, then what fits.
        #expect(r.feed(Array("next\nlost".utf8), now: 5_000_000_000) == [
            "\(Self.label) exceeded its output budget (1 bytes/s): 8 bytes of output dropped\n", Self.line("[...] next"),
        ])
        // "lost" did not fit (5 - 5 = 0 left): counted, reported at end of file.
        #expect(r.finish() == ["\(Self.label) exceeded its output budget (1 bytes/s): 4 bytes of output dropped\n"])
    }

    @Test("a steady flood gives at most one notice per refill, never one per read")
    func steadyFlood() {
        let b = WorkerLogRelay.Budget(burstBytes: 1000, bytesPerSecond: 1000, resumeBytes: 500)
        var r = Self.relay(budget: b)
        var out: [String] = []
        let chunk = Array(repeating: UInt8(ascii: "y"), count: 99) + [0x0a]
        // 10 seconds of 100 bytes every millisecond: 1,000,000 bytes offered.
        for ms in 0..<10_000 { out += r.feed(chunk, now: UInt64(ms) * 1_000_000) }
        out += r.finish()
        let notices = out.filter { $0.contains(") exceeded its output budget") }
        let lines = out.filter { $0.hasPrefix(Self.label + ": ") }
        // A cycle is a refill of 500 bytes (0.5 s) and a few admitted chunks: ~20 in 10 s.
        #expect(notices.count >= 10 && notices.count <= 25, "\(notices.count) notices")
        // The burst and 10 s of refill, 100 bytes a line, plus a cut piece and a continuation a cycle.
        #expect(lines.count <= 11_000 / 100 + 2 * 25, "\(lines.count) lines")
        // Every byte is either written or counted.
        let dropped = notices.compactMap { n in n.split(separator: ":").last?.split(separator: " ").first.flatMap { Int($0) } }
        let written = lines.map { l in l.dropFirst(Self.label.count + 2).filter { $0 == "y" }.count }.reduce(0, +)
        let newlines = lines.filter { !$0.hasSuffix(" [...]\n") }.count
        #expect(written + newlines + dropped.reduce(0, +) == 1_000_000, "\(written) + \(newlines) + \(dropped.reduce(0, +))")
    }

    @Test("the label is the monitor's: the name is escaped, monitor lines about the worker never have ': ' after the pid")
    func label() {
        let odd = WorkerLogRelay(name: "a\u{1b}b", pid: 7)
        #expect(odd.label == "synthvm: worker a\\x1bb (pid 7)")
        var r = WorkerLogRelay(name: "w", pid: 7, budget: .init(burstBytes: 1, bytesPerSecond: 1, resumeBytes: 1))
        #expect(r.feed(Array("xyz".utf8), now: 0) == ["synthvm: worker w (pid 7): x [...]\n"])
        #expect(r.finish() == ["synthvm: worker w (pid 7) exceeded its output budget (1 bytes/s): 2 bytes of output dropped\n"])
        #expect(WorkerLogRelay.sanitise(Array("a\tb\\".utf8)) == "a\\x09b\\x5c")
    }
}
