import FuzzSeeds
import IPC
import Testing
@testable import Storage

@Suite("vstor layouts")
struct VStorLayoutTests {
    @Test func sizesAndOffsetsMatchStorvsc() {
        #expect(VStorPacket.headerSize == 12)
        #expect(VStorPacket.maxSize == 64)
        #expect(VMSCSIRequest.sizeWin8 == 0x34 && VMSCSIRequest.sizePreWin8 == 0x24)
        #expect(VMSCSIRequest.sizeWin8 - VMSCSIRequest.sizePreWin8 == 16)     // sizeof(vmscsi_win8_extension)
        #expect(VMSCSIRequest.cdbOffset + VMSCSIRequest.senseAreaSize == 48)   // the Win8 extension starts at +48
        #expect(VMSCSIRequest.srbFlagsOffset == 52)
        #expect(VStorChannelProperties.size == 24)
        #expect(VStorPacket.unionOffset + VStorChannelProperties.size <= 64)
        #expect(SCSISense.fixedFormatSize == 18 && SCSISense(key: .illegalRequest, .invalidFieldInCDB).bytes.count == 18)
    }

    @Test func versionsAndTheirSizes() {
        #expect(VStorProtocolVersion.accepted.map(\.rawValue) == [0x0602, 0x0600, 0x0501, 0x0402, 0x0200])
        // What `--disk ...,protocol=` may ask for (the setup record carries it to the worker).
        #expect(VStorProtocolVersion.accepted.map(\.rawValue) == StorageWorkerSetup.protocolVersions)
        for v in VStorProtocolVersion.accepted {
            let win8 = v >= .win8
            #expect(v.srbSize == (win8 ? 0x34 : 0x24))
            #expect(v.senseBufferSize == (win8 ? 20 : 18))
            #expect(v.supportsMultiChannel == win8)
        }
        #expect(VStorProtocolVersion.win10.description == "6.2")
    }

    @Test func packetBytesAreInlineAndExact() {
        var b = VStorPacketBytes(count: 64)
        b[63] = 7
        #expect(b.bytes.count == 64 && b.bytes[63] == 7)
        #expect(VStorPacketBytes(count: 48).bytes == [UInt8](repeating: 0, count: 48))
    }
}

@Suite("vstor protocol")
struct VStorProtocolTests {
    func reply(_ d: VStorProtocol.Decision) -> VStorReply? {
        switch d {
        case .reply(let r): r
        case .createSubChannels(let r, _): r
        default: nil
        }
    }

    /// Linux 6.1 `storvsc_channel_init`: every step 64 bytes, trans id 0xFFFFFFFFFFFFFFFD,
    /// every reply op 1 status 0 and exactly 64 bytes.
    @Test func linuxHandshake() throws {
        var p = VStorProtocol(configuration: .init(maxTransferBytes: 0x40000))
        let t: UInt64 = 0xFFFF_FFFF_FFFF_FFFD
        let begin = try #require(reply(p.handle(transactionID: t, payload: vstorPacket(.beginInitialization))))
        #expect(begin.transactionID == t && begin.packet.count == 64)
        #expect(begin.packet.operation == .completeIO && begin.packet.status == .success)
        #expect(p.state == .queryVersion)
        let version = try #require(reply(p.handle(transactionID: t, payload: vstorPacket(.queryProtocolVersion, union: le16(0x0602)))))
        #expect(version.packet.status == .success && version.packet.u16(at: 12) == 0x0602 && version.packet.count == 64)
        #expect(p.state == .queryProperties(.win10))
        let props = try #require(reply(p.handle(transactionID: t, payload: vstorPacket(.queryProperties))))
        #expect(props.packet.status == .success && props.packet.count == 64)
        #expect(props.packet.u16(at: 16) == 0 && props.packet.u32(at: 20) == 0 && props.packet.u32(at: 24) == 0x40000)
        let end = try #require(reply(p.handle(transactionID: t, payload: vstorPacket(.endInitialization))))
        #expect(end.packet.status == .success && end.packet.count == 64)
        #expect(p.state == .ready(.win10, subChannels: 0) && p.isReady)
    }

    /// A host limited to 0x0600 refuses 0x0602 (REVISION_MISMATCH, version echoed); Linux's
    /// next try is accepted.
    @Test func olderVersionAfterARefusal() throws {
        var p = VStorProtocol(configuration: .init(highestVersion: .win8_1))
        _ = p.handle(transactionID: 1, payload: vstorPacket(.beginInitialization))
        let no = try #require(reply(p.handle(transactionID: 2, payload: vstorPacket(.queryProtocolVersion, union: le16(0x0602)))))
        #expect(no.packet.status == .revisionMismatch && no.packet.u16(at: 12) == 0x0602 && no.packet.operation == .completeIO)
        #expect(p.state == .queryVersion)
        let unknown = try #require(reply(p.handle(transactionID: 3, payload: vstorPacket(.queryProtocolVersion, union: le16(0x0A00)))))
        #expect(unknown.packet.status == .revisionMismatch)
        let yes = try #require(reply(p.handle(transactionID: 4, payload: vstorPacket(.queryProtocolVersion, union: le16(0x0600)))))
        #expect(yes.packet.status == .success)
        #expect(p.state == .queryProperties(.win8_1))
    }

    /// A pre-Win8 guest (Windows Server 2008 R2, or Linux before the pre-Win8 support went):
    /// 48-byte packets, version 0x0402; replies 48 bytes, the short SRB, 18 sense bytes, no
    /// multi-channel even when the host has sub-channels.
    @Test func olderWindowsHandshakeAndSRB() throws {
        var p = VStorProtocol(configuration: .init(maxSubChannels: 4))
        #expect(reply(p.handle(transactionID: 1, payload: vstorPacket(.beginInitialization, size: 48)))?.packet.count == 48)
        #expect(reply(p.handle(transactionID: 2, payload: vstorPacket(.queryProtocolVersion, union: le16(0x0402), size: 48)))?.packet.status == .success)
        let props = try #require(reply(p.handle(transactionID: 3, payload: vstorPacket(.queryProperties, size: 48))))
        #expect(props.packet.count == 48 && props.packet.u16(at: 16) == 0 && props.packet.u32(at: 20) == 0)
        #expect(reply(p.handle(transactionID: 4, payload: vstorPacket(.createSubChannels, union: le16(1), size: 48)))?.packet.status == .invalidDeviceState)
        #expect(reply(p.handle(transactionID: 5, payload: vstorPacket(.endInitialization, size: 48)))?.packet.status == .success)
        #expect(p.state == .ready(.win7, subChannels: 0))
        guard case .execute(let srb) = p.handle(transactionID: 9, payload: srbPacket(cdb: [0x00, 0, 0, 0, 0, 0], dataIn: 2, length: 0, senseLength: 18, size: 48)) else {
            Issue.record("no SRB"); return
        }
        #expect(srb.version == .win7 && srb.srbFlags == 0)
        let done = p.completion(for: srb, result: .illegalRequest(.invalidCommandOperationCode))
        #expect(done.packet.count == 48 && done.packet.u16(at: 12) == 0x24)
        #expect(done.packet[21] == 18 && done.packet[28] == 0x70 && done.packet[28 + 12] == 0x20)
    }

    /// Windows (Win8+) sends 64-byte packets too; before negotiation replies echo the request's
    /// size, clamped to 48...64.
    @Test func replySizesBeforeNegotiation() {
        for (size, expected) in [(12, 48), (30, 48), (48, 48), (56, 56), (64, 64), (100, 64)] {
            var p = VStorProtocol(configuration: .init())
            guard case .reply(let r) = p.handle(transactionID: 1, payload: vstorPacket(.beginInitialization, size: size)) else {
                Issue.record("no reply"); continue
            }
            #expect(r.packet.count == expected, Comment(rawValue: "request \(size)"))
        }
        var p = VStorProtocol(configuration: .init())
        guard case .reply(let r) = p.handle(transactionID: 5, payload: [1, 2, 3]) else { Issue.record("no reply"); return }
        #expect(r.packet.status == .invalidParameter && r.packet.count == 48 && r.transactionID == 5)
        #expect(p.state == .beginInitialization)
    }

    /// Every operation out of order gets INVALID_DEVICE_STATE and leaves the state alone.
    @Test func outOfOrderOperations() {
        let ops: [VStorOperation] = [.beginInitialization, .queryProtocolVersion, .queryProperties, .endInitialization,
                                     .executeSRB, .createSubChannels, .resetBus]
        let states: [VStorProtocol.InitState] = [.beginInitialization, .queryVersion, .queryProperties(.win10),
                                                 .endInitialization(.win10, subChannels: 0), .ready(.win10, subChannels: 0)]
        let expected: [VStorProtocol.InitState: VStorOperation] = [
            .beginInitialization: .beginInitialization, .queryVersion: .queryProtocolVersion,
            .queryProperties(.win10): .queryProperties, .endInitialization(.win10, subChannels: 0): .endInitialization,
        ]
        for s in states {
            for op in ops {
                var p = try! VStorProtocol.restore(.init(state: s), configuration: .init())
                let d = p.handle(transactionID: 7, payload: op == .executeSRB ? srbPacket(cdb: [0, 0, 0, 0, 0, 0], dataIn: 2, length: 0) : vstorPacket(op, union: le16(0x0602)))
                let accepted = expected[s] == op || (s == .ready(.win10, subChannels: 0) && (op == .executeSRB || op == .resetBus))
                if accepted {
                    if case .reply(let r) = d { #expect(r.packet.status == .success) }
                } else {
                    #expect(reply(d)?.packet.status == .invalidDeviceState, Comment(rawValue: "\(s) \(op)"))
                    #expect(p.state == s)
                }
            }
        }
    }

    @Test func unknownOperationsAndCompletionsFromTheGuest() {
        var p = readyProtocol()
        for op: UInt32 in [0, 1, 2, 11, 12, 14, 0xFFFF_FFFF] {
            #expect(reply(p.handle(transactionID: 3, payload: vstorPacket(VStorOperation(rawValue: op))))?.packet.status == .invalidParameter)
        }
        #expect(p.handle(transactionID: 3, payload: vstorPacket(.beginInitialization), isCompletion: true) == .ignore)
        for op: VStorOperation in [.resetLUN, .resetAdapter, .resetBus] {
            #expect(reply(p.handle(transactionID: 0xFFFF_FFFF_FFFF_FFFC, payload: vstorPacket(op)))?.packet.status == .success)
        }
        #expect(p.isReady)
    }

    @Test func subChannels() throws {
        var p = VStorProtocol(configuration: .init(maxSubChannels: 3))
        _ = p.handle(transactionID: 1, payload: vstorPacket(.beginInitialization))
        _ = p.handle(transactionID: 1, payload: vstorPacket(.queryProtocolVersion, union: le16(0x0602)))
        let props = try #require(reply(p.handle(transactionID: 1, payload: vstorPacket(.queryProperties))))
        #expect(props.packet.u16(at: 16) == 3 && props.packet.u32(at: 20) == 1)
        #expect(reply(p.handle(transactionID: 1, payload: vstorPacket(.createSubChannels, union: le16(4))))?.packet.status == .invalidParameter)
        guard case .createSubChannels(let r, let total) = p.handle(transactionID: 2, payload: vstorPacket(.createSubChannels, union: le16(1))) else {
            Issue.record("no sub-channels"); return
        }
        #expect(r.packet.status == .success && total == 1)
        #expect(reply(p.handle(transactionID: 1, payload: vstorPacket(.createSubChannels, union: le16(1))))?.packet.status == .invalidDeviceState)
        _ = p.handle(transactionID: 1, payload: vstorPacket(.endInitialization))
        #expect(p.state == .ready(.win10, subChannels: 1))
        // After init (OpenVMM accepts this too): grow, never shrink; only on the primary channel.
        #expect(p.handle(transactionID: 4, payload: vstorPacket(.createSubChannels, union: le16(3))) != .ignore)
        #expect(p.state == .ready(.win10, subChannels: 3))
        #expect(reply(p.handle(transactionID: 4, payload: vstorPacket(.createSubChannels, union: le16(2))))?.packet.status == .invalidParameter)
        #expect(reply(p.handle(transactionID: 4, payload: vstorPacket(.createSubChannels, union: le16(3)), onSubChannel: true))?.packet.status == .invalidDeviceState)
        guard case .execute = p.handle(transactionID: 5, payload: srbPacket(cdb: [0, 0, 0, 0, 0, 0], dataIn: 2, length: 0), onSubChannel: true) else {
            Issue.record("sub-channel SRB refused"); return
        }
        // Without a sub-channel limit: no multi-channel flag, CREATE refused.
        var q = readyProtocol()
        #expect(reply(q.handle(transactionID: 4, payload: vstorPacket(.createSubChannels, union: le16(1))))?.packet.status == .invalidDeviceState)
        // A sub-channel before the primary is ready.
        var r0 = VStorProtocol(configuration: .init(maxSubChannels: 3))
        #expect(reply(r0.handle(transactionID: 4, payload: srbPacket(cdb: [0, 0, 0, 0, 0, 0], dataIn: 2, length: 0), onSubChannel: true))?.packet.status == .invalidDeviceState)
    }

    @Test func srbParsing() throws {
        var p = readyProtocol()
        let cdb: [UInt8] = [0x28, 0, 0, 0, 0, 8, 0, 0, 4, 0]
        guard case .execute(let srb) = p.handle(transactionID: 0x10001, payload: srbPacket(lun: 3, target: 1, path: 2, cdb: cdb, dataIn: 1, length: 2048)) else {
            Issue.record("no SRB"); return
        }
        #expect(srb.transactionID == 0x10001 && srb.lun == 3 && srb.targetID == 1 && srb.pathID == 2)
        #expect(srb.cdb.bytes == cdb && srb.cdb.count == 10 && srb.direction == .fromDevice && srb.dataTransferLength == 2048)
        #expect(srb.senseInfoLength == 20 && srb.srbFlags == 0x48 && srb.version == .win10)
        // Refusals: short SRB, cdb_length 0 and 17, data_in 3, a buffer over max_transfer_bytes.
        var short = srbPacket(cdb: cdb, dataIn: 1, length: 2048)
        short.removeLast(20)
        #expect(reply(p.handle(transactionID: 2, payload: short))?.packet[14] == SRBStatus.invalidRequest.rawValue)
        var bad = [srbPacket(cdb: cdb, dataIn: 1, length: 2048), srbPacket(cdb: cdb, dataIn: 1, length: 2048),
                   srbPacket(cdb: cdb, dataIn: 3, length: 2048), srbPacket(cdb: cdb, dataIn: 1, length: 0x10_0001)]
        bad[0][20] = 0
        bad[1][20] = 17
        for packet in bad {
            let r = try #require(reply(p.handle(transactionID: 6, payload: packet)))
            #expect(r.packet.count == 64 && r.transactionID == 6)
            #expect(r.packet[14] == 0x86 && r.packet[15] == 2 && r.packet[28 + 2] == 5 && r.packet[28 + 12] == 0x24)
        }
    }

    /// COMPLETE_IO contents: success is exactly 0x01; CHECK CONDITION sets AUTOSENSE_VALID and
    /// copies the sense; INVALID_LUN has no sense.
    @Test func completionEncoding() {
        let srb = VStorSRB(transactionID: 42, lun: 1, cdb: SCSICDB([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), direction: .fromDevice, dataTransferLength: 512)
        let ok = VStorProtocol.completion(for: srb, result: .good(transferred: 512))
        #expect(ok.transactionID == 42 && ok.packet.count == 64 && ok.packet.operation == .completeIO && ok.packet.status == .success)
        #expect(ok.packet[14] == 0x01 && ok.packet[15] == 0 && ok.packet.u32(at: 24) == 512 && ok.packet[21] == 0)
        #expect(ok.packet.u16(at: 12) == 0x34 && ok.packet[19] == 1 && ok.packet[20] == 10 && ok.packet[22] == 1)
        let err = VStorProtocol.completion(for: srb, result: .checkCondition(SCSISense(key: .mediumError, .unrecoveredReadError)))
        #expect(err.packet[14] == 0x84 && err.packet[15] == 2 && err.packet[21] == 18 && err.packet.status == .ioDeviceError)
        #expect(Array(err.packet.bytes[28..<46]) == SCSISense(key: .mediumError, .unrecoveredReadError).bytes)
        #expect(err.packet.u32(at: 24) == 0)
        let lun = VStorProtocol.completion(for: srb, result: SCSICompletion(srbStatus: .invalidLUN, scsiStatus: .checkCondition))
        #expect(lun.packet[14] == 0x20 && lun.packet.status == .deviceDoesNotExist && lun.packet[21] == 0)
        // A guest asking for fewer sense bytes gets fewer; never more than transferred to the buffer.
        var small = srb
        small.senseInfoLength = 8
        #expect(VStorProtocol.completion(for: small, result: .illegalRequest(.invalidFieldInCDB)).packet[21] == 8)
        #expect(VStorProtocol.completion(for: srb, result: .good(transferred: 4096)).packet.u32(at: 24) == 512)
    }

    @Test func unsolicitedPackets() throws {
        var p = VStorProtocol(configuration: .init())
        #expect(p.enumerateBusPacket() == nil && p.removeDevicePacket() == nil)
        p = readyProtocol()
        let e = try #require(p.enumerateBusPacket())
        #expect(e.count == 64 && e.operation == .enumerateBus && e.status == .success)
        #expect(p.removeDevicePacket()?.operation == .removeDevice)
        p.reset()
        #expect(p.state == .beginInitialization)
    }

    // MARK: - Saved state

    static let allStates: [VStorProtocol.InitState] = [
        .beginInitialization, .queryVersion, .queryProperties(.win8), .endInitialization(.win10, subChannels: nil),
        .endInitialization(.win8_1, subChannels: 2), .endInitialization(.win6, subChannels: 0), .ready(.win10, subChannels: 3),
        .ready(.win7, subChannels: 0),
    ]

    @Test func savedStateRoundTrip() throws {
        for s in Self.allStates {
            let saved = VStorProtocol.Saved(state: s)
            let bytes = saved.encoded()
            #expect(bytes.count == VStorProtocol.Saved.encodedSize)
            let back = try VStorProtocol.Saved(decoding: bytes)
            #expect(back == saved)
            #expect(back.encoded() == bytes)
            let p = try VStorProtocol.restore(back, configuration: .init(maxSubChannels: 3))
            #expect(p.saved == saved)
        }
        #expect(throws: VStorSavedStateError.self) {
            try VStorProtocol.restore(.init(state: .ready(.win10, subChannels: 3)), configuration: .init(maxSubChannels: 2))
        }
        #expect(throws: VStorSavedStateError.self) {
            try VStorProtocol.Saved(decoding: VStorProtocol.Saved(state: .ready(.win7, subChannels: 1)).encoded())
        }
        #expect(throws: VStorSavedStateError.self) {
            try VStorProtocol.restore(.init(state: .ready(.win10, subChannels: 0)), configuration: .init(highestVersion: .win8))
        }
        // A restored machine goes on where it was.
        var p = try VStorProtocol.restore(readyProtocol().saved, configuration: .init())
        guard case .execute = p.handle(transactionID: 1, payload: srbPacket(cdb: [0, 0, 0, 0, 0, 0], dataIn: 2, length: 0)) else {
            Issue.record("restored machine not ready"); return
        }
    }

    /// Every truncation, every single-byte change and random bytes: decoded or refused, never a
    /// trap; whatever decodes re-encodes to the same bytes.
    @Test func damagedSavedStates() {
        var rng = SplitMix(seed: 13)
        var decoded = 0
        for s in Self.allStates {
            let good = VStorProtocol.Saved(state: s).encoded()
            for n in 0..<good.count { #expect(throws: VStorSavedStateError.self) { try VStorProtocol.Saved(decoding: Array(good.prefix(n))) } }
            #expect(throws: VStorSavedStateError.self) { try VStorProtocol.Saved(decoding: good + [0]) }
            for i in 0..<good.count {
                for x: UInt8 in [1, 0x80, 0xFF] {
                    var b = good
                    b[i] ^= x
                    if let d = try? VStorProtocol.Saved(decoding: b) { decoded += 1; #expect(d.encoded() == b) }
                }
            }
        }
        for _ in 0..<2000 {
            var b = VStorProtocol.Saved(state: Self.allStates[Int(rng.next() % 8)]).encoded()
            for _ in 0..<Int(rng.next() % 4) { b[Int(rng.next() % 32)] = UInt8(truncatingIfNeeded: rng.next()) }
            if let d = try? VStorProtocol.Saved(decoding: b) { decoded += 1; #expect(d.encoded() == b) }
        }
        #expect(decoded > 0)
    }

    /// Seeded random packets in every state: every answer well formed (64 or 48 bytes, op 1,
    /// the request's transaction id), no trap, and the state only moves forward.
    @Test func randomPackets() {
        var rng = SplitMix(seed: 0x5709)
        for _ in 0..<20_000 {
            var p = try! VStorProtocol.restore(.init(state: Self.allStates[Int(rng.next() % 8)]), configuration: .init(maxSubChannels: 3))
            let size = Int(rng.next() % 80)
            var packet = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if size >= 4 && rng.next() % 2 == 0 { packet.replaceSubrange(0..<4, with: le32(UInt32(rng.next() % 15))) }
            if size >= 14 && rng.next() % 2 == 0 { packet.replaceSubrange(12..<14, with: le16(VStorProtocolVersion.accepted[Int(rng.next() % 5)].rawValue)) }
            let t = rng.next()
            let sizes = p.state.version.map { [12 + $0.srbSize] } ?? Array(48...64)
            switch p.handle(transactionID: t, payload: packet, onSubChannel: rng.next() % 8 == 0) {
            case .reply(let r), .createSubChannels(let r, _):
                #expect(r.transactionID == t && sizes.contains(r.packet.count))
                #expect(r.packet.operation == .completeIO)
            case .execute(let srb):
                #expect(p.isReady && srb.transactionID == t && srb.cdb.count >= 1 && srb.cdb.count <= 16)
                let c = p.completion(for: srb, result: .illegalRequest(.invalidFieldInCDB))
                #expect(c.packet.count == 12 + srb.version.srbSize)
            case .ignore:
                Issue.record("ignored a data packet")
            }
        }
    }
}
