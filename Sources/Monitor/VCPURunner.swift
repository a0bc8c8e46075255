import CSynthVM
import KVM
import HyperV
import Machine
import Partition

/// One vCPU's thread: KVM_RUN, decode the exit, dispatch, repeat. The hot path touches only
/// kvm_run, the port table and local counters.
final class VCPURunner: @unchecked Sendable {
    let index: Int
    let vcpu: KVMVCPU
    let bus: PortIOBus
    let control: VMControl
    let memory: GuestMemory
    let partition: Partition?
    /// The hypercall page's trapping port; -1 (never matches) without a partition.
    let hypercallPort: Int
    /// The partition's advertised CPUID bits, copied once (they never change for a VM).
    let enlightenmentBits: Enlightenments.CPUIDBits
    private(set) var counters = ExitCounters()
    /// Hypercalls by code (`PublishedCounters.hypercallSlot`), this vCPU's own.
    private var hypercallCodes = [Int](repeating: 0, count: PublishedCounters.hypercallSlots)
    private var hypercallsPublished = 0
    /// Where the control socket reads this vCPU's counters (published on kicks and at the end).
    let published = PublishedCounters()
    private(set) var crashReport: String?

    /// Where HvPostMessage/HvSignalEvent go (the SynIC router link, when the router runs).
    let connections: any HypercallConnections
    /// AutoEOI SINT vectors to inject on this vCPU (nil without a SynIC).
    let autoEOI: AutoEOIRelay?

    init(index: Int, vcpu: KVMVCPU, bus: PortIOBus, control: VMControl, memory: GuestMemory, partition: Partition?,
         syncRegs: Bool, connections: any HypercallConnections = NoHypercallConnections.shared,
         autoEOI: AutoEOIRelay? = nil) {
        self.partition = partition
        self.connections = connections
        self.autoEOI = autoEOI
        self.syncRegs = syncRegs
        hypercallPort = partition.map { Int($0.configuration.hypercallPort) } ?? -1
        enlightenmentBits = partition?.configuration.enlightenments.cpuidBits ?? .none
        self.index = index
        self.vcpu = vcpu
        self.bus = bus
        self.control = control
        self.memory = memory
    }

    /// With KVM_CAP_SYNC_REGS, KVM copies the GPRs (and, once the guest has enabled the
    /// hypercall interface, the segment registers) into kvm_run at every exit and takes dirty
    /// GPRs back on entry, so a hypercall costs no register ioctls. Measured on the development
    /// host: KVM_GET_SREGS costs ~5 us (a null hypercall 1.40x a bare exit instead of ~1.06x),
    /// while syncing the segment registers adds a few percent to every exit, so they are
    /// synced only for guests that can make hypercalls at all.
    let syncRegs: Bool

    private func updateSyncedRegisters() {
        guard syncRegs else { return }
        let sregs = partition?.hypercallInterfaceEnabled == true ? KVMCap.syncX86Sregs : 0
        vcpu.run.pointee.kvm_valid_regs = KVMCap.syncX86Regs | sregs
    }

    func run() {
        updateSyncedRegisters()
        svm_set_current_vcpu(Int32(index))
        VCPUKick.register(vcpu)
        control.register(vcpu: index, thread: VCPUKick.currentThread())
        defer {
            control.unregister(vcpu: index)
            publish()
        }
        let run = vcpu.run
        while !control.isStopping {
            if let relay = autoEOI, relay.hasPending(vp: index) {
                if AutoEOIInjection.inject(vcpu: vcpu, vp: index, relay: relay) != nil { counters.autoEOIInjections += 1 }
            }
            let result: KVMVCPU.RunResult
            do { result = try vcpu.runOnce() } catch {
                control.requestStop(.hostFailure(error.description))
                return
            }
            switch result {
            case .again:
                continue
            case .interrupted:
                VCPUKick.clear()
                counters.kicks += 1
                reportParkState()
                continue
            case .exited:
                break
            }
            counters.exits += 1
            switch run.pointee.exit_reason {
            case KVMExitReason.io:
                if Int(run.pointee.io.port) == hypercallPort && run.pointee.io.direction == UInt8(KVM_EXIT_IO_OUT) {
                    handleHypercall()
                } else {
                    handlePortIO(run)
                }
            case KVMExitReason.mmio:
                handleMMIO(run)
            case KVMExitReason.x86RDMSR, KVMExitReason.x86WRMSR:
                handleMSR(run)
            case KVMExitReason.intr:
                VCPUKick.clear()
                counters.kicks += 1
                reportParkState()
            case KVMExitReason.shutdown:
                crash(headline: "triple fault (KVM_EXIT_SHUTDOWN)", detail: [], stop: .tripleFault(vcpu: vcpu.id))
                return
            case KVMExitReason.systemEvent:
                let type = run.pointee.system_event.type
                crash(headline: "KVM_EXIT_SYSTEM_EVENT type \(type)", detail: [],
                      stop: type == UInt32(KVM_SYSTEM_EVENT_CRASH)
                        ? .guestCrash(vcpu: vcpu.id, summary: "system event crash") : .tripleFault(vcpu: vcpu.id))
                return
            case KVMExitReason.internalError:
                let ie = run.pointee.internal
                let name = KVMExitReason.internalErrorName(ie.suberror)
                var notCompleted: [String] = []
                if ie.suberror == UInt32(KVM_INTERNAL_ERROR_EMULATION) {
                    switch EmulationFixups.complete(vcpu: vcpu, memory: memory) {
                    case .completed:
                        counters.emulationFixups += 1
                        continue
                    case let .notCompleted(why):
                        notCompleted = ["not completed by SynthVM: \(why)"]
                    }
                }
                var words: [String] = []
                withUnsafeBytes(of: ie.data) { raw in
                    let d = raw.bindMemory(to: UInt64.self)
                    for i in 0..<min(Int(ie.ndata), d.count) { words.append(CrashReport.hex(d[i])) }
                }
                crash(headline: "KVM internal error, \(name)",
                      detail: notCompleted + (words.isEmpty ? [] : ["KVM data: " + words.joined(separator: " ")]),
                      stop: .guestCrash(vcpu: vcpu.id, summary: "KVM internal error, \(name)"))
                return
            case KVMExitReason.failEntry:
                let reason = run.pointee.fail_entry.hardware_entry_failure_reason
                crash(headline: "KVM_EXIT_FAIL_ENTRY (hardware reason 0x\(String(reason, radix: 16)))", detail: [],
                      stop: .guestCrash(vcpu: vcpu.id, summary: "VM entry failed"))
                return
            default:
                let name = KVMExitReason.name(run.pointee.exit_reason)
                crash(headline: "unhandled \(name)", detail: [],
                      stop: .guestCrash(vcpu: vcpu.id, summary: "unhandled \(name)"))
                return
            }
        }
    }

    private func crash(headline: String, detail: [String], stop: StopReason) {
        crashReport = CrashReport.make(vcpu: vcpu, headline: headline, detail: detail, memory: memory)
        control.requestStop(stop)
    }

    /// Copies the counters where the control socket reads them (PublishedCounters).
    private func publish() {
        published.publish(counters, hypercallCodes: hypercallCodes, hypercallsChanged: counters.hypercalls != hypercallsPublished)
        hypercallsPublished = counters.hypercalls
    }

    /// After a kick: is this vCPU parked for good (HLT with IF=0, or an AP awaiting SIPI)?
    private func reportParkState() {
        publish()
        guard let mp = try? vcpu.getMPState() else { return }
        var parked = false
        if mp == KVMMPState.uninitialized || mp == KVMMPState.initReceived {
            parked = true
        } else if mp == KVMMPState.halted, let regs = try? vcpu.getRegs() {
            parked = regs.rflags & 0x200 == 0
        }
        control.report(vcpu: index, parked: parked)
    }

    /// The hypercall page's `out imm8, al` trapped: decode the registers, dispatch, write the
    /// result back. RIP is left alone so KVM completes the OUT and the guest returns from the stub.
    private func handleHypercall() {
        guard let p = partition else { return }
        counters.hypercalls += 1
        do {
            let run = vcpu.run
            defer { updateSyncedRegisters() }
            var regs = syncRegs ? run.pointee.s.regs.regs : try vcpu.getRegs()
            let sregsSynced = syncRegs && run.pointee.kvm_valid_regs & KVMCap.syncX86Sregs != 0
            let sregs = sregsSynced ? run.pointee.s.regs.sregs : try vcpu.getSregs()
            // TLFS: only LMA with CS.L makes a 64-bit caller; any other protected mode (compatibility
            // mode included) uses the 32-bit convention; real and virtual-8086 mode get #UD.
            let longMode = sregs.efer & (1 << 10) != 0 && sregs.cs.l == 1
            let protected = sregs.cr0 & 1 != 0 && regs.rflags & (1 << 17) == 0
            let mode: VPExecutionMode = longMode ? .long64 : (protected ? .protected32 : .other)
            let e = enlightenmentBits
            var input = VPRegisters(rax: regs.rax, rbx: regs.rbx, rcx: regs.rcx, rdx: regs.rdx,
                                    rsi: regs.rsi, rdi: regs.rdi, r8: regs.r8, xmm: [])
            if let call = HypercallInput(registers: input, mode: mode) {
                hypercallCodes[PublishedCounters.hypercallSlot(call.control.callCode.rawValue)] += 1
            }
            // XMM0-5 cost a KVM_GET_FPU: fetched only when XMM input is advertised and this call uses it.
            if e.featuresEDX & HvFeatureEDX.xmmHypercallInput != 0,
               let d = HypercallInput(registers: input, mode: mode),
               HypercallDispatcher.needsXMMInput(d, featuresEDX: e.featuresEDX) {
                let fpu = try vcpu.getFPU()
                withUnsafeBytes(of: fpu.xmm) { raw in
                    input.xmm = Array(raw.bindMemory(to: UInt64.self).prefix(12))
                }
            }
            let context = HypercallContext(
                vp: UInt32(index), vpCount: p.configuration.vpCount, privilegesEBX: e.privilegesEBX,
                featuresEDX: e.featuresEDX, hintsEAX: e.hintsEAX, interfaceEnabled: p.hypercallInterfaceEnabled,
                cpl: UInt8(sregs.cs.selector & 3), mode: mode, memory: p.memory, interrupts: p.interrupts,
                connections: connections)
            switch HypercallDispatcher.dispatch(input, context: context) {
            case let .completed(out):
                regs.rax = out.rax
                regs.rbx = out.rbx
                regs.rcx = out.rcx
                regs.rdx = out.rdx
                regs.rsi = out.rsi
                regs.rdi = out.rdi
                regs.r8 = out.r8
                if syncRegs {
                    run.pointee.s.regs.regs = regs
                    run.pointee.kvm_dirty_regs |= KVMCap.syncX86Regs
                } else {
                    try vcpu.setRegs(regs)
                }
            case .invalidOpcode:
                try vcpu.injectException(6)
            }
        } catch {
            control.requestStop(.hostFailure("hypercall on vCPU \(index): \(error)"))
        }
    }

    @inline(__always)
    private func handlePortIO(_ run: UnsafeMutablePointer<kvm_run>) {
        counters.portIO += 1
        let io = run.pointee.io
        let size = Int(io.size)
        let data = UnsafeMutableRawPointer(run).advanced(by: Int(io.data_offset))
        let device = bus.device(at: io.port)
        let isOut = io.direction == UInt8(KVM_EXIT_IO_OUT)
        for i in 0..<Int(io.count) {
            let p = data.advanced(by: i * size)
            if isOut {
                let value: UInt32
                switch size {
                case 1: value = UInt32(p.load(as: UInt8.self))
                case 2: value = UInt32(p.loadUnaligned(as: UInt16.self))
                default: value = p.loadUnaligned(as: UInt32.self)
                }
                if let d = device { d.write(port: io.port, size: size, value: value) } else { counters.unknownPortWrites += 1 }
            } else {
                let value: UInt32
                if let d = device { value = d.read(port: io.port, size: size) } else {
                    counters.unknownPortReads += 1
                    value = 0xFFFF_FFFF
                }
                switch size {
                case 1: p.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
                case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: value), as: UInt16.self)
                default: p.storeBytes(of: value, as: UInt32.self)
                }
            }
        }
    }

    /// No MMIO devices live in user space yet: reads return all-ones, writes are dropped.
    private func handleMMIO(_ run: UnsafeMutablePointer<kvm_run>) {
        counters.mmio += 1
        if run.pointee.mmio.is_write != 0 {
            counters.unknownMMIOWrites += 1
        } else {
            counters.unknownMMIOReads += 1
            withUnsafeMutableBytes(of: &run.pointee.mmio.data) { b in
                for i in 0..<b.count { b[i] = 0xFF }
            }
        }
    }

    /// MSRs KVM does not handle reach us (KVM_CAP_X86_USER_SPACE_MSR and the filter over the
    /// synthetic range): synthetic ones go to the partition, the rest get #GP.
    private func handleMSR(_ run: UnsafeMutablePointer<kvm_run>) {
        counters.msr += 1
        let isRead = run.pointee.exit_reason == KVMExitReason.x86RDMSR
        let index = run.pointee.msr.index
        if let p = partition, HyperVPlatform.trappedMSRs.contains(index) {
            let vp = UInt32(self.index)
            let result = isRead ? p.readMSR(vp: vp, index: index) : p.writeMSR(vp: vp, index: index, value: run.pointee.msr.data)
            switch result {
            case let .value(v):
                run.pointee.msr.data = v
                run.pointee.msr.error = 0
            case .written:
                run.pointee.msr.error = 0
            case .generalProtection:
                run.pointee.msr.error = 1
            }
            if isRead {
                counters.syntheticMSRReads += 1
            } else {
                counters.syntheticMSRWrites += 1
                // GUEST_OS_ID and HYPERCALL writes turn the hypercall interface on and off.
                updateSyncedRegisters()
            }
            return
        }
        if isRead {
            counters.unknownMSRReads += 1
        } else {
            counters.unknownMSRWrites += 1
        }
        run.pointee.msr.error = 1
    }
}
