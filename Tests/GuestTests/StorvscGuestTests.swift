import Foundation
import IPC
@testable import Monitor
import Testing

/// The storage worker driven by a freestanding guest as Linux's storvsc drives it
/// (Tests/Guests/storvsc.c; issue 13 item 5): every protocol version, INQUIRY and the VPD pages,
/// READ CAPACITY, pattern writes at random LBAs and sizes read back and compared, FUA,
/// SYNCHRONIZE CACHE, UNMAP, a read-only disk, LBAs past the end, missing LUNs and hostile
/// packets. Run through the real `synthvm` binary with its defaults (the storage worker jailed
/// and filtered); afterwards the images are checked from the host: every range the guest says it
/// wrote holds the pattern, the unmapped range is a hole, the read-only image is untouched.
@Suite("storvsc from a freestanding guest (Tests/Guests/storvsc.c)", .serialized)
struct StorvscGuestTests {
    /// The data the guest writes at byte offset `off` (a multiple of 8) with `seed` (storvsc.c
    /// `pattern`).
    static func pattern(_ off: UInt64, _ seed: UInt64) -> UInt64 {
        let x = (off ^ seed) &* 0x9E37_79B9_7F4A_7C15
        return x ^ (x >> 29)
    }

    /// The read-only disk's first MiB (storvsc.c `RO_SEED`).
    static let readOnlySeed: UInt64 = 0x0123_4567_89AB_CDEF

    static func patternBytes(at offset: UInt64, count: Int, seed: UInt64) -> Data {
        var words = [UInt64](repeating: 0, count: count / 8)
        for i in words.indices { words[i] = pattern(offset + UInt64(8 * i), seed).littleEndian }
        return words.withUnsafeBytes { Data($0) }
    }

    struct Run {
        var stdout: String
        var stderr: String
        var status: Int32
        var lines: [String] { stdout.split(separator: "\n").map(String.init) }
    }

    static func run(_ args: [String]) throws -> Run {
        let p = Process()
        p.executableURL = CommandLineTests.binary
        p.arguments = ["run", "--kernel", try GuestHarness.guestPath("storvsc"), "--timeout", "240", "--serial", "stdio"] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        let buffer = LockedData(), errBuffer = LockedData()
        out.fileHandleForReading.readabilityHandler = { h in buffer.append(h.availableData) }
        err.fileHandleForReading.readabilityHandler = { h in errBuffer.append(h.availableData) }
        try p.run()
        p.waitUntilExit()
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
        buffer.append(out.fileHandleForReading.readDataToEndOfFile())
        errBuffer.append(err.fileHandleForReading.readDataToEndOfFile())
        return Run(stdout: buffer.string, stderr: errBuffer.string, status: p.terminationStatus)
    }

    /// a.img: 64 MiB, sparse, empty. b.img: 8 MiB, its first MiB the read-only pattern.
    static func images(_ dir: String) throws -> (String, String) {
        let a = dir + "/a.img", b = dir + "/b.img"
        try StorageWorkerTests.image(a, bytes: 64 << 20)
        try StorageWorkerTests.image(b, bytes: 8 << 20)
        let h = try #require(FileHandle(forWritingAtPath: b))
        h.write(patternBytes(at: 0, count: 1 << 20, seed: readOnlySeed))
        try h.close()
        return (a, b)
    }

    /// Values of `key=` in a line (`lba=12 blocks=3` ...).
    static func field(_ line: String, _ key: String) -> UInt64? {
        guard let r = line.range(of: " \(key)=") else { return nil }
        return UInt64(line[r.upperBound...].prefix { $0.isNumber })
    }

    /// The worker's stderr lines other than its protocol lines and synthvm's own.
    /// The workers' expected lines: the agreed protocol, and with 2 vCPUs the sub-channel's
    /// request, offer, open and use.
    static let expectedStderr = ["synthvm-storage: relid 4: vstor: protocol 0x", "synthvm-storage: relid 4: CREATE_SUB_CHANNELS: ",
                                 "synthvm-vmbus: relid 4: storage asked for ", "synthvm-storage: relid 5: sub-channel 1 open, ",
                                 "synthvm-vmbus: relid 5: sub-channel 1 of relid 4 opened, ", "synthvm-storage: relid 5: sub-channel 1: ",
                                 "synthvm-storage: requests served: ",
                                 // The guest's probes that no sub-channel offer came (a GPADL for relid 2047, refused).
                                 "synthvm-vmbus: vmbus: refused: refused request: GPADL_HEADER relid 2047 "]

    static func unexpectedStderr(_ r: Run) -> [Substring] {
        r.stderr.split(separator: "\n").filter { line in !expectedStderr.contains { line.contains($0) } }
    }

    @Test("every protocol version, identification, data at random LBAs, FUA, flushes, UNMAP, read-only, past the end, missing LUNs, hostile packets; the images checked from the host",
          arguments: [1, 2])
    func storvsc(cpus: Int) throws {
        try GuestHarness.requireKVM()
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (a, b) = try Self.images(dir)
        let seed = UInt64.random(in: 1...UInt64(UInt32.max))
        let start = Date()
        let r = try Self.run(["--cpus", "\(cpus)", "--cmdline", "seed=\(seed)", "--disk", a + ",serial=ALPHA0", "--disk", b + ",readonly"])
        let seconds = Date().timeIntervalSince(start)
        let all = "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)"
        let lines = r.lines
        print("storvsc-guest: \(cpus) vCPU(s): status \(r.status) after \(String(format: "%.1f", seconds)) s; "
              + (lines.first { $0.hasSuffix(" requests, channel closed") } ?? "no request count"))
        #expect(r.status == 0, "\(all)")
        #expect(lines.first == "storvsc: start", "\(all)")
        #expect(lines.last == "storvsc: ok", "\(all)")
        #expect(!lines.contains { $0.contains("FAIL") }, "\(all)")
        // Every version, oldest first; the worker logs each agreement.
        for (v, packet, srb) in [("0x0200", 48, "0x24"), ("0x0402", 48, "0x24"), ("0x0501", 64, "0x34"), ("0x0600", 64, "0x34"),
                                 ("0x0602", 64, "0x34")] {
            let vp = v == "0x0602" ? cpus - 1 : 0
            // Multi-channel from Win8 (0x0501) on, with one sub-channel per vCPU beyond the first.
            let multi = packet == 64 && cpus > 1
            let channels = multi ? "channels \(cpus - 1) flags 0x1" : "channels 0 flags 0x0"
            #expect(lines.contains { $0.hasPrefix("storvsc: protocol \(v): 1 refused first, packets of \(packet) bytes, SRB \(srb), max_transfer 0x100000, \(channels); INQUIRY and READ(10) ok (vp \(vp))") },
                    "protocol \(v)\n\(all)")
            #expect(r.stderr.contains("synthvm-storage: relid 4: vstor: protocol \(v), 2 LUN(s)"), "\(all)")
        }
        for line in [
            "storvsc: REPORT LUNS: 2 LUNs",
            "storvsc: lun 0: Msft    Virtual Disk    1.0  serial \"ALPHA0\", VPD 00 80 83 b0 b1 b2, 131072 blocks of 512 (RC10 = RC16), max transfer 2048 blocks, max unmap 8388608, thin, write cache on",
            "storvsc: lun 1: Msft    Virtual Disk    1.0  serial \"synthvm-disk1\", VPD 00 80 83 b0 b1 b2, 16384 blocks of 512 (RC10 = RC16), max transfer 2048 blocks, max unmap 0, not thin, write-protected, write cache on",
            "storvsc: SYNCHRONIZE CACHE(10) and (16): GOOD",
            "storvsc: read-only lun 1: data reads back; WRITE(10), WRITE(16) FUA: DATA PROTECT 27/00; UNMAP refused (7/27); SYNCHRONIZE CACHE GOOD",
            "storvsc: 5 requests past the end (64-bit overflow included): ILLEGAL REQUEST 21/00",
            "storvsc: missing LUN 5, target 1, path 1: INQUIRY GOOD with 0x7F, TEST UNIT READY and READ INVALID_LUN, VPD INVALID_REQUEST",
            "storvsc: 15 hostile packets answered, nothing moved; still serving",
        ] {
            #expect(lines.contains(line), "no \"\(line)\"\n\(all)")
        }
        // Sub-channels: none on 1 vCPU; on 2, one at relid 5 (after the controller's 4), opened on
        // VP 1 and used, then closed before the primary, rescinded and released.
        if cpus == 1 {
            #expect(lines.contains("storvsc: no sub-channels offered (max_channel_cnt 0, flags 0x0, 1 vCPUs)"), "\(all)")
            #expect(!r.stderr.contains("sub-channel"), "\(all)")
        } else {
            for line in ["storvsc: sub-channel 1 offered: relid 5 connection 0x2005, the controller's GUIDs",
                         "storvsc: sub-channel 1 (relid 5) open on vp 1: write, read-back and a read of LUN 1 ok; the primary still serves",
                         "storvsc: sub-channel closed, the primary closed, the sub-channel rescinded and released"] {
                #expect(lines.contains(line), "no \"\(line)\"\n\(all)")
            }
            for line in ["synthvm-storage: relid 4: CREATE_SUB_CHANNELS: 1 sub-channel(s) (limit 1)",
                         "synthvm-vmbus: relid 4: storage asked for 1 sub-channel(s); offered: 5/1",
                         "synthvm-vmbus: relid 5: sub-channel 1 of relid 4 opened, interrupts to VP 1",
                         "synthvm-storage: relid 5: sub-channel 1 open, interrupts to VP 1",
                         // The write, the two reads, CREATE_SUB_CHANNELS and BEGIN_INITIALIZATION are not SRBs.
                         "synthvm-storage: relid 5: sub-channel 1: 1 request(s) served"] {
                #expect(r.stderr.contains(line), "no \"\(line)\"\n\(all)")
            }
            #expect(r.stderr.contains("synthvm-storage: requests served: relid 4: ") && r.stderr.contains(", relid 5: 3"), "\(all)")
            #expect(r.stderr.contains("GPADL_HEADER relid 2047 gpadl ") && r.stderr.contains("unknown relid (2 so far)"), "\(all)")
        }
        // Every write kind, page-crossing offsets, the maximum transfer (aligned and offset), FUA
        // (and one on the sub-channel).
        let writes = lines.filter { $0.hasPrefix("storvsc: wrote lun=0 ") }
        #expect(writes.count == (cpus == 1 ? 14 : 15), "\(all)")
        for kind in ["WRITE(6)", "WRITE(10)", "WRITE(12)", "WRITE(16)"] { #expect(writes.contains { $0.contains(kind) }, "\(kind)") }
        #expect(writes.contains { $0.contains(" blocks=2048 offset=0x0 ") && $0.contains("max transfer") })
        #expect(writes.contains { $0.contains(" blocks=2048 offset=0x600 ") && $0.contains("max transfer") })
        #expect(writes.filter { $0.contains(" FUA,") }.count == 2)
        #expect(Self.unexpectedStderr(r).isEmpty, "\(all)")
        #expect(!r.stderr.contains("killed by signal") && !r.stderr.contains("exited with status"), "\(r.stderr)")

        // The image from the host: the pattern at every range the guest wrote (except the
        // unmapped one, written then punched), a hole where it unmapped.
        let unmapLine = try #require(lines.first { $0.hasPrefix("storvsc: unmapped lun=0 ") }, "\(all)")
        let unmapLBA = try #require(Self.field(unmapLine, "lba")), unmapBlocks = try #require(Self.field(unmapLine, "blocks"))
        let image = try Data(contentsOf: URL(fileURLWithPath: a))
        #expect(image.count == 64 << 20)
        var checked = 0
        for w in writes where !w.contains("before UNMAP") {
            let lba = try #require(Self.field(w, "lba")), blocks = try #require(Self.field(w, "blocks"))
            let off = Int(lba * 512), n = Int(blocks * 512)
            let want = Self.patternBytes(at: UInt64(off), count: n, seed: seed)
            #expect(image[off..<(off + n)] == want, "lba \(lba) blocks \(blocks): the pattern is not in the image")
            checked += n
        }
        let holeStart = Int(unmapLBA * 512), holeBytes = Int(unmapBlocks * 512)
        #expect(image[holeStart..<(holeStart + holeBytes)].allSatisfy { $0 == 0 })
        let fd = open(a, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        // SEEK_HOLE (4) at the range's start finds a hole right there; SEEK_DATA (3) from it skips
        // the whole range.
        #expect(lseek(fd, off_t(holeStart), 4) == off_t(holeStart), "no hole at the unmapped range")
        let data = lseek(fd, off_t(holeStart), 3)
        #expect(data < 0 || data >= off_t(holeStart + holeBytes), "data at \(data) inside the unmapped range")
        var st = stat()
        #expect(fstat(fd, &st) == 0)
        // A sparse image: about what was written, not 64 MiB.
        #expect(Int(st.st_blocks) * 512 < 16 << 20, "st_blocks \(st.st_blocks)")
        print("storvsc-guest: \(checked) bytes checked in the image, hole at \(holeStart)+\(holeBytes), st_blocks \(st.st_blocks)")
        // The read-only image is untouched.
        let ro = try Data(contentsOf: URL(fileURLWithPath: b))
        #expect(ro.prefix(1 << 20) == Self.patternBytes(at: 0, count: 1 << 20, seed: Self.readOnlySeed))
        #expect(ro.count == 8 << 20 && ro.suffix(from: 1 << 20).allSatisfy { $0 == 0 })
    }

    @Test("--disk ...,protocol=0x0501: newer versions are refused, 0x0501 and older served; the worker logs what it agreed")
    func protocolCap() throws {
        try GuestHarness.requireKVM()
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (a, b) = try Self.images(dir)
        let r = try Self.run(["--cmdline", "seed=7 maxver=0x0501 quick=1", "--disk", a + ",protocol=0x0501", "--disk", b + ",readonly"])
        let all = "stdout:\n\(r.stdout)\nstderr:\n\(r.stderr)"
        #expect(r.status == 0, "\(all)")
        #expect(r.lines.last == "storvsc: ok", "\(all)")
        // 0x0A00, 0x0602 and 0x0600 refused before 0x0501 is agreed.
        #expect(r.lines.contains { $0.hasPrefix("storvsc: protocol 0x0501: 3 refused first, packets of 64 bytes, SRB 0x34") }, "\(all)")
        #expect(r.lines.contains { $0.hasPrefix("storvsc: protocol 0x0200: 1 refused first, packets of 48 bytes") }, "\(all)")
        #expect(r.stderr.contains("vstor: protocol 0x0501, 2 LUN(s)"), "\(all)")
        #expect(!r.stderr.contains("vstor: protocol 0x0602") && !r.stderr.contains("vstor: protocol 0x0600"), "\(all)")
        #expect(Self.unexpectedStderr(r).isEmpty, "\(all)")
    }

    @Test("protocol=: parsed per disk, the controller takes the lowest; bad values refused; carried to the worker's setup record")
    func protocolOption() throws {
        #expect(try DiskImage.parse("a.img").protocolVersion == nil)
        #expect(try DiskImage.parse("a.img,protocol=0x0600").protocolVersion == 0x0600)
        #expect(try DiskImage.parse("a.img,readonly,protocol=0x0200").protocolVersion == 0x0200)
        for bad in ["a.img,protocol=0x0601", "a.img,protocol=600", "a.img,protocol=", "a.img,protocol=0x0A00",
                    "a.img,protocol=0x0600,protocol=0x0600"] {
            #expect(throws: MonitorError.self, "\(bad)") { try DiskImage.parse(bad) }
        }
        #expect(DiskImage.controllerProtocolVersion([try DiskImage.parse("a"), try DiskImage.parse("b")]) == 0x0602)
        #expect(DiskImage.controllerProtocolVersion([try DiskImage.parse("a,protocol=0x0600"), try DiskImage.parse("b,protocol=0x0501"),
                                                     try DiskImage.parse("c")]) == 0x0501)
        let record = StorageWorkerSetup(vpCount: 2, sintPolling: false, synicRing: (64, 16), deviceRing: (2048, 32),
                                        memory: [.init(base: 0, size: 1 << 20, offset: 0)],
                                        disks: [.init(sizeBytes: 1 << 20, readOnly: false, cache: .writeback, serial: "")],
                                        highestProtocolVersion: 0x0600)
        let back = try StorageWorkerSetup.decode(record.encoded())
        #expect(back == record && back.highestProtocolVersion == 0x0600)
        // A version the worker does not serve is refused when decoded.
        var bytes = record.encoded()
        let at = bytes.count - 8
        bytes[at] = 0x01
        #expect(throws: WireError.self) { try StorageWorkerSetup.decode(bytes) }
    }

    @Test("the sub-channel limit: vCPUs - 1 capped at 16, 0 without disks; carried to both workers; their relids' connections owned by storage")
    func subChannelLimit() throws {
        let dir = try StorageWorkerTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (a, b) = try Self.images(dir)
        func config(cpus: Int, disks: Int) -> MachineConfig {
            var c = (try? StorageWorkerTests.config(disks: [a, b + ",readonly"].prefix(disks).map { $0 }, cpus: cpus))!
            if disks == 0 { c.disks = [] }
            for d in c.disks { close(d.fd) }
            return c
        }
        #expect(config(cpus: 1, disks: 1).storageSubChannels == 0 && config(cpus: 1, disks: 1).storageSubChannelRelIDs == [])
        #expect(config(cpus: 2, disks: 1).storageSubChannels == 1 && config(cpus: 2, disks: 1).storageSubChannelRelIDs == [5])
        #expect(config(cpus: 2, disks: 1).vmbusRelIDs == 1...5)
        #expect(config(cpus: 40, disks: 2).storageSubChannels == 16 && config(cpus: 40, disks: 2).vmbusRelIDs == 1...20)
        #expect(config(cpus: 4, disks: 0).storageSubChannels == 0 && config(cpus: 4, disks: 0).vmbusRelIDs == 1...3)
        var record = StorageWorkerSetup(vpCount: 2, sintPolling: false, synicRing: (64, 16), deviceRing: (2048, 32),
                                        memory: [.init(base: 0, size: 1 << 20, offset: 0)],
                                        disks: [.init(sizeBytes: 1 << 20, readOnly: false, cache: .writeback, serial: "")],
                                        maxSubChannels: 1)
        #expect(try StorageWorkerSetup.decode(record.encoded()).maxSubChannels == 1)
        // More than vCPUs - 1 is refused when decoded.
        record.maxSubChannels = 2
        #expect(throws: WireError.self) { try StorageWorkerSetup.decode(record.encoded()) }
        let remote = VMBusRemoteDeviceSetup(owner: .storage, regionID: DeviceRegion.regionID, ringRecordSize: 2048, ringCapacity: 32,
                                            maxSubChannels: 16)
        #expect(try VMBusRemoteDeviceSetup.decode(remote.encoded()) == remote)
        var bad = remote
        bad.maxSubChannels = 65
        #expect(throws: WireError.self) { try VMBusRemoteDeviceSetup.decode(bad.encoded()) }
    }
}
