// swift-tools-version:6.0
// SynthVM: a Hyper-V-compatible VMM for Linux/KVM, split into a minimal monitor and
// sandboxed workers. See ../shared/design/ARCHITECTURE.md and docs/.
import PackageDescription

let package = Package(
    name: "SynthVM",
    products: [
        .executable(name: "synthvm", targets: ["synthvm"]),
        .executable(name: "synthvm-bench", targets: ["synthvm-bench"]),
        .executable(name: "synthvm-synic-router", targets: ["synthvm-synic-router"]),
    ],
    dependencies: [
        // Pinned to the versions mirrored on our build machines.
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics", exact: "1.3.0"),
    ],
    targets: [
        // C shims: linux/kvm.h constants and the calls Swift cannot make directly
        // (ioctl with struct arguments, memfd_create, eventfd, signal kicks).
        .target(name: "CSynthVM", path: "Sources/CSynthVM"),
        // Thin, typed, errno-checked Swift over /dev/kvm.
        .target(name: "KVM", dependencies: ["CSynthVM"]),
        // TLFS vocabulary: CPUID, MSRs, hypercall codes and status, layouts. No I/O.
        .target(name: "HyperV"),
        // HV#1 state machines: synthetic MSRs, hypercalls, reference time. Pure.
        .target(name: "Partition", dependencies: ["HyperV"]),
        // Guest memory layout, loaders, CPUID table, legacy devices. Mostly pure.
        .target(name: "Machine", dependencies: ["KVM", "CSynthVM", "CZlib", "CLzma", "CLz4", "CZstd"]),
        // Debian's compression libraries, for the bzImage payload decoders in Machine/Decompression:
        // zlib1g-dev (gzip), liblzma-dev (xz, lzma), liblz4-dev (lz4), libzstd-dev (zstd).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CLzma", path: "Sources/CLzma"),
        .systemLibrary(name: "CLz4", path: "Sources/CLz4"),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd"),
        // Between processes: memfd regions, SPSC record rings, eventfd doorbells, fd passing,
        // versioned wire records. Everything a peer writes is validated; nothing it writes traps.
        .target(name: "IPC", dependencies: ["CSynthVM", .product(name: "Atomics", package: "swift-atomics")]),
        // vCPU threads, the exit loop, shutdown and crash reports.
        .target(name: "Monitor", dependencies: ["Machine", "KVM", "CSynthVM", "Partition", "HyperV", "IPC", "Sandbox"]),
        // libseccomp (libseccomp-dev), for compiling policies into BPF. Only Sandbox uses it.
        .systemLibrary(name: "CSeccomp", path: "Sources/CSeccomp"),
        // Seccomp policies: the Policies/*.policy model, parser, syscall and constant tables (pure),
        // and PolicyCompiler (Policy -> BPF with libseccomp).
        .target(name: "Sandbox", dependencies: ["CSeccomp"]),
        // Worker processes: one thin main.swift each (Workers/<name>), spawned by the supervisor.
        .executableTarget(name: "synthvm-synic-router", dependencies: ["IPC", "CSynthVM", "Sandbox"],
                          path: "Workers/synic-router"),
        .executableTarget(
            name: "synthvm",
            dependencies: ["Monitor", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(
            name: "synthvm-bench",
            dependencies: ["Monitor", "KVM", "Machine", "CSynthVM"]),
        // Test-only helpers shared by MachineTests and GuestTests: payloads compressed by the
        // system's tools, synthetic bzImages around them.
        .target(name: "TestFixtures", dependencies: ["Machine"], path: "Tests/Fixtures"),
        .testTarget(name: "MachineTests", dependencies: ["Machine", "TestFixtures"]),
        .testTarget(name: "PartitionTests", dependencies: ["Partition", "HyperV"]),
        .testTarget(name: "IPCTests", dependencies: ["IPC", "CSynthVM"]),
        .testTarget(name: "SandboxTests", dependencies: ["Sandbox", "IPC"]),
        .testTarget(name: "GuestTests", dependencies: ["Monitor", "Machine", "TestFixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
