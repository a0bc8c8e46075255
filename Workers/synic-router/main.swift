// synthvm-synic-router: the SynIC message-router worker (issue 4).
//
// Started by the monitor's supervisor with exactly one fd: 3, a SEQPACKET control socket. It
// announces itself (WorkerHello), receives the region layout with the region fds attached
// (region 0: guest RAM), maps each region after checking its seals, receives its seccomp filter
// (SeccompProgram, compiled by the monitor from Policies/synic-router.policy) and installs it,
// answers with its own WorkerHello as "attached", and then serves until the monitor closes the
// socket. From "attached" on it runs filtered; a call the policy does not allow traps, and the
// SIGSYS reporter names it on stderr before the process dies by SIGSYS.
//
// Before any of it, the worker enters its jail (`--jail`, Sandbox's Jail.enter: docs/security.md)
// unless the operator said `--no-jail`. Test-only arguments (the supervisor sets argv, the guest
// cannot): `--test-forbidden-syscall` makes the worker call socket(AF_INET, SOCK_STREAM, 0) right
// after attaching; `--test-crash-after-ms N` crashes it (SIGSEGV) N ms after attaching;
// `--test-jail-probes` reports what the jail alone lets it reach. Routing of
// messages and events lands here next; today the worker proves the substrate: spawn with only
// the fds it needs, handshake, shared mappings, death detection.
import CSynthVM
import Glibc
import IPC
import Sandbox

let controlFD: Int32 = 3

func fail(_ message: String) -> Never {
    let line = "synthvm-synic-router: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(1)
}

// --jail LIMITS | --no-jail, and the test-only arguments (Sources/Sandbox/WorkerCommandLine.swift).
let options: WorkerCommandLine
do { options = try WorkerCommandLine.parse(Array(CommandLine.arguments.dropFirst())) } catch { fail("\(error)") }
let testForbiddenSyscall = options.testForbiddenSyscall

/// The SIGSYS reporter's syscall-name table, built before the filter (C strings, never freed).
func installSigsysReporter() {
    let count = Int((SyscallTable.numbers.values.max() ?? 0) + 1)
    let names = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: count)
    names.initialize(repeating: nil, count: count)
    for (name, n) in SyscallTable.numbers { names[Int(n)] = UnsafePointer(strdup(name)) }
    let r = svm_install_sigsys_reporter(strdup("synthvm-synic-router"), names, UInt32(count))
    if r < 0 { fail("cannot install the SIGSYS reporter: \(String(cString: strerror(-r)))") }
}

// Die with the monitor rather than linger with guest memory mapped. (A jailed worker had it
// armed before exec already.) If the monitor died before that, its end of the control socket is
// closed: getppid() cannot tell, it is 0 in a PID namespace of our own.
_ = svm_set_parent_death_signal(SIGKILL)
if Jail.peerHasClosed(controlFD) { exit(0) }

// The jail, before a region is mapped or a guest byte read; the seccomp filter comes after.
if let limits = options.jail {
    do { try Jail.enter(limits) } catch { fail("cannot enter the jail: \(error)") }
    if let targets = options.jailProbes {
        for (probe, result) in JailProbes.run(targets, executable: CommandLine.arguments[0]) {
            let line = "synthvm-synic-router: jail probe: \(probe): \(result)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
    }
}

do {
    let hello = WorkerHello(kind: .synicRouter, pid: getpid())
    try FDPassing.send(hello.encoded(), over: controlFD)
    let reply = try FDPassing.receive(from: controlFD, maxPayload: 4096, maxFDs: RegionLayout.maxEntries)
    let layout: RegionLayout
    do { layout = try RegionLayout.decode(reply.payload) } catch { fail("bad region layout: \(error)") }
    guard layout.entries.count == reply.fds.count else {
        fail("region layout names \(layout.entries.count) regions but \(reply.fds.count) fds came")
    }
    var regions: [SharedRegion] = []
    for (entry, fd) in zip(layout.entries, reply.fds) {
        regions.append(try SharedRegion(adopting: fd, size: Int(entry.size), offset: Int(entry.offset)))
    }
    // The filter: installed before anything touches guest data; no filter, no worker.
    let filterMessage = try FDPassing.receive(from: controlFD, maxPayload: SeccompProgram.maxEncodedSize, maxFDs: 0)
    let program: SeccompProgram
    do { program = try SeccompProgram.decode(filterMessage.payload) } catch { fail("bad seccomp program: \(error)") }
    installSigsysReporter()
    let installed = program.instructions.withUnsafeBytes {
        svm_install_seccomp_filter($0.baseAddress, UInt32(program.instructionCount))
    }
    if installed < 0 { fail("cannot install the seccomp filter: \(String(cString: strerror(-installed)))") }
    if installed > 0 { fail("cannot install the seccomp filter on thread \(installed) (TSYNC)") }
    // Attached: say so with the same hello (the supervisor counts the second one as "ready").
    try FDPassing.send(hello.encoded(), over: controlFD)
    if testForbiddenSyscall { _ = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
    if let ms = options.testCrashAfterMilliseconds { svm_test_crash_after(ms) }
    // Serve until the monitor goes away (the socket closes) or sends something we do not know.
    while true {
        do {
            let m = try FDPassing.receive(from: controlFD, maxPayload: 4096, maxFDs: 0)
            _ = m
        } catch .peerClosed {
            exit(0)
        }
    }
} catch {
    fail("\(error)")
}
