import Testing

@testable import IPC

@Suite struct WireRecordTests {
    let hello = WorkerHello(kind: .synicRouter, pid: 0x0102_0304)
    let layout = RegionLayout(entries: [
        .init(regionID: 1, size: 0x1_0000_0000, offset: 0),
        .init(regionID: 7, size: 4096, offset: 0x2000),
    ])

    @Test func workerHelloLayoutIsExplicit() throws {
        let bytes = hello.encoded()
        #expect(bytes == [
            0x01, 0x00, 0x01, 0x00, 0x0C, 0x00, 0x00, 0x00,  // type 1, version 1, length 12
            0x01, 0x00, 0x00, 0x00,  // protocol version 1
            0x01, 0x00, 0x00, 0x00,  // kind synicRouter, reserved
            0x04, 0x03, 0x02, 0x01,  // pid
        ])
        #expect(try WorkerHello.decode(bytes) == hello)
        #expect(try WireMessage.decode(bytes) == .workerHello(hello))
    }

    @Test func regionLayoutLayoutIsExplicit() throws {
        let bytes = layout.encoded()
        #expect(bytes.count == 8 + 8 + 2 * 24)
        #expect(Array(bytes[0..<16]) == [0x02, 0x00, 0x01, 0x00, 56, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[16..<40]) == [
            1, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 1, 0, 0, 0,  // size 2^32
            0, 0, 0, 0, 0, 0, 0, 0,
        ])
        #expect(Array(bytes[40..<64]) == [
            7, 0, 0, 0, 0, 0, 0, 0,
            0, 0x10, 0, 0, 0, 0, 0, 0,
            0, 0x20, 0, 0, 0, 0, 0, 0,
        ])
        #expect(try RegionLayout.decode(bytes) == layout)
        #expect(try WireMessage.decode(bytes) == .regionLayout(layout))
        let empty = RegionLayout(entries: [])
        #expect(try RegionLayout.decode(empty.encoded()) == empty)
        let full = RegionLayout(entries: (0..<64).map { .init(regionID: UInt32($0), size: 1) })
        #expect(try RegionLayout.decode(full.encoded()) == full)
        #expect(WireMessage.regionLayout(layout).encoded() == bytes)
    }

    @Test func roundTripsEveryWorkerKind() throws {
        for kind in WorkerKind.allCases {
            let h = WorkerHello(protocolVersion: 9, kind: kind, pid: Int32.max)
            #expect(try WorkerHello.decode(h.encoded()) == h)
        }
    }

    @Test func truncatedHeaders() {
        let bytes = hello.encoded()
        for n in 0..<8 {
            #expect(throws: WireError.truncatedHeader(available: n)) { try WireMessage.decode(Array(bytes.prefix(n))) }
            #expect(throws: WireError.truncatedHeader(available: n)) { try WorkerHello.decode(Array(bytes.prefix(n))) }
        }
    }

    @Test func unknownTypes() {
        for t: UInt16 in [0, 12, 0xFFFF] {
            var b = hello.encoded()
            b[0] = UInt8(t & 0xFF)
            b[1] = UInt8(t >> 8)
            #expect(throws: WireError.unknownType(t)) { try WireMessage.decode(b) }
            #expect(throws: WireError.unknownType(t)) { try WorkerHello.decode(b) }
        }
    }

    @Test func seccompProgramLayoutIsExplicit() throws {
        let insns: [UInt8] = (0..<16).map { UInt8($0) }
        let p = SeccompProgram(instructions: insns)
        #expect(p.encoded() == [3, 0, 1, 0, 24, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0] + insns)
        #expect(try SeccompProgram.decode(p.encoded()) == p)
        #expect(try WireMessage.decode(p.encoded()) == .seccompProgram(p))
        let big = SeccompProgram(instructions: [UInt8](repeating: 0x06, count: 4096 * 8))
        #expect(big.encoded().count == SeccompProgram.maxEncodedSize)
        #expect(try SeccompProgram.decode(big.encoded()) == big)
    }

    @Test func seccompProgramMalformed() {
        func record(count: UInt32, reserved: UInt32 = 0, bytes: Int) -> [UInt8] {
            var w = WireWriter()
            WireHeader(type: 3, version: 1, length: UInt32(8 + bytes)).encode(into: &w)
            w.u32(count)
            w.u32(reserved)
            w.raw([UInt8](repeating: 0, count: bytes))
            return w.bytes
        }
        #expect(throws: WireError.invalidField(type: 3, field: "instruction count", value: 0)) {
            try SeccompProgram.decode(record(count: 0, bytes: 0))
        }
        #expect(throws: WireError.invalidField(type: 3, field: "instruction count", value: 4097)) {
            try SeccompProgram.decode(record(count: 4097, bytes: 4097 * 8))
        }
        #expect(throws: WireError.reservedNotZero(type: 3, offset: 4)) {
            try SeccompProgram.decode(record(count: 1, reserved: 1, bytes: 8))
        }
        #expect(throws: WireError.bodyTooShort(type: 3, needed: 24, available: 23)) {
            try SeccompProgram.decode(record(count: 2, bytes: 15))
        }
        #expect(throws: WireError.trailingBytes(type: 3, count: 1)) {
            try SeccompProgram.decode(record(count: 2, bytes: 17))
        }
        #expect(throws: WireError.self) { try SeccompProgram.decode(record(count: UInt32.max, bytes: 8)) }
    }

    @Test func wrongTypeForTheDecoder() {
        #expect(throws: WireError.unexpectedType(found: 2, expected: 1)) { try WorkerHello.decode(layout.encoded()) }
        #expect(throws: WireError.unexpectedType(found: 1, expected: 2)) { try RegionLayout.decode(hello.encoded()) }
    }

    @Test func wrongVersions() {
        for v: UInt16 in [0, 2, 0xFFFF] {
            var b = hello.encoded()
            b[2] = UInt8(v & 0xFF)
            b[3] = UInt8(v >> 8)
            #expect(throws: WireError.unsupportedVersion(type: 1, version: v)) { try WireMessage.decode(b) }
            var l = layout.encoded()
            l[2] = UInt8(v & 0xFF)
            l[3] = UInt8(v >> 8)
            #expect(throws: WireError.unsupportedVersion(type: 2, version: v)) { try RegionLayout.decode(l) }
        }
    }

    @Test func lengthsBeyondOrShortOfTheRecord() {
        let b = hello.encoded()
        // Declared longer than what is there.
        for declared: UInt32 in [13, 100, .max] {
            var x = b
            withUnsafeBytes(of: declared.littleEndian) { for i in 0..<4 { x[4 + i] = $0[i] } }
            #expect(throws: WireError.lengthMismatch(declared: declared, available: 12)) { try WireMessage.decode(x) }
        }
        // Bytes cut off the end.
        #expect(throws: WireError.lengthMismatch(declared: 12, available: 11)) { try WireMessage.decode(Array(b.dropLast())) }
        // Bytes beyond the declared length.
        #expect(throws: WireError.lengthMismatch(declared: 12, available: 13)) { try WireMessage.decode(b + [0]) }
    }

    /// A header whose length matches the bytes, but a body too short for the record.
    @Test func bodyTooShortForItsFields() {
        for n in 0..<12 {
            var b = WireWriter()
            WireHeader(type: 1, version: 1, length: UInt32(n)).encode(into: &b)
            let bytes = b.bytes + Array(hello.encoded()[8..<(8 + n)])
            #expect(throws: WireError.self) { try WireMessage.decode(bytes) }
            do {
                _ = try WireMessage.decode(bytes)
            } catch {
                if case .bodyTooShort(1, _, n) = error {} else { Issue.record("length \(n): \(error)") }
            }
        }
        // A longer body with matching length: trailing bytes.
        var w = WireWriter()
        WireHeader(type: 1, version: 1, length: 14).encode(into: &w)
        #expect(throws: WireError.trailingBytes(type: 1, count: 2)) {
            try WireMessage.decode(w.bytes + Array(hello.encoded()[8...]) + [0, 0])
        }
    }

    @Test func helloFieldValues() {
        var b = hello.encoded()
        b[12] = 9  // kind 9
        #expect(throws: WireError.invalidField(type: 1, field: "worker kind", value: 9)) { try WorkerHello.decode(b) }
        b = hello.encoded()
        b[12] = 0
        #expect(throws: WireError.invalidField(type: 1, field: "worker kind", value: 0)) { try WorkerHello.decode(b) }
        b = hello.encoded()
        b[15] = 1  // reserved
        #expect(throws: WireError.reservedNotZero(type: 1, offset: 6)) { try WorkerHello.decode(b) }
        for pid: Int32 in [0, -1, .min] {
            #expect(throws: WireError.invalidField(type: 1, field: "pid", value: UInt64(UInt32(bitPattern: pid)))) {
                try WorkerHello.decode(WorkerHello(kind: .vmbus, pid: pid).encoded())
            }
        }
    }

    /// Re-encodes a layout body with a header whose length fits, so the body checks run.
    func layoutRecord(count: UInt32, reserved: UInt32 = 0, entries: [(UInt32, UInt32, UInt64, UInt64)]) -> [UInt8] {
        var body = WireWriter()
        body.u32(count)
        body.u32(reserved)
        for e in entries {
            body.u32(e.0)
            body.u32(e.1)
            body.u64(e.2)
            body.u64(e.3)
        }
        var w = WireWriter()
        WireHeader(type: 2, version: 1, length: UInt32(body.bytes.count)).encode(into: &w)
        return w.bytes + body.bytes
    }

    @Test func regionLayoutMalformed() {
        let t: UInt16 = 2
        let ok: (UInt32, UInt32, UInt64, UInt64) = (1, 0, 4096, 0)
        #expect(throws: Never.self) { try RegionLayout.decode(layoutRecord(count: 1, entries: [ok])) }
        // Count disagrees with the entries present, both ways.
        #expect(throws: WireError.bodyTooShort(type: t, needed: 12, available: 8)) {
            try RegionLayout.decode(layoutRecord(count: 1, entries: []))
        }
        #expect(throws: WireError.bodyTooShort(type: t, needed: 60, available: 56)) {
            try RegionLayout.decode(layoutRecord(count: 3, entries: [ok, (2, 0, 1, 0)]))
        }
        #expect(throws: WireError.trailingBytes(type: t, count: 24)) {
            try RegionLayout.decode(layoutRecord(count: 1, entries: [ok, (2, 0, 1, 0)]))
        }
        // Huge counts are refused before they size anything.
        for c: UInt32 in [65, 1000, .max] {
            #expect(throws: WireError.tooManyEntries(type: t, count: c, limit: 64)) {
                try RegionLayout.decode(layoutRecord(count: c, entries: [ok]))
            }
        }
        #expect(throws: WireError.reservedNotZero(type: t, offset: 4)) {
            try RegionLayout.decode(layoutRecord(count: 1, reserved: 1, entries: [ok]))
        }
        #expect(throws: WireError.reservedNotZero(type: t, offset: 12)) {
            try RegionLayout.decode(layoutRecord(count: 1, entries: [(1, 5, 4096, 0)]))
        }
        #expect(throws: WireError.invalidField(type: t, field: "region size", value: 0)) {
            try RegionLayout.decode(layoutRecord(count: 1, entries: [(1, 0, 0, 0)]))
        }
        #expect(throws: WireError.invalidField(type: t, field: "region offset", value: 100)) {
            try RegionLayout.decode(layoutRecord(count: 1, entries: [(1, 0, 4096, 100)]))
        }
        #expect(throws: WireError.invalidField(type: t, field: "region offset + size", value: 0xFFFF_FFFF_FFFF_F000)) {
            try RegionLayout.decode(layoutRecord(count: 1, entries: [(1, 0, 0x2000, 0xFFFF_FFFF_FFFF_F000)]))
        }
        #expect(throws: WireError.invalidField(type: t, field: "duplicate region id", value: 1)) {
            try RegionLayout.decode(layoutRecord(count: 2, entries: [ok, (1, 0, 1, 0)]))
        }
    }

    /// Mutations of valid records and plain noise: decoding either succeeds or throws a
    /// WireError, never traps; a success re-encodes to the same bytes.
    @Test func randomBytesNeverTrap() {
        var rng = TestRandom(seed: 0x5EED_0002)
        let seeds = [hello.encoded(), layout.encoded(), RegionLayout(entries: []).encoded()]
        var decoded = 0
        for i in 0..<20_000 {
            var b: [UInt8]
            if i % 4 == 0 {
                b = (0..<rng.below(80)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                b = seeds[rng.below(seeds.count)]
                for _ in 0..<(1 + rng.below(3)) {
                    switch rng.below(3) {
                    case 0 where !b.isEmpty: b[rng.below(b.count)] = UInt8(truncatingIfNeeded: rng.next())
                    case 1 where !b.isEmpty: b.removeLast(rng.below(b.count))
                    default: b.append(UInt8(truncatingIfNeeded: rng.next()))
                    }
                }
            }
            if let m = try? WireMessage.decode(b) {
                decoded += 1
                #expect(m.encoded() == b)
            }
        }
        #expect(decoded > 0)
    }
}
