import Foundation
import Machine
@testable import Monitor
import Testing

/// Builds the freestanding test guests once per test process and boots them through the same
/// path as `synthvm run` (MachineConfig.load -> VirtualMachine -> run), capturing COM1.
enum GuestHarness {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Where Tests/Guests/build.sh puts the guests.
    static let guestDirectory: URL = packageRoot.appendingPathComponent(".build/guests")

    struct BuildFailure: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs build.sh once; every test that needs a guest waits for it.
    static let built: Result<URL, BuildFailure> = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [packageRoot.appendingPathComponent("Tests/Guests/build.sh").path, guestDirectory.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return .failure(BuildFailure(description: "cannot run build.sh: \(error)")) }
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        if p.terminationStatus != 0 {
            return .failure(BuildFailure(description: "Tests/Guests/build.sh failed:\n\(out)"))
        }
        return .success(guestDirectory)
    }()

    static func guestPath(_ name: String) throws -> String {
        try built.get().appendingPathComponent("\(name).elf").path
    }

    struct KVMMissing: Error, CustomStringConvertible {
        var description: String {
            "guest tests need a usable /dev/kvm (read/write); this machine has none — they fail rather than skip"
        }
    }

    /// Fails the calling test loudly when KVM is unusable.
    static func requireKVM() throws {
        guard access("/dev/kvm", R_OK | W_OK) == 0 else { throw KVMMissing() }
    }

    struct Run {
        var serial: String
        var outcome: RunOutcome
        var cpuidTables: [[CPUIDEntry]]
        var status: Int32 { outcome.exitStatus }
        var lines: [String] { serial.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
    }

    /// Boots `kernelPath` (nil: the built-in guest) and runs it to the end.
    static func boot(kernelPath: String?, cpus: Int = 1, memory: String = "64M", cmdline: String = "",
                     modules: [String] = [], hyperv: String = "default",
                     extraDevices: [(any PortIODevice, ClosedRange<UInt16>)] = [],
                     configure: (inout MachineConfig) -> Void = { _ in }) throws -> Run {
        try requireKVM()
        var config = try MachineConfig.load(kernelPath: kernelPath, modulePaths: modules, commandLine: cmdline,
                                            cpus: cpus, memory: memory, serial: "none", hyperv: hyperv)
        config.console = .capture
        // A hung guest fails its test instead of hanging the suite.
        config.timeoutSeconds = 120
        configure(&config)
        let vm = try VirtualMachine(config: config, extraDevices: extraDevices)
        let outcome = vm.run()
        return Run(serial: vm.console.captured, outcome: outcome, cpuidTables: vm.cpuidTables)
    }

    static func boot(_ guest: String, cpus: Int = 1, memory: String = "64M", cmdline: String = "",
                     modules: [String] = []) throws -> Run {
        try boot(kernelPath: try guestPath(guest), cpus: cpus, memory: memory, cmdline: cmdline, modules: modules)
    }

    /// Writes bytes to a fresh temporary file and returns its path.
    static func temporaryFile(_ bytes: [UInt8], name: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("synthvm-tests-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// A minimal ELF64 whose code is `code`, loaded at 1 MiB, for crash tests.
    static func rawELF64(code: [UInt8]) -> [UInt8] {
        var elf = BuiltinGuest.elf()
        // Reuse the built-in guest's headers; replace its code (which starts right after them).
        let headers = 64 + 56
        elf.replaceSubrange(headers..<(headers + code.count), with: code)
        return elf
    }
}
