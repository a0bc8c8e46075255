import CSynthVM
import Glibc
import KVM
import Machine
import Monitor

/// The floor the exit benchmarks measure SynthVM against: a VM built exactly as SynthVM builds
/// one (same guest, memory and vCPU setup) but driven by the barest KVM_RUN loop this process can
/// run: no bus, no supervisor, no partition. What every floor answers alike is answered here:
/// a write to the exit device's port 0xF4 stops the loop, and a port read (the COM1 LSR polls of
/// the guests' printf) gets 0x60, "transmitter empty". Every other exit goes to the benchmark's
/// `onExit`, which answers it and says whether to go on.
struct BareKVMLoop {
    enum Next { case resume, stop, unexpected }

    /// One exit as `onExit` sees it; answers go straight back into kvm_run.
    struct Exit {
        let run: UnsafeMutablePointer<kvm_run>
        /// This exit's number in the run, from 1 (a KVM_RUN interrupted by a signal is no exit).
        let number: Int
        var reason: UInt32 { run.pointee.exit_reason }
        /// KVM_EXIT_IO: the port written, and the first byte written to it.
        var port: UInt16 { run.pointee.io.port }
        var byte: UInt8 { UnsafeRawPointer(run).load(fromByteOffset: Int(run.pointee.io.data_offset), as: UInt8.self) }
        /// Completes an RDMSR (reading `data`) or WRMSR exit.
        func answerMSR(_ data: UInt64) {
            run.pointee.msr.data = data
            run.pointee.msr.error = 0
        }
        /// Refuses an RDMSR/WRMSR exit: KVM injects #GP, as for an MSR nobody implements.
        func refuseMSR() { run.pointee.msr.error = 1 }
    }

    static let exitPort: UInt16 = 0xF4
    static let lsrTransmitterEmpty: UInt8 = 0x60

    let vm: VirtualMachine
    var vcpu: KVMVCPU { vm.vcpus[0] }

    init(config: MachineConfig) throws {
        vm = try VirtualMachine(config: config)
    }

    /// Runs vCPU 0 until the guest writes the exit port or `onExit` says stop. An exit `onExit`
    /// calls unexpected (an emulation failure, a triple fault, ...) ends the loop with an error
    /// that says where the guest stood. Returns the number of exits.
    @discardableResult
    func run(_ onExit: (Exit) throws -> Next) throws -> Int {
        let vcpu = self.vcpu, run = vcpu.run
        var exits = 0
        while true {
            let r = svm_ioctl_val(vcpu.fd.rawValue, svm_KVM_RUN, 0)
            if r < 0 {
                if r == -Int(EINTR) || r == -Int(EAGAIN) { continue }
                throw BenchError("KVM_RUN failed: \(-r)")
            }
            exits += 1
            if run.pointee.exit_reason == UInt32(KVM_EXIT_IO) {
                if run.pointee.io.port == Self.exitPort { return exits }
                if run.pointee.io.direction == UInt8(KVM_EXIT_IO_IN) {
                    UnsafeMutableRawPointer(run).advanced(by: Int(run.pointee.io.data_offset))
                        .storeBytes(of: Self.lsrTransmitterEmpty, as: UInt8.self)
                    continue
                }
            }
            switch try onExit(Exit(run: run, number: exits)) {
            case .resume: continue
            case .stop: return exits
            case .unexpected: throw BenchError("raw loop: unexpected \(describe(run))")
            }
        }
    }

    /// "KVM_EXIT_… at RIP …, bytes …": the exit, and the instruction bytes at RIP read through the
    /// guest's own page tables, enough to tell which instruction KVM gave up on.
    func describe(_ run: UnsafeMutablePointer<kvm_run>) -> String {
        var text = KVMExitReason.name(run.pointee.exit_reason)
        if run.pointee.exit_reason == KVMExitReason.internalError {
            text += " (\(KVMExitReason.internalErrorName(run.pointee.internal.suberror)))"
        }
        guard let regs = try? vcpu.getRegs(), let sregs = try? vcpu.getSregs() else { return text + ", registers unavailable" }
        var bytes: [UInt8] = []
        if let gpa = InstructionAtRIP.physicalAddress(regs: regs, sregs: sregs, memory: vm.memory) {
            bytes = InstructionAtRIP.bytes(at: gpa, count: 16, memory: vm.memory)
        }
        return text + " at RIP 0x\(String(regs.rip, radix: 16)), bytes "
            + (bytes.isEmpty ? "unreadable" : bytes.map { ($0 < 0x10 ? "0" : "") + String($0, radix: 16) }.joined(separator: " "))
    }
}
