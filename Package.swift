// swift-tools-version:6.0
// SynthVM: a Hyper-V-compatible VMM for Linux/KVM, split into a minimal monitor and
// sandboxed workers. See ../shared/design/ARCHITECTURE.md and docs/.
import PackageDescription

// The VM process and the workers are static PIEs (`-static-executable`, linked as `-static-pie`: the
// Swift runtime, glibc, libstdc++, libseccomp, libcap and the decompressors linked in, no dynamic
// loader, and still a random load address per exec). Only the pages they touch are resident,
// instead of a dozen shared libraries' (docs/monitor.md, "Footprint"); there is less mapped code
// for an attacker in a jailed process to reuse, and no library for a jailed worker's host id to
// read at exec. scripts/ld-static-pie is the linker: ld.bfd (gold cannot link a static PIE) without
// SwiftPM's `-rpath=$ORIGIN`, which glibc's static-PIE start-up refuses. The link warns that the
// Swift runtime's optional `dlopen` of a prespecializations library needs glibc's shared libraries
// at run time: in a static binary that lookup finds nothing and the runtime goes on without it.
// The launcher and the tools keep the shared runtime.
let staticSwiftRuntime: [LinkerSetting] = [.unsafeFlags([
    "-static-executable", "-Xclang-linker", "-static-pie",
    "-Xclang-linker", "--ld-path=\(Context.packageDirectory)/scripts/ld-static-pie",
    "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
])]

let package = Package(
    name: "SynthVM",
    products: [
        .executable(name: "synthvm", targets: ["synthvm"]),
        .executable(name: "synthvm-vm", targets: ["synthvm-vm"]),
        .executable(name: "synthvm-bench", targets: ["synthvm-bench"]),
        .executable(name: "synthvm-synic-router", targets: ["synthvm-synic-router"]),
        .executable(name: "synthvm-vmbus", targets: ["synthvm-vmbus"]),
        .executable(name: "synthvm-storage", targets: ["synthvm-storage"]),
        .executable(name: "synthvm-policy-probe", targets: ["synthvm-policy-probe"]),
        .executable(name: "synthvm-spawner", targets: ["synthvm-spawner"]),
        // The pure libraries the fuzz harnesses (Fuzz/, a separate package built by
        // scripts/fuzz.sh with sanitizer coverage) drive: a path dependency sees only products.
        .library(name: "SynthVMFuzzable", targets: ["HyperV", "Partition", "IPC", "SynICRouting", "Machine", "Sandbox", "VMBus", "Storage",
                                                   "ControlAPI"]),
    ],
    dependencies: [
        // Pinned to the versions mirrored on our build machines.
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics", exact: "1.3.0"),
    ],
    targets: [
        // C shims: linux/kvm.h constants and the calls Swift cannot make directly
        // (ioctl with struct arguments, memfd_create, eventfd, signal kicks, the worker jail's
        // clone/pivot_root).
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
        // The SynIC message router's logic (pure: connection table, test device, message queues)
        // and the region it shares with the monitor. Used by the router worker and the monitor.
        .target(name: "SynICRouting", dependencies: ["IPC", "HyperV", "Partition",
                                                     .product(name: "Atomics", package: "swift-atomics")]),
        // The VMBus control protocol (message layouts, the server state machine and its saved
        // state) and the VMBus ring buffer over a small memory protocol. Pure: no I/O. IPC only for
        // the WireWriter/WireReader rules of the saved state, Atomics for the ring's fences.
        .target(name: "VMBus", dependencies: ["HyperV", "IPC", .product(name: "Atomics", package: "swift-atomics")]),
        // Synthetic SCSI storage, the pure layer: the vstor protocol (storvsp) state machine, the
        // SCSI disk (CDB in, decision out), the disk-backend protocol with an in-memory backend,
        // and the GPA-direct buffer check. No I/O, no Foundation, no clocks (docs/storage.md).
        .target(name: "Storage", dependencies: ["VMBus", "IPC"]),
        // The VMBus worker's service: VMBusServer plus its state in the supervisor's
        // WorkerStateRegion, fed ring records as bytes. No fds, no syscalls; tested in-process.
        .target(name: "VMBusWorker", dependencies: ["VMBus", "IPC", "HyperV", "Partition", "SynICRouting"]),
        // The storage worker's service: one SCSI controller on the channel the VMBus worker hands
        // over, disk I/O on monitor-opened fds straight into guest pages; tested in-process.
        .target(name: "StorageWorker", dependencies: ["Storage", "VMBus", "VMBusWorker", "IPC", "CSynthVM",
                                                     .product(name: "Atomics", package: "swift-atomics")]),
        // The control socket's protocol (docs/api.md): bounded JSON parser and encoder, request
        // handling against a backend protocol, Prometheus text. Pure, no Foundation: the VM
        // process serves it, `synthvm ctl` speaks it.
        .target(name: "ControlAPI"),
        // vCPU threads, the exit loop, shutdown and crash reports.
        .target(name: "Monitor", dependencies: ["Machine", "KVM", "CSynthVM", "Partition", "HyperV", "IPC", "Sandbox",
                                                "SynICRouting", "ControlAPI",
                                                .product(name: "Atomics", package: "swift-atomics")]),
        // libseccomp (libseccomp-dev), for compiling policies into BPF. Only Sandbox uses it.
        .systemLibrary(name: "CSeccomp", path: "Sources/CSeccomp"),
        // libcap (libcap-dev), for dropping a jailed worker's capabilities. Only Sandbox uses it.
        .systemLibrary(name: "CCap", path: "Sources/CCap"),
        // Seccomp policies: the Policies/*.policy model, parser, syscall and constant tables (pure),
        // and PolicyCompiler (Policy -> BPF with libseccomp). The worker jail: its configuration,
        // Jail.enter (the worker's side), and the checks the monitor makes (docs/security.md).
        .target(name: "Sandbox", dependencies: ["CSeccomp", "CCap", "CSynthVM"]),
        // Makes one system call under a compiled policy; how it ends says whether the policy
        // allowed it (the per-rule tests in SandboxTests, and operators checking a policy).
        .target(name: "CPolicyProbe", path: "Sources/CPolicyProbe"),
        .executableTarget(name: "synthvm-policy-probe", dependencies: ["Sandbox", "CPolicyProbe"]),
        // What every worker process does the same way around its service: command line, parent
        // death, memory-budget reporter, jail, hello and regions, filter and "attached", test hooks.
        .target(name: "WorkerRuntime", dependencies: ["IPC", "CSynthVM", "Sandbox"]),
        // Worker processes: one thin main.swift each (Workers/<name>), spawned by the supervisor.
        .executableTarget(name: "synthvm-synic-router", dependencies: ["IPC", "CSynthVM", "Sandbox", "SynICRouting",
                                                                      "Partition", "HyperV", "WorkerRuntime"],
                          path: "Workers/synic-router", linkerSettings: staticSwiftRuntime),
        .executableTarget(name: "synthvm-vmbus", dependencies: ["IPC", "CSynthVM", "Sandbox", "VMBus", "VMBusWorker",
                                                               "WorkerRuntime", "HyperV", "SynICRouting", "Partition"],
                          path: "Workers/vmbus", linkerSettings: staticSwiftRuntime),
        .executableTarget(name: "synthvm-storage", dependencies: ["IPC", "CSynthVM", "Sandbox", "Storage", "StorageWorker",
                                                                 "VMBus", "VMBusWorker", "WorkerRuntime", "SynICRouting",
                                                                 "Partition"],
                          path: "Workers/storage", linkerSettings: staticSwiftRuntime),
        // Restarts workers for a VM process whose threads are all filtered (docs/faults.md): a small C
        // program started at VM creation, under Policies/spawner.policy.
        .executableTarget(name: "synthvm-spawner", dependencies: ["CSynthVM"], path: "Sources/synthvm-spawner"),
        // One VM life of `synthvm run`: the launcher execs it afresh for every life (its own
        // address-space layout). Its own small executable: no argument parser, no Foundation.
        .executableTarget(name: "synthvm-vm", dependencies: ["Monitor"], linkerSettings: staticSwiftRuntime),
        .executableTarget(
            name: "synthvm",
            // The VM process and the workers are separate executables; depending on them makes
            // `swift run synthvm` and `swift build --product synthvm` build them next to the launcher.
            dependencies: ["Monitor", "ControlAPI", "synthvm-vm", "synthvm-synic-router", "synthvm-vmbus", "synthvm-storage",
                           "synthvm-spawner", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(
            name: "synthvm-bench",
            // synthvm: `synthvm-bench startup` spawns the real binary, built next to the bench.
            dependencies: ["Monitor", "KVM", "Machine", "CSynthVM", "ControlAPI", "synthvm", "IPC", "VMBus", "Sandbox",
                           .product(name: "Atomics", package: "swift-atomics")]),
        // Test-only helpers shared by MachineTests and GuestTests: payloads compressed by the
        // system's tools, synthetic bzImages around them.
        .target(name: "TestFixtures", dependencies: ["Machine"], path: "Tests/Fixtures"),
        // The fuzz targets' checked-in seeds (Fuzz/Corpus), for the suites' FuzzSeedTests.
        .target(name: "FuzzSeeds", path: "Tests/FuzzSeeds"),
        .testTarget(name: "MachineTests", dependencies: ["Machine", "TestFixtures", "FuzzSeeds"]),
        .testTarget(name: "ControlAPITests", dependencies: ["ControlAPI", "FuzzSeeds"]),
        .testTarget(name: "PartitionTests", dependencies: ["Partition", "HyperV"]),
        .testTarget(name: "IPCTests", dependencies: ["IPC", "CSynthVM", "FuzzSeeds"]),
        .testTarget(name: "SandboxTests", dependencies: ["Sandbox", "IPC", "FuzzSeeds"]),
        .testTarget(name: "SynICRoutingTests", dependencies: ["SynICRouting", "IPC", "HyperV", "Partition"]),
        .testTarget(name: "VMBusTests", dependencies: ["VMBus", "VMBusWorker", "HyperV", "IPC", "SynICRouting", "FuzzSeeds", .product(name: "Atomics", package: "swift-atomics")]),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "StorageWorker", "VMBus", "VMBusWorker", "SynICRouting",
                                                       "Partition", "IPC", "FuzzSeeds"]),
        .testTarget(name: "GuestTests", dependencies: ["Monitor", "Machine", "Sandbox", "TestFixtures", "VMBus", "IPC",
                                                      "ControlAPI", "SynICRouting"]),
    ],
    swiftLanguageModes: [.v6]
)
