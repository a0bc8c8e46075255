import Glibc
import Monitor

// synthvm-bench: performance figures, printed as ratios against a floor measured in the same
// run. Never asserted by tests: absolute times on our hosts are noisy.
//
// usage: synthvm-bench exits [--guest PATH] [--pio N] [--msr N] [--rounds N]
//        synthvm-bench hyperv [--guest PATH] [--calls N] [--reads N] [--rounds N]
//        synthvm-bench synic [--guest PATH] [--calls N] [--rounds N]
//        synthvm-bench vmbus [--guest PATH] [--calls N] [--batch N] [--batches N] [--rounds N]
//        synthvm-bench startup [--synthvm PATH] [--qemu PATH] [--rounds N]
//        synthvm-bench footprint [--synthvm PATH]
//        synthvm-bench hostile [--synthvm PATH] [--guest PATH] [--seeds N] [--first-seed N] [--ops N]
//        synthvm-bench faults [--synthvm PATH] [--guest soak.elf] [--kills N] [--workers a,b] [--seed N]
//        synthvm-bench storage [--disk PATH] [--disk-mib N] [--scale X] [--no-jail] [--only TEXT] [--repeat N] [--raw-own-buffers] [--raw-into-guest-ram]
//        synthvm-bench storvsc [--synthvm PATH] [--guest storvscbench.elf] [--disk PATH] [--disk-mib N] [--scale X] [--depth N]
// The bench guest is Tests/Guests/bench.c; by default it is built with Tests/Guests/build.sh.

func usage() -> Never {
    print("usage: synthvm-bench exits [--guest bench.elf] [--pio N] [--msr N] [--rounds N]")
    print("       synthvm-bench hyperv [--guest hvbench.elf] [--calls N] [--reads N] [--rounds N]")
    print("       synthvm-bench synic [--guest synicbench.elf] [--calls N] [--rounds N]")
    print("       synthvm-bench vmbus [--guest vmbus.elf] [--calls N] [--batch N] [--batches N] [--rounds N]")
    print("       synthvm-bench startup [--synthvm PATH] [--qemu PATH] [--rounds N]")
    print("       synthvm-bench footprint [--synthvm PATH]")
    print("       synthvm-bench hostile [--synthvm PATH] [--guest hostile.elf] [--seeds N] [--first-seed N] [--ops N]")
    print("       synthvm-bench faults [--synthvm PATH] [--guest soak.elf] [--kills N] [--workers synic-router,vmbus,storage] [--seed N]")
    print("       synthvm-bench storage [--disk PATH] [--disk-mib N] [--scale X] [--no-jail] [--only TEXT] [--repeat N] [--raw-own-buffers] [--raw-into-guest-ram]")
    print("       synthvm-bench storvsc [--synthvm PATH] [--guest storvscbench.elf] [--disk PATH] [--disk-mib N] [--scale X] [--depth N]")
    exit(64)
}

let packageRoot: String = {
    var path = #filePath
    for _ in 0..<3 { path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
    return path
}()

var args = Array(CommandLine.arguments.dropFirst())
if args.first == "storage" {
    // The real storage worker against raw pread/pwrite (StorageBenchmark.swift); no guest, no KVM.
    var disk = packageRoot + "/.build/bench-disk.img", mib = 256, scale = 1.0, jail = true, only: String?, repeats = 1
    var rawOwnBuffers = false, rawIntoGuestRAM = false
    args.removeFirst()
    while let flag = args.first {
        args.removeFirst()
        if flag == "--no-jail" { jail = false; continue }
        if flag == "--raw-own-buffers" { rawOwnBuffers = true; continue }
        if flag == "--raw-into-guest-ram" { rawIntoGuestRAM = true; continue }
        guard let value = args.first else { usage() }
        args.removeFirst()
        switch flag {
        case "--disk": disk = value
        case "--disk-mib": mib = Int(value) ?? 0
        case "--scale": scale = Double(value) ?? 0
        case "--only": only = value
        case "--repeat": repeats = Int(value) ?? 0
        default: usage()
        }
    }
    guard mib >= 8, mib <= 1 << 20, scale > 0, repeats >= 1 else { usage() }
    mkdir(packageRoot + "/.build", 0o755)
    do { try StorageBenchmark(diskPath: disk, diskBytes: mib << 20, scale: scale, jail: jail, only: only,
                                 repeats: repeats, rawOwnBuffers: rawOwnBuffers, rawIntoGuestRAM: rawIntoGuestRAM).runAndPrint() } catch {
        print("synthvm-bench: \(error)")
        exit(70)
    }
    exit(0)
}
guard let mode = args.first, ["exits", "hyperv", "synic", "vmbus", "startup", "footprint", "hostile", "faults", "storvsc"].contains(mode) else { usage() }
args.removeFirst()
var guest: String?
var synthvmPath: String?, qemuPath: String?
var pio = 20000, msr = 20000, rounds = 5, roundsGiven = false
var seeds = 20, firstSeed = 1, hostileOps = 5000
var batch = 32, batches = 200
var kills = 100, faultWorkers = ["synic-router", "vmbus", "storage"]
var faultSeed = UInt64(UInt32.random(in: 1...UInt32.max))
var storvscDisk = packageRoot + "/.build/storvsc-bench.img", storvscMiB = 128, storvscScale = 1.0, storvscDepth = 16
while !args.isEmpty {
    let flag = args.removeFirst()
    guard let value = args.first else { usage() }
    args.removeFirst()
    switch flag {
    case "--guest": guest = value
    case "--synthvm" where ["startup", "footprint", "hostile", "faults", "storvsc"].contains(mode): synthvmPath = value
    case "--disk" where mode == "storvsc": storvscDisk = value
    case "--disk-mib" where mode == "storvsc": storvscMiB = Int(value) ?? 0
    case "--scale" where mode == "storvsc": storvscScale = Double(value) ?? 0
    case "--depth" where mode == "storvsc": storvscDepth = Int(value) ?? 0
    case "--kills" where mode == "faults": kills = Int(value) ?? 0
    case "--workers" where mode == "faults": faultWorkers = value.split(separator: ",").map(String.init)
    case "--seed" where mode == "faults": faultSeed = UInt64(value) ?? 0
    case "--seeds" where mode == "hostile": seeds = Int(value) ?? 0
    case "--first-seed" where mode == "hostile": firstSeed = Int(value) ?? -1
    case "--ops" where mode == "hostile": hostileOps = Int(value) ?? 0
    case "--qemu" where mode == "startup": qemuPath = value
    case "--pio": pio = Int(value) ?? 0
    case "--msr": msr = Int(value) ?? 0
    case "--rounds": rounds = Int(value) ?? 0; roundsGiven = true
    case "--calls": pio = Int(value) ?? 0
    case "--batch" where mode == "vmbus": batch = Int(value) ?? 0
    case "--batches" where mode == "vmbus": batches = Int(value) ?? 0
    case "--reads": msr = Int(value) ?? 0
    default: usage()
    }
}
guard pio > 0, msr > 0, rounds > 0, seeds > 0, firstSeed >= 0, hostileOps > 0, (1...100).contains(batch), batches > 0,
      (4...4096).contains(storvscMiB), storvscScale > 0, (2...32).contains(storvscDepth)
else { usage() }

/// The synthvm binary built next to this one (synthvm-bench depends on the synthvm product, so
/// `swift run -c release synthvm-bench` builds both in release), or --synthvm.
@MainActor func synthvmBinary() -> String {
    let binDir = CommandLine.arguments[0].lastIndex(of: "/").map { String(CommandLine.arguments[0][..<$0]) } ?? "."
    let synthvm = synthvmPath ?? binDir + "/synthvm"
    guard access(synthvm, X_OK) == 0 else {
        print("synthvm-bench: no synthvm binary at \(synthvm) (build it: swift build -c release --product synthvm)")
        exit(70)
    }
    return synthvm
}

if mode == "startup" || mode == "footprint" {
    let synthvm = synthvmBinary()
    let qemu = qemuPath ?? ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"]
        .first { access($0, X_OK) == 0 }
    let work = packageRoot + "/.build/guests"
    mkdir(packageRoot + "/.build", 0o755)
    mkdir(work, 0o755)
    do {
        if mode == "footprint" {
            try FootprintBenchmark(synthvm: synthvm, workDir: work).runAndPrint()
        } else {
            try StartupBenchmark(synthvm: synthvm, qemu: qemu, rounds: roundsGiven ? rounds : 11, workDir: work).runAndPrint()
        }
    } catch {
        print("synthvm-bench: \(error)")
        exit(70)
    }
    exit(0)
}

if guest == nil {
    let out = packageRoot + "/.build/guests"
    if system("bash '\(packageRoot)/Tests/Guests/build.sh' '\(out)' >/dev/null") != 0 {
        print("synthvm-bench: building the bench guest failed (Tests/Guests/build.sh)")
        exit(70)
    }
    guest = out + ["exits": "/bench.elf", "hyperv": "/hvbench.elf", "synic": "/synicbench.elf", "vmbus": "/vmbus.elf",
                  "hostile": "/hostile.elf", "faults": "/soak.elf", "storvsc": "/storvscbench.elf"][mode]!
}

if mode == "faults" {
    guard kills > 0, !faultWorkers.isEmpty, faultSeed > 0 else { usage() }
    mkdir(packageRoot + "/.build", 0o755)
    mkdir(packageRoot + "/.build/guests", 0o755)
    let soak = FaultSoak(synthvm: synthvmBinary(), guest: guest!, kills: kills, workers: faultWorkers,
                         workDir: packageRoot + "/.build/guests", seed: faultSeed)
    do { exit(try soak.runAndPrint()) } catch {
        print("synthvm-bench: \(error)")
        exit(70)
    }
}

if mode == "storvsc" {
    // The guest-level storvsc figure (StorvscGuestBenchmark.swift); vmbus.elf (the echo floor)
    // sits next to the bench guest.
    mkdir(packageRoot + "/.build", 0o755)
    mkdir(packageRoot + "/.build/guests", 0o755)
    let dir = guest!.lastIndex(of: "/").map { String(guest![..<$0]) } ?? "."
    let bench = StorvscGuestBenchmark(synthvm: synthvmBinary(), guest: guest!, echoGuest: dir + "/vmbus.elf", diskPath: storvscDisk,
                                      diskMiB: storvscMiB, scale: storvscScale, depth: storvscDepth,
                                      workDir: packageRoot + "/.build/guests")
    do { exit(try bench.runAndPrint()) } catch {
        print("synthvm-bench: \(error)")
        exit(70)
    }
}

if mode == "hostile" {
    mkdir(packageRoot + "/.build", 0o755)
    mkdir(packageRoot + "/.build/guests", 0o755)
    let soak = HostileSoak(synthvm: synthvmBinary(), guest: guest!, firstSeed: firstSeed, seeds: seeds, ops: hostileOps,
                           workDir: packageRoot + "/.build/guests")
    do { exit(try soak.runAndPrint() == 0 ? 0 : 1) } catch {
        print("synthvm-bench: \(error)")
        exit(70)
    }
}

do {
    if mode == "exits" {
        try ExitBenchmark(benchGuest: guest!, pio: pio, msr: msr, rounds: rounds).runAndPrint()
    } else if mode == "vmbus" {
        try VMBusBenchmark(guest: guest!, n: pio == 20000 ? 2000 : pio, batch: batch, batches: batches, rounds: rounds)
            .runAndPrint()
    } else if mode == "synic" {
        let calls = pio == 20000 ? 2000 : pio
        // bench.elf (the bare-exit context figure) sits next to the SynIC guest.
        let dir = guest!.lastIndex(of: "/").map { String(guest![..<$0]) } ?? "."
        try SynICBenchmark(guest: guest!, exitGuest: dir + "/bench.elf", n: calls, rounds: rounds).runAndPrint()
    } else {
        try HyperVBenchmark(guest: guest!, calls: pio, reads: msr, rounds: rounds).runAndPrint()
    }
} catch {
    print("synthvm-bench: \(error)")
    exit(70)
}
