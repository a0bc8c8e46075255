import Foundation
import Testing

/// The private memory of a running `synthvm run` and its processes, and the check that it stays
/// flat while a guest floods them (issue 11). Reusable: a test for any worker starts
/// `synthvm run` with a guest that prints a line per batch of traffic, hands the batch lines for
/// the end of warm-up and the end of the run, and gets every process of the VM checked — the
/// VM process and each of its workers, whatever workers that configuration starts (the SynIC
/// router today; VMBus and storage workers are picked up the same way, by name, when they exist).
enum MemoryGrowth {
    /// One process's anonymous memory: `RssAnon` from /proc/<pid>/status (heap, stacks, private
    /// mappings; not guest RAM or the other shared regions, which are memfd file pages).
    struct Sample: Equatable, CustomStringConvertible {
        var name: String
        var pid: Int32
        var rssAnonKiB: Int
        var description: String { "\(name) (pid \(pid)) RssAnon \(rssAnonKiB) kB" }
    }

    /// RssAnon of `pid`, in KiB; nil if the process is gone.
    static func rssAnonKiB(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("RssAnon:") {
            return Int(line.dropFirst("RssAnon:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    static func name(_ pid: Int32) -> String {
        ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "?")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The VM process under launcher `launcher`, and every worker under it.
    static func processes(launcher: Int32) -> [(name: String, pid: Int32)] {
        VMProcessTests.children(of: launcher).flatMap { vm in
            [(name(vm), vm)] + VMProcessTests.children(of: vm).map { (name($0), $0) }
        }
    }

    static func sample(launcher: Int32) -> [Sample] {
        processes(launcher: launcher).compactMap { p in
            rssAnonKiB(p.pid).map { Sample(name: p.name, pid: p.pid, rssAnonKiB: $0) }
        }
    }

    /// The result of one run: what each process held after warm-up and at the end.
    struct Report {
        var warm: [Sample]
        var end: [Sample]
        var serial: [String]
        var stderr: String

        /// Growth per process (KiB), matched by pid: a process that died or appeared is reported.
        var growth: [(Sample, Int)] {
            warm.compactMap { w in end.first { $0.pid == w.pid }.map { ($0, $0.rssAnonKiB - w.rssAnonKiB) } }
        }
    }

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Runs `binary` with `arguments` (which must send the guest's serial console to stdout),
    /// waits for serial line `warmUp` (sampling every process then) and for `end` (sampling
    /// again), then stops the VM with SIGTERM. Fails if either line does not come within
    /// `timeoutSeconds`, or the guest prints a line containing "FAIL".
    static func measure(binary: URL, arguments: [String], warmUp: String, end: String,
                        timeoutSeconds: Double = 240) throws -> Report {
        let p = Process()
        p.executableURL = binary
        p.arguments = arguments
        p.environment = ["SWIFT_BACKTRACE": "enable=no"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // stderr is drained on its own thread so a chatty VM cannot block on a full pipe.
        nonisolated(unsafe) var stderrData = Data()
        let stderrDone = DispatchSemaphore(value: 0)
        Thread {
            stderrData = err.fileHandleForReading.readDataToEndOfFile()
            stderrDone.signal()
        }.start()
        defer {
            if p.isRunning { p.terminate() }
            p.waitUntilExit()
        }

        var lines: [String] = []
        var pending = Data()
        var warm: [Sample]?
        var last: [Sample]?
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        let reader = out.fileHandleForReading
        while last == nil {
            guard Date() < deadline else { break }
            let chunk = reader.availableData
            if chunk.isEmpty { break }  // end of file: the VM ended
            pending.append(chunk)
            while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...nl)
                lines.append(line)
                if line.contains("FAIL") { break }
                if line == warmUp { warm = sample(launcher: p.processIdentifier) }
                if line == end, warm != nil { last = sample(launcher: p.processIdentifier) }
            }
            if lines.last?.contains("FAIL") == true { break }
        }
        p.terminate()
        p.waitUntilExit()
        stderrDone.wait()
        let stderr = String(decoding: stderrData, as: UTF8.self)
        guard let warm, let last else {
            throw Failure(description: "the guest did not print \"\(warm == nil ? warmUp : end)\" within "
                + "\(Int(timeoutSeconds)) s; serial (last 10 lines): \(lines.suffix(10)); stderr: \(stderr)")
        }
        return Report(warm: warm, end: last, serial: lines, stderr: stderr)
    }

    /// Every process of the VM was there at both samples, and none grew by more than
    /// `boundKiB` between them.
    static func expectFlat(_ report: Report, boundKiB: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(report.warm.count >= 2, "expected the VM process and at least one worker: \(report.warm)",
                sourceLocation: sourceLocation)
        #expect(Set(report.warm.map(\.pid)) == Set(report.end.map(\.pid)),
                "a process died or appeared between the samples: \(report.warm) -> \(report.end); stderr: \(report.stderr)",
                sourceLocation: sourceLocation)
        for (sample, grew) in report.growth {
            let why = "\(sample.name) (pid \(sample.pid)) grew by \(grew) kB (bound \(boundKiB) kB): \(report.warm) -> \(report.end)"
            #expect(grew <= boundKiB, Comment(rawValue: why), sourceLocation: sourceLocation)
        }
    }
}
