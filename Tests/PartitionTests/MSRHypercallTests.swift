import HyperV
import Partition
import Testing

/// GUEST_OS_ID and HYPERCALL: the hypercall page and its enable rules.
@Suite struct MSRHypercallTests {
    let pageGPA: UInt64 = 0x5000

    private func expectStub(_ env: FakePartitionEnvironment, at gpa: UInt64, port: UInt8 = 0xE5) {
        let page = env.memory.bytes(at: gpa, count: 4096)
        #expect(Array(page[0..<3]) == [0xE6, port, 0xC3])
        #expect(page[3...].allSatisfy { $0 == 0xCC })
    }

    @Test func guestOsIdStoresAnyValue() {
        let p = FakePartitionEnvironment().makePartition()
        #expect(p.readMSR(vp: 0, index: HvMSR.guestOsId) == .value(0))
        for v: UInt64 in [linuxGuestOsId, 1, .max, 0x0001_0400_0A00_3839] {
            #expect(p.writeMSR(vp: 1, index: HvMSR.guestOsId, value: v) == .written)
            #expect(p.readMSR(vp: 0, index: HvMSR.guestOsId) == .value(v), "partition-wide")
        }
    }

    @Test func enableWritesTheStubBeforeReturning() {
        let env = FakePartitionEnvironment()
        env.memory.fill(0x90, at: pageGPA, count: 4096)
        let p = env.makePartition()
        #expect(p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId) == .written)
        #expect(!p.hypercallInterfaceEnabled)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA | 1) == .written)
        expectStub(env, at: pageGPA)
        #expect(p.readMSR(vp: 1, index: HvMSR.hypercall) == .value(pageGPA | 1))
        #expect(p.hypercallInterfaceEnabled)
        // Nothing outside the page was touched.
        #expect(env.memory.bytes(at: pageGPA - 1, count: 1) == [0])
        #expect(env.memory.bytes(at: pageGPA + 4096, count: 1) == [0])
    }

    @Test(arguments: [UInt8(0xE5), 0x00, 0x7F, 0xFF])
    func stubUsesTheConfiguredPort(port: UInt8) {
        let env = FakePartitionEnvironment()
        let p = env.makePartition(hypercallPort: port)
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA | 1) == .written)
        expectStub(env, at: pageGPA, port: port)
        #expect(HypercallStubPage.contents(port: port) == env.memory.bytes(at: pageGPA, count: 4096))
    }

    @Test func enableWithoutGuestOsIdLeavesEnableClear() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA | 1) == .written)
        #expect(p.readMSR(vp: 0, index: HvMSR.hypercall) == .value(pageGPA), "GPFN kept, enable dropped")
        #expect(!p.hypercallInterfaceEnabled)
        #expect(env.memory.writes.isEmpty, "no page written")
    }

    @Test func guestOsIdZeroDisablesTheInterface() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        _ = p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA | 1)
        #expect(p.hypercallInterfaceEnabled)
        #expect(p.writeMSR(vp: 1, index: HvMSR.guestOsId, value: 0) == .written)
        #expect(p.readMSR(vp: 0, index: HvMSR.hypercall) == .value(pageGPA))
        #expect(!p.hypercallInterfaceEnabled)
        // Identifying again does not re-enable by itself.
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        #expect(!p.hypercallInterfaceEnabled)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA | 1) == .written)
        #expect(p.hypercallInterfaceEnabled)
    }

    @Test func disableStoresWithoutTouchingMemory() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        _ = p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA | 1)
        let writes = env.memory.writes.count
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA) == .written)
        #expect(!p.hypercallInterfaceEnabled)
        #expect(p.readMSR(vp: 0, index: HvMSR.hypercall) == .value(pageGPA))
        // A disabled page may name any GPA, even outside RAM: nothing is mapped.
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: 0xFFFF_FFFF_FFFF_F000) == .written)
        #expect(env.memory.writes.count == writes)
    }

    @Test func reservedBitsAreStoredNotFaulted() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        let value = pageGPA | HvMSR.Hypercall.reservedP | HvMSR.Hypercall.enable
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: value) == .written)
        #expect(p.readMSR(vp: 0, index: HvMSR.hypercall) == .value(value))
        #expect(p.hypercallInterfaceEnabled)
        expectStub(env, at: pageGPA, port: 0xE5)
    }

    @Test(arguments: [
        UInt64(1 << 20),             // first page past the end of 1 MiB of RAM
        0x000F_FFFF_FFFF_F000,       // far away
        0xFFFF_FFFF_FFFF_F000,       // the last page of the 64-bit space: gpa + 4096 overflows
    ])
    func enableOutsideRAMFaults(gpa: UInt64) {
        let env = FakePartitionEnvironment(memorySize: 1 << 20)
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: gpa | 1) == .generalProtection)
        #expect(p.readMSR(vp: 0, index: HvMSR.hypercall) == .value(0), "a faulting write changes nothing")
        #expect(!p.hypercallInterfaceEnabled)
        #expect(env.memory.writes.isEmpty)
    }

    @Test func pagePartlyOutsideRAMFaults() {
        // 6 KiB of RAM: the page at 0x1000 is half RAM.
        let env = FakePartitionEnvironment(memorySize: 0x1800)
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: 0x1000 | 1) == .generalProtection)
        #expect(env.memory.writes.isEmpty)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: 0x0000 | 1) == .written)
    }

    @Test func pageBelowRAMBaseFaults() {
        let env = FakePartitionEnvironment(memorySize: 0x10000, memoryBase: 0x10_0000)
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: 0xF_F000 | 1) == .generalProtection)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: 0x10_0000 | 1) == .written)
        expectStub(env, at: 0x10_0000)
    }

    @Test func lockedMSRFaultsUntilReset() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        let locked = pageGPA | HvMSR.Hypercall.locked | HvMSR.Hypercall.enable
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: locked) == .written)
        #expect(p.readMSR(vp: 0, index: HvMSR.hypercall) == .value(locked))
        for v in [locked, 0, pageGPA | 1, 0x9000 | 1 | 2] as [UInt64] {
            #expect(p.writeMSR(vp: 1, index: HvMSR.hypercall, value: v) == .generalProtection)
        }
        #expect(p.readMSR(vp: 0, index: HvMSR.hypercall) == .value(locked))

        // GUEST_OS_ID = 0 still turns the interface off, but the locked MSR keeps its value.
        #expect(p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: 0) == .written)
        #expect(p.readMSR(vp: 0, index: HvMSR.hypercall) == .value(locked))
        #expect(!p.hypercallInterfaceEnabled)
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        #expect(p.hypercallInterfaceEnabled)

        p.reset()
        #expect(p.readMSR(vp: 0, index: HvMSR.hypercall) == .value(0))
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: 0x9000 | 1) == .written)
        expectStub(env, at: 0x9000)
    }

    @Test func lockingADisabledPageAlsoLocks() {
        let p = FakePartitionEnvironment().makePartition()
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: HvMSR.Hypercall.locked) == .written)
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA | 1) == .generalProtection)
    }

    @Test func reEnablingRestoresAScribbledStub() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        _ = p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA | 1)
        env.memory.fill(0, at: pageGPA, count: 16)
        _ = p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA | 1)
        expectStub(env, at: pageGPA)
    }

    @Test func movingThePageWritesTheNewOne() {
        let env = FakePartitionEnvironment()
        let p = env.makePartition()
        _ = p.writeMSR(vp: 0, index: HvMSR.guestOsId, value: linuxGuestOsId)
        _ = p.writeMSR(vp: 0, index: HvMSR.hypercall, value: pageGPA | 1)
        #expect(p.writeMSR(vp: 0, index: HvMSR.hypercall, value: 0x8000 | 1) == .written)
        expectStub(env, at: 0x8000)
        #expect(p.readMSR(vp: 0, index: HvMSR.hypercall) == .value(0x8000 | 1))
    }
}
