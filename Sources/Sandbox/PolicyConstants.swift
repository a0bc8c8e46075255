// Named constants a policy condition may use (x86-64 Linux values). Each one is checked against
// the host's C headers in SandboxTests (a small C program compiled by gcc prints the real value).
// A name missing here is an error in a policy: add it, with its header, when a policy needs it.

public enum PolicyConstants {
    /// The value of `name`, or nil if it is not a known constant.
    public static func value(of name: String) -> UInt64? { values[name] }

    /// Every known name, sorted.
    public static var allNames: [String] { values.keys.sorted() }

    public static let values: [String: UInt64] = {
        var all: [String: UInt64] = [:]
        for group in [kvm, memory, futex, prctl, sockets, files, eventfds, clone, signals, misc, errnos] {
            for (name, value) in group {
                precondition(all[name] == nil, "constant \(name) defined twice")
                all[name] = value
            }
        }
        return all
    }()

    /// KVM ioctl request numbers (linux/kvm.h; _IO/_IOR/_IOW/_IOWR of type 0xAE).
    public static let kvm: [String: UInt64] = [
        "KVM_GET_API_VERSION": 0xAE00, "KVM_CREATE_VM": 0xAE01, "KVM_CHECK_EXTENSION": 0xAE03,
        "KVM_GET_VCPU_MMAP_SIZE": 0xAE04, "KVM_GET_SUPPORTED_CPUID": 0xC008_AE05,
        "KVM_GET_SUPPORTED_HV_CPUID": 0xC008_AEC1, "KVM_CREATE_VCPU": 0xAE41,
        "KVM_SET_USER_MEMORY_REGION": 0x4020_AE46, "KVM_SET_TSS_ADDR": 0xAE47,
        "KVM_SET_IDENTITY_MAP_ADDR": 0x4008_AE48, "KVM_CREATE_IRQCHIP": 0xAE60,
        "KVM_IRQ_LINE": 0x4008_AE61, "KVM_GET_IRQCHIP": 0xC208_AE62, "KVM_SET_IRQCHIP": 0x8208_AE63,
        "KVM_IRQ_LINE_STATUS": 0xC008_AE67, "KVM_SET_GSI_ROUTING": 0x4008_AE6A,
        "KVM_IRQFD": 0x4020_AE76, "KVM_CREATE_PIT2": 0x4040_AE77, "KVM_IOEVENTFD": 0x4040_AE79,
        "KVM_SET_CLOCK": 0x4030_AE7B, "KVM_GET_CLOCK": 0x8030_AE7C,
        "KVM_RUN": 0xAE80, "KVM_GET_REGS": 0x8090_AE81, "KVM_SET_REGS": 0x4090_AE82,
        "KVM_GET_SREGS": 0x8138_AE83, "KVM_SET_SREGS": 0x4138_AE84, "KVM_TRANSLATE": 0xC018_AE85,
        "KVM_INTERRUPT": 0x4004_AE86, "KVM_GET_MSRS": 0xC008_AE88, "KVM_SET_MSRS": 0x4008_AE89,
        "KVM_SET_SIGNAL_MASK": 0x4004_AE8B, "KVM_GET_FPU": 0x81A0_AE8C, "KVM_SET_FPU": 0x41A0_AE8D,
        "KVM_GET_LAPIC": 0x8400_AE8E, "KVM_SET_LAPIC": 0x4400_AE8F,
        "KVM_SET_CPUID2": 0x4008_AE90, "KVM_GET_CPUID2": 0xC008_AE91,
        "KVM_GET_MP_STATE": 0x8004_AE98, "KVM_SET_MP_STATE": 0x4004_AE99, "KVM_NMI": 0xAE9A,
        "KVM_SET_GUEST_DEBUG": 0x4048_AE9B,
        "KVM_GET_VCPU_EVENTS": 0x8040_AE9F, "KVM_SET_VCPU_EVENTS": 0x4040_AEA0,
        "KVM_GET_DEBUGREGS": 0x8080_AEA1, "KVM_SET_DEBUGREGS": 0x4080_AEA2,
        "KVM_SET_TSC_KHZ": 0xAEA2, "KVM_GET_TSC_KHZ": 0xAEA3, "KVM_ENABLE_CAP": 0x4068_AEA3,
        "KVM_GET_XSAVE": 0x9000_AEA4, "KVM_SET_XSAVE": 0x5000_AEA5, "KVM_SIGNAL_MSI": 0x4020_AEA5,
        "KVM_GET_XCRS": 0x8188_AEA6, "KVM_SET_XCRS": 0x4188_AEA7, "KVM_KVMCLOCK_CTRL": 0xAEAD,
    ]

    /// mmap/mprotect/madvise/mremap (sys/mman.h).
    public static let memory: [String: UInt64] = [
        "PROT_NONE": 0, "PROT_READ": 1, "PROT_WRITE": 2, "PROT_EXEC": 4,
        "MAP_SHARED": 0x1, "MAP_PRIVATE": 0x2, "MAP_SHARED_VALIDATE": 0x3, "MAP_FIXED": 0x10,
        "MAP_ANONYMOUS": 0x20, "MAP_GROWSDOWN": 0x100, "MAP_NORESERVE": 0x4000,
        "MAP_POPULATE": 0x8000, "MAP_STACK": 0x20000, "MAP_FIXED_NOREPLACE": 0x100000,
        "MADV_NORMAL": 0, "MADV_RANDOM": 1, "MADV_SEQUENTIAL": 2, "MADV_WILLNEED": 3,
        "MADV_DONTNEED": 4, "MADV_FREE": 8, "MADV_REMOVE": 9, "MADV_DONTFORK": 10,
        "MADV_DOFORK": 11, "MADV_MERGEABLE": 12, "MADV_UNMERGEABLE": 13, "MADV_HUGEPAGE": 14,
        "MADV_NOHUGEPAGE": 15, "MADV_DONTDUMP": 16, "MADV_DODUMP": 17, "MADV_WIPEONFORK": 18,
        "MADV_KEEPONFORK": 19, "MADV_COLD": 20, "MADV_PAGEOUT": 21, "MADV_POPULATE_READ": 22,
        "MADV_POPULATE_WRITE": 23, "MADV_DONTNEED_LOCKED": 24, "MADV_COLLAPSE": 25,
        "MADV_GUARD_INSTALL": 102, "MADV_GUARD_REMOVE": 103,
        "MREMAP_MAYMOVE": 1, "MREMAP_FIXED": 2, "MREMAP_DONTUNMAP": 4,
    ]

    /// futex operations (linux/futex.h).
    public static let futex: [String: UInt64] = [
        "FUTEX_WAIT": 0, "FUTEX_WAKE": 1, "FUTEX_FD": 2, "FUTEX_REQUEUE": 3,
        "FUTEX_CMP_REQUEUE": 4, "FUTEX_WAKE_OP": 5, "FUTEX_LOCK_PI": 6, "FUTEX_UNLOCK_PI": 7,
        "FUTEX_TRYLOCK_PI": 8, "FUTEX_WAIT_BITSET": 9, "FUTEX_WAKE_BITSET": 10,
        "FUTEX_WAIT_REQUEUE_PI": 11, "FUTEX_CMP_REQUEUE_PI": 12, "FUTEX_LOCK_PI2": 13,
        "FUTEX_PRIVATE_FLAG": 128, "FUTEX_CLOCK_REALTIME": 256,
        "FUTEX_WAIT_PRIVATE": 128, "FUTEX_WAKE_PRIVATE": 129, "FUTEX_REQUEUE_PRIVATE": 131,
        "FUTEX_CMP_REQUEUE_PRIVATE": 132, "FUTEX_WAKE_OP_PRIVATE": 133,
        "FUTEX_LOCK_PI_PRIVATE": 134, "FUTEX_UNLOCK_PI_PRIVATE": 135,
        "FUTEX_TRYLOCK_PI_PRIVATE": 136, "FUTEX_WAIT_BITSET_PRIVATE": 137,
        "FUTEX_WAKE_BITSET_PRIVATE": 138,
    ]

    /// prctl options (linux/prctl.h) and arch_prctl codes (asm/prctl.h).
    public static let prctl: [String: UInt64] = [
        "PR_SET_PDEATHSIG": 1, "PR_GET_PDEATHSIG": 2, "PR_GET_DUMPABLE": 3, "PR_SET_DUMPABLE": 4,
        "PR_SET_NAME": 15, "PR_GET_NAME": 16, "PR_GET_SECCOMP": 21, "PR_SET_SECCOMP": 22,
        "PR_CAPBSET_READ": 23, "PR_CAPBSET_DROP": 24, "PR_SET_TIMERSLACK": 29,
        "PR_GET_TIMERSLACK": 30, "PR_SET_MM": 35, "PR_SET_NO_NEW_PRIVS": 38,
        "PR_GET_NO_NEW_PRIVS": 39, "PR_SET_THP_DISABLE": 41, "PR_GET_THP_DISABLE": 42,
        "PR_CAP_AMBIENT": 47, "PR_SET_VMA": 0x5356_4D41,
        "ARCH_SET_GS": 0x1001, "ARCH_SET_FS": 0x1002, "ARCH_GET_FS": 0x1003, "ARCH_GET_GS": 0x1004,
        "ARCH_GET_CPUID": 0x1011, "ARCH_SET_CPUID": 0x1012, "ARCH_GET_XCOMP_SUPP": 0x1021,
        "ARCH_GET_XCOMP_PERM": 0x1022, "ARCH_REQ_XCOMP_PERM": 0x1023,
    ]

    /// socket families, types and message flags (sys/socket.h).
    public static let sockets: [String: UInt64] = [
        "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16,
        "SOCK_STREAM": 1, "SOCK_DGRAM": 2, "SOCK_SEQPACKET": 5,
        "SOCK_NONBLOCK": 0x800, "SOCK_CLOEXEC": 0x80000,
        "MSG_PEEK": 0x2, "MSG_TRUNC": 0x20, "MSG_DONTWAIT": 0x40, "MSG_WAITALL": 0x100,
        "MSG_NOSIGNAL": 0x4000, "MSG_CMSG_CLOEXEC": 0x4000_0000,
        "SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2,
        // getsockopt level and option (asm-generic/socket.h): the control socket's peer credentials.
        "SOL_SOCKET": 1, "SO_PEERCRED": 17,
    ]

    /// open flags, fcntl commands, seals, memfd flags, *at flags (fcntl.h, linux/memfd.h).
    public static let files: [String: UInt64] = [
        "O_RDONLY": 0, "O_WRONLY": 0x1, "O_RDWR": 0x2, "O_CREAT": 0x40, "O_EXCL": 0x80,
        "O_NOCTTY": 0x100, "O_TRUNC": 0x200, "O_APPEND": 0x400, "O_NONBLOCK": 0x800,
        "O_DIRECT": 0x4000, "O_DIRECTORY": 0x10000, "O_NOFOLLOW": 0x20000,
        "O_CLOEXEC": 0x80000, "O_PATH": 0x200000, "O_TMPFILE": 0x410000,
        "F_DUPFD": 0, "F_GETFD": 1, "F_SETFD": 2, "F_GETFL": 3, "F_SETFL": 4,
        "F_DUPFD_CLOEXEC": 1030, "F_ADD_SEALS": 1033, "F_GET_SEALS": 1034, "FD_CLOEXEC": 1,
        "F_SEAL_SEAL": 0x1, "F_SEAL_SHRINK": 0x2, "F_SEAL_GROW": 0x4, "F_SEAL_WRITE": 0x8,
        "F_SEAL_FUTURE_WRITE": 0x10,
        "MFD_CLOEXEC": 0x1, "MFD_ALLOW_SEALING": 0x2, "MFD_HUGETLB": 0x4,
        "MFD_NOEXEC_SEAL": 0x8, "MFD_EXEC": 0x10,
        "AT_SYMLINK_NOFOLLOW": 0x100, "AT_EMPTY_PATH": 0x1000,
    ]

    /// eventfd, timerfd, epoll flags (sys/eventfd.h, sys/timerfd.h, sys/epoll.h).
    public static let eventfds: [String: UInt64] = [
        "EFD_SEMAPHORE": 0x1, "EFD_NONBLOCK": 0x800, "EFD_CLOEXEC": 0x80000,
        "TFD_NONBLOCK": 0x800, "TFD_CLOEXEC": 0x80000, "TFD_TIMER_ABSTIME": 0x1,
        "EPOLL_CLOEXEC": 0x80000, "EPOLL_CTL_ADD": 1, "EPOLL_CTL_DEL": 2, "EPOLL_CTL_MOD": 3,
    ]

    /// clone flags (sched.h, linux/sched.h).
    public static let clone: [String: UInt64] = [
        "CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400, "CLONE_SIGHAND": 0x800,
        "CLONE_PIDFD": 0x1000, "CLONE_PTRACE": 0x2000, "CLONE_VFORK": 0x4000,
        "CLONE_PARENT": 0x8000, "CLONE_THREAD": 0x10000, "CLONE_NEWNS": 0x20000,
        "CLONE_SYSVSEM": 0x40000, "CLONE_SETTLS": 0x80000, "CLONE_PARENT_SETTID": 0x100000,
        "CLONE_CHILD_CLEARTID": 0x200000, "CLONE_DETACHED": 0x400000,
        "CLONE_UNTRACED": 0x800000, "CLONE_CHILD_SETTID": 0x1000000,
        "CLONE_NEWCGROUP": 0x2000000, "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000,
        "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000,
        "CLONE_IO": 0x80000000,
    ]

    /// signal numbers (signal.h).
    public static let signals: [String: UInt64] = [
        "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
        "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12,
        "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGCHLD": 17, "SIGCONT": 18,
        "SIGSTOP": 19, "SIGSYS": 31,
        "SIG_BLOCK": 0, "SIG_UNBLOCK": 1, "SIG_SETMASK": 2,
    ]

    /// clocks, getrandom, membarrier, waitid, tty ioctls.
    public static let misc: [String: UInt64] = [
        "CLOCK_REALTIME": 0, "CLOCK_MONOTONIC": 1, "CLOCK_PROCESS_CPUTIME_ID": 2,
        "CLOCK_THREAD_CPUTIME_ID": 3, "CLOCK_MONOTONIC_RAW": 4, "CLOCK_REALTIME_COARSE": 5,
        "CLOCK_MONOTONIC_COARSE": 6, "CLOCK_BOOTTIME": 7,
        "GRND_NONBLOCK": 1, "GRND_RANDOM": 2, "GRND_INSECURE": 4,
        "MEMBARRIER_CMD_QUERY": 0, "MEMBARRIER_CMD_GLOBAL": 1,
        "MEMBARRIER_CMD_GLOBAL_EXPEDITED": 2, "MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED": 4,
        "MEMBARRIER_CMD_PRIVATE_EXPEDITED": 8,
        "MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED": 16,
        "P_ALL": 0, "P_PID": 1, "P_PGID": 2, "P_PIDFD": 3,
        "WNOHANG": 1, "WSTOPPED": 2, "WEXITED": 4, "WCONTINUED": 8, "WNOWAIT": 0x1000000,
        "TCGETS": 0x5401, "TIOCGWINSZ": 0x5413, "FIONBIO": 0x5421, "FIOCLEX": 0x5451,
    ]

    /// errno values, for `@default errno ENOENT` and conditions (errno.h).
    public static let errnos: [String: UInt64] = [
        "EPERM": 1, "ENOENT": 2, "EINTR": 4, "EIO": 5, "EBADF": 9, "EAGAIN": 11, "ENOMEM": 12,
        "EACCES": 13, "EFAULT": 14, "EINVAL": 22, "ENOSYS": 38,
    ]
}
