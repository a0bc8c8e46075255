/// A kernel file recognised, and for a bzImage unpacked, once: what ``KernelLoader`` boots.
///
/// How the format is decided (docs/boot-protocol.md, "Kernel formats"):
///
/// 1. A Linux bzImage (boot flag 0xAA55 at 0x1FE and "HdrS" at 0x202): its setup header is
///    validated, the payload decompressed on the host, and the resulting vmlinux ELF is booted
///    through its PVH entry if it has one, otherwise through the 64-bit boot protocol.
/// 2. An ELF with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY in a "Xen" note): PVH, whatever
///    else the file is. The note is the kernel's statement that it can be started that way.
/// 3. An ELF64 with a "Linux" note (LINUX_ELFNOTE_BUILD_SALT and friends, in every vmlinux
///    since 4.19) but no PVH note: the Linux 64-bit boot protocol at its ELF entry.
/// 4. Any other ELF64: SynthVM direct boot. Any other ELF32, or a multiboot a.out kludge:
///    multiboot v1. (Both unchanged from before Linux support.)
public struct KernelImage: Sendable {
    /// The boot protocol.
    public var format: BootPlan.Format
    /// What gets loaded: the ELF (for a bzImage, the decompressed vmlinux) or the multiboot file.
    public var bytes: [UInt8]
    /// For ``BootPlan/Format/pvh``: the 32-bit physical entry point from the note.
    public var pvhEntry: UInt64?
    /// For a bzImage: its header and payload compression.
    public var bzImage: LinuxBzImage?

    public init(format: BootPlan.Format, bytes: [UInt8], pvhEntry: UInt64? = nil, bzImage: LinuxBzImage? = nil) {
        self.format = format
        self.bytes = bytes
        self.pvhEntry = pvhEntry
        self.bzImage = bzImage
    }

    /// One line for the operator, e.g. "bzImage (boot protocol 2.15, lz4 payload) -> Linux PVH".
    public var summary: String {
        guard let b = bzImage else { return format.rawValue }
        return "bzImage (boot protocol \(b.header.protocolString), \(b.compression.map { "\($0)" } ?? "uncompressed") payload) -> \(format.rawValue)"
    }

    /// Recognises `file` and unpacks it. A bzImage payload may decompress to at most
    /// `decompressedSizeLimit` bytes (the caller passes guest RAM; 1 GiB is the hard cap).
    public static func open(_ file: [UInt8], decompressedSizeLimit: Int) throws(BootError) -> KernelImage {
        if let bz = try LinuxBzImage.parseIfBzImage(file) {
            let vmlinux = try bz.decompressPayload(of: file, limit: decompressedSizeLimit)
            let image: ElfImage
            do { image = try ElfImage.parse(vmlinux) } catch { throw .bzImagePayloadNotELF(error) }
            let notes = try KernelNotes.read(image, vmlinux)
            if let entry = notes.pvhEntry { return KernelImage(format: .pvh, bytes: vmlinux, pvhEntry: entry, bzImage: bz) }
            guard image.elfClass == .elf64 else { throw .bzImageWithoutEntry }
            return KernelImage(format: .linux64, bytes: vmlinux, bzImage: bz)
        }
        if file.starts(with: ElfImage.magic) {
            let image: ElfImage
            do { image = try ElfImage.parse(file) } catch { throw .elf(error) }
            let notes = try KernelNotes.read(image, file)
            if let entry = notes.pvhEntry { return KernelImage(format: .pvh, bytes: file, pvhEntry: entry) }
            if image.elfClass == .elf64 {
                return KernelImage(format: notes.isLinux ? .linux64 : .elf64Direct, bytes: file)
            }
            let header: MultibootHeader?
            do { header = try MultibootHeader.find(in: file) } catch { throw .multiboot(error) }
            guard header != nil else { throw .elf32WithoutMultiboot }
            return KernelImage(format: .multiboot, bytes: file)
        }
        let header: MultibootHeader?
        do { header = try MultibootHeader.find(in: file) } catch { throw .multiboot(error) }
        if let h = header, h.addresses != nil { return KernelImage(format: .multiboot, bytes: file) }
        throw .unknownFormat
    }
}

/// A bzImage's validated setup header, the raw header bytes that go into `boot_params.hdr`, and
/// how its payload is compressed (nil: an uncompressed ELF).
public struct LinuxBzImage: Sendable {
    public var header: LinuxSetupHeader
    /// File bytes `header.setupHeaderRange` (0x1F1 up to the header's end).
    public var setupHeaderBytes: [UInt8]
    public var compression: KernelCompression?

    /// For a header parsed before (`VMProcessSetup` hands one from the launcher to the VM process).
    public init(header: LinuxSetupHeader, setupHeaderBytes: [UInt8], compression: KernelCompression?) {
        self.header = header
        self.setupHeaderBytes = setupHeaderBytes
        self.compression = compression
    }

    /// Nil when `file` is not a bzImage at all; an error when it is one but is unusable.
    static func parseIfBzImage(_ file: [UInt8]) throws(BootError) -> LinuxBzImage? {
        let header: LinuxSetupHeader
        do { header = try LinuxSetupHeader.parse(file) } catch {
            if error == .notBzImage { return nil }
            throw .bzImage(error)
        }
        let payload = file[header.payloadRange]
        let compression = KernelCompression.detect(payload)
        if compression == nil, !payload.starts(with: ElfImage.magic) {
            throw .unknownPayloadCompression(Array(payload.prefix(4)))
        }
        return LinuxBzImage(header: header, setupHeaderBytes: Array(file[header.setupHeaderRange]), compression: compression)
    }

    /// The vmlinux ELF inside `file` (the file this was parsed from).
    func decompressPayload(of file: [UInt8], limit: Int) throws(BootError) -> [UInt8] {
        let payload = file[header.payloadRange]
        guard let compression else { return Array(payload) }
        do { return try KernelDecompressor.decompress(payload, format: compression, limit: limit) } catch {
            throw .decompression(error)
        }
    }
}

/// What the loader reads from an ELF kernel's notes.
struct KernelNotes {
    /// XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h): the 32-bit physical address
    /// of the PVH entry point, as a 4- or 8-byte descriptor (Linux writes `_ASM_PTR`).
    static let xenPhys32Entry: UInt32 = 18
    static let xenName = Array("Xen".utf8)
    static let linuxName = Array("Linux".utf8)

    var pvhEntry: UInt64?
    var isLinux = false

    static func read(_ image: ElfImage, _ bytes: [UInt8]) throws(BootError) -> KernelNotes {
        let notes: [ElfNote]
        do { notes = try image.notes(in: bytes) } catch { throw .elf(error) }
        var out = KernelNotes()
        for note in notes {
            if note.name == linuxName { out.isLinux = true }
            guard note.name == xenName, note.type == xenPhys32Entry else { continue }
            let d = bytes[note.descriptor]
            guard d.count == 4 || d.count == 8 else { throw .badPVHNote("descriptor of \(d.count) bytes, expected 4 or 8") }
            var value: UInt64 = 0
            for (i, b) in d.enumerated() { value |= UInt64(b) << (8 * UInt64(i)) }
            guard value < 1 << 32 else {
                throw .badPVHNote("entry 0x\(String(value, radix: 16)) is not a 32-bit physical address")
            }
            out.pvhEntry = value
        }
        return out
    }
}
