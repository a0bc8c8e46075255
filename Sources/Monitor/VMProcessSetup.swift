import CSynthVM
import Glibc
import IPC
import Machine
import Partition
import Sandbox

/// What `synthvm run` (the launcher) hands each VM process it starts: the whole `MachineConfig`,
/// already read and validated (the kernel as unpacked, the modules' bytes, the time left of
/// `--timeout`), and what the VM process does at the end of its life. The launcher writes it
/// into a sealed memfd that becomes the VM process's fd 3 (`write(toSealedMemfd:)`), so each VM
/// life is a fresh `execve` of `synthvm-vm` (its own address-space layout) that needs neither
/// the command line nor the files again, and boots exactly the bytes the first life booted.
///
/// The record is written by the launcher before the VM process exists and read once at its
/// start: no guest, and no earlier VM life, can write into it (a new memfd per life, sealed
/// against writes and resizing). It is still decoded like any other record (`WireReader`:
/// bounds-checked, every enum checked, nothing left over), and `MachineConfig.validate` runs on
/// the result; nothing here traps.
///
/// Layout (little-endian, `WireWriter` rules), after the 8-byte magic `"SVMLIFE\0"` and a u32
/// version: the fields in the order of `encodeBody`. Strings and byte strings are a u64 length
/// and the bytes; an optional is a u8 0/1 and then the value.
public struct VMProcessSetup: Sendable {
    public var config: MachineConfig
    /// `--on-reset restart`: a reset is reported quietly (the launcher restarts).
    public var restartOnReset: Bool
    /// `--stats`.
    public var stats: Bool
    /// fd 4 of the VM process is the crash-report pipe (`--crash-report`).
    public var hasCrashReportPipe: Bool

    public init(config: MachineConfig, restartOnReset: Bool, stats: Bool, hasCrashReportPipe: Bool) {
        self.config = config
        self.restartOnReset = restartOnReset
        self.stats = stats
        self.hasCrashReportPipe = hasCrashReportPipe
    }

    public static let magic: [UInt8] = Array("SVMLIFE\0".utf8)
    public static let version: UInt32 = 4
    /// The fds of the VM process: the record, and the crash-report pipe when there is one.
    public static let setupFD: Int32 = 3
    public static let crashReportFD: Int32 = 4
    /// The disks' fds in the VM process: 6, 7, ... in `config.disks` order (the launcher moves
    /// them there across exec, whether or not fds 4 and 5 are used).
    public static let firstDiskFD: Int32 = 6
    /// With `--api-socket`: the control socket's listening socket, created by the launcher once
    /// for every VM life (`MachineConfig.apiSocket` is then this number).
    public static let apiSocketFD: Int32 = 5
    /// The executable the launcher starts, next to `synthvm` (like the workers).
    public static let executableName = "synthvm-vm"
    /// No record is larger (a body length is checked against it before anything is read).
    static let sizeLimit = 1 << 36
    /// Labels decoding errors (`WireError` speaks of record types).
    static let errorLabel: UInt16 = 0

    /// The `MachineConfig` properties this record carries, by name, in `Mirror` order. A test
    /// compares it with `MachineConfig`'s stored properties, so a property added there and not
    /// here fails the suite instead of silently reverting to its default in every VM process.
    public static let carriedProperties = [
        "kernel", "kernelName", "modules", "commandLine", "cpuCount", "layout", "console", "consoleInput",
        "consoleEscapes", "haltPollMilliseconds", "handleSignals", "timeoutSeconds", "enlightenments",
        "onGuestCrash", "workers", "hypervTestDevice", "vmbus", "disks", "shutdownGraceSeconds", "policyDirectory", "seccomp", "jail", "workerArguments",
        "workerStandardError", "apiSocket", "allowFaultInjection",
    ]

    // MARK: Encoding

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        w.raw(Self.magic)
        w.u32(Self.version)
        let c = config
        Self.encodeKernel(c.kernel, into: &w)
        Self.string(c.kernelName, into: &w)
        w.u32(UInt32(c.modules.count))
        for m in c.modules {
            Self.string(m.name, into: &w)
            Self.bytes(m.bytes, into: &w)
        }
        Self.string(c.commandLine, into: &w)
        w.u32(UInt32(c.cpuCount))
        w.u64(c.layout.ramSize)
        switch c.console {
        case .none: w.u16(0)
        case .stdout: w.u16(1)
        case .file(let path): w.u16(2); Self.string(path, into: &w)
        case .capture: w.u16(3)
        }
        w.i32(c.consoleInput ?? -1)
        Self.flag(c.consoleEscapes, into: &w)
        w.i32(c.haltPollMilliseconds)
        Self.flag(c.handleSignals, into: &w)
        w.u64(UInt64(c.timeoutSeconds ?? 0))
        Self.string(c.enlightenments.description, into: &w)
        Self.string(c.onGuestCrash.rawValue, into: &w)
        Self.strings(c.workers, into: &w)
        Self.flag(c.hypervTestDevice, into: &w)
        Self.flag(c.vmbus, into: &w)
        // Each disk's fd is a number in the VM process: the launcher put it there (`firstDiskFD`).
        w.u32(UInt32(c.disks.count))
        for d in c.disks {
            Self.string(d.path, into: &w)
            Self.flag(d.readOnly, into: &w)
            Self.string(d.serial, into: &w)
            Self.string(d.cache.rawValue, into: &w)
            w.i32(d.fd)
            w.u64(d.sizeBytes)
            w.u16(d.protocolVersion ?? 0)
        }
        w.u32(UInt32(clamping: max(0, c.shutdownGraceSeconds)))
        Self.string(c.policyDirectory, into: &w)
        Self.string(c.seccomp.rawValue, into: &w)
        // The command line gives a jail as JailConfig() or none (--no-jail); its fields are not
        // operator input, so only the choice crosses.
        Self.flag(c.jail != nil, into: &w)
        Self.strings(c.workerArguments, into: &w)
        w.i32(c.workerStandardError ?? -1)
        w.i32(c.apiSocket ?? -1)
        Self.flag(c.allowFaultInjection, into: &w)
        Self.flag(restartOnReset, into: &w)
        Self.flag(stats, into: &w)
        Self.flag(hasCrashReportPipe, into: &w)
        return w.bytes
    }

    static func encodeKernel(_ k: KernelImage, into w: inout WireWriter) {
        w.u16(Self.formats.firstIndex(of: k.format).map { UInt16($0) } ?? 0xFFFF)
        bytes(k.bytes, into: &w)
        flag(k.pvhEntry != nil, into: &w)
        w.u64(k.pvhEntry ?? 0)
        flag(k.bzImage != nil, into: &w)
        guard let bz = k.bzImage else { return }
        let h = bz.header
        w.u16(h.protocolVersion)
        w.u64(UInt64(h.setupSectors))
        w.u16(UInt16(h.loadFlags))
        w.u32(h.initrdAddressMax)
        w.u32(h.kernelAlignment)
        flag(h.relocatable, into: &w)
        w.u16(h.xloadFlags)
        w.u32(h.commandLineSize)
        w.u32(h.payloadOffset)
        w.u32(h.payloadLength)
        w.u64(h.preferredAddress)
        w.u32(h.initSize)
        w.u64(UInt64(h.protectedModeOffset))
        for r in [h.payloadRange, h.setupHeaderRange] {
            w.u64(UInt64(r.lowerBound))
            w.u64(UInt64(r.upperBound))
        }
        bytes(bz.setupHeaderBytes, into: &w)
        w.u16(bz.compression.flatMap { KernelCompression.allCases.firstIndex(of: $0) }.map { UInt16($0) } ?? 0xFFFF)
    }

    static let formats: [BootPlan.Format] = [.elf64Direct, .multiboot, .pvh, .linux64]

    static func flag(_ v: Bool, into w: inout WireWriter) { w.u16(v ? 1 : 0) }
    static func bytes(_ v: [UInt8], into w: inout WireWriter) { w.u64(UInt64(v.count)); w.raw(v) }
    static func string(_ v: String, into w: inout WireWriter) { bytes(Array(v.utf8), into: &w) }
    static func strings(_ v: [String], into w: inout WireWriter) {
        w.u32(UInt32(v.count))
        for s in v { string(s, into: &w) }
    }

    // MARK: Decoding

    public static func decode(_ bytes: [UInt8]) throws(MonitorError) -> VMProcessSetup {
        let result = bytes.withUnsafeBytes { b in Result { () throws(WireError) in try decode(b) } }
        switch result {
        case .success(let s): return s
        case .failure(let e): throw .config("VM process setup record: \(e)")
        }
    }

    static func decode(_ raw: UnsafeRawBufferPointer) throws(WireError) -> VMProcessSetup {
        var r = WireReader(raw, type: errorLabel)
        guard try r.rawBytes(magic.count) == magic else { throw invalid("magic", 0) }
        let version = try r.u32()
        guard version == Self.version else { throw .unsupportedVersion(type: errorLabel, version: UInt16(truncatingIfNeeded: version)) }
        let kernel = try decodeKernel(&r)
        let kernelName = try string(&r, "kernel name")
        let moduleCount = try r.u32()
        var modules: [BootModule] = []
        for _ in 0..<moduleCount {
            let name = try string(&r, "module name")
            modules.append(BootModule(name: name, bytes: try bytes(&r)))
        }
        let commandLine = try string(&r, "command line")
        let cpus = try r.u32()
        guard MachineConfig.cpuRange.contains(Int(cpus)) else { throw invalid("cpu count", UInt64(cpus)) }
        let ramSize = try r.u64()
        let layout: GuestMemoryLayout
        do { layout = try GuestMemoryLayout(ramSize: ramSize) } catch { throw invalid("RAM size", ramSize) }
        let consoleTag = try r.u16()
        let console: ConsoleSink.Target
        switch consoleTag {
        case 0: console = .none
        case 1: console = .stdout
        case 2: console = .file(try string(&r, "console file"))
        case 3: console = .capture
        default: throw invalid("console", UInt64(consoleTag))
        }
        var config = MachineConfig(kernel: kernel, kernelName: kernelName, modules: modules, commandLine: commandLine,
                                   cpuCount: Int(cpus), layout: layout, console: console, enlightenments: .off)
        config.consoleInput = try optionalFD(&r, "console input")
        config.consoleEscapes = try flag(&r, "console escapes")
        config.haltPollMilliseconds = try r.i32()
        guard config.haltPollMilliseconds > 0 else {
            throw invalid("halt poll interval", UInt64(UInt32(bitPattern: config.haltPollMilliseconds)))
        }
        config.handleSignals = try flag(&r, "signal handling")
        let timeout = try r.u64()
        guard timeout <= UInt64(Int32.max) else { throw invalid("timeout", timeout) }
        config.timeoutSeconds = timeout == 0 ? nil : Int(timeout)
        let hyperv = try string(&r, "enlightenments")
        do { config.enlightenments = try Enlightenments.parse(hyperv) } catch { throw invalid("enlightenments", 0) }
        let crash = try string(&r, "guest crash action")
        guard let crashAction = GuestCrashAction(rawValue: crash) else { throw invalid("guest crash action", 0) }
        config.onGuestCrash = crashAction
        config.workers = try strings(&r, "worker name")
        config.hypervTestDevice = try flag(&r, "hyperv-testdev")
        config.vmbus = try flag(&r, "vmbus")
        let diskCount = try r.u32()
        guard diskCount <= UInt32(DiskImage.maxDisks) else { throw .tooManyEntries(type: errorLabel, count: diskCount, limit: DiskImage.maxDisks) }
        for _ in 0..<diskCount {
            var d = DiskImage(path: try string(&r, "disk path"))
            d.readOnly = try flag(&r, "disk read-only")
            d.serial = try string(&r, "disk serial")
            guard d.serial.isEmpty || StorageWorkerSetup.isValidSerial(d.serial) else { throw invalid("disk serial", 0) }
            guard let cache = DiskImage.Cache(rawValue: try string(&r, "disk cache")) else { throw invalid("disk cache", 0) }
            d.cache = cache
            d.fd = try r.i32()
            guard d.fd >= 0 else { throw invalid("disk fd", UInt64(UInt32(bitPattern: d.fd))) }
            d.sizeBytes = try r.u64()
            guard d.sizeBytes > 0, d.sizeBytes % 512 == 0 else { throw invalid("disk size", d.sizeBytes) }
            let proto = try r.u16()
            guard proto == 0 || StorageWorkerSetup.protocolVersions.contains(proto) else { throw invalid("disk protocol", UInt64(proto)) }
            d.protocolVersion = proto == 0 ? nil : proto
            config.disks.append(d)
        }
        let grace = try r.u32()
        guard grace <= UInt32(Int32.max) else { throw invalid("shutdown grace", UInt64(grace)) }
        config.shutdownGraceSeconds = Int(grace)
        config.policyDirectory = try string(&r, "policy directory")
        let seccomp = try string(&r, "seccomp mode")
        guard let mode = SeccompMode(rawValue: seccomp) else { throw invalid("seccomp mode", 0) }
        config.seccomp = mode
        config.jail = try flag(&r, "jail") ? JailConfig() : nil
        config.workerArguments = try strings(&r, "worker argument")
        config.workerStandardError = try optionalFD(&r, "worker stderr")
        config.apiSocket = try optionalFD(&r, "API socket")
        config.allowFaultInjection = try flag(&r, "fault injection")
        let restart = try flag(&r, "restart on reset")
        let stats = try flag(&r, "stats")
        let pipe = try flag(&r, "crash-report pipe")
        try r.finish()
        return VMProcessSetup(config: config, restartOnReset: restart, stats: stats, hasCrashReportPipe: pipe)
    }

    static func decodeKernel(_ r: inout WireReader) throws(WireError) -> KernelImage {
        let formatIndex = try r.u16()
        guard Int(formatIndex) < formats.count else { throw invalid("kernel format", UInt64(formatIndex)) }
        let image = try bytes(&r)
        let hasPVH = try flag(&r, "PVH entry present")
        let pvh = try r.u64()
        guard hasPVH || pvh == 0 else { throw invalid("PVH entry", pvh) }
        var kernel = KernelImage(format: formats[Int(formatIndex)], bytes: image, pvhEntry: hasPVH ? pvh : nil)
        guard try flag(&r, "bzImage present") else { return kernel }
        let protocolVersion = try r.u16()
        let setupSectors = try size(&r, "setup sectors")
        let loadFlags = try r.u16()
        guard loadFlags <= 0xFF else { throw invalid("loadflags", UInt64(loadFlags)) }
        let initrdAddressMax = try r.u32(), kernelAlignment = try r.u32()
        let relocatable = try flag(&r, "relocatable")
        let xloadFlags = try r.u16()
        let commandLineSize = try r.u32(), payloadOffset = try r.u32(), payloadLength = try r.u32()
        let preferredAddress = try r.u64()
        let initSize = try r.u32()
        let protectedModeOffset = try size(&r, "protected-mode offset")
        var ranges: [Range<Int>] = []
        for _ in 0..<2 {
            let lower = try size(&r, "range start"), upper = try size(&r, "range end")
            guard lower <= upper else { throw invalid("range", UInt64(lower)) }
            ranges.append(lower..<upper)
        }
        let setupHeaderBytes = try bytes(&r)
        let compressionIndex = try r.u16()
        let compression: KernelCompression?
        if compressionIndex == 0xFFFF {
            compression = nil
        } else {
            guard Int(compressionIndex) < KernelCompression.allCases.count else {
                throw invalid("compression", UInt64(compressionIndex))
            }
            compression = KernelCompression.allCases[Int(compressionIndex)]
        }
        let header = LinuxSetupHeader(
            protocolVersion: protocolVersion, setupSectors: setupSectors, loadFlags: UInt8(loadFlags),
            initrdAddressMax: initrdAddressMax, kernelAlignment: kernelAlignment, relocatable: relocatable,
            xloadFlags: xloadFlags, commandLineSize: commandLineSize, payloadOffset: payloadOffset,
            payloadLength: payloadLength, preferredAddress: preferredAddress, initSize: initSize,
            protectedModeOffset: protectedModeOffset, payloadRange: ranges[0], setupHeaderRange: ranges[1])
        kernel.bzImage = LinuxBzImage(header: header, setupHeaderBytes: setupHeaderBytes, compression: compression)
        return kernel
    }

    static func invalid(_ field: String, _ value: UInt64) -> WireError {
        .invalidField(type: errorLabel, field: field, value: value)
    }

    static func flag(_ r: inout WireReader, _ field: String) throws(WireError) -> Bool {
        let v = try r.u16()
        guard v <= 1 else { throw invalid(field, UInt64(v)) }
        return v == 1
    }

    /// A u64 that must fit an Int that sizes memory (at most 2^36: every byte count and offset
    /// here is below the record's own size limit).
    static func size(_ r: inout WireReader, _ field: String) throws(WireError) -> Int {
        let v = try r.u64()
        guard v <= UInt64(sizeLimit) else { throw invalid(field, v) }
        return Int(v)
    }

    static func bytes(_ r: inout WireReader) throws(WireError) -> [UInt8] {
        let n = try size(&r, "length")
        return try r.rawBytes(n)
    }

    static func string(_ r: inout WireReader, _ field: String) throws(WireError) -> String {
        let b = try bytes(&r)
        guard let s = String(validating: b, as: UTF8.self) else { throw invalid(field, UInt64(b.count)) }
        return s
    }

    static func strings(_ r: inout WireReader, _ field: String) throws(WireError) -> [String] {
        let n = try r.u32()
        guard n <= 4096 else { throw .tooManyEntries(type: errorLabel, count: n, limit: 4096) }
        var out: [String] = []
        for _ in 0..<n { out.append(try string(&r, field)) }
        return out
    }

    static func optionalFD(_ r: inout WireReader, _ field: String) throws(WireError) -> Int32? {
        let v = try r.i32()
        guard v >= -1 else { throw invalid(field, UInt64(UInt32(bitPattern: v))) }
        return v == -1 ? nil : v
    }

    // MARK: The memfd

    /// The record in a new memfd, sealed against writing, resizing and further seals; the caller
    /// owns (and closes) the fd. Returns -errno on failure.
    public func writeToSealedMemfd() -> Int32 {
        let record = encoded()
        let fd = svm_memfd_create_sealable("synthvm-vm-setup")
        if fd < 0 { return fd }
        var off = 0
        while off < record.count {
            let n = record.withUnsafeBytes { pwrite(fd, $0.baseAddress! + off, $0.count - off, off_t(off)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                let e = n < 0 ? errno : EIO
                close(fd)
                return -e
            }
            off += n
        }
        let r = svm_memfd_add_seals(fd, svm_F_SEAL_WRITE | svm_F_SEAL_SHRINK | svm_F_SEAL_GROW | svm_F_SEAL_SEAL)
        if r < 0 {
            close(fd)
            return r
        }
        return fd
    }

    /// Reads and decodes the record from `fd` (the VM process's fd 3): it must be a memfd sealed
    /// against writing, so that what is decoded is what the launcher wrote.
    public static func read(fd: Int32) throws(MonitorError) -> VMProcessSetup {
        let seals = svm_memfd_get_seals(fd)
        let needed = svm_F_SEAL_WRITE | svm_F_SEAL_SHRINK | svm_F_SEAL_GROW
        if seals < 0 { throw .config("VM process setup: fd \(fd): \(String(cString: strerror(-seals)))") }
        guard seals & needed == needed else {
            throw .config("VM process setup: fd \(fd) is not sealed against writing and resizing (seals \(seals))")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .config("VM process setup: fstat: \(String(cString: strerror(errno)))") }
        guard st.st_size > 0, st.st_size <= sizeLimit else {
            throw .config("VM process setup: record of \(st.st_size) bytes")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + off, $0.count - off, off_t(off)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .config("VM process setup: short read at \(off) of \(bytes.count) bytes") }
            off += n
        }
        return try decode(bytes)
    }
}
