// swift-tools-version:6.0
// libFuzzer harnesses for SynthVM's guest-facing parsers and state machines (docs/security.md,
// "Fuzzing"). A separate package so that `swift build` / `swift test` of SynthVM never build it:
// scripts/fuzz.sh builds it with `--sanitize fuzzer --sanitize address` into .build-fuzz, which
// instruments the SynthVM libraries it depends on as well as the harnesses.
import PackageDescription

let targets = ["hypercall", "msr", "synic-router", "testdev", "wire", "ring", "elf", "multiboot", "bzimage", "decompress", "policy", "vmbus-server", "vmbus-ring", "vmbus-ic", "storage", "api-json"]

let package = Package(
    name: "SynthVMFuzz",
    dependencies: [.package(name: "SynthVM", path: "..")],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "SynthVMFuzzable", package: "SynthVM")]),
    ] + targets.map { name in
        .executableTarget(name: "fuzz-\(name)", dependencies: ["FuzzSupport", .product(name: "SynthVMFuzzable", package: "SynthVM")])
    },
    swiftLanguageModes: [.v6]
)
