import CSynthVM
import ControlAPI
import Glibc
import HyperV
import Sandbox
import SynICRouting

/// The control socket's view of one VM (`APIBackend`): what `status` and `metrics` report and
/// what `fault`, `shutdown` and `stop` do. Called on the `synthvm-api` thread only; everything it
/// reads is shared with atomics or locks the VM already has (VMControl, the supervisor's status,
/// the vCPUs' `PublishedCounters`), and nothing it does blocks.
final class VMAPIBackend: APIBackend, @unchecked Sendable {
    let control: VMControl
    let supervisor: Supervisor?
    let counters: [PublishedCounters]
    let vcpuCount: Int
    let faultInjectionAllowed: Bool
    /// CLOCK_MONOTONIC when the VM started running.
    let started: Double
    let workerKinds: [String: String]
    /// `VirtualMachine.requestGracefulShutdown`: sends the guest the shutdown IC's request when
    /// it has negotiated that channel; false when it cannot be asked.
    let askGuestToShutDown: @Sendable () -> Bool

    /// What the VMBus worker publishes (the heartbeat IC's answers); nil without VMBus.
    let vmbusStatus: @Sendable () -> SynICRegion.VMBusStatus?

    init(control: VMControl, supervisor: Supervisor?, counters: [PublishedCounters], config: MachineConfig,
         askGuestToShutDown: @escaping @Sendable () -> Bool = { false },
         vmbusStatus: @escaping @Sendable () -> SynICRegion.VMBusStatus? = { nil }) {
        self.askGuestToShutDown = askGuestToShutDown
        self.vmbusStatus = vmbusStatus
        self.control = control
        self.supervisor = supervisor
        self.counters = counters
        vcpuCount = config.cpuCount
        faultInjectionAllowed = config.allowFaultInjection
        started = monotonicSeconds()
        var kinds: [String: String] = [:]
        for name in config.workerNames {
            switch MachineConfig.knownWorkers[name] {
            case .synicRouter?: kinds[name] = "synic-router"
            case .vmbus?: kinds[name] = "vmbus"
            default: kinds[name] = name
            }
        }
        workerKinds = kinds
    }

    /// One entry per worker name: its newest process (restart will add processes to the list).
    private func workers() -> [APIWorkerStatus] {
        let all = supervisor?.status ?? []
        var names: [String] = []
        for s in all where !names.contains(s.name) { names.append(s.name) }
        return names.map { name in
            let processes = all.filter { $0.name == name }
            let newest = processes[processes.count - 1]
            let lastExit = processes.last { $0.exit != nil }?.exit
            return APIWorkerStatus(name: name, kind: workerKinds[name] ?? name, pid: newest.pid, running: newest.exit == nil,
                                   restarts: processes.count - 1, lastExit: lastExit.map { "\($0)" }, heartbeatAgeMs: nil)
        }
    }

    func status() -> APIStatus {
        APIStatus(state: control.isStopping ? "stopping" : "running", uptimeSeconds: monotonicSeconds() - started,
                  vcpus: vcpuCount, pid: getpid(), faultInjection: faultInjectionAllowed, workers: workers(),
                  guestHeartbeat: guestHeartbeat())
    }

    /// The heartbeat IC's view of the guest: answers so far, the last sequence number, how long
    /// ago (null before the first answer); nil (JSON null) without VMBus.
    func guestHeartbeat() -> JSONValue? {
        guard let s = vmbusStatus() else { return nil }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let now = UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
        let age: JSONValue = s.heartbeats == 0 || s.heartbeatMonotonicNs > now
            ? .null : .int(Int64((now - s.heartbeatMonotonicNs) / 1_000_000))
        return .object([("answered", .int(Int64(clamping: s.heartbeats))),
                        ("sequence", .int(Int64(clamping: s.heartbeatSequence))), ("age_ms", age),
                        ("shutdown_negotiated", .bool(s.flags & SynICRegion.VMBusStatus.shutdownNegotiated != 0))])
    }

    func metricsText() -> String {
        var p = PrometheusText()
        p.family("synthvm_uptime_seconds", type: "gauge", help: "Seconds since this VM process started running the VM.",
                 [.init(value: ((monotonicSeconds() - started) * 1000).rounded() / 1000)])
        let perVCPU = counters.map { $0.exitCounters() }
        // Exits by reason; the rest of ExitCounters as events.
        let reasons = ["pio": "io", "mmio": "mmio", "msr": "msr"]
        var exitSamples: [PrometheusText.Sample] = []
        var totalSamples: [PrometheusText.Sample] = []
        var eventSamples: [PrometheusText.Sample] = []
        for (vcpu, values) in perVCPU.enumerated() {
            for (name, v) in values {
                if name == "exits" {
                    totalSamples.append(.init(labels: [("vcpu", String(vcpu))], value: Double(v)))
                } else if let r = reasons[name] {
                    exitSamples.append(.init(labels: [("vcpu", String(vcpu)), ("reason", r)], value: Double(v)))
                } else {
                    eventSamples.append(.init(labels: [("vcpu", String(vcpu)), ("event", name)], value: Double(v)))
                }
            }
        }
        p.family("synthvm_vcpu_exits_total", type: "counter",
                 help: "KVM exits to user space handled by each vCPU thread, all reasons.", totalSamples)
        p.family("synthvm_vcpu_exits_by_reason_total", type: "counter",
                 help: "KVM exits by exit reason (io: port I/O including hypercalls, mmio, msr).", exitSamples)
        p.family("synthvm_vcpu_events_total", type: "counter",
                 help: "What the vCPU threads did besides (ExitCounters: kicks, unknown ports/MMIO/MSRs, synthetic MSRs, hypercalls, AutoEOI injections, emulation fix-ups).",
                 eventSamples)
        var hypercalls: [Int: Int] = [:]
        for c in counters { for (slot, v) in c.hypercallCounts() { hypercalls[slot, default: 0] += v } }
        p.family("synthvm_hypercalls_total", type: "counter",
                 help: "Hypercalls by call code, summed over the vCPUs (code \"other\": 0x100 and above).",
                 hypercalls.keys.sorted().map { slot in
                     let hex = String(slot, radix: 16)
                     let code = slot < 256 ? "0x" + String(repeating: "0", count: 4 - hex.count) + hex : "other"
                     let name = slot < 256 ? HvCallCode(rawValue: UInt16(slot)).name ?? "unknown" : "other"
                     return .init(labels: [("code", code), ("name", name)], value: Double(hypercalls[slot] ?? 0))
                 })
        let ws = workers()
        p.family("synthvm_worker_up", type: "gauge", help: "1 while the worker's process runs.",
                 ws.map { .init(labels: [("worker", $0.name), ("kind", $0.kind)], value: $0.running ? 1 : 0) })
        p.family("synthvm_worker_restarts_total", type: "counter", help: "Restarts of each worker by the supervisor.",
                 ws.map { .init(labels: [("worker", $0.name), ("kind", $0.kind)], value: Double($0.restarts)) })
        return p.text
    }

    func killWorker(_ name: String) -> Result<Int32, APIError> {
        guard let sup = supervisor, sup.status.contains(where: { $0.name == name }) else {
            let known = workers().map(\.name)
            return .failure(APIError(.workerNotFound, "no worker \(name) in this VM"
                + (known.isEmpty ? " (it runs none)" : " (workers: \(known.joined(separator: ", ")))")))
        }
        guard !control.isStopping else { return .failure(APIError(.stopping, "the VM is stopping")) }
        guard let pid = sup.kill(worker: name) else {
            return .failure(APIError(.workerNotRunning, "worker \(name) is not running"))
        }
        return .success(pid)
    }

    /// Asks the guest once (the supervising loop then allows it `--shutdown-grace` seconds, as
    /// after SIGTERM: status 0 when it powers off, 131 when it does not in time or refuses); a
    /// second `shutdown`, or a guest that cannot be asked, stops the VM hard (130).
    func shutdown() -> APIShutdownResult {
        if !control.hasAskedGuestToShutDown, !control.isStopping, askGuestToShutDown(), control.noteGuestAskedToShutDown() {
            return .guestAsked
        }
        control.requestStop(.controlSocketStop)
        return .hardStop
    }

    func stop() -> Bool { control.requestStop(.controlSocketStop) }

    func log(_ line: String) { writeAll(Array((line + "\n").utf8), fd: 2) }
}
