import Testing

@testable import Sandbox

/// The real policies in Policies/ must always parse, and say what the workers need.
@Suite struct PolicyFilesTests {
    static let parser = PolicyParser(readFile: { readTextFile($0) })

    @Test func synicRouterPolicyParses() throws {
        let p = try Self.parser.parse(file: repositoryRoot + "/Policies/synic-router.policy")
        #expect(p.defaultAction == .trap)
        let names = Set(p.rules.map(\.syscall))
        for needed in ["prctl", "getppid", "getpid", "sendmsg", "recvmsg", "mmap", "munmap", "fcntl",
                       "fstat", "newfstatat", "close", "write", "exit_group", "futex", "rt_sigreturn"] {
            #expect(names.contains(needed), "\(needed)")
        }
        // What the router does today, allowed; close neighbours, refused.
        let pdeathsig: UInt64 = 1, sigkill: UInt64 = 9
        #expect(p.action(forSyscall: 157, args: [pdeathsig, sigkill]) == .allow)
        #expect(p.action(forSyscall: 157, args: [15, 0]) == .trap)  // PR_SET_NAME
        #expect(p.action(forSyscall: 9, args: [0, 4096, 3, 1, 4, 0]) == .allow)  // RW, MAP_SHARED
        #expect(p.action(forSyscall: 9, args: [0, 4096, 5, 2, 4, 0]) == .trap)  // R|X
        #expect(p.action(forSyscall: 72, args: [4, 1034]) == .allow)  // F_GET_SEALS
        #expect(p.action(forSyscall: 72, args: [4, 1033]) == .trap)  // F_ADD_SEALS
        #expect(p.action(forSyscall: 46, args: [3, 0, 0x4000]) == .allow)
        #expect(p.action(forSyscall: 257) == .trap)  // openat
        #expect(p.action(forSyscall: 41) == .trap)  // socket
        #expect(p.action(forSyscall: 59) == .trap)  // execve
        #expect(p.applying(.log).action(forSyscall: 257) == .log)
    }

    /// The KVM requests in `rule`'s `arg1 == X` / `arg1 in {...}` conditions, by name.
    static func ioctlNames(_ p: Policy) -> Set<String> {
        var values: Set<UInt64> = []
        for group in p.rule(for: "ioctl")?.conditions ?? [] {
            for c in group where c.arg == 1 {
                switch c.op {
                case .equal(let v): values.insert(v)
                case .inSet(let vs): values.formUnion(vs)
                default: values.insert(.max)
                }
            }
        }
        return Set(values.map { v in PolicyConstants.kvm.first { $0.value == v }?.key ?? "0x" + String(v, radix: 16) })
    }

    /// Calls no monitor thread may make: files, sockets, processes, privileges, other code.
    static let neverForTheMonitor = ["open", "openat", "openat2", "creat", "socket", "socketpair", "connect",
                                     "accept", "accept4", "bind", "listen", "clone", "clone3", "fork", "vfork",
                                     "execve", "execveat", "ptrace", "mount", "pivot_root", "chroot", "setuid",
                                     "setgid", "unshare", "setns", "prctl", "seccomp", "bpf", "memfd_create",
                                     "process_vm_writev", "kill", "pidfd_open", "pidfd_send_signal"]

    @Test func monitorPoliciesAllowExactlyTheirKVMCalls() throws {
        let vcpu = try Self.parser.parse(file: repositoryRoot + "/Policies/vcpu.policy")
        let vmm = try Self.parser.parse(file: repositoryRoot + "/Policies/vmm.policy")
        #expect(vcpu.defaultAction == .trap && vmm.defaultAction == .trap)
        // The ioctl rule is only `arg1 ...` conditions (any fd, these requests).
        for p in [vcpu, vmm] {
            let rule = try #require(p.rule(for: "ioctl"))
            #expect(rule.conditions.allSatisfy { $0.allSatisfy { $0.arg == 1 } })
        }
        #expect(Self.ioctlNames(vcpu) == [
            "KVM_RUN", "KVM_GET_REGS", "KVM_SET_REGS", "KVM_GET_SREGS", "KVM_GET_FPU", "KVM_GET_VCPU_EVENTS",
            "KVM_SET_VCPU_EVENTS", "KVM_GET_LAPIC", "KVM_GET_MP_STATE", "KVM_SET_MP_STATE", "KVM_SIGNAL_MSI",
            "KVM_IRQ_LINE", "KVM_SET_GSI_ROUTING", "KVM_IRQFD",
        ])
        #expect(Self.ioctlNames(vmm) == ["KVM_SIGNAL_MSI", "KVM_IRQ_LINE"])
        for name in Self.neverForTheMonitor { #expect(vcpu.rule(for: name) == nil, "\(name)") }
        // The supervisor thread (vmm) kills a hung worker, or one that failed a restart's
        // handshake, through its pidfd: SIGKILL only (docs/faults.md). Nothing else of the list.
        for name in Self.neverForTheMonitor where name != "pidfd_send_signal" { #expect(vmm.rule(for: name) == nil, "\(name)") }
        #expect(vmm.action(forSyscall: 424, args: [5, 9, 0, 0]) == .allow)
        #expect(vmm.action(forSyscall: 424, args: [5, 19, 0, 0]) == .trap)
        // Only the vmm thread kicks (SIGUSR1); nobody may send SIGKILL or SIGSTOP; only to its
        // own process.
        let sigusr1: UInt64 = 10, sigabrt: UInt64 = 6, sigkill: UInt64 = 9
        let env = PolicyEnvironment(selfPID: 4242)
        let (vcpuHere, vmmHere) = (try vcpu.resolving(env), try vmm.resolving(env))
        #expect(vmmHere.action(forSyscall: 234, args: [4242, 2, sigusr1]) == .allow)
        #expect(vcpuHere.action(forSyscall: 234, args: [4242, 2, sigusr1]) == .trap)
        #expect(vcpuHere.action(forSyscall: 234, args: [4242, 2, sigabrt]) == .allow)
        #expect(vmmHere.action(forSyscall: 234, args: [4242, 2, sigkill]) == .trap)
        #expect(vcpuHere.action(forSyscall: 234, args: [1, 2, sigabrt]) == .trap)
        #expect(vmmHere.action(forSyscall: 234, args: [1, 2, sigusr1]) == .trap)
        // Mapping guest-supplied code executable is refused everywhere.
        #expect(vcpu.action(forSyscall: 9, args: [0, 4096, 7, 0x22, 0, 0]) == .trap)
        // No new descriptors on vCPU or vmm threads: the SINT eventfds exist before they start.
        #expect(vcpu.action(forSyscall: 290, args: [0, 0x80800]) == .trap)
        #expect(vmm.action(forSyscall: 290, args: [0, 0x80800]) == .trap)
    }

    /// The thread that runs the VM (monitor.policy): no KVM call, none of the calls above but
    /// killing its own workers through their pidfds, with SIGKILL only.
    @Test func monitorThreadPolicyMakesNoKVMCall() throws {
        let monitor = try Self.parser.parse(file: repositoryRoot + "/Policies/monitor.policy")
        #expect(monitor.defaultAction == .trap)
        #expect(monitor.rule(for: "ioctl") == nil)
        for name in Self.neverForTheMonitor where name != "pidfd_send_signal" && name != "accept4" {
            #expect(monitor.rule(for: name) == nil, "\(name)")
        }
        // The control socket (synthvm-api): accept4 with exactly SOCK_NONBLOCK|SOCK_CLOEXEC, the
        // peer's credentials and nothing else of getsockopt, send with MSG_NOSIGNAL and no address.
        let accept4: Int32 = 288, getsockopt: Int32 = 55, sendto: Int32 = 44
        #expect(monitor.action(forSyscall: accept4, args: [5, 0, 0, 0x80800]) == .allow)
        #expect(monitor.action(forSyscall: accept4, args: [5, 0, 0, 0x80000]) == .trap)  // blocking
        #expect(monitor.action(forSyscall: accept4, args: [5, 0, 0, 0x800]) == .trap)  // inheritable
        #expect(monitor.action(forSyscall: getsockopt, args: [5, 1, 17, 0, 0]) == .allow)
        #expect(monitor.action(forSyscall: getsockopt, args: [5, 1, 16, 0, 0]) == .trap)
        #expect(monitor.action(forSyscall: getsockopt, args: [5, 6, 17, 0, 0]) == .trap)
        #expect(monitor.action(forSyscall: sendto, args: [5, 0, 1, 0x4000, 0, 0]) == .allow)
        #expect(monitor.action(forSyscall: sendto, args: [5, 0, 1, 0, 0, 0]) == .trap)  // SIGPIPE possible
        #expect(monitor.action(forSyscall: sendto, args: [5, 0, 1, 0x4000, 0x1000, 16]) == .trap)  // an address
        for name in ["socket", "bind", "listen", "connect", "sendmsg", "recvmsg", "setsockopt"] {
            #expect(monitor.rule(for: name) == nil, "\(name)")
        }
        let pidfdSendSignal: Int32 = 424, sigkill: UInt64 = 9, sigterm: UInt64 = 15
        #expect(monitor.action(forSyscall: pidfdSendSignal, args: [5, sigkill, 0, 0]) == .allow)
        #expect(monitor.action(forSyscall: pidfdSendSignal, args: [5, sigterm, 0, 0]) == .trap)
        #expect(monitor.action(forSyscall: pidfdSendSignal, args: [5, sigkill, 0x1000, 0]) == .trap)  // a forged siginfo
        // It kicks vCPU threads (SIGUSR1) of its own process and nothing else but the reporter
        // and abort.
        let here = try monitor.resolving(PolicyEnvironment(selfPID: 4242))
        #expect(here.action(forSyscall: 234, args: [4242, 2, 10]) == .allow)
        #expect(here.action(forSyscall: 234, args: [4241, 2, 10]) == .trap)
        #expect(here.action(forSyscall: 234, args: [4242, 2, sigkill]) == .trap)
        // No new descriptors once it runs: eventfd2, dup, pipe.
        for call: Int32 in [290, 32, 293] { #expect(monitor.action(forSyscall: call, args: [0, 0x80800]) == .trap) }
    }

    /// A monitor thread signals its own process only; a worker's policy names no runtime value
    /// (it is compiled before the worker exists, docs/policy-format.md "Runtime values").
    @Test func tgkillTargetsOnlyTheMonitorsOwnProcess() throws {
        for name in ["vcpu", "vmm", "monitor"] {
            let p = try Self.parser.parse(file: repositoryRoot + "/Policies/\(name).policy")
            let rule = try #require(p.rule(for: "tgkill"), "\(name)")
            #expect(!rule.conditions.isEmpty, "\(name)")
            for group in rule.conditions {
                #expect(group.contains(ArgumentCondition(arg: 0, op: .equalRuntime(.selfPID))), "\(name): \(group)")
            }
            #expect(throws: PolicyCompileError.self, "\(name)") { try PolicyCompiler.compile(p, environment: .none) }
        }
        let router = try Self.parser.parse(file: repositoryRoot + "/Policies/synic-router.policy")
        #expect(router.runtimeValues.isEmpty)
        _ = try PolicyCompiler.compile(router, environment: .none)
    }

    @Test func commonPolicyIsIncludeOnly() throws {
        let error = #expect(throws: PolicyError.self) {
            try Self.parser.parse(file: repositoryRoot + "/Policies/common.policy")
        }
        #expect(error?.kind == .missingDefault)
    }
}
