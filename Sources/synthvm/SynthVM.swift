import ArgumentParser
import Glibc
import Monitor

/// `synthvm`: the SynthVM command line. The monitor runs in this process; the front end only
/// parses arguments and reports.
@main
struct SynthVM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synthvm",
        abstract: "SynthVM: a Hyper-V-compatible virtual machine monitor for Linux/KVM.",
        subcommands: [RunCommand.self, CtlCommand.self, InfoCommand.self])

    /// Bad arguments get one line on stderr and status 64; --help prints the full help.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            printErr("synthvm: error: \(message) (see 'synthvm help run')")
            Glibc.exit(StopReason.usageStatus)
        }
    }
}
