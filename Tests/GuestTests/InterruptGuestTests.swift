import CSynthVM
import Foundation
import KVM
import Machine
@testable import Monitor
import Synchronization
import Testing

/// Port 0x82 of the irq guest: 1 = raise vector 0x50 through an eventfd bound by KVM_IRQFD to an
/// MSI GSI route; 2 = raise vector 0x51 with KVM_SIGNAL_MSI.
final class InterruptRequestDevice: PortIODevice {
    let eventFD: Int32
    let vm = Mutex<KVMVirtualMachine?>(nil)
    let failures = Mutex<[String]>([])

    init() throws {
        let fd = svm_eventfd_nonblocking()
        guard fd >= 0 else { throw KVMError("eventfd", errno: -fd) }
        eventFD = fd
    }

    deinit { close(eventFD) }

    func read(port: UInt16, size: Int) -> UInt32 { 0xFFFF_FFFF }

    func write(port: UInt16, size: Int, value: UInt32) {
        switch value {
        case 1:
            var one: UInt64 = 1
            if Glibc.write(eventFD, &one, 8) != 8 { failures.withLock { $0.append("eventfd write failed") } }
        case 2:
            do { _ = try vm.withLock { try $0?.signalMSI(address: 0xFEE0_0000, data: 0x51) } } catch {
                failures.withLock { $0.append("\(error)") }
            }
        default:
            failures.withLock { $0.append("unexpected request \(value)") }
        }
    }
}

@Suite("Interrupts from the host reach a halted guest through the in-kernel LAPIC")
struct InterruptGuestTests {
    @Test("an irqfd on an MSI GSI route and KVM_SIGNAL_MSI each deliver exactly one interrupt")
    func irqfdAndMSI() throws {
        try GuestHarness.requireKVM()
        let device = try InterruptRequestDevice()
        var config = try MachineConfig.load(kernelPath: try GuestHarness.guestPath("irq"), memory: "64M", serial: "none")
        config.console = .capture
        config.timeoutSeconds = 60
        let vm = try VirtualMachine(config: config, extraDevices: [(device, 0x82...0x82)])
        device.vm.withLock { $0 = vm.vm }
        let gsi = KVMVirtualMachine.firstMSIGSI
        // Physical destination APIC 0, fixed delivery, edge, vector 0x50.
        try vm.vm.setGSIRouting([.init(gsi: gsi, address: 0xFEE0_0000, data: 0x50)])
        try vm.vm.irqfd(eventFD: device.eventFD, gsi: gsi)
        let outcome = vm.run()
        let lines = vm.console.captured.split(separator: "\n").map(String.init)
        #expect(lines.contains("irqfd: vector 0x50 delivered (1)"), "\(vm.console.captured)")
        #expect(lines.contains("msi: vector 0x51 delivered (1)"))
        #expect(lines.contains("irq: ok"))
        #expect(outcome.exitStatus == 0)
        #expect(device.failures.withLock { $0 }.isEmpty)
        try vm.vm.irqfd(eventFD: device.eventFD, gsi: gsi, deassign: true)
    }
}
