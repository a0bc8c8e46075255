import VMBus

/// A device behind a VMBus offer, as the VMBus worker hosts it (the integration services today;
/// a device in its own worker process implements the same steps around the same `VMBusChannel`).
///
/// The worker calls `open` when the guest opens the channel (its answer becomes
/// OPENCHANNEL_RESULT), `serve` whenever the guest signalled the channel or `deadline` passed,
/// and `close` when the guest closes it. Times are CLOCK_MONOTONIC nanoseconds from the shell:
/// devices keep no clock of their own, so tests drive them with any time they like.
public protocol VMBusChannelDevice: AnyObject {
    /// What the server offers the guest for this device.
    var offer: VMBusOffer { get }
    /// The guest opened the channel: start serving `channel`. A failure status refuses the open.
    func open(_ channel: VMBusChannel, now: UInt64) -> VMBusStatus
    /// Drain the guest's packets, answer, do periodic work; the device interrupts the guest
    /// through `channel.interruptGuest()` as the ring rules require.
    func serve(now: UInt64)
    /// When `serve` wants to run next without a signal (nil: only on signals).
    var deadline: UInt64? { get }
    /// The guest closed the channel (or reset the bus): forget the rings.
    func close()
    /// Restart state (docs/vmbus.md, "Restart"): the bytes a successor needs to continue the open
    /// channel, saved with the server's state whenever they change; nil when there is nothing.
    func savedState() -> [UInt8]?
    /// A restarted worker re-opens a channel its predecessor had open: continue from `saved`
    /// (what `savedState()` gave the predecessor; hostile bytes, nil if none) instead of starting
    /// the device's protocol again. The answer is not sent to the guest (it had it).
    func open(_ channel: VMBusChannel, restoring saved: [UInt8]?, now: UInt64) -> VMBusStatus
}

extension VMBusChannelDevice {
    public func savedState() -> [UInt8]? { nil }
    public func open(_ channel: VMBusChannel, restoring saved: [UInt8]?, now: UInt64) -> VMBusStatus { open(channel, now: now) }
}
