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

    @Test func commonPolicyIsIncludeOnly() throws {
        let error = #expect(throws: PolicyError.self) {
            try Self.parser.parse(file: repositoryRoot + "/Policies/common.policy")
        }
        #expect(error?.kind == .missingDefault)
    }
}
