import Machine

/// The loaders' common path after each harness's own parser: recognise (and for a bzImage,
/// unpack) the file as `synthvm run --kernel` does, then load it with a module and a command line
/// into real guest RAM (a memfd, 16 MiB, made once). Errors are the expected answer to most
/// inputs; only a trap or a sanitizer report is a finding.
public enum KernelFile {
    static let memory: GuestMemory = {
        let layout = try! GuestMemoryLayout(ramSize: 16 << 20)
        return try! GuestMemory(layout: layout, name: "synthvm-fuzz-ram")
    }()

    /// Payloads may decompress to at most this: large enough for the seeds, small enough that a
    /// declared size cannot make each run allocate much.
    public static let decompressedSizeLimit = 4 << 20

    public static func openAndLoad(_ bytes: [UInt8]) {
        guard let image = try? KernelImage.open(bytes, decompressedSizeLimit: decompressedSizeLimit) else { return }
        _ = image.summary
        let modules = [BootModule(name: "initrd", bytes: [1, 2, 3, 4])]
        _ = try? KernelLoader.load(kernel: image, modules: modules, commandLine: "console=ttyS0", cpuCount: 2, into: memory)
    }
}
