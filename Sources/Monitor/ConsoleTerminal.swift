import CSynthVM
import Glibc

/// The operator's terminal while it feeds COM1. Raw mode sends every key to the guest (Ctrl-C
/// too: the guest's shell gets it, SynthVM does not stop); the saved mode is restored by
/// `restore()`, at exit, and by the C shim's handlers for every signal whose default action ends
/// the process, so no exit path leaves the terminal raw.
public enum ConsoleTerminal {
    /// Puts `fd` in raw mode if it is a terminal. Returns whether it did.
    public static func enterRawMode(fd: Int32) -> Bool {
        isatty(fd) == 1 && svm_terminal_raw(fd) == 0
    }

    public static func restore() {
        svm_terminal_restore()
    }
}
