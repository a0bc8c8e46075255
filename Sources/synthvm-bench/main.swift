import Glibc
import Monitor

// synthvm-bench: performance figures, printed as ratios against a floor measured in the same
// run. Never asserted by tests: absolute times on our hosts are noisy.
//
// usage: synthvm-bench exits [--guest PATH] [--pio N] [--msr N] [--rounds N]
//        synthvm-bench hyperv [--guest PATH] [--calls N] [--reads N] [--rounds N]
//        synthvm-bench synic [--guest PATH] [--calls N] [--rounds N]
// The bench guest is Tests/Guests/bench.c; by default it is built with Tests/Guests/build.sh.

func usage() -> Never {
    print("usage: synthvm-bench exits [--guest bench.elf] [--pio N] [--msr N] [--rounds N]")
    print("       synthvm-bench hyperv [--guest hvbench.elf] [--calls N] [--reads N] [--rounds N]")
    print("       synthvm-bench synic [--guest synicbench.elf] [--calls N] [--rounds N]")
    exit(64)
}

let packageRoot: String = {
    var path = #filePath
    for _ in 0..<3 { path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
    return path
}()

var args = Array(CommandLine.arguments.dropFirst())
guard let mode = args.first, ["exits", "hyperv", "synic"].contains(mode) else { usage() }
args.removeFirst()
var guest: String?
var pio = 20000, msr = 20000, rounds = 5
while !args.isEmpty {
    let flag = args.removeFirst()
    guard let value = args.first else { usage() }
    args.removeFirst()
    switch flag {
    case "--guest": guest = value
    case "--pio": pio = Int(value) ?? 0
    case "--msr": msr = Int(value) ?? 0
    case "--rounds": rounds = Int(value) ?? 0
    case "--calls": pio = Int(value) ?? 0
    case "--reads": msr = Int(value) ?? 0
    default: usage()
    }
}
guard pio > 0, msr > 0, rounds > 0 else { usage() }

if guest == nil {
    let out = packageRoot + "/.build/guests"
    if system("bash '\(packageRoot)/Tests/Guests/build.sh' '\(out)' >/dev/null") != 0 {
        print("synthvm-bench: building the bench guest failed (Tests/Guests/build.sh)")
        exit(70)
    }
    guest = out + ["exits": "/bench.elf", "hyperv": "/hvbench.elf", "synic": "/synicbench.elf"][mode]!
}

do {
    if mode == "exits" {
        try ExitBenchmark(benchGuest: guest!, pio: pio, msr: msr, rounds: rounds).runAndPrint()
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
