// synthvm-synic-router: the SynIC message-router worker (issue 4).
//
// Started by the monitor's supervisor with exactly one fd: 3, a SEQPACKET control socket. It
// announces itself (WorkerHello), receives the region layout with the region fds attached
// (region 0: guest RAM), maps each region after checking its seals, answers with its own
// WorkerHello as "attached", and then serves until the monitor closes the socket. Routing of
// messages and events lands here next; today the worker proves the substrate: spawn with only
// the fds it needs, handshake, shared mappings, death detection.
import CSynthVM
import Glibc
import IPC

let controlFD: Int32 = 3

func fail(_ message: String) -> Never {
    let line = "synthvm-synic-router: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(1)
}

// Die with the monitor rather than linger with guest memory mapped.
_ = svm_set_parent_death_signal(SIGKILL)
if getppid() == 1 { exit(0) }

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
    // Attached: say so with the same hello (the supervisor counts the second one as "ready").
    try FDPassing.send(hello.encoded(), over: controlFD)
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
