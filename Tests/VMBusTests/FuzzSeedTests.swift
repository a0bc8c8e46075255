import Glibc
import Testing
@testable import VMBus
import FuzzSeeds

/// The VMBus fuzz targets' seeds that carry VMBus structure stay valid: the `vmbus-server` seed
/// with a saved state restores to the server it describes, and the `vmbus-ring` seed with a
/// GPA-direct range list parses. A layout change that leaves them stale fails here (re-run
/// Fuzz/make-seeds.py). The byte layouts are at the top of Fuzz/Sources/fuzz-vmbus-*/main.swift.
@Suite("Fuzz seeds: VMBus")
struct VMBusFuzzSeedTests {
    @Test func everySeedIsThere() {
        #expect(fuzzSeeds("vmbus-server").count == 12)
        #expect(fuzzSeeds("vmbus-ring").count == 6)
        #expect(fuzzSeeds("vmbus-ic").count == 7)
    }

    /// Header (3 bytes), op 16, u16 length, the saved state: a connected 5.0 server with relid 1
    /// open on a 4-page ring and one message waiting.
    @Test func theSavedStateSeedRestores() throws {
        let seed = try #require(fuzzSeeds("vmbus-server")["saved-state"])
        try #require(seed.count > 6 && seed[3] == 16)
        let length = Int(seed[4]) | Int(seed[5]) << 8
        let blob = Array(seed[6..<6 + length])
        let saved = try VMBusServer.Saved(decoding: blob)
        #expect(saved.encoded() == blob)
        // The harness's configuration for header byte 0 = 1 (two VPs).
        let ram: UInt64 = 16 << 20
        let configuration = VMBusServer.Configuration(vpCount: 2, ram: [0..<ram / 2, ram / 2 + 4096..<ram])
        let (server, actions) = try VMBusServer.restore(saved, configuration: configuration)
        #expect(server.checkInvariants().isEmpty)
        guard case .open(let r) = server.channels[1]?.state else { Issue.record("relid 1 not open"); return }
        #expect(r.ringGPADL == 0xE1E10 && r.downstreamPageOffset == 2)
        #expect(server.outbound.count == 1)
        #expect(actions.count == 2)
        if case .openChannel(let o) = actions.last { #expect(o.restored && o.ringPFNs == [16, 17, 18, 19]) }
    }

    /// Data size byte, op 0 (type, flags, header-extension words, payload length), the
    /// extension, the payload: written and read back, the extension is a two-range list.
    @Test func theGPADirectSeedParses() throws {
        let seed = try #require(fuzzSeeds("vmbus-ring")["gpa-direct"])
        try #require(seed.count > 6 && seed[1] == 0 && seed[2] == 9)
        let ext = Array(seed[6..<6 + 8 * (Int(seed[4]) % 8)])
        let payload = Array(seed[6 + ext.count..<6 + ext.count + Int(seed[5])])
        let memory = try VMBusFlatRingMemory(dataCount: 8 * (1 + Int(seed[0]) % 64))
        let producer = try VMBusRingProducer(memory: memory), consumer = try VMBusRingConsumer(memory: memory)
        let written = ext.withUnsafeBytes { e in
            payload.withUnsafeBytes { producer.tryWrite(type: .dataUsingGPADirect, transactionID: 1, headerExtension: e, payload: $0) }
        }
        #expect(written == .written)
        _ = producer.commit()
        guard case .packet(let packet) = consumer.next() else { Issue.record("no packet"); return }
        var list = try VMBusGPADirectRanges(packet: packet)
        #expect(list.rangeCount == 2)
        let first = try #require(try list.next()), second = try #require(try list.next())
        #expect(first.byteCount == 100 && first.byteOffset == 8 && first.pfn(0) == 0x1234)
        #expect(second.byteCount == 5000 && second.byteOffset == 96 && second.pageCount == 2 && second.pfn(1) == 0x2001)
        #expect(try list.next() == nil)
    }
}

