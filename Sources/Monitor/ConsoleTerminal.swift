import CSynthVM
import Glibc

/// The operator's terminal while it feeds COM1. Raw mode sends every key to the guest (Ctrl-C
/// too: the guest's shell gets it, SynthVM does not stop); the saved mode is restored by
/// `restore()`, at exit, and by the C shim's handlers for every signal whose default action ends
/// the process, so no exit path leaves the terminal raw.
public enum ConsoleTerminal {
    /// Whether `fd` is a terminal (it may be a pipe or a file, which are simply read).
    public static func isTerminal(fd: Int32) -> Bool { isatty(fd) == 1 }

    /// Whether this process may use the terminal on `fd`: it is not our controlling terminal (no
    /// job control applies), or we are in its foreground process group. A background process
    /// that changes its controlling terminal's mode or reads it is stopped (SIGTTOU, SIGTTIN),
    /// so SynthVM started in the background leaves the terminal alone.
    public static func isForeground(fd: Int32) -> Bool {
        let group = tcgetpgrp(fd)
        return group < 0 || group == getpgrp()
    }

    /// Puts `fd` in raw mode if it is a terminal. Returns whether it did.
    public static func enterRawMode(fd: Int32) -> Bool {
        isatty(fd) == 1 && svm_terminal_raw(fd) == 0
    }

    public static func restore() {
        svm_terminal_restore()
    }
}
