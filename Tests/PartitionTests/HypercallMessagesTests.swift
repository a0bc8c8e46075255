import HyperV
import Partition
import Testing

/// HvCallPostMessage and HvCallSignalEvent: validation, privilege, and the connection seam.
@Suite struct HypercallMessagesTests {
    let post = HvHypercallControl(callCode: .postMessage)
    let signal = HvHypercallControl(callCode: .signalEvent, fast: true)
    let messageGPA: UInt64 = 0x6000

    private func message(connection: UInt32 = 1, reserved: UInt32 = 0, type: UInt32 = 1, size: UInt32? = nil, payload: [UInt8] = [1, 2, 3]) -> [UInt8] {
        var bytes = HvPostMessageInput(connectionID: connection, messageType: type, payload: payload).encoded(reserved: reserved)
        if let size {
            for index in 0..<4 { bytes[12 + index] = UInt8(truncatingIfNeeded: size >> UInt32(8 * index)) }
        }
        return bytes
    }

    // MARK: HvCallPostMessage

    @Test func validMessageWithNoConnectionsIsInvalidConnectionID() {
        let h = HcHarness()
        h.memory.write(gpa: messageGPA, bytes: message())
        #expect(h.result(post, input: messageGPA) == HvHypercallResult(status: .invalidConnectionID))
    }

    @Test func validMessageReachesTheConnectionSeam() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        h.vp = 3
        let payload = (0..<240).map { UInt8($0) }
        h.memory.write(gpa: messageGPA, bytes: message(connection: 0xFF_FFFF, type: 0x7FFF_FFFF, payload: payload))
        #expect(h.status(post, input: messageGPA) == .success)
        #expect(connections.messages.count == 1)
        #expect(connections.messages.first?.message == HvPostMessageInput(connectionID: 0xFF_FFFF, messageType: 0x7FFF_FFFF, payload: payload))
        #expect(connections.messages.first?.vp == 3)
    }

    @Test func payloadIsExactlyPayloadSizeBytes() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        var bytes = message(payload: [UInt8](repeating: 0xEE, count: 240))
        bytes[12] = 5
        h.memory.write(gpa: messageGPA, bytes: bytes)
        #expect(h.status(post, input: messageGPA) == .success)
        #expect(connections.messages.first?.message.payload == [0xEE, 0xEE, 0xEE, 0xEE, 0xEE])
        bytes[12] = 0
        h.memory.write(gpa: messageGPA, bytes: bytes)
        #expect(h.status(post, input: messageGPA) == .success)
        #expect(connections.messages.last?.message.payload == [])
    }

    @Test func connectionAnswersArePassedThrough() {
        var h = HcHarness()
        h.connections = HcConnections(answer: .insufficientBuffers)
        h.memory.write(gpa: messageGPA, bytes: message())
        #expect(h.status(post, input: messageGPA) == .insufficientBuffers)
    }

    @Test func postMessageNeedsThePrivilege() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        h.privilegesEBX = HvPrivilegeEBX.signalEvents
        h.memory.write(gpa: messageGPA, bytes: message())
        #expect(h.status(post, input: messageGPA) == .accessDenied)
        #expect(h.status(post, input: 0x3) == .accessDenied, "before the GPA is looked at")
        #expect(connections.messages.isEmpty)
    }

    @Test func messageTypeMustBeNonZeroWithBit31Clear() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        for type: UInt32 in [0, 0x8000_0000, 0x8000_0010, .max] {
            h.memory.write(gpa: messageGPA, bytes: message(type: type))
            #expect(h.status(post, input: messageGPA) == .invalidParameter, "type \(type)")
        }
        #expect(connections.messages.isEmpty)
    }

    @Test func payloadSizeAbove240IsInvalidParameter() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        for size: UInt32 in [241, 256, 0x1_0000, .max] {
            h.memory.write(gpa: messageGPA, bytes: message(size: size))
            #expect(h.status(post, input: messageGPA) == .invalidParameter, "size \(size)")
        }
        h.memory.write(gpa: messageGPA, bytes: message(size: 240))
        #expect(h.status(post, input: messageGPA) == .success)
        #expect(connections.messages.count == 1)
    }

    @Test func reservedFieldsMustBeZero() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        h.memory.write(gpa: messageGPA, bytes: message(reserved: 1))
        #expect(h.status(post, input: messageGPA) == .invalidHypercallInput)
        h.memory.write(gpa: messageGPA, bytes: message(connection: 0x0100_0001))
        #expect(h.status(post, input: messageGPA) == .invalidHypercallInput, "connection id top byte is RsvdZ")
        #expect(connections.messages.isEmpty)
    }

    @Test func postMessageGPAChecks() {
        let h = HcHarness()
        h.memory.write(gpa: messageGPA, bytes: message())
        #expect(h.status(post, input: messageGPA + 4) == .invalidAlignment)
        #expect(h.status(post, input: messageGPA + 0xF08) == .invalidAlignment, "crosses a page")
        #expect(h.status(post, input: 0x1_0000_0000) == .invalidAlignment, "not RAM")
    }

    @Test func postMessageControlWordChecks() {
        let h = HcHarness()
        h.memory.write(gpa: messageGPA, bytes: message())
        #expect(h.status(HvHypercallControl(callCode: .postMessage, repCount: 1), input: messageGPA) == .invalidHypercallInput)
        #expect(h.status(HvHypercallControl(callCode: .postMessage, variableHeaderSize: 1), input: messageGPA) == .invalidHypercallInput)
        #expect(h.status(HvHypercallControl(callCode: .postMessage, fast: true), input: messageGPA) == .invalidHypercallCode)
    }

    @Test func postMessageParserAlone() {
        #expect(throws: HvStatus.invalidHypercallInput) { try HvPostMessageInput.parse([UInt8](repeating: 0, count: 255)).get() }
        let parsed = try? HvPostMessageInput.parse(message(connection: 4, type: 2, payload: [9, 8])).get()
        #expect(parsed == HvPostMessageInput(connectionID: 4, messageType: 2, payload: [9, 8]))
    }

    // MARK: HvCallSignalEvent

    @Test func fastSignalAsLinuxSendsIt() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        h.vp = 1
        // Linux: hv_do_fast_hypercall8(HVCALL_SIGNAL_EVENT, conn_id | flag << 32).
        #expect(h.result(signal, input: 0x0000_0005_0000_0021) == HvHypercallResult(status: .success))
        #expect(connections.events.first?.event == HvSignalEventInput(connectionID: 0x21, flagNumber: 5))
        #expect(connections.events.first?.vp == 1)
    }

    @Test func signalWithNoConnectionsIsInvalidConnectionID() {
        let h = HcHarness()
        #expect(h.status(signal, input: 0x21) == .invalidConnectionID)
        #expect(h.status(signal, input: 0xFFFF_0000_0000 | 0xFF_FFFF) == .invalidConnectionID, "largest id and flag")
    }

    @Test func signalNeedsThePrivilege() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        h.privilegesEBX = HvPrivilegeEBX.postMessages
        #expect(h.status(signal, input: 0x21) == .accessDenied)
        #expect(h.status(HvHypercallControl(callCode: .signalEvent), input: 3) == .accessDenied)
        #expect(connections.events.isEmpty)
    }

    @Test func signalReservedBitsAreInvalidHypercallInput() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        for bit: UInt64 in Array(24...31) + Array(48...63) {
            #expect(h.status(signal, input: 0x21 | 1 << bit) == .invalidHypercallInput, "bit \(bit)")
        }
        #expect(connections.events.isEmpty)
    }

    @Test func flagNumberIsLeftToTheConnection() {
        var h = HcHarness()
        let connections = HcConnections(answer: .invalidParameter)
        h.connections = connections
        #expect(h.status(signal, input: UInt64(HvSignalEventInput.flagsPerSint) << 32 | 0x21) == .invalidParameter)
        #expect(connections.events.first?.event.flagNumber == 2048)
    }

    @Test func memoryBasedSignal() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        let slow = HvHypercallControl(callCode: .signalEvent)
        h.memory.store64(0x0000_0007_0000_0042, at: 0x7000)
        #expect(h.status(slow, input: 0x7000) == .success)
        #expect(connections.events.first?.event == HvSignalEventInput(connectionID: 0x42, flagNumber: 7))
        #expect(h.status(slow, input: 0x7004) == .invalidAlignment)
        #expect(h.status(slow, input: 0x10_0000) == .invalidAlignment)
        h.memory.store64(1 << 63 | 0x42, at: 0x7008)
        #expect(h.status(slow, input: 0x7008) == .invalidHypercallInput)
        #expect(connections.events.count == 1)
    }

    @Test func signalControlWordChecks() {
        let h = HcHarness()
        #expect(h.status(HvHypercallControl(callCode: .signalEvent, fast: true, repCount: 1), input: 0x21) == .invalidHypercallInput)
        #expect(h.status(HvHypercallControl(callCode: .signalEvent, fast: true, variableHeaderSize: 1), input: 0x21) == .invalidHypercallInput)
        #expect(h.status(HvHypercallControl(rawValue: signal.rawValue | 1 << 27), input: 0x21) == .invalidHypercallInput)
    }

    @Test func signalIn32BitMode() {
        var h = HcHarness()
        let connections = HcConnections(answer: .success)
        h.connections = connections
        h.mode = .protected32
        #expect(h.status(signal, input: 0x0000_0003_0000_0011) == .success)
        #expect(connections.events.first?.event == HvSignalEventInput(connectionID: 0x11, flagNumber: 3))
    }

    @Test func signalEventParserAlone() {
        #expect(HvSignalEventInput(connectionID: 0x12_3456, flagNumber: 0xABCD).rawValue == 0x0000_ABCD_0012_3456)
        #expect(throws: HvStatus.invalidHypercallInput) { try HvSignalEventInput.parse(0x0100_0000).get() }
    }
}
