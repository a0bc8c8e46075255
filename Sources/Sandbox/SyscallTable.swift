// x86-64 system call numbers, by name, for every call a SynthVM process plausibly makes.
//
// Checked against Linux's arch/x86/entry/syscalls/syscall_64.tbl (the "common" and "64" ABIs)
// and, in SandboxTests, against the host's <asm/unistd_64.h> entry by entry. A name missing here
// is an error in a policy: add it (with its number from the table) when a process needs it.

/// The architecture a `SyscallTable` describes. Only x86-64 exists today.
public enum SyscallArch: String, Sendable {
    case x86_64
}

public enum SyscallTable {
    public static let arch: SyscallArch = .x86_64

    /// The number of `name` on x86-64, or nil if the table does not know it.
    public static func number(of name: String) -> Int32? { numbers[name] }

    /// The name of system call `number`, or nil if the table does not know it.
    public static func name(of number: Int32) -> String? { names[number] }

    /// Every known name, sorted.
    public static var allNames: [String] { numbers.keys.sorted() }

    public static let numbers: [String: Int32] = [
        "read": 0, "write": 1, "open": 2, "close": 3, "stat": 4, "fstat": 5, "lstat": 6,
        "poll": 7, "lseek": 8, "mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12,
        "rt_sigaction": 13, "rt_sigprocmask": 14, "rt_sigreturn": 15, "ioctl": 16,
        "pread64": 17, "pwrite64": 18, "readv": 19, "writev": 20, "access": 21, "pipe": 22,
        "select": 23, "sched_yield": 24, "mremap": 25, "msync": 26, "mincore": 27,
        "madvise": 28, "dup": 32, "dup2": 33, "pause": 34, "nanosleep": 35,
        "getitimer": 36, "alarm": 37, "setitimer": 38, "getpid": 39, "sendfile": 40,
        "socket": 41, "connect": 42, "accept": 43, "sendto": 44, "recvfrom": 45,
        "sendmsg": 46, "recvmsg": 47, "shutdown": 48, "bind": 49, "listen": 50,
        "getsockname": 51, "getpeername": 52, "socketpair": 53, "setsockopt": 54,
        "getsockopt": 55, "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "exit": 60,
        "wait4": 61, "kill": 62, "uname": 63, "fcntl": 72, "flock": 73, "fsync": 74,
        "fdatasync": 75, "ftruncate": 77, "getcwd": 79, "readlink": 89, "umask": 95,
        "gettimeofday": 96, "getrlimit": 97, "getrusage": 98, "sysinfo": 99, "getuid": 102,
        "getgid": 104, "geteuid": 107, "getegid": 108, "getppid": 110, "getpgrp": 111,
        "setsid": 112, "getgroups": 115, "getresuid": 118, "getresgid": 120,
        "capget": 125, "capset": 126, "rt_sigpending": 127, "rt_sigtimedwait": 128,
        "rt_sigqueueinfo": 129, "rt_sigsuspend": 130, "sigaltstack": 131, "personality": 135,
        "statfs": 137, "fstatfs": 138, "getpriority": 140, "setpriority": 141,
        "sched_setparam": 142, "sched_getparam": 143, "sched_setscheduler": 144,
        "sched_getscheduler": 145, "sched_get_priority_max": 146,
        "sched_get_priority_min": 147, "mlock": 149, "munlock": 150, "mlockall": 151,
        "munlockall": 152, "prctl": 157, "arch_prctl": 158, "setrlimit": 160, "sync": 162,
        "gettid": 186, "readahead": 187, "tkill": 200, "time": 201, "futex": 202,
        "sched_setaffinity": 203, "sched_getaffinity": 204, "epoll_create": 213,
        "getdents64": 217, "set_tid_address": 218, "restart_syscall": 219,
        "fadvise64": 221, "timer_create": 222, "timer_settime": 223, "timer_gettime": 224,
        "timer_getoverrun": 225, "timer_delete": 226, "clock_settime": 227,
        "clock_gettime": 228, "clock_getres": 229, "clock_nanosleep": 230, "exit_group": 231,
        "epoll_wait": 232, "epoll_ctl": 233, "tgkill": 234, "mbind": 237,
        "set_mempolicy": 238, "get_mempolicy": 239, "waitid": 247, "ioprio_set": 251,
        "ioprio_get": 252, "inotify_init": 253, "openat": 257, "mkdirat": 258,
        "newfstatat": 262, "unlinkat": 263, "readlinkat": 267, "faccessat": 269,
        "pselect6": 270, "ppoll": 271, "unshare": 272, "set_robust_list": 273,
        "get_robust_list": 274, "splice": 275, "tee": 276, "sync_file_range": 277,
        "vmsplice": 278, "move_pages": 279, "utimensat": 280, "epoll_pwait": 281,
        "signalfd": 282, "timerfd_create": 283, "eventfd": 284, "fallocate": 285,
        "timerfd_settime": 286, "timerfd_gettime": 287, "accept4": 288, "signalfd4": 289,
        "eventfd2": 290, "epoll_create1": 291, "dup3": 292, "pipe2": 293,
        "inotify_init1": 294, "preadv": 295, "pwritev": 296, "rt_tgsigqueueinfo": 297,
        "perf_event_open": 298, "recvmmsg": 299, "prlimit64": 302, "syncfs": 306,
        "sendmmsg": 307, "setns": 308, "getcpu": 309, "process_vm_readv": 310,
        "process_vm_writev": 311, "kcmp": 312, "sched_setattr": 314, "sched_getattr": 315,
        "renameat2": 316, "seccomp": 317, "getrandom": 318, "memfd_create": 319,
        "bpf": 321, "execveat": 322, "userfaultfd": 323, "membarrier": 324,
        "mlock2": 325, "copy_file_range": 326, "preadv2": 327, "pwritev2": 328,
        "pkey_mprotect": 329, "pkey_alloc": 330, "pkey_free": 331, "statx": 332,
        "io_pgetevents": 333, "rseq": 334, "pidfd_send_signal": 424, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "pidfd_open": 434, "clone3": 435, "close_range": 436, "openat2": 437,
        "pidfd_getfd": 438, "faccessat2": 439, "process_madvise": 440, "epoll_pwait2": 441,
        "landlock_create_ruleset": 444, "landlock_add_rule": 445,
        "landlock_restrict_self": 446, "memfd_secret": 447, "process_mrelease": 448,
        "futex_waitv": 449, "futex_wake": 454, "futex_wait": 455, "futex_requeue": 456,
        "mseal": 462,
        // Also needed by the jail before the filter (and by pivot_root-based setups).
        "chdir": 80, "fchdir": 81, "mount": 165, "umount2": 166, "pivot_root": 155,
        "chroot": 161, "setuid": 105, "setgid": 106, "setgroups": 116,
        "setresuid": 117, "setresgid": 119, "sethostname": 170,
    ]

    static let names: [Int32: String] = {
        var r: [Int32: String] = [:]
        for (k, v) in numbers { r[v] = k }
        return r
    }()
}
