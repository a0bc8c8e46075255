import HyperV
import Partition
import Testing

/// CRASH_P0...P4 and CRASH_CTL.
@Suite struct MSRCrashTests {
    let notify = HvMSR.CrashCtl.crashNotify
    let message = HvMSR.CrashCtl.crashMessage

    private func setParameters(_ p: Partition, _ values: [UInt64]) {
        for (i, v) in values.enumerated() {
            #expect(p.writeMSR(vp: 0, index: HvMSR.crashP(i), value: v) == .written)
        }
    }

    @Test func parametersReadBack() {
        let p = FakePartitionEnvironment().makePartition(Enlightenments(features: [.crash]))
        let values: [UInt64] = [0xDEAD, linuxGuestOsId, 0xFFFF_FFFF_8100_0000, .max, 0]
        setParameters(p, values)
        for (i, v) in values.enumerated() {
            #expect(p.readMSR(vp: 1, index: HvMSR.crashP(i)) == .value(v), "partition-wide")
        }
    }

    @Test func crashCtlReadsTheCapabilities() {
        let p = FakePartitionEnvironment().makePartition(Enlightenments(features: [.crash]))
        #expect(p.readMSR(vp: 0, index: HvMSR.crashCtl) == .value(notify | message))
        _ = p.writeMSR(vp: 0, index: HvMSR.crashCtl, value: notify)
        #expect(p.readMSR(vp: 0, index: HvMSR.crashCtl) == .value(notify | message), "writes are not stored")
    }

    @Test func writeWithoutNotifyDoesNothing() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        for v: UInt64 in [0, message, 1, 0x3FFF_FFFF_FFFF_FFFF] {
            #expect(p.writeMSR(vp: 0, index: HvMSR.crashCtl, value: v) == .written)
        }
        #expect(env.events.crashes.isEmpty)
    }

    @Test func notifyReportsTheParameters() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        let values: [UInt64] = [0x1E, linuxGuestOsId, 0xFFFF_FFFF_8100_1234, 0x42, 0xFFFF_C900_0000_0F00]
        setParameters(p, values)
        #expect(p.writeMSR(vp: 1, index: HvMSR.crashCtl, value: notify) == .written)
        #expect(env.events.crashes == [
            GuestCrashNotification(parameters: values, message: nil, messageUnreadable: false, vp: 1),
        ])
    }

    @Test func notifyWithMessageReadsItFromGuestMemory() throws {
        let env = FakePartitionEnvironment()
        let text = Array("Kernel panic - not syncing: VFS: Unable to mount root fs".utf8)
        precondition(env.memory.write(gpa: 0x7000, bytes: text))
        let p = env.makePartition()
        setParameters(p, [0, 0, 0, 0x7000, UInt64(text.count)])
        #expect(p.writeMSR(vp: 0, index: HvMSR.crashCtl, value: notify | message) == .written)
        let n = try #require(env.events.crashes.first)
        #expect(n.message == text)
        #expect(!n.messageUnreadable)
        #expect(n.parameters == [0, 0, 0, 0x7000, UInt64(text.count)])
    }

    @Test func emptyMessage() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        setParameters(p, [0, 0, 0, 0x7000, 0])
        _ = p.writeMSR(vp: 0, index: HvMSR.crashCtl, value: notify | message)
        #expect(env.events.crashes.first?.message == [])
        #expect(env.events.crashes.first?.messageUnreadable == false)
    }

    @Test func oversizeLengthIsCutTo4096Bytes() {
        let env = FakePartitionEnvironment()
        env.memory.fill(0x41, at: 0x7000, count: 8192)
        let p = env.makePartition()
        setParameters(p, [0, 0, 0, 0x7000, 1 << 40])
        _ = p.writeMSR(vp: 0, index: HvMSR.crashCtl, value: notify | message)
        let n = env.events.crashes.first
        #expect(n?.message?.count == 4096)
        #expect(n?.message?.allSatisfy { $0 == 0x41 } == true)
        #expect(n?.messageUnreadable == false)
        #expect(n?.parameters[4] == 1 << 40, "the parameter itself is reported as written")
    }

    @Test(arguments: [
        (UInt64(1 << 20), UInt64(16)),       // outside RAM
        (UInt64((1 << 20) - 8), UInt64(16)), // runs off the end of RAM
        (UInt64.max - 4, UInt64(16)),        // GPA + length overflows
        (UInt64.max, UInt64.max),
    ])
    func unreadableMessageIsToleratedAndReported(gpa: UInt64, length: UInt64) {
        let env = FakePartitionEnvironment(memorySize: 1 << 20)
        let p = env.makePartition()
        setParameters(p, [1, 2, 3, gpa, length])
        #expect(p.writeMSR(vp: 0, index: HvMSR.crashCtl, value: notify | message) == .written)
        #expect(env.events.crashes == [
            GuestCrashNotification(parameters: [1, 2, 3, gpa, length], message: nil, messageUnreadable: true, vp: 0),
        ])
    }

    @Test func messageBitIsIgnoredWithoutNotify() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        setParameters(p, [0, 0, 0, 0x7000, 10])
        _ = p.writeMSR(vp: 0, index: HvMSR.crashCtl, value: message)
        #expect(env.events.crashes.isEmpty)
    }

    @Test func eachNotifyIsReported() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        setParameters(p, [1, 0, 0, 0, 0])
        _ = p.writeMSR(vp: 0, index: HvMSR.crashCtl, value: notify)
        setParameters(p, [2, 0, 0, 0, 0])
        _ = p.writeMSR(vp: 1, index: HvMSR.crashCtl, value: notify)
        #expect(env.events.crashes.map(\.parameters[0]) == [1, 2])
        #expect(env.events.crashes.map(\.vp) == [0, 1])
    }

    @Test func crashMSRsNeedTheFeature() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition(Enlightenments(features: Enlightenments.defaultFeatures.subtracting([.crash])))
        for index in HvMSR.crashP0...HvMSR.crashCtl {
            #expect(p.readMSR(vp: 0, index: index) == .generalProtection)
            #expect(p.writeMSR(vp: 0, index: index, value: notify) == .generalProtection)
        }
        #expect(env.events.crashes.isEmpty)
    }
}
