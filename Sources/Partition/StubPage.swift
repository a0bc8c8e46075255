/// What SynthVM writes into the guest's hypercall page when the guest enables it.
///
/// The TLFS only promises that a CALL to the start of the page performs the hypercall and ends
/// with the equivalent of a near RET (0xC3). KVM would put VMCALL there, but with no in-kernel
/// Hyper-V a VMCALL never reaches user space, so SynthVM's stub is
///
///     E6 <port>    out imm8, al   ; traps to the monitor as a port write (KVM_EXIT_IO)
///     C3           ret
///
/// It works in 32- and 64-bit mode alike, and does not use DX (which carries the input GPA).
/// The monitor handles the port write as the hypercall and resumes after the OUT. The rest of the
/// page is 0xCC (INT3), so a jump anywhere else into the page traps instead of running whatever
/// the guest's RAM held there.
public enum HypercallStubPage {
    public static let size = 4096
    /// `out imm8, al`.
    public static let outImm8AL: UInt8 = 0xE6
    /// `ret` (near).
    public static let ret: UInt8 = 0xC3
    /// `int3`, the filler.
    public static let int3: UInt8 = 0xCC

    /// The stub at offset 0.
    public static func stub(port: UInt8) -> [UInt8] { [outImm8AL, port, ret] }

    /// The whole page for `port`.
    public static func contents(port: UInt8) -> [UInt8] {
        var page = [UInt8](repeating: int3, count: size)
        page.replaceSubrange(0..<3, with: stub(port: port))
        return page
    }
}
