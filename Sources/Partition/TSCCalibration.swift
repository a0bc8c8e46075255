/// How the monitor learns the guest TSC from the host TSC. KVM runs the guest TSC at the host's
/// rate plus an offset (SynthVM does not ask it to scale), so the monitor reads the guest's
/// IA32_TIME_STAMP_COUNTER through KVM between two host `rdtsc`s and takes the midpoint of that
/// window as the host TSC at the moment of the read. One read is off by up to half its window,
/// and a window is milliseconds when the thread is preempted inside the ioctl (a loaded host):
/// TIME_REF_COUNT (host TSC plus this offset) then disagreed with the TSC page (the guest's own
/// TSC) by that much for the whole life of the VM (the hostile-guest campaign saw 1-2 ms). So the
/// monitor reads several times and keeps the narrowest window.
public struct TSCCalibrationSample: Equatable, Sendable {
    /// Host TSC just before and just after the read of the guest TSC.
    public var hostBefore: UInt64
    public var guest: UInt64
    public var hostAfter: UInt64

    public init(hostBefore: UInt64, guest: UInt64, hostAfter: UInt64) {
        self.hostBefore = hostBefore
        self.guest = guest
        self.hostAfter = hostAfter
    }

    /// Host TSC ticks the read took; nil if the host TSC went backwards (not a usable sample).
    public var window: UInt64? { hostAfter >= hostBefore ? hostAfter - hostBefore : nil }
}

public enum TSCCalibration {
    /// Reads the monitor takes (each one KVM_GET_MSRS, microseconds).
    public static let reads = 8

    /// guest - host (wrapping: the guest TSC may be behind the host's) from the sample with the
    /// narrowest window, at that window's midpoint; nil without a usable sample.
    public static func offset(_ samples: [TSCCalibrationSample]) -> UInt64? {
        var best: (sample: TSCCalibrationSample, window: UInt64)?
        for s in samples {
            guard let w = s.window else { continue }
            if best == nil || w < best!.window { best = (s, w) }
        }
        guard let (s, w) = best else { return nil }
        return s.guest &- (s.hostBefore + w / 2)
    }
}
