import FuzzSeeds
import Testing
@testable import VMBus

/// Every control-message layout against the sizes and offsets of Linux include/linux/hyperv.h.
@Suite("VMBus control-message layouts: sizes, offsets, round trips, truncation")
struct MessageLayoutTests {
    @Test func layoutSizesMatchLinux() {
        #expect(VMBusMessageHeader.size == 8)
        #expect(VMBusOfferChannel.size == 196)
        #expect(VMBusOfferChannel(offer: Self.offer, childRelID: 1, connectionID: 0x2001).encoded().count == 196)
        #expect(VMBusRescindChannelOffer.size == 12 && VMBusRescindChannelOffer(childRelID: 1).encoded().count == 12)
        #expect(VMBusHeaderOnlyMessage.size == 8 && VMBusHeaderOnlyMessage(type: .requestOffers).encoded().count == 8)
        #expect(VMBusOpenChannel.size == 148)
        #expect(VMBusOpenChannel(childRelID: 1, openID: 1, ringBufferGPADLHandle: 2, targetVP: 0,
                                 downstreamRingBufferPageOffset: 32).encoded().count == 148)
        #expect(VMBusOpenChannelResult.size == 20 && VMBusOpenChannelResult(childRelID: 1, openID: 1, status: .success).encoded().count == 20)
        #expect(VMBusCloseChannel.size == 12 && VMBusCloseChannel(childRelID: 1).encoded().count == 12)
        #expect(VMBusGPADLHeader.size == 20)
        #expect(VMBusGPADLHeader(childRelID: 1, gpadl: 2, rangeBufferLength: 16, rangeCount: 1, words: [4096, 7]).encoded().count == 36)
        #expect(VMBusGPADLHeader.maxWordsInMessage == 27)   // Linux: one range header + 26 PFNs
        #expect(VMBusGPADLBody.size == 16 && VMBusGPADLBody.maxWordsInMessage == 28)
        #expect(VMBusGPADLCreated.size == 20 && VMBusGPADLCreated(childRelID: 1, gpadl: 2, status: .success).encoded().count == 20)
        #expect(VMBusGPADLTeardown.size == 16 && VMBusGPADLTeardown(childRelID: 1, gpadl: 2).encoded().count == 16)
        #expect(VMBusGPADLTorndown.size == 12 && VMBusGPADLTorndown(gpadl: 2).encoded().count == 12)
        #expect(VMBusRelIDReleased.size == 12 && VMBusRelIDReleased(childRelID: 1).encoded().count == 12)
        #expect(VMBusInitiateContact.size == 40)
        #expect(VMBusInitiateContact(versionRequested: .win10_v5_3, targetVCPU: 0, interruptPageOrMessageSINT: 2,
                                     monitorPage1: 0, monitorPage2: 0).encoded().count == 40)
        #expect(VMBusVersionResponse.size == 16 && VMBusVersionResponse(versionSupported: true).encoded().count == 16)
        #expect(VMBusModifyChannel.size == 16 && VMBusModifyChannel(childRelID: 1, targetVP: 1).encoded().count == 16)
        #expect(VMBusModifyChannelResponse.size == 16
                && VMBusModifyChannelResponse(childRelID: 1, status: .success).encoded().count == 16)
    }

    static let scsi = VMBusGUID("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f")!
    static let offer = VMBusOffer(interfaceType: scsi, interfaceInstance: VMBusGUID("12345678-9abc-def0-1122-334455667788")!)

    @Test func guidWireOrderAndText() {
        // The reference's wire bytes for the SCSI class.
        #expect(Self.scsi.bytes == [0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d, 0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f])
        #expect(Self.scsi.description == "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f")
        #expect(VMBusGUID("ba6163d9-04a1-4d29-b605-72e2ffb1dc7") == nil)
        #expect(VMBusGUID("ba6163d9-04a1-4d29-b605-72e2ffb1dc7g") == nil)
        #expect(VMBusGUID(wireBytes: [1, 2]) == nil)
    }

    @Test func offerFieldsAtLinuxOffsets() throws {
        let m = VMBusOfferChannel(offer: .pipe(interfaceType: Self.scsi, interfaceInstance: Self.offer.interfaceInstance),
                                  childRelID: 0x0102_0304, connectionID: 0x2001)
        let b = m.encoded()
        #expect(Array(b[0..<4]) == [1, 0, 0, 0])
        #expect(Array(b[8..<24]) == Self.scsi.bytes)
        #expect(b[56] == 0x11 && b[57] == 0)
        #expect(Array(b[60..<64]) == [4, 0, 0, 0])        // pipe_mode message
        #expect(Array(b[184..<188]) == [4, 3, 2, 1])
        #expect(b[188] == 0xFF && b[189] == 0 && b[190] == 1)
        #expect(Array(b[192..<196]) == [1, 0x20, 0, 0])
        #expect(try VMBusOfferChannel(decoding: b) == m)
    }

    @Test func versionsAndInitiateContactOffsets() throws {
        #expect(VMBusVersion.win8.rawValue == 0x0002_0004 && VMBusVersion.win10_v5_3.rawValue == 0x0005_0003)
        #expect(VMBusVersion.supported.count == 8 && !VMBusVersion.win7.isSupported && !VMBusVersion.win10_v6_0.isSupported)
        let c = VMBusInitiateContact(versionRequested: .win10_v5_2, targetVCPU: 3, interruptPageOrMessageSINT: 2,
                                     monitorPage1: 0x1000, monitorPage2: 0x2000)
        let b = c.encoded()
        #expect(Array(b[0..<4]) == [14, 0, 0, 0] && Array(b[8..<12]) == [2, 0, 5, 0] && b[12] == 3 && b[16] == 2)
        #expect(b[25] == 0x10 && b[33] == 0x20)
        #expect(try VMBusInitiateContact(decoding: b) == c && c.messageSINT == 2)
        let r = VMBusVersionResponse(versionSupported: true, connectionState: .successful, messageConnectionID: 1).encoded()
        #expect(r == [15, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0])
    }

    @Test func everyGuestMessageRoundTripsAndEveryTruncationIsAnError() throws {
        let all: [VMBusGuestMessage] = [
            .requestOffers, .unload,
            .openChannel(VMBusOpenChannel(childRelID: 1, openID: 1, ringBufferGPADLHandle: 0xE1E10, targetVP: 0,
                                          downstreamRingBufferPageOffset: 32, userData: [9, 9])),
            .closeChannel(VMBusCloseChannel(childRelID: 5)),
            .gpadlHeader(VMBusGPADLHeader(childRelID: 1, gpadl: 0xE1E10, rangeBufferLength: 24, rangeCount: 1, words: [8192, 1, 2])),
            .gpadlBody(VMBusGPADLBody(gpadl: 0xE1E10, words: [3, 4])),
            .gpadlTeardown(VMBusGPADLTeardown(childRelID: 1, gpadl: 0xE1E10)),
            .relIDReleased(VMBusRelIDReleased(childRelID: 1)),
            .initiateContact(VMBusInitiateContact(versionRequested: .win8, targetVCPU: 0, interruptPageOrMessageSINT: 0,
                                                  monitorPage1: 0, monitorPage2: 0)),
            .modifyChannel(VMBusModifyChannel(childRelID: 1, targetVP: 1)),
        ]
        for m in all {
            let b = m.encoded()
            #expect(try VMBusGuestMessage.decode(b) == m)
            #expect(VMBusGuestMessage.peekType(b) == m.type)
            // Every shorter prefix is refused; a longer message still decodes the same fields.
            for n in 0..<min(b.count, fixedSize(m.type)) {
                #expect(throws: VMBusMessageError.self) { try VMBusGuestMessage.decode(Array(b.prefix(n))) }
            }
            if b.count < 240 {
                let longer = try VMBusGuestMessage.decode(b + [UInt8](repeating: 0, count: 240 - b.count))
                #expect(longer.type == m.type)
            }
        }
        #expect(throws: VMBusMessageError.oversized(count: 241)) {
            try VMBusGuestMessage.decode([3, 0, 0, 0] + [UInt8](repeating: 0, count: 237))
        }
        for t: UInt32 in [0, 1, 2, 4, 6, 10, 12, 15, 17, 18, 21, 23, 24, 25, 0xFFFF_FFFF] {
            #expect(throws: VMBusMessageError.unsupportedType(VMBusMessageType(rawValue: t))) {
                try VMBusGuestMessage.decode(MessageWriter(type: VMBusMessageType(rawValue: t), size: 200).bytes)
            }
        }
    }

    @Test func gpadlHeaderTrimsWordsToRangeBufferLength() throws {
        let full = VMBusGPADLHeader(childRelID: 1, gpadl: 2, rangeBufferLength: 240, rangeCount: 1,
                                    words: (0..<27).map { UInt64($0) }).encoded()
        #expect(full.count == 236)
        var b = full
        b[16] = 24; b[17] = 0   // range_buflen 24: three words wanted
        #expect(try VMBusGPADLHeader(decoding: b).words == [0, 1, 2])
        // A partial trailing word is not a word.
        #expect(try VMBusGPADLBody(decoding: VMBusGPADLBody(gpadl: 2, words: [7]).encoded() + [1, 2, 3]).words == [7])
    }

    @Test func hostMessagesRoundTrip() throws {
        let all: [VMBusHostMessage] = [
            .offerChannel(VMBusOfferChannel(offer: Self.offer, childRelID: 1, connectionID: 0x2001)),
            .rescindChannelOffer(VMBusRescindChannelOffer(childRelID: 1)), .allOffersDelivered,
            .openChannelResult(VMBusOpenChannelResult(childRelID: 1, openID: 1, status: .unsuccessful)),
            .gpadlCreated(VMBusGPADLCreated(childRelID: 1, gpadl: 2, status: .success)),
            .gpadlTorndown(VMBusGPADLTorndown(gpadl: 2)),
            .versionResponse(VMBusVersionResponse(versionSupported: false)), .unloadResponse,
            .modifyChannelResponse(VMBusModifyChannelResponse(childRelID: 1, status: .success)),
        ]
        for m in all { #expect(try VMBusHostMessage.decode(m.encoded()) == m) }
    }

    /// Random bytes with a plausible type: decoding never traps, and whatever decodes survives
    /// its own encoding (the fields the layout keeps are exactly the ones read).
    @Test(arguments: [UInt64(41), 42, 43])
    func randomBytesDecodeOrFailCleanly(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var guest = 0, host = 0
        for _ in 0..<20_000 {
            var b = rng.bytes(Int.random(in: 0...260, using: &rng))
            if b.count >= 4 && Bool.random(using: &rng) { b[0] = UInt8.random(in: 0...25, using: &rng); b[1] = 0; b[2] = 0; b[3] = 0 }
            if let m = try? VMBusGuestMessage.decode(b) {
                guest += 1
                #expect(b.count <= 240 && VMBusGuestMessage.peekType(b) == m.type)
                #expect(try VMBusGuestMessage.decode(m.encoded()) == m)
            }
            if let m = try? VMBusHostMessage.decode(b) {
                host += 1
                #expect(try VMBusHostMessage.decode(m.encoded()) == m)
            }
        }
        #expect(guest > 100 && host > 100)
    }

    func fixedSize(_ t: VMBusMessageType) -> Int {
        switch t {
        case .openChannel: return 148
        case .closeChannel, .relIDReleased: return 12
        case .gpadlHeader: return 20
        case .gpadlBody, .gpadlTeardown, .modifyChannel: return 16
        case .initiateContact: return 40
        default: return 8
        }
    }
}
