import Glibc
import Monitor

// synthvm-vm: one VM life of `synthvm run`, started by the launcher (Sources/synthvm/
// VMProcessLauncher.swift) with execve, so every life has an address-space layout of its own.
// Not a command for operators: it takes no arguments, only its descriptors (docs/monitor.md,
// "The VM process"):
//   fd 0, 1, 2  the launcher's stdio (COM1 with --serial stdio, the diagnostics)
//   fd 3        a sealed memfd holding the VMProcessSetup record (the validated MachineConfig)
//   fd 4        with --crash-report: the pipe the guest's crash report goes into
//   fd 6...     the --disk images, opened and locked by the launcher (VMProcessSetup.firstDiskFD), handed to the storage worker
// It builds the VM, runs it on this (the main) thread, which is filtered from the end of setup
// on (Policies/monitor.policy: no open, no KVM call), and exits with the outcome's status.
// SIGINT/SIGTERM arrive blocked (the launcher blocked them across fork and exec) and are read
// from the VM's signalfd; PR_SET_PDEATHSIG (SIGKILL) was set before the exec and survives it.
// It is its own small executable, not a subcommand of `synthvm`: no argument parser and no
// Foundation are linked or mapped in the process that holds the VM (docs/monitor.md, "Footprint").

func printErr(_ s: String) {
    var line = s
    if !line.hasSuffix("\n") { line += "\n" }
    _ = writeAll(Array(line.utf8), fd: 2)
}

func fail(_ message: String, status: Int32) -> Never {
    printErr("synthvm: error: \(message)")
    exit(status)
}

if CommandLine.arguments.count != 1 {
    fail("synthvm-vm is started by `synthvm run`, with its setup on fd 3; it takes no arguments",
         status: StopReason.usageStatus)
}
let setup: VMProcessSetup
do { setup = try VMProcessSetup.read(fd: VMProcessSetup.setupFD) } catch {
    fail("\(error)", status: StopReason.setupFailureStatus)
}
close(VMProcessSetup.setupFD)
let crashReportPipe = setup.hasCrashReportPipe ? VMProcessSetup.crashReportFD : -1

let vm: VirtualMachine
do { vm = try VirtualMachine(config: setup.config) } catch {
    fail("cannot create the VM: \(error)", status: StopReason.setupFailureStatus)
}
let outcome = vm.runOnCallingThread()
if let json = outcome.guestCrashReportJSON, crashReportPipe >= 0 { writeAll(Array(json.utf8), fd: crashReportPipe) }
if let report = outcome.crashReport { printErr(report) }
let restarting = outcome.reason.isReset && setup.restartOnReset
switch outcome.reason {
case .halted, .exitDevice, .poweredOff: break
default: if !restarting { printErr("synthvm: \(outcome.reason.description)") }
}
if setup.stats && !restarting {
    printErr("synthvm: \(outcome.reason.description); status \(outcome.exitStatus)")
    for (i, c) in outcome.counters.enumerated() { printErr("synthvm: vCPU \(i): \(c.summary)") }
}
exit(outcome.exitStatus)
