import Testing

@testable import Sandbox

@Suite struct SyscallTableTests {
    @Test func wellKnownNumbers() {
        let known: [(String, Int32)] = [
            ("read", 0), ("write", 1), ("close", 3), ("fstat", 5), ("mmap", 9), ("mprotect", 10),
            ("munmap", 11), ("brk", 12), ("rt_sigreturn", 15), ("ioctl", 16), ("sendmsg", 46),
            ("recvmsg", 47), ("clone", 56), ("exit", 60), ("prctl", 157), ("futex", 202),
            ("exit_group", 231), ("openat", 257), ("getrandom", 318), ("clone3", 435),
            ("pidfd_open", 434), ("memfd_create", 319), ("rseq", 334), ("newfstatat", 262),
        ]
        for (name, number) in known {
            #expect(SyscallTable.number(of: name) == number, "\(name)")
            #expect(SyscallTable.name(of: number) == name)
        }
        #expect(SyscallTable.number(of: "nosuchcall") == nil)
        #expect(SyscallTable.number(of: "stat64") == nil)  // 32-bit only
    }

    @Test func coversWhatAVMMNeeds() {
        let needed = """
            read write readv writev pread64 pwrite64 close openat fstat newfstatat lseek mmap munmap
            mprotect madvise brk rt_sigaction rt_sigprocmask rt_sigreturn sigaltstack ioctl poll ppoll
            epoll_create1 epoll_ctl epoll_wait epoll_pwait eventfd2 timerfd_create timerfd_settime futex
            clone clone3 exit exit_group getpid gettid getppid tgkill kill sched_yield sched_getaffinity
            nanosleep clock_gettime clock_nanosleep socket socketpair sendmsg recvmsg sendto recvfrom
            shutdown prctl arch_prctl set_robust_list rseq set_tid_address getrandom memfd_create fcntl
            dup dup3 pidfd_open pidfd_send_signal waitid mremap munlock mlock membarrier statx uname
            getcwd readlink readlinkat restart_syscall
            """.split(whereSeparator: { $0 == " " || $0 == "\n" })
        for name in needed { #expect(SyscallTable.number(of: String(name)) != nil, "\(name)") }
    }

    @Test func numbersAreUnique() {
        #expect(Set(SyscallTable.numbers.values).count == SyscallTable.numbers.count)
    }

    /// Every entry the host's <asm/unistd_64.h> knows must agree with it (newer calls such as
    /// futex_wait or mseal may be missing from older headers; those were checked by hand).
    @Test(.enabled(if: gccAvailable)) func agreesWithKernelHeaders() throws {
        var c = "#include <stdio.h>\n#include <asm/unistd_64.h>\nint main(void) {\n"
        for name in SyscallTable.allNames {
            c += "#ifdef __NR_\(name)\nprintf(\"\(name) %llu\\n\", (unsigned long long)__NR_\(name));\n#endif\n"
        }
        c += "return 0; }\n"
        let real = try #require(runC(c))
        #expect(real.count >= SyscallTable.numbers.count - 10)
        for (name, value) in real {
            #expect(SyscallTable.number(of: name).map(UInt64.init) == value, "\(name)")
        }
    }
}
