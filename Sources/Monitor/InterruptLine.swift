import KVM

/// One interrupt line into the in-kernel interrupt controllers, driven by a device model.
public protocol InterruptLine: Sendable {
    /// The line's new level; callers report changes only (see `ISAInterruptLine`).
    func set(level: Bool)
}

/// An ISA IRQ of the in-kernel PIC and IOAPIC, driven with KVM_IRQ_LINE. With KVM's default
/// routing GSI n is PIC pin n and IOAPIC pin n (n < 16), so one ioctl reaches whichever the
/// guest uses.
///
/// Why KVM_IRQ_LINE with the line's level rather than an irqfd: the ISA IRQs are edge-triggered
/// (the MADT declares no override for them), and KVM's IOAPIC takes every KVM_IRQ_LINE(1) on an
/// edge-triggered pin as a new edge once the previous one was delivered, while its PIC latches
/// rising edges only. Reporting each change of the device's output level, and nothing else, gives
/// both controllers exactly the edges the hardware would see, and would stay right if a guest
/// programmed the pin level-triggered. An irqfd delivers a pulse per write, which loses the
/// level. Callers (the devices) serialize their calls under their own lock, so edges reach KVM
/// in order.
public final class ISAInterruptLine: InterruptLine {
    let vm: KVMVirtualMachine
    public let irq: UInt32
    private let control: VMControl

    init(vm: KVMVirtualMachine, irq: UInt32, control: VMControl) {
        self.vm = vm
        self.irq = irq
        self.control = control
    }

    public func set(level: Bool) {
        do { try vm.irqLine(irq, level: level) } catch {
            control.requestStop(.hostFailure("KVM_IRQ_LINE(\(irq), \(level ? 1 : 0)): \(error)"))
        }
    }
}
