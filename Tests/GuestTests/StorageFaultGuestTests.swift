import ControlAPI
import IPC
import SynICRouting
import Foundation
import Testing

@testable import Monitor

/// The storage worker's operator faults (`io-error N`, `torn`: docs/faults.md) and the metrics of
/// the control socket (docs/api.md) end to end: the real `synthvm run` with the storvsc guest in
/// its fault mode (`faults=1|2`, Tests/Guests/storvsc_faults.c), driven by `synthvm ctl`.
@Suite("storage faults and metrics: storvsc through the control socket", .serialized)
struct StorageFaultGuestTests {
    struct VM {
        let run: VMProcessTests.Launched
        let socket: String
        let console: String
        let dir: String
        let a: String
        let b: String

        /// The console so far.
        var text: String { (try? String(contentsOfFile: console, encoding: .utf8)) ?? "" }

        /// Waits until the console has a line containing `s` (false after `seconds`).
        func await(_ s: String, seconds: Double = 90) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if text.contains(s) { return true }
                if !run.process.isRunning { return text.contains(s) }
                usleep(50_000)
            }
            return false
        }

        func metrics() throws -> String {
            let r = try APISocketTests.ctl([socket, "metrics"])
            #expect(r.status == 0, "synthvm ctl metrics: \(r)")
            return r.stdout
        }
    }

    static func start(_ name: String, faults: Int, seed: Int) throws -> VM {
        try GuestHarness.requireKVM()
        let dir = try StorageWorkerTests.scratch()
        let (a, b) = try StorvscGuestTests.images(dir)
        let socket = APISocketTests.socketPath(name)
        unlink(socket)
        let console = dir + "/console.txt"
        let run = try VMProcessTests.launch([
            "run", "--kernel", try GuestHarness.guestPath("storvsc"), "--cmdline", "seed=\(seed) faults=\(faults)",
            "--memory", "256M", "--serial", "file:" + console, "--timeout", "240", "--api-socket", socket,
            "--allow-fault-injection", "--restart-budget", "20/60", "--disk", a + ",serial=ALPHA0", "--disk", b + ",readonly",
        ])
        _ = VMProcessTests.vmProcessOrKill(run)
        return VM(run: run, socket: socket, console: console, dir: dir, a: a, b: b)
    }

    static func sample(_ text: String, _ name: String, _ labels: [String: String]) -> Double? {
        APISocketTests.sample(text, name, labels)
    }

    /// Disk 0's counters: requests by op, bytes, errors, the histogram's _count and +Inf bucket.
    struct Disk0: Equatable {
        var requests: [String: Double] = [:]
        var total: Double { requests.values.reduce(0, +) }
        var bytesRead = 0.0, bytesWritten = 0.0, errors = 0.0, count = 0.0, infBucket = 0.0, sum = 0.0
    }

    static func disk0(_ text: String, path: String) throws -> Disk0 {
        let l = ["disk": "0", "path": path]
        var d = Disk0()
        for op in ["read", "write", "flush", "unmap", "other"] {
            d.requests[op] = try #require(sample(text, "synthvm_disk_requests_total", l.merging(["op": op]) { $1 }), "\(op): \(text)")
        }
        d.bytesRead = try #require(sample(text, "synthvm_disk_bytes_total", l.merging(["direction": "read"]) { $1 }))
        d.bytesWritten = try #require(sample(text, "synthvm_disk_bytes_total", l.merging(["direction": "write"]) { $1 }))
        d.errors = try #require(sample(text, "synthvm_disk_errors_total", l))
        d.count = try #require(sample(text, "synthvm_disk_request_duration_seconds_count", l))
        d.sum = try #require(sample(text, "synthvm_disk_request_duration_seconds_sum", l))
        d.infBucket = try #require(sample(text, "synthvm_disk_request_duration_seconds_bucket", l.merging(["le": "+Inf"]) { $1 }))
        return d
    }

    /// The guest's `wrote lun=0 lba=L blocks=N seed=S` lines, checked against image a.
    static func checkWrites(_ vm: VM) throws -> Int {
        let h = try #require(FileHandle(forReadingAtPath: vm.a))
        defer { try? h.close() }
        var n = 0
        for line in vm.text.split(separator: "\n") where line.hasPrefix("storvsc: wrote lun=0 ") && line.contains(" seed=") {
            let s = String(line)
            guard let lba = StorvscGuestTests.field(s, "lba"), let blocks = StorvscGuestTests.field(s, "blocks"),
                  let seed = StorvscGuestTests.field(s, "seed") else { continue }
            try h.seek(toOffset: lba * 512)
            let got = h.readData(ofLength: Int(blocks) * 512)
            #expect(got == StorvscGuestTests.patternBytes(at: lba * 512, count: Int(blocks) * 512, seed: seed), "\(s)")
            n += 1
        }
        return n
    }

    @Test("io-error 3: exactly three MEDIUM ERROR completions, then success; logged with who asked; the metrics count them")
    func ioError() throws {
        let vm = try Self.start("storage-io-error.sock", faults: 1, seed: 21)
        var stopped = false
        defer {
            if !stopped { vm.run.process.terminate(); Issue.record("stderr: \(vm.run.finish().2)\nconsole: \(vm.text)") }
            try? FileManager.default.removeItem(atPath: vm.dir)
        }
        #expect(vm.await("storvsc: faults: ready"), "\(vm.text)")
        let before = try Self.disk0(try vm.metrics(), path: vm.a)
        #expect(before.errors == 0 && before.total > 0, "\(before)")
        let f = try APISocketTests.ctlJSON(vm.socket, ["fault", "storage", "io-error", "3"])
        #expect(f["return"]?["arg"] == .int(3) && f["return"]?["kind"] == .string("io-error"), "\(f)")
        #expect(vm.await("storvsc: ok"), "\(vm.text)")
        let (_, code, stderr) = vm.run.finish()
        stopped = true
        #expect(code == 0, "\(stderr)\n\(vm.text)")
        #expect(vm.text.contains("storvsc: faults: io-error: ") && vm.text.contains(", 3 MEDIUM ERROR ("), "\(vm.text)")
        #expect(stderr.contains("synthvm: fault injection: io-error 3 of worker storage (pid ") && stderr.contains(") requested by pid "),
                "\(stderr)")
        #expect(stderr.contains("synthvm-storage: fault injection: the next 3 I/O request(s) fail (MEDIUM ERROR)"), "\(stderr)")
        #expect(stderr.components(separatedBy: "failed on purpose (MEDIUM ERROR to the guest)").count - 1 == 3, "\(stderr)")
        #expect(try Self.checkWrites(vm) > 4)
    }

    @Test("io-error's counts in the metrics, and a storage kill: per-disk counts nonzero, the histogram's count equals the requests, nothing goes backwards")
    func metricsAcrossAKill() throws {
        let vm = try Self.start("storage-metrics.sock", faults: 1, seed: 23)
        var stopped = false
        defer {
            if !stopped { vm.run.process.terminate(); Issue.record("stderr: \(vm.run.finish().2)\nconsole: \(vm.text)") }
            try? FileManager.default.removeItem(atPath: vm.dir)
        }
        #expect(vm.await("storvsc: faults: ready"), "\(vm.text)")
        // The guest writes and reads back in a loop, waiting for MEDIUM ERRORs: I/O goes on.
        var m1 = try vm.metrics()
        var d1 = try Self.disk0(m1, path: vm.a)
        for _ in 0..<150 where d1.requests["read"]! < 4 || d1.requests["write"]! < 4 {
            usleep(100_000)
            m1 = try vm.metrics()
            d1 = try Self.disk0(m1, path: vm.a)
        }
        #expect(d1.requests["read"]! > 0 && d1.requests["write"]! > 0 && d1.requests["other"]! > 0 && d1.bytesWritten > 0, "\(d1)")
        // Kill the storage worker; it is restarted (and the VMBus worker with it).
        #expect(try APISocketTests.ctl([vm.socket, "fault", "storage", "kill"]).status == 0)
        let w = try APISocketTests.awaitWorker(vm.socket, "storage", seconds: 15) {
            $0["restarts"] == .int(1) && $0["running"] == .bool(true) && $0["heartbeat_age_ms"]?.intValue != nil
        }
        #expect(w?["restarts"] == .int(1), "\(String(describing: w))")
        // The successor goes on counting from its predecessor's numbers (the guest goes on writing).
        var d2 = try Self.disk0(try vm.metrics(), path: vm.a)
        for _ in 0..<150 where d2.total <= d1.total + 4 {
            usleep(100_000)
            d2 = try Self.disk0(try vm.metrics(), path: vm.a)
        }
        for op in d1.requests.keys { #expect(d2.requests[op]! >= d1.requests[op]!, "\(op): \(d1) then \(d2)") }
        #expect(d2.total > d1.total && d2.bytesWritten >= d1.bytesWritten && d2.bytesRead >= d1.bytesRead && d2.sum >= d1.sum,
                "\(d1) then \(d2)")
        // Now the errors, then the end.
        let e = try APISocketTests.ctl([vm.socket, "fault", "storage", "io-error", "3"])
        #expect(e.status == 0 && e.stdout.hasPrefix("fault io-error 3 injected into worker storage (pid "), "\(e)")
        #expect(vm.await("storvsc: faults: io-error: "), "\(vm.text)")
        // The last metrics: while the guest lingers (its VM ends with it).
        #expect(vm.await("storvsc: faults: done; lingering"), "\(vm.text)")
        let m3 = try vm.metrics()
        #expect(vm.await("storvsc: ok"), "\(vm.text)")
        let (_, code, stderr) = vm.run.finish()
        stopped = true
        #expect(code == 0, "\(stderr)\n\(vm.text)")
        if code != 0 { print(stderr) }
        if let d3 = try? Self.disk0(m3, path: vm.a) {
            #expect(d3.errors == 3 && d3.count == d3.total && d3.infBucket == d3.count && d3.total >= d2.total, "\(d3)")
            print("storage metrics after the run (disk 0):\n" + m3.split(separator: "\n").filter { $0.contains("disk=\"0\"") && !$0.contains("_bucket") }
                .joined(separator: "\n"))
        } else {
            Issue.record("no disk metrics at the end: \(m3)")
        }
        #expect(d1.count == d1.total && d1.infBucket == d1.count, "\(d1)")
        // SynIC counters exist (the VMBus control messages went through the router).
        #expect((Self.sample(m1, "synthvm_synic_messages_posted_total", ["source": "guest"]) ?? 0) > 0, "\(m1)")
        #expect((Self.sample(m1, "synthvm_synic_messages_delivered_total", [:]) ?? 0) > 0, "\(m1)")
        #expect(Self.sample(m1, "synthvm_synic_messages_queued", ["queue": "simp"]) != nil, "\(m1)")
    }

    @Test("torn: the write dies half-done with the worker; the successor redoes it: one completion, the full data in the image")
    func torn() throws {
        let vm = try Self.start("storage-torn.sock", faults: 2, seed: 29)
        var stopped = false
        defer {
            if !stopped { vm.run.process.terminate(); Issue.record("stderr: \(vm.run.finish().2)\nconsole: \(vm.text)") }
            try? FileManager.default.removeItem(atPath: vm.dir)
        }
        #expect(vm.await("storvsc: faults: ready"), "\(vm.text)")
        usleep(200_000)
        let f = try APISocketTests.ctlJSON(vm.socket, ["fault", "storage", "torn"])
        #expect(f["return"]?["kind"] == .string("torn"), "\(f)")
        // The worker tears the next write and exits; the supervisor restarts it.
        let w = try APISocketTests.awaitWorker(vm.socket, "storage", seconds: 20) {
            $0["restarts"] == .int(1) && $0["running"] == .bool(true) && $0["heartbeat_age_ms"]?.intValue != nil
        }
        #expect(w?["last_exit"] == .string("exited with status 75"), "\(String(describing: w))")
        // Let the guest write a few more, then tell it to stop (the last block of the read-only LUN 1).
        usleep(300_000)
        let h = try #require(FileHandle(forWritingAtPath: vm.b))
        let size = try h.seekToEnd()
        try h.seek(toOffset: size - 512)
        h.write(Data("TORNDONE".utf8))
        try h.synchronize()
        try h.close()
        #expect(vm.await("storvsc: ok"), "\(vm.text)")
        let (_, code, stderr) = vm.run.finish()
        stopped = true
        #expect(code == 0, "\(stderr)\n\(vm.text)")
        #expect(vm.text.contains("storvsc: faults: torn: ") && vm.text.contains("each completed once and read back whole"), "\(vm.text)")
        #expect(stderr.contains("synthvm: fault injection: torn of worker storage (pid ") && stderr.contains(") requested by pid "),
                "\(stderr)")
        let tornLine = stderr.split(separator: "\n").first { $0.contains("fault injection: torn write: LUN 0 lba ") }
        #expect(tornLine?.contains("4096 of 8192 bytes written; dying before its completion") == true, "\(stderr)")
        #expect(stderr.contains("synthvm: worker storage (pid ") && stderr.contains("exited with status 75; restarted"), "\(stderr)")
        #expect(stderr.contains("request(s) to redo"), "\(stderr)")
        // The torn write's LBA holds its full data, as every other write's does.
        let lba = tornLine.flatMap { l in l.range(of: " lba ").flatMap { UInt64(l[$0.upperBound...].prefix { $0.isNumber }) } }
        let writes = vm.text.split(separator: "\n").filter { $0.hasPrefix("storvsc: wrote lun=0 ") }
        #expect(lba.map { l in writes.contains { StorvscGuestTests.field(String($0), "lba") == l } } == true, "\(String(describing: lba))")
        #expect(try Self.checkWrites(vm) >= 2)
    }
}

/// The SynIC router's message counters (`synthvm_synic_messages_*`, docs/api.md): hvconn posts a
/// known number of messages through the router on each vCPU (steps 3, 4 and 6 of
/// Tests/Guests/hvconn.c: to itself, to the other vCPU, three on a busy slot once their buffer is
/// free, two on a slot it shares with a timer; the one refused with INSUFFICIENT_BUFFERS never
/// reaches the router), each delivered into a SIMP slot by the router.
@Suite("SynIC message counters", .serialized)
struct SynICCounterTests {
    @Test("hvconn: posted and delivered equal the messages the guest posted, nothing left queued", arguments: [1, 2])
    func hvconnCounts(cpus: Int) throws {
        try GuestHarness.requireKVM()
        var c = try MachineConfig.load(kernelPath: try GuestHarness.guestPath("hvconn"), commandLine: "", cpus: cpus,
                                       memory: "64M", serial: "none", hyperv: "default")
        c.console = .capture
        c.timeoutSeconds = 120
        c.hypervTestDevice = true
        let vm = try VirtualMachine(config: c)
        let outcome = vm.run()
        #expect(vm.console.captured.contains("hvconn: ok"), "\(vm.console.captured)")
        #expect(outcome.exitStatus == 0, "\(outcome.reason)")
        let m = try #require(vm.routerState?.metrics())
        #expect(m.guestPosted == UInt64(7 * cpus) && m.delivered == UInt64(7 * cpus), "\(m)")
        #expect(m.hostPosted == 0 && m.queued == 0 && m.held == 0, "\(m)")
        var p = PrometheusText()
        VMAPIBackend.synicMetrics(m, into: &p)
        #expect(APISocketTests.sample(p.text, "synthvm_synic_messages_posted_total", ["source": "guest"]) == Double(7 * cpus))
        #expect(APISocketTests.sample(p.text, "synthvm_synic_messages_delivered_total", [:]) == Double(7 * cpus))
        #expect(APISocketTests.sample(p.text, "synthvm_synic_messages_queued", ["queue": "simp"]) == 0)
    }

    @Test("the counters survive a router restart: killed before the guest runs, the successor counts on from the same region")
    func countersSurviveARestart() throws {
        try GuestHarness.requireKVM()
        var c = try MachineConfig.load(kernelPath: try GuestHarness.guestPath("hvconn"), commandLine: "", cpus: 1,
                                       memory: "64M", serial: "none", hyperv: "default")
        c.console = .capture
        c.timeoutSeconds = 120
        c.hypervTestDevice = true
        let vm = try VirtualMachine(config: c)
        let state = try #require(vm.routerState)
        // As a predecessor would have left them.
        for _ in 0..<5 { state.count(.guestPosted); state.count(.delivered) }
        _ = try WorkerRestartTests.killAndAwaitRestart(vm, .synicRouter)
        let outcome = vm.run()
        #expect(outcome.exitStatus == 0, "\(outcome.reason)")
        let m = state.metrics()
        #expect(m.guestPosted == 12 && m.delivered == 12, "\(m)")
    }

    @Test("a router that scribbles on its counters and queue indices cannot make the monitor's reading trap")
    func hostileRouterState() throws {
        let state = try RouterStateRegion.create(vpCount: 2)
        let p = try #require(state.region.pointer(at: 0, count: state.region.size))
        p.initializeMemory(as: UInt8.self, repeating: 0xFF, count: state.region.size)
        let m = state.metrics()
        #expect(m.guestPosted == 1 << 53 && m.hostPosted == 1 << 53 && m.delivered == 1 << 53)
        // Each queue counted at most its depth (tail - head wraps to 0 here; any value is bounded).
        #expect(m.queued <= UInt64(2 * 16 * state.queueDepth) && m.held <= UInt64(state.heldDepth))
        for i in 0..<(state.region.size / 8) { p.storeBytes(of: UInt64.random(in: 0...UInt64.max), toByteOffset: 8 * i, as: UInt64.self) }
        let r = state.metrics()
        #expect(r.queued <= UInt64(2 * 16 * state.queueDepth) && r.guestPosted <= 1 << 53)
    }
}

/// The monitor's rendering of the disk counters (`VMAPIBackend.diskMetrics`) over a region a
/// hostile storage worker filled with garbage: parseable Prometheus text, no trap, a histogram
/// whose buckets never go down and whose +Inf bucket is its count.
@Suite("disk metrics rendering")
struct DiskMetricsRenderingTests {
    @Test("garbage in the metrics region renders as clamped numbers, never a trap", arguments: [0x00, 0xFF, 0x5A] as [UInt8])
    func hostileRegion(fill: UInt8) throws {
        let m = try StorageMetricsRegion.create(disks: 3)
        let p = try #require(m.region.pointer(at: 0, count: m.region.size))
        p.initializeMemory(as: UInt8.self, repeating: fill, count: m.region.size)
        var text = PrometheusText()
        VMAPIBackend.diskMetrics(m, paths: ["/a \"quoted\".img", "/b\\c.img"], into: &text)
        let samples = try #require(PrometheusText.parse(text.text), "\(text.text)")
        for d in 0..<3 {
            let l = ["disk": String(d), "path": ["/a \"quoted\".img", "/b\\c.img", ""][d]]
            let buckets = samples.filter { $0.name == "synthvm_disk_request_duration_seconds_bucket" && $0.labels["disk"] == String(d) }
            #expect(buckets.count == StorageMetricsRegion.bucketCount)
            #expect(zip(buckets, buckets.dropFirst()).allSatisfy { $0.value <= $1.value })
            let count = samples.first { $0.name == "synthvm_disk_request_duration_seconds_count" && $0.labels == l }?.value
            #expect(count != nil && count == buckets.last?.value, "disk \(d)")
            #expect(samples.filter { $0.name == "synthvm_disk_requests_total" && $0.labels["disk"] == String(d) }.count == 5)
        }
    }
}
