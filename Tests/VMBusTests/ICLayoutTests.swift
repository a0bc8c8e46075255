import Testing
@testable import VMBus

/// Sizes and offsets of every IC layout, the offers and the epoch conversion, against Linux
/// include/linux/hyperv.h and the reference (../shared/reference/vmbus-storvsc.md, section 5).
@Suite("VMBus ICs: layouts, offers, epoch")
struct ICLayoutTests {
    @Test func framingOffsetsAreLinuxs() {
        #expect(VMBusPipeHeader.size == 8)
        #expect(VMBusICMessageHeader.offset == 8 && VMBusICMessageHeader.size == 20)
        #expect(VMBusICMessageHeader.bodyOffset == 28)   // ICMSG_HDR
        #expect(VMBusICMessageHeader.frameworkVersionOffset == 8)
        #expect(VMBusICMessageHeader.messageTypeOffset == 12)
        #expect(VMBusICMessageHeader.messageVersionOffset == 14)
        #expect(VMBusICMessageHeader.messageSizeOffset == 18)
        #expect(VMBusICMessageHeader.statusOffset == 20)
        #expect(VMBusICMessageHeader.transactionIDOffset == 24)
        #expect(VMBusICMessageHeader.flagsOffset == 25)
        #expect(VMBusICMessageHeader.reservedOffset == 26)
        #expect(VMBusICNegotiate.frameworkCountOffset == 28 && VMBusICNegotiate.messageCountOffset == 30)
        #expect(VMBusICNegotiate.versionsOffset == 36 && VMBusICNegotiate.replyPayloadSize == 44)
        #expect(VMBusICFlags.hostRequest == 3 && VMBusICFlags.transaction | VMBusICFlags.response == 5)
        #expect(VMBusICStatus.fail == 0x8000_4005)
    }

    @Test func bodyOffsetsAndSizesAreLinuxs() {
        #expect(VMBusICHeartbeatMessage.sequenceOffset == 28 && VMBusICHeartbeatMessage.reservedOffset == 36)
        #expect(VMBusICHeartbeatMessage.bodySize == 40 && VMBusICHeartbeatMessage.payloadSize == 68)
        #expect(VMBusICHeartbeatMessage.minimumReplySize == 36)
        #expect(VMBusICShutdownMessage.reasonCodeOffset == 28 && VMBusICShutdownMessage.timeoutOffset == 32)
        #expect(VMBusICShutdownMessage.flagsOffset == 36 && VMBusICShutdownMessage.displayMessageOffset == 40)
        #expect(VMBusICShutdownMessage.bodySize == 2060 && VMBusICShutdownMessage.payloadSize == 2088)
        #expect(VMBusICTimesyncMessage.parentTimeOffset == 28 && VMBusICTimesyncMessage.referenceTimeOffset == 36)
        #expect(VMBusICTimesyncMessage.flagsOffset == 44 && VMBusICTimesyncMessage.leapFlagsOffset == 45)
        #expect(VMBusICTimesyncMessage.stratumOffset == 46)
        #expect(VMBusICTimesyncMessage.payloadSize == 52 && VMBusICTimesyncMessage.payloadSize >= 50)
        #expect(VMBusICTimesyncMessage.legacyChildTimeOffset == 36 && VMBusICTimesyncMessage.legacyRoundTripTimeOffset == 44)
        #expect(VMBusICTimesyncMessage.legacyFlagsOffset == 52)
        #expect(VMBusICTimesyncMessage.legacyPayloadSize == 56 && VMBusICTimesyncMessage.legacyPayloadSize >= 53)
        #expect(VMBusIntegrationService.maxPayloadSize == 4096 - 16)
    }

    @Test func negotiateRequestBytes() {
        let bytes = VMBusICNegotiate(frameworkVersions: VMBusICVersion.frameworkVersions,
                                     messageVersions: VMBusIntegrationService.Kind.heartbeat.messageVersions).request()
        #expect(bytes.count == 36 + 4 * 4)
        #expect(bytes[0..<8] == [1, 0, 0, 0, 44, 0, 0, 0])                       // pipe: data, 20 + 24 bytes
        #expect(bytes[8..<12] == [1, 0, 0, 0])                                    // icverframe 1.0
        #expect(bytes[12..<14] == [0, 0])                                         // NEGOTIATE
        #expect(bytes[14..<18] == [1, 0, 0, 0])                                   // icvermsg 1.0
        #expect(bytes[18..<20] == [24, 0])                                        // icmsgsize
        #expect(bytes[20..<28] == [0, 0, 0, 0, 0, 3, 0, 0])                       // status, IC transaction 0, flags 3
        #expect(bytes[28..<36] == [2, 0, 2, 0, 0, 0, 0, 0])                       // 2 framework, 2 message versions
        #expect(bytes[36...] == [1, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0]) // 1.0 3.0 | 1.0 3.0
    }

    @Test func requestBytes() {
        let fw = VMBusICVersion(3, 0)
        let hb = VMBusICHeartbeatMessage(sequenceNumber: 0x0102_0304_0506_0708).request(framework: fw, message: VMBusICVersion(3, 0))
        #expect(hb.count == 68 && hb[12] == 1 && hb[18] == 40 && hb[25] == 3)
        #expect(hb[28..<36] == [8, 7, 6, 5, 4, 3, 2, 1] && hb[36...].allSatisfy { $0 == 0 })
        let sd = VMBusICShutdownMessage(reasonCode: 0x8000_0000, timeoutSeconds: 7, flags: .restart)
            .request(framework: fw, message: VMBusICVersion(3, 2))
        #expect(sd.count == 2088 && sd[12] == 3 && sd[14..<18] == [3, 0, 2, 0])
        #expect(sd[18..<20] == [0x0C, 0x08])   // icmsgsize 2060
        #expect(sd[28..<40] == [0, 0, 0, 0x80, 7, 0, 0, 0, 2, 0, 0, 0] && sd[40...].allSatisfy { $0 == 0 })
        let ts = VMBusICTimesyncMessage(parentTime: 0x11, referenceTime: 0x22, flags: 1).request(framework: fw, message: VMBusICVersion(4, 0))
        #expect(ts.count == 52 && ts[12] == 4 && ts[28] == 0x11 && ts[36] == 0x22 && ts[44] == 1 && ts[45...].allSatisfy { $0 == 0 })
        let old = VMBusICTimesyncMessage(parentTime: 0x11, referenceTime: 0x22, flags: 2).request(framework: fw, message: VMBusICVersion(3, 0))
        #expect(old.count == 56 && old[28] == 0x11 && old[36..<52].allSatisfy { $0 == 0 } && old[52] == 2)
    }

    @Test func headerDecodesWhatItEncodes() throws {
        let h = VMBusICMessageHeader(frameworkVersion: VMBusICVersion(3, 0), messageType: .timesync, messageVersion: VMBusICVersion(4, 0),
                                     messageSize: 0, status: 0x8000_4005, transactionID: 9, flags: 5)
        let bytes = h.message(body: [1, 2, 3])
        let d = try bytes.withUnsafeBytes { try VMBusICMessageHeader(decoding: $0) }
        #expect(d == VMBusICMessageHeader(frameworkVersion: VMBusICVersion(3, 0), messageType: .timesync,
                                          messageVersion: VMBusICVersion(4, 0), messageSize: 3, status: 0x8000_4005,
                                          transactionID: 9, flags: 5))
        for n in 0..<28 {
            #expect(throws: VMBusICMessageError.truncated(needed: 28, available: n)) {
                try bytes.prefix(n).withUnsafeBytes { try VMBusICMessageHeader(decoding: $0) }
            }
        }
    }

    @Test func offersAreTheReferenceTable() {
        typealias K = VMBusIntegrationService.Kind
        #expect(K.shutdown.interfaceType.bytes == [0x31, 0x60, 0x0b, 0x0e, 0x13, 0x52, 0x34, 0x49, 0x81, 0x8b, 0x38, 0xd9, 0x0c, 0xed, 0x39, 0xdb])
        #expect(K.timesync.interfaceType.bytes == [0x30, 0xe6, 0x27, 0x95, 0xae, 0xd0, 0x7b, 0x49, 0xad, 0xce, 0xe8, 0x0a, 0xb0, 0x17, 0x5c, 0xaf])
        #expect(K.heartbeat.interfaceType.bytes == [0x39, 0x4f, 0x16, 0x57, 0x15, 0x91, 0x78, 0x4e, 0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d])
        #expect(K.shutdown.interfaceInstance.description == "b6650ff7-33bc-4840-8048-e0676786f393")
        #expect(K.timesync.interfaceInstance.description == "2dd1ce17-079e-403c-b352-a1921ee207ee")
        #expect(K.heartbeat.interfaceInstance.description == "fd149e91-82e0-4a7d-afa6-2a4166cbd7c0")
        for k in K.allCases {
            let o = k.offer()
            #expect(o.channelFlags == 0x11 && o.userDefined.prefix(4) == [4, 0, 0, 0] && o.subChannelIndex == 0)
            #expect(K(interfaceType: o.interfaceType) == k)
            #expect(k.messageType.rawValue == k.rawValue)
        }
        #expect(VMBusIntegrationService.standardOffers.map(\.interfaceType) == [K.heartbeat, .shutdown, .timesync].map(\.interfaceType))
        #expect(K(interfaceType: .zero) == nil)
        // The offer goes through OFFERCHANNEL unchanged.
        let msg = VMBusOfferChannel(offer: K.shutdown.offer(), childRelID: 3, connectionID: 0x2003).encoded()
        #expect(msg[56] == 0x11 && msg[60] == 4)
    }

    @Test func epochConversion() {
        typealias T = VMBusICTimesyncMessage
        #expect(T.epochDelta == 116_444_736_000_000_000)
        #expect(T.parentTime(unixNanoseconds: 0) == T.epochDelta)
        #expect(T.parentTime(unixNanoseconds: 99) == T.epochDelta)
        #expect(T.parentTime(unixNanoseconds: 100) == T.epochDelta + 1)
        #expect(T.parentTime(unixNanoseconds: -1) == T.epochDelta - 1)
        #expect(T.parentTime(unixNanoseconds: -100) == T.epochDelta - 1)
        #expect(T.parentTime(unixNanoseconds: -101) == T.epochDelta - 2)
        // 2026-01-01T00:00:00Z.
        #expect(T.parentTime(unixNanoseconds: 1_767_225_600_000_000_000) == 134_116_992_000_000_000)
        #expect(T.parentTime(unixNanoseconds: Int64.max) == T.epochDelta + UInt64(Int64.max / 100))
        // Int64.min ns is in 1677: after 1601, so the clamp to 0 is never reached from an Int64.
        #expect(T.parentTime(unixNanoseconds: Int64.min) == T.epochDelta - UInt64(Int64.max / 100) - 1)
    }
}
