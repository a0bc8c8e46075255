import CSynthVM
import Glibc
import KVM
import Machine
import Partition

/// The partition layer's view of this VM: guest RAM, the guest TSC, MSIs, and VM events,
/// implemented over KVM. Everything here is called from vCPU threads.
enum HyperVPlatform {
    /// Every synthetic MSR is trapped to user space by an MSR filter, so a KVM that does have
    /// in-kernel Hyper-V never answers them behind our back.
    static let trappedMSRs: ClosedRange<UInt32> = 0x4000_0000...0x4000_01FF
}

/// Guest RAM for the partition: bounds-checked, never traps on a hostile GPA.
final class PartitionRAM: PartitionMemory {
    let memory: GuestMemory
    init(_ memory: GuestMemory) { self.memory = memory }

    func contains(gpa: UInt64, length: UInt64) -> Bool {
        memory.layout.backingOffset(gpa: gpa, length: length) != nil
    }

    func read(gpa: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0 else { return nil }
        return try? memory.read(count: count, at: gpa)
    }

    func write(gpa: UInt64, bytes: [UInt8]) -> Bool {
        (try? memory.write(bytes, at: gpa)) != nil
    }

    /// Event flags are shared with the guest (and later with workers): a locked OR, so a flag
    /// set concurrently by the guest clearing its neighbours, or by another VP, is never lost.
    func fetchOr(gpa: UInt64, mask: UInt8) -> UInt8? {
        guard let p = memory.hostPointer(gpa: gpa, length: 1) else { return nil }
        return svm_atomic_fetch_or_u8(p.assumingMemoryBound(to: UInt8.self), mask)
    }
}

/// The guest TSC, derived from the host TSC: KVM runs the guest TSC at host rate plus an offset
/// (SynthVM does not ask KVM to scale it), so calibration reads of IA32_TSC through KVM give the
/// offset (`TSCCalibration`: the narrowest of several windows), and afterwards a guest TSC costs
/// one host `rdtsc`, not an ioctl.
final class GuestTSCClock: PartitionClock {
    let tscFrequencyHz: UInt64
    /// Guest TSC - host TSC (wrapping); the VMBus worker stamps time-sync samples with it.
    let offset: UInt64
    private let threadOfVP: @Sendable (UInt32) -> UInt?

    init(bootVCPU: KVMVCPU, threadOfVP: @escaping @Sendable (UInt32) -> UInt?) throws(KVMError) {
        tscFrequencyHz = try bootVCPU.tscKHz() * 1000
        var samples: [TSCCalibrationSample] = []
        for _ in 0..<TSCCalibration.reads {
            let before = svm_rdtsc()
            let guest = try bootVCPU.getMSRs([0x10]).first?.1 ?? before // IA32_TIME_STAMP_COUNTER
            samples.append(TSCCalibrationSample(hostBefore: before, guest: guest, hostAfter: svm_rdtsc()))
        }
        // No usable sample only if the host TSC ran backwards every time: then as before, one
        // read's midpoint (wrapping).
        offset = TSCCalibration.offset(samples)
            ?? samples[0].guest &- (samples[0].hostBefore / 2 &+ samples[0].hostAfter / 2)
        self.threadOfVP = threadOfVP
    }

    func guestTSC() -> UInt64 { svm_rdtsc() &+ offset }

    func vpRuntimeNanoseconds(vp: UInt32) -> UInt64 {
        guard let t = threadOfVP(vp) else { return 0 }
        return svm_thread_cpu_ns(t)
    }
}

/// Fixed, edge-triggered MSIs to a VP's local APIC (physical destination = APIC ID = VP index).
final class MSIInterrupts: PartitionInterrupts {
    let vm: KVMVirtualMachine
    let vpCount: Int
    init(vm: KVMVirtualMachine, vpCount: Int) {
        self.vm = vm
        self.vpCount = vpCount
    }

    func sendFixedInterrupt(vp: UInt32, vector: UInt8) {
        guard Int(vp) < vpCount else { return }
        _ = try? vm.signalMSI(address: 0xFEE0_0000 | (UInt64(vp) << 12), data: UInt32(vector))
    }
}

/// What happens when the guest reports a crash through the crash MSRs.
public enum GuestCrashAction: String, Sendable, CaseIterable {
    /// Stop the VM (status 8).
    case stop
    /// Log and report, and let the guest go on.
    case `continue`
}

/// Reset requests and guest crash notifications.
final class PartitionEventSink: PartitionEvents, @unchecked Sendable {
    let control: VMControl
    let action: GuestCrashAction
    private var lock = pthread_mutex_t()
    private(set) var notifications: [GuestCrashNotification] = []

    init(control: VMControl, action: GuestCrashAction) {
        self.control = control
        self.action = action
        pthread_mutex_init(&lock, nil)
    }

    func resetRequested(vp: UInt32) {
        control.requestStop(.resetRequested(vcpu: vp))
    }

    func guestCrashed(_ n: GuestCrashNotification) {
        pthread_mutex_lock(&lock)
        notifications.append(n)
        pthread_mutex_unlock(&lock)
        let log = GuestCrashLog.text(n)
        _ = log.withCString { Glibc.write(2, $0, strlen($0)) }
        if action == .stop { control.requestStop(.guestReportedCrash(vcpu: n.vp)) }
    }

    var all: [GuestCrashNotification] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return notifications
    }
}

/// Formats a guest crash notification for the log and as JSON, without Foundation.
enum GuestCrashLog {
    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// The message as text: printable ASCII kept, the rest escaped; stops at the first NUL.
    static func messageText(_ bytes: [UInt8]) -> String {
        var s = ""
        for b in bytes {
            if b == 0 { break }
            if b >= 0x20 && b < 0x7F { s.unicodeScalars.append(Unicode.Scalar(b)) } else if b == 0x0A {
                s += "\n"
            } else {
                s += "\\x" + (b < 16 ? "0" : "") + String(b, radix: 16)
            }
        }
        return s
    }

    static func text(_ n: GuestCrashNotification) -> String {
        var s = "synthvm: guest crash notification from VP \(n.vp): "
            + n.parameters.enumerated().map { "P\($0.offset)=\(hex($0.element))" }.joined(separator: " ") + "\n"
        if let m = n.message { s += "synthvm: guest crash message: \(messageText(m))\n" }
        if n.messageUnreadable { s += "synthvm: guest crash message: unreadable (bad GPA or length)\n" }
        return s
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    static func json(_ n: GuestCrashNotification) -> String {
        var fields = [
            "\"vp\": \(n.vp)",
            "\"parameters\": [" + n.parameters.map { jsonString(hex($0)) }.joined(separator: ", ") + "]",
        ]
        if let m = n.message { fields.append("\"message\": " + jsonString(messageText(m))) } else {
            fields.append("\"message\": null")
        }
        fields.append("\"message_unreadable\": \(n.messageUnreadable)")
        return "{\n  " + fields.joined(separator: ",\n  ") + "\n}\n"
    }
}
