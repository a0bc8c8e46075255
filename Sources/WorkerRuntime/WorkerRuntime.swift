import CSynthVM
import Glibc
import IPC
import Sandbox

/// The fixed sequence every worker process runs around its own service (docs/processes.md,
/// "Starting a worker" and "Handshake"), in one place instead of in each `Workers/<name>/main.swift`
/// (STYLE.md, "Worker skeleton"):
///
/// 1. `start`: parse the command line the monitor wrote, arm the parent-death signal and leave if
///    the monitor is already gone, install the memory-budget reporter, enter the jail (and run the
///    jail probes tests ask for);
/// 2. `announceAndMapRegions`: say hello, receive the region layout with its fds, and map each
///    region after checking its seals;
/// 3. the worker kind's own setup messages (the caller's);
/// 4. `attach`: install the SIGSYS reporter and the seccomp filter, say "attached", then run the
///    test hooks the command line asked for;
/// 5. the caller's serve loop, sleeping in `poll` (bounded, so the heartbeat word moves even when
///    idle: docs/faults.md, "Liveness"), which ends when `controlMessage()` says the monitor closed the
///    control socket, so `run()` returns (a loop left only by exit() is what Swift 6.3.1
///    miscompiled: docs/toolchain.md).
///
/// Everything here is the worker's own process; it exits on a failure with one line on stderr.
public struct WorkerRuntime: Sendable {
    /// The control socket (SEQPACKET), the only fd a worker is started with besides stdio.
    public static let controlFD: Int32 = 3

    /// The executable's name, the prefix of every line it writes.
    public let name: String
    public let options: WorkerCommandLine

    /// Step 1; exits 0 when the monitor is already gone, 1 on any failure.
    public static func start(name: String) -> WorkerRuntime {
        let runtime: WorkerRuntime
        do {
            runtime = WorkerRuntime(name: name, options: try WorkerCommandLine.parse(Array(CommandLine.arguments.dropFirst())))
        } catch {
            WorkerRuntime(name: name, options: WorkerCommandLine(jail: nil)).fail("\(error)")
        }
        // Die with the monitor rather than linger with guest memory mapped. (A jailed worker had
        // it armed before exec already.) If the monitor died before that, its end of the control
        // socket is closed: getppid() cannot tell, it is 0 in a PID namespace of our own.
        _ = svm_set_parent_death_signal(SIGKILL)
        if Jail.peerHasClosed(controlFD) { exit(0) }
        // Running out of its memory budget (the jail's RLIMIT_AS) is said as such, not as a bare
        // crash: the reporter exits with MemoryBudget.exitStatus and the supervisor names the worker.
        let r = svm_install_memory_budget_reporter(strdup(name), MemoryBudget.probeBytes, MemoryBudget.exitStatus)
        if r < 0 { runtime.fail("cannot install the memory-budget reporter: \(String(cString: strerror(-r)))") }
        // The jail, before a region is mapped or a guest byte read; the seccomp filter comes after.
        if let limits = runtime.options.jail {
            do { try Jail.enter(limits) } catch { runtime.fail("cannot enter the jail: \(error)") }
            if let targets = runtime.options.jailProbes {
                for (probe, result) in JailProbes.run(targets, executable: CommandLine.arguments[0]) {
                    runtime.say("jail probe: \(probe): \(result)")
                }
            }
        }
        return runtime
    }

    /// One line on stderr, prefixed with the worker's name (the supervisor relays it).
    public func say(_ message: String) {
        let line = "\(name): \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }

    public func fail(_ message: String) -> Never {
        say(message)
        exit(1)
    }

    /// Step 2: the hello (returned: it is sent again as "attached") and the regions by id.
    public func announceAndMapRegions(kind: WorkerKind) throws -> (WorkerHello, [UInt32: SharedRegion]) {
        let hello = WorkerHello(kind: kind, pid: getpid())
        try FDPassing.send(hello.encoded(), over: Self.controlFD)
        let reply = try FDPassing.receive(from: Self.controlFD, maxPayload: 4096, maxFDs: RegionLayout.maxEntries)
        let layout: RegionLayout
        do { layout = try RegionLayout.decode(reply.payload) } catch { fail("bad region layout: \(error)") }
        guard layout.entries.count == reply.fds.count else {
            fail("region layout names \(layout.entries.count) regions but \(reply.fds.count) fds came")
        }
        var regions: [UInt32: SharedRegion] = [:]
        for (entry, fd) in zip(layout.entries, reply.fds) {
            regions[entry.regionID] = try SharedRegion(adopting: fd, size: Int(entry.size), offset: Int(entry.offset))
        }
        // The liveness word (WorkerHeartbeat): beaten from the serve loop (`poll`).
        // The region is kept here: the caller may drop its dictionary (an optimised build ends a
        // local's life at its last use, and the unmapped word would then fault).
        if let beat = regions[WorkerHeartbeat.regionID], let p = beat.pointer(at: 0, count: 8) {
            Liveness.shared.region = beat
            Liveness.shared.word = p.assumingMemoryBound(to: UInt64.self)
        }
        return (hello, regions)
    }

    /// Decodes the seccomp program the monitor sent (the last setup message).
    public func seccompProgram(_ message: FDPassing.Message) -> SeccompProgram {
        do { return try SeccompProgram.decode(message.payload) } catch { fail("bad seccomp program: \(error)") }
    }

    /// Step 4: the filter, "attached", then the test hooks. Build everything the serve loop needs
    /// before calling this: after it, only the policy's calls are allowed.
    public func attach(_ program: SeccompProgram, hello: WorkerHello) throws {
        installSigsysReporter()
        let installed = program.instructions.withUnsafeBytes {
            svm_install_seccomp_filter($0.baseAddress, UInt32(program.instructionCount))
        }
        if installed < 0 { fail("cannot install the seccomp filter: \(String(cString: strerror(-installed)))") }
        if installed > 0 { fail("cannot install the seccomp filter on thread \(installed) (TSYNC)") }
        try FDPassing.send(hello.encoded(), over: Self.controlFD)
        if let bytes = options.testPrint { _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) } }
        if options.testForbiddenSyscall { _ = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0) }
        if let ms = options.testCrashAfterMilliseconds { svm_test_crash_after(ms) }
        if options.testExhaustMemory { Self.exhaustMemory() }
    }

    /// The serve loop's poll(): the timeout bounded by the heartbeat interval (an idle worker
    /// still beats), the heartbeat word bumped after every wake-up, and the operator's `slow`
    /// fault applied to a wake-up that has work. Returns what poll() returned.
    public func poll(_ fds: inout [pollfd], timeout: Int32) -> Int32 {
        let bounded = timeout < 0 ? WorkerHeartbeat.intervalMilliseconds : min(timeout, WorkerHeartbeat.intervalMilliseconds)
        let n = Glibc.poll(&fds, nfds_t(fds.count), bounded)
        let live = Liveness.shared
        if let w = live.word { svm_atomic_store_u64(w, svm_atomic_load_u64(w) &+ 1) }
        if n > 0, live.slowMilliseconds > 0 {
            Self.sleep(milliseconds: UInt64(live.slowMilliseconds))
        }
        return n
    }

    static func sleep(milliseconds: UInt64) {
        var ts = timespec(tv_sec: Int(milliseconds / 1000), tv_nsec: Int(milliseconds % 1000) * 1_000_000)
        var rest = timespec()
        while nanosleep(&ts, &rest) < 0 && errno == EINTR { ts = rest }
    }

    /// An operator's fault (WorkerFault, from the supervisor): said on stderr, then done.
    func inject(_ fault: WorkerFault) {
        switch fault.kind {
        case .crash:
            say("fault injection: crashing (SIGSEGV)")
            svm_test_crash_after(0)
        case .hang:
            say("fault injection: hanging for \(fault.argument) s (not serving, not beating)")
            Self.sleep(milliseconds: UInt64(fault.argument) * 1000)
            say("fault injection: hang over")
        case .slow:
            Liveness.shared.slowMilliseconds = fault.argument
            say(fault.argument == 0 ? "fault injection: no longer slow" : "fault injection: each request delayed by \(fault.argument) ms")
        case .syscall:
            say("fault injection: making a call its policy refuses (socket)")
            _ = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        case .ioError, .torn:
            // The supervisor sends these to storage workers only; a worker kind that does not
            // serve them (no `faults` handler took it) ignores them.
            say("fault injection: \(fault.kind.name) is not served by this worker kind; ignored")
        }
    }

    /// The monitor closing the control socket is the order to leave (false); a fault injection
    /// is offered to `faults` first (the worker kind's own kinds: the storage worker's io-error
    /// and torn; true when it took it), else handled here; anything else it sends goes to
    /// `handle` (the VMBus worker's shutdown request; ignored by default).
    public func controlMessage(_ handle: (FDPassing.Message) -> Void = { _ in },
                               faults: (WorkerFault) -> Bool = { _ in false }) -> Bool {
        do {
            let m = try FDPassing.receive(from: Self.controlFD, maxPayload: 4096, maxFDs: 0)
            if let header = try? m.payload.withUnsafeBytes({ try WireHeader.decode($0) }),
               header.type == WireRecordType.workerFault.rawValue {
                do {
                    let fault = try WorkerFault.decode(m.payload)
                    if !faults(fault) { inject(fault) }
                } catch { say("bad fault record: \(error)") }
                return true
            }
            handle(m)
            return true
        } catch .peerClosed {
            return false
        } catch {
            fail("control socket: \(error)")
        }
    }

    /// The worker's liveness word and its `slow` fault: process-wide, set once before the filter
    /// (the word) and by the serve loop's thread only (the delay).
    final class Liveness: @unchecked Sendable {
        static let shared = Liveness()
        var region: SharedRegion?
        var word: UnsafeMutablePointer<UInt64>?
        var slowMilliseconds: UInt32 = 0
    }

    /// The SIGSYS reporter's syscall-name table, built before the filter (C strings, never freed).
    func installSigsysReporter() {
        let count = Int((SyscallTable.numbers.values.max() ?? 0) + 1)
        let names = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: count)
        names.initialize(repeating: nil, count: count)
        for (n, number) in SyscallTable.numbers { names[Int(number)] = UnsafePointer(strdup(n)) }
        let r = svm_install_sigsys_reporter(strdup(name), names, UInt32(count))
        if r < 0 { fail("cannot install the SIGSYS reporter: \(String(cString: strerror(-r)))") }
    }

    /// Tests only (`--test-exhaust-memory`): allocates and touches 1 MiB blocks until an
    /// allocation fails under RLIMIT_AS, which the memory-budget reporter turns into
    /// MemoryBudget.exitStatus.
    static func exhaustMemory() -> Never {
        var blocks: [UnsafeMutableRawPointer] = []
        while true {
            let block = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
            block.initializeMemory(as: UInt8.self, repeating: 0xA5, count: 1 << 20)
            blocks.append(block)
        }
    }
}
