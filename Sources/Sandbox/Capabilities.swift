// Capabilities of the calling process, through libcap (libcap-dev; the CCap system library).
// A jailed worker drops all of them in Jail.enter: every bit of the bounding set (so no exec could
// bring one back), the ambient set, and permitted, effective and inheritable; then it locks the
// securebits so uid 0 would not confer any either.
import CCap
import Glibc

public enum Capabilities {
    /// Drops every capability from every set. Needs CAP_SETPCAP in the effective set (for the
    /// bounding set and the securebits), which this call drops last.
    public static func dropAll() throws(JailError) {
        if cap_set_secbits(svm_secbits_locked_down()) != 0 { throw failure("cap_set_secbits") }
        let count = cap_max_bits()
        for c in 0..<cap_value_t(count) where cap_get_bound(c) > 0 {
            if cap_drop_bound(c) != 0 { throw failure("cap_drop_bound(\(c))") }
        }
        if cap_reset_ambient() != 0 { throw failure("cap_reset_ambient") }
        guard let empty = cap_init() else { throw failure("cap_init") }
        defer { cap_free(UnsafeMutableRawPointer(empty)) }
        if cap_set_proc(empty) != 0 { throw failure("cap_set_proc(empty)") }
    }

    /// What is left, as read back from the kernel: empty when every set is empty.
    public static func remaining() -> [String] {
        var left: [String] = []
        let count = cap_max_bits()
        if let now = cap_get_proc() {
            defer { cap_free(UnsafeMutableRawPointer(now)) }
            for (flag, name) in [(CAP_EFFECTIVE, "effective"), (CAP_PERMITTED, "permitted"), (CAP_INHERITABLE, "inheritable")] {
                for c in 0..<cap_value_t(count) {
                    var v = CAP_CLEAR
                    if cap_get_flag(now, c, flag, &v) != 0 || v != CAP_CLEAR { left.append("\(name) \(c)") }
                }
            }
        } else {
            left.append("cap_get_proc failed")
        }
        for c in 0..<cap_value_t(count) {
            if cap_get_bound(c) != 0 { left.append("bounding \(c)") }
            if cap_get_ambient(c) != 0 { left.append("ambient \(c)") }
        }
        return left
    }

    static func failure(_ call: String) -> JailError {
        JailError("\(call): \(String(cString: strerror(errno)))")
    }
}
