import Glibc
import Machine
import Monitor
import Partition
import Sandbox
import Testing

/// The record the launcher hands each VM process (Sources/Monitor/VMProcessSetup.swift): every
/// field crosses, nothing it is given traps the VM process, and only a sealed memfd is read.
/// No KVM needed.
@Suite("VMProcessSetup: the launcher's record for the VM process")
struct VMProcessSetupTests {
    /// A setup in which no field has its default, and the kernel is a bzImage-derived one.
    static func sample() throws -> VMProcessSetup {
        let header = LinuxSetupHeader(
            protocolVersion: 0x020F, setupSectors: 27, loadFlags: 0x81, initrdAddressMax: 0x7FFF_FFFF,
            kernelAlignment: 0x20_0000, relocatable: true, xloadFlags: 0x7F, commandLineSize: 2047,
            payloadOffset: 0x3A0, payloadLength: 0x12345, preferredAddress: 0x100_0000, initSize: 0x200_0000,
            protectedModeOffset: 28 * 512, payloadRange: 0x3B20..<0x15E65, setupHeaderRange: 0x1F1..<0x26C)
        let kernel = KernelImage(format: .pvh, bytes: BuiltinGuest.elf(), pvhEntry: 0x1000_0abc,
                                 bzImage: LinuxBzImage(header: header, setupHeaderBytes: Array(0..<0x7B),
                                                       compression: .zstd))
        var c = MachineConfig(kernel: kernel, kernelName: "/boot/vmlinuz-test",
                              modules: [BootModule(name: "initrd.cpio", bytes: [1, 2, 3]), BootModule(name: "m2", bytes: [])],
                              commandLine: "console=ttyS0 quiet", cpuCount: 3,
                              layout: try GuestMemoryLayout(ramSize: 64 << 20), console: .file("/tmp/com1 log"),
                              enlightenments: try Enlightenments.parse("default,-crash"))
        c.consoleInput = 0
        c.consoleEscapes = true
        c.haltPollMilliseconds = 7
        c.handleSignals = true
        c.timeoutSeconds = 41
        c.onGuestCrash = .continue
        c.workers = ["synic-router", "x"]
        c.hypervTestDevice = true
        c.vmbus = true
        var d0 = DiskImage(path: "/images/root.ext4", serial: "ROOT0")
        d0.fd = 6
        d0.sizeBytes = 64 << 20
        var d1 = DiskImage(path: "/images/data,1.img", readOnly: true, cache: .direct)
        d1.fd = 7
        d1.sizeBytes = 512
        d1.protocolVersion = 0x0501
        c.disks = [d0, d1]
        c.policyDirectory = "/etc/synthvm/policies"
        c.seccomp = SeccompMode(rawValue: "log")!
        c.jail = nil
        c.workerArguments = ["--test-forbidden-syscall"]
        c.workerStandardError = 9
        c.apiSocket = 5
        c.allowFaultInjection = true
        return VMProcessSetup(config: c, restartOnReset: true, stats: true, hasCrashReportPipe: true)
    }

    @Test("every MachineConfig property is carried: a new one must be added to the record")
    func carriesEveryProperty() throws {
        let labels = Mirror(reflecting: try Self.sample().config).children.compactMap(\.label)
        #expect(labels == VMProcessSetup.carriedProperties)
    }

    @Test("a record decodes to the same setup: re-encoding gives the same bytes, fields as given")
    func roundTrip() throws {
        let setup = try Self.sample()
        let bytes = setup.encoded()
        let back = try VMProcessSetup.decode(bytes)
        #expect(back.encoded() == bytes)
        let c = back.config
        #expect(c.kernel.format == .pvh && c.kernel.pvhEntry == 0x1000_0abc && c.kernel.bytes == BuiltinGuest.elf())
        #expect(c.kernel.bzImage?.header.payloadRange == 0x3B20..<0x15E65)
        #expect(c.kernel.bzImage?.compression == .zstd)
        #expect(c.modules.map(\.name) == ["initrd.cpio", "m2"] && c.modules[0].bytes == [1, 2, 3])
        #expect(c.disks == setup.config.disks && c.disks.map(\.fd) == [6, 7] && c.disks[1].readOnly && c.disks[1].cache == .direct)
        #expect(c.disks[0].protocolVersion == nil && c.disks[1].protocolVersion == 0x0501)
        #expect(c.console == .file("/tmp/com1 log") && c.layout.ramSize == 64 << 20 && c.cpuCount == 3)
        #expect(c.enlightenments == setup.config.enlightenments && !c.enlightenments.has(.crash))
        #expect(c.timeoutSeconds == 41 && c.jail == nil && c.workerStandardError == 9 && c.seccomp.rawValue == "log")
        #expect(back.restartOnReset && back.stats && back.hasCrashReportPipe)
        #expect(c.apiSocket == 5 && c.allowFaultInjection)
        // And the defaults: no timeout, a jail, no pipe.
        var plain = try Self.sample()
        plain.config.timeoutSeconds = nil
        plain.config.jail = JailConfig()
        plain.config.kernel.bzImage = nil
        plain.config.kernel.pvhEntry = nil
        plain.hasCrashReportPipe = false
        let p = try VMProcessSetup.decode(plain.encoded())
        #expect(p.config.timeoutSeconds == nil && p.config.jail != nil && p.config.kernel.bzImage == nil)
        #expect(p.config.kernel.pvhEntry == nil && !p.hasCrashReportPipe)
    }

    @Test("every truncation, a trailing byte, a bad magic or version, and random bytes are errors, never traps")
    func hostileBytes() throws {
        let bytes = try Self.sample().encoded()
        for n in 0..<bytes.count {
            #expect(throws: MonitorError.self) { try VMProcessSetup.decode(Array(bytes.prefix(n))) }
        }
        #expect(throws: MonitorError.self) { try VMProcessSetup.decode(bytes + [0]) }
        var magic = bytes
        magic[0] ^= 1
        #expect(throws: MonitorError.self) { try VMProcessSetup.decode(magic) }
        var version = bytes
        version[8] = UInt8(VMProcessSetup.version + 1)
        #expect(throws: MonitorError.self) { try VMProcessSetup.decode(version) }
        // Single-byte changes anywhere decode or fail cleanly; a length field made huge fails.
        var rng = SystemRandomNumberGenerator()
        var failures = 0
        for _ in 0..<2000 {
            var b = bytes
            b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            do { _ = try VMProcessSetup.decode(b) } catch { failures += 1 }
        }
        #expect(failures > 0)
    }

    @Test("the memfd: what the launcher seals is what the VM process reads; an unsealed fd is refused")
    func sealedMemfd() throws {
        let setup = try Self.sample()
        let fd = setup.writeToSealedMemfd()
        try #require(fd >= 0)
        defer { close(fd) }
        // Sealed: no more writes, no resizing.
        #expect(pwrite(fd, [0], 1, 0) < 0 && errno == EPERM)
        #expect(ftruncate(fd, 1) != 0)
        #expect(try VMProcessSetup.read(fd: fd).encoded() == setup.encoded())
        var p: [Int32] = [0, 0]
        try #require(pipe(&p) == 0)
        defer { close(p[0]); close(p[1]) }
        #expect(throws: MonitorError.self) { try VMProcessSetup.read(fd: p[0]) }
    }
}
