// The seccomp policy parser (`PolicyParser`, Sources/Sandbox; the format is docs/policy-format.md):
// includes, default actions, rules with argument conditions, constants and $NAME runtime values.
// The input is split at the first NUL into the top-level policy and one file it may include as
// "common.policy" (a policy that includes itself, or the other, checks cycle detection).
//
// Checked: nothing traps; a parsed policy has a default action and no syscall ruled twice
// (the parser's promise to the compiler).
import FuzzSupport
import Sandbox

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPolicy(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = FuzzInput(data, size).bytes
    let cut = bytes.firstIndex(of: 0) ?? bytes.count
    let top = String(decoding: bytes[..<cut], as: UTF8.self)
    let included = cut < bytes.count ? String(decoding: bytes[(cut + 1)...], as: UTF8.self) : ""
    let files = ["/p/worker.policy": top, "/p/common.policy": included]
    if let policy = try? PolicyParser.parse(file: "/p/worker.policy", files: files) {
        let names = policy.rules.map(\.syscall)
        precondition(Set(names).count == names.count, "a syscall has two rules")
    }
    return 0
}
