import Foundation
import Machine
@testable import Monitor
import Testing

@Suite("Guests boot and report through COM1 and the exit device")
struct BootGuestTests {
    @Test("the built-in guest prints its greeting and the command line, then halts with status 0")
    func builtinGuest() throws {
        let run = try GuestHarness.boot(kernelPath: nil, cmdline: "console=ttyS0 marker=42")
        #expect(run.serial == BuiltinGuest.greeting + "console=ttyS0 marker=42\n")
        #expect(run.outcome.reason == .halted)
        #expect(run.status == 0)
    }

    @Test("hello prints its greeting, command line, memory, vCPU count and the e820 map")
    func hello() throws {
        let run = try GuestHarness.boot("hello", cpus: 2, memory: "64M", cmdline: "alpha=1 beta")
        let lines = run.lines
        #expect(lines.first == "hello: start")
        #expect(lines.contains("Hello from SynthVM guest"))
        #expect(lines.contains("cmdline: alpha=1 beta"))
        #expect(lines.contains("memory: \(64 << 20)"))
        #expect(lines.contains("cpus: 2"))
        #expect(lines.contains("e820 0x0000000000000000 0x000000000009fc00 1"))
        #expect(lines.contains("e820 0x000000000009fc00 0x0000000000060400 2"))
        #expect(lines.contains("e820 0x0000000000100000 0x0000000003f00000 1"))
        #expect(lines.contains("unknown port: 0xffffffff"))
        #expect(lines.contains("unknown mmio: 0xffffffff"))
        #expect(lines.contains("hello: ok"))
        #expect(run.status == 0)
        #expect(run.outcome.totals.unknownPortReads == 1)
        #expect(run.outcome.totals.unknownMMIOReads == 1)
    }

    @Test("RAM above 3 GiB continues at 4 GiB and the guest sees it in its e820 map")
    func memoryHole() throws {
        let run = try GuestHarness.boot("hello", memory: "4G")
        #expect(run.lines.contains("e820 0x0000000000100000 0x00000000bff00000 1"))
        #expect(run.lines.contains("e820 0x0000000100000000 0x0000000040000000 1"))
        #expect(run.lines.contains("hello: ok"))
        #expect(run.status == 0)
    }

    @Test("a multiboot kernel gets the magic, memory sizes, command line, modules and memory map")
    func multiboot() throws {
        let first = try GuestHarness.temporaryFile(Array("first-module".utf8), name: "mod-a")
        let second = try GuestHarness.temporaryFile([0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4, 5], name: "mod-b")
        let run = try GuestHarness.boot("mbhello", memory: "128M", cmdline: "root=none quiet", modules: [first, second])
        let lines = run.lines
        #expect(lines.contains("Hello from multiboot guest"))
        #expect(lines.contains("mem_lower=639 mem_upper=\((128 << 10) - 1024)"))
        #expect(lines.contains("cmdline: root=none quiet"))
        #expect(lines.contains("modules: 2"))
        // Modules are page-aligned, in order, and carry their file name.
        let mods = lines.filter { $0.hasPrefix("module ") }
        try #require(mods.count == 2)
        #expect(mods[0].hasSuffix("\(first) first=66697273742d6d6f"))
        #expect(mods[1].hasSuffix("\(second) first=deadbeef01020304"))
        let startA = UInt64(mods[0].split(separator: " ")[2].dropFirst(2), radix: 16) ?? 1
        let startB = UInt64(mods[1].split(separator: " ")[2].dropFirst(2), radix: 16) ?? 1
        #expect(startA % 4096 == 0 && startB % 4096 == 0 && startB > startA)
        #expect(lines.contains("mmap 0x0000000000100000 0x0000000007f00000 1"))
        #expect(lines.contains("mbhello: ok"))
        #expect(run.status == 0)
    }
}
